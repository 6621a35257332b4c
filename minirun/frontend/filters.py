"""`--filter key=value` as docker reads it: values of one key are alternatives (ORed), different
keys must all hold (ANDed); `label` is the exception, as in docker: every label given must be
there. A text value matches exactly or as a regular expression found anywhere (docker's
filters.Args.Match: `name=web` matches `myweb`, `name=^web$` only `web`). An unknown key is one
line and exit 125, as is a bad value of a known one.

Which keys a verb takes and what they mean: PS_KEYS and container_filter for `ps`, IMAGE_KEYS
and image_filter for `images`, NETWORK_KEYS and network_filter for `network ls`, VOLUME_KEYS and
volume_filter for `volume ls`."""

from __future__ import annotations

import re

from minirun.errors import UsageError

TYPE_CHECKING = False  # typing costs ~6 ms on ps's path
if TYPE_CHECKING:
    from collections.abc import Callable

    from minirun.containers.container import Container
    from minirun.net.networks import Network
    from minirun.store import Store
    from minirun.store.images import Image
    from minirun.store.volumes import Volume

PS_KEYS = (
    "id",
    "name",
    "label",
    "status",
    "exited",
    "ancestor",
    "before",
    "since",
    "network",
    "volume",
    "health",
    "publish",
    "expose",
    "is-task",
)
IMAGE_KEYS = ("dangling", "label", "reference", "before", "since")
NETWORK_KEYS = ("driver", "id", "label", "name", "scope", "type", "dangling")
VOLUME_KEYS = ("dangling", "driver", "label", "name")
EVENT_KEYS = ("container", "event", "image", "label", "network", "type", "volume", "scope", "daemon")
EVENT_TYPES = ("container", "image", "network", "volume", "daemon", "plugin", "service", "node", "secret", "config")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


class Filters:
    def __init__(self, items: list[str], accepted: tuple[str, ...]) -> None:
        self.fields: dict[str, list[str]] = {}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep:
                raise UsageError(f"bad format of filter {item!r} (expected name=value)")
            if key not in accepted:
                raise UsageError(f"invalid filter '{key}'")
            self.fields.setdefault(key, []).append(value.strip())

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def get(self, key: str) -> list[str]:
        return self.fields.get(key, [])

    def match(self, key: str, source: str) -> bool:
        """True if the key is not given, or some value equals `source` or is a pattern found in it."""
        values = self.fields.get(key)
        if not values:
            return True
        for value in values:
            if value == source:
                return True
            try:
                if re.search(value, source):
                    return True
            except re.error:
                continue  # docker skips a value that is not a valid pattern
        return False

    def match_labels(self, labels: dict[str, str]) -> bool:
        """Every `label=KEY` present and every `label=KEY=VALUE` equal, and (prune's `label!`)
        no `label!=KEY` present nor `label!=KEY=VALUE` equal."""
        for value in self.get("label"):
            if not _has_label(value, labels):
                return False
        return not any(_has_label(value, labels) for value in self.get("label!"))

    def boolean(self, key: str) -> bool | None:
        values = {v.lower() for v in self.get(key)}
        if not values:
            return None
        if not values <= {"true", "false", "1", "0"}:
            raise UsageError(f"invalid filter '{key}={sorted(values)[0]}'")
        return values & {"true", "1"} != set()


def container_filter(filters: Filters, store: Store, containers: list[Container]) -> Callable[[Container], bool]:
    """A predicate for `ps --filter`, its values checked (and names resolved) before any row."""
    from minirun.containers.pause import status as docker_status

    for status in filters.get("status"):
        if status not in STATUSES:
            raise UsageError(f"invalid filter 'status={status}'")
    for health in filters.get("health"):
        if health not in HEALTH:
            raise UsageError(f"invalid filter 'health={health}'")
    exited = set()
    for code in filters.get("exited"):
        try:
            exited.add(int(code))
        except ValueError:
            raise UsageError(f"invalid filter 'exited={code}'") from None
    before = [_created_of(containers, name) for name in filters.get("before")]
    since = [_created_of(containers, name) for name in filters.get("since")]
    ancestors = _image_ids_descending_from(store, filters.get("ancestor")) if "ancestor" in filters else None
    network_names = _network_names(store, filters.get("network"))
    publish = [_port_range(v, "publish") for v in filters.get("publish")]
    expose = [_port_range(v, "expose") for v in filters.get("expose")]
    is_task = filters.boolean("is-task")

    def keep(c: Container) -> bool:
        state = c.state
        status = docker_status(c)
        return (
            filters.match("id", c.id)
            and filters.match("name", "/" + c.name)
            and filters.match_labels(c.config.labels)
            and (not filters.get("status") or status in filters.get("status"))
            and (not exited or (status == "exited" and state.get("ExitCode") in exited))
            and all(c.config.created < when for when in before)
            and all(c.config.created > when for when in since)
            and (ancestors is None or c.config.image in ancestors)
            and (network_names is None or not network_names.isdisjoint(_networks_of(c)))
            and (not filters.get("volume") or _mounts_any(c, filters.get("volume")))
            and (not filters.get("health") or _health_of(c) in filters.get("health"))
            and (not publish or _ports_in(_published(c), publish))
            and (not expose or _ports_in(_published(c) | _exposed(store, c), expose))
            and is_task is not True
        )

    return keep


def _mounts_any(c: Container, values: list[str]) -> bool:
    """docker's volume=: a mount's volume name (its source, for a bind) or its destination."""
    from minirun.containers.mounts import mount_points

    points = mount_points(c.config)
    return any(v in (m.get("Name") or m["Source"], m["Destination"]) for m in points for v in values)


def _health_of(c: Container) -> str:
    if not c.config.healthcheck:
        return "none"
    from minirun.containers.healthconfig import status_of

    return status_of(c)


CONTAINER_PRUNE_KEYS = ("label", "label!", "until")


def container_prune_filter(words: list[str]) -> Callable[[Container], bool]:
    """docker container prune's filters: label=, label!= on the container's labels; until= keeps
    containers created after that time. An unknown key or a bad time fails here, before any
    container goes."""
    from minirun.errors import MinirunError
    from minirun.humanize import epoch_seconds, parse_timestamp

    filters = Filters(words, CONTAINER_PRUNE_KEYS)
    until = [parse_timestamp(value) for value in filters.get("until")]

    def allowed(c: Container) -> bool:
        try:
            created_ns = epoch_seconds(c.config.created) * 1e9
        except (MinirunError, ValueError):
            created_ns = float("inf")  # no time to compare: an `until` keeps it
        return filters.match_labels(c.config.labels or {}) and all(created_ns < when for when in until)

    return allowed


def shows_every_state(filters: Filters) -> bool:
    """docker: a status filter lists containers in any state, as -a does."""
    return "status" in filters


def image_filter(filters: Filters, store: Store) -> Callable[[Image, str | None], bool]:
    """A predicate for `images --filter` over (image, "name:tag" or None for an untagged row)."""
    dangling = filters.boolean("dangling")
    from minirun.image.embedded import find_image

    before = [find_image(store, name).created for name in filters.get("before")]
    since = [find_image(store, name).created for name in filters.get("since")]
    patterns = filters.get("reference")

    def keep(image: Image, name: str | None) -> bool:
        return (
            (dangling is None or dangling == (name is None))
            and filters.match_labels(image.labels)
            and all(image.created < when for when in before)
            and all(image.created > when for when in since)
            and (not patterns or (name is not None and any(_reference_matches(p, name) for p in patterns)))
        )

    return keep


def network_filter(filters: Filters, in_use: set[str]) -> Callable[[Network], bool]:
    """A predicate for `network ls --filter`; `in_use`: the names containers are on (dangling)."""
    for kind in filters.get("type"):
        if kind not in ("custom", "builtin"):
            raise UsageError(f"invalid filter 'type={kind}'")
    dangling = filters.boolean("dangling")

    def keep(n: Network) -> bool:
        return (
            filters.match("name", n.name)
            and filters.match("id", n.id)
            and filters.match("driver", n.driver)
            and filters.match_labels(n.labels)
            and (not filters.get("scope") or "local" in filters.get("scope"))
            and (not filters.get("type") or ("builtin" if n.predefined else "custom") in filters.get("type"))
            and (dangling is None or dangling == (n.name not in in_use and not n.predefined))
        )

    return keep


def volume_filter(filters: Filters, in_use: set[str]) -> Callable[[Volume], bool]:
    """A predicate for `volume ls --filter`; `in_use`: the names containers' records name (dangling)."""
    dangling = filters.boolean("dangling")

    def keep(v: Volume) -> bool:
        return (
            filters.match("name", v.name)
            and (not filters.get("driver") or v.driver in filters.get("driver"))
            and filters.match_labels(v.labels or {})
            and (dangling is None or dangling == (v.name not in in_use))
        )

    return keep


def event_filter(filters: Filters) -> Callable[[dict], bool]:
    """A predicate for `events --filter` over event messages (minirun.events)."""
    for kind in filters.get("type"):
        if kind not in EVENT_TYPES:
            raise UsageError(f"invalid filter 'type={kind}'")

    def named(key: str, event: dict, type_: str) -> bool:
        """container=, image=, network=, volume=: the actor's id or name, for events of that type
        (docker also matches a container event by its image for image=)."""
        values = filters.get(key)
        if not values:
            return True
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        candidates = set()
        if event.get("Type") == type_:
            candidates |= {actor.get("ID", ""), attributes.get("name", "")}
        if key == "image" and event.get("Type") == "container":
            candidates.add(attributes.get("image", ""))
        if key in ("container",) and event.get("Type") == "network":
            candidates.add(attributes.get("container", ""))
        return any(v == c or (len(v) >= 3 and c.startswith(v)) for v in values for c in candidates if c)

    def keep(event: dict) -> bool:
        action = str(event.get("Action", ""))
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        return (
            (not filters.get("type") or event.get("Type") in filters.get("type"))
            and (not filters.get("event") or action.split(":", 1)[0] in filters.get("event"))
            and named("container", event, "container")
            and named("image", event, "image")
            and named("network", event, "network")
            and named("volume", event, "volume")
            and filters.match_labels(attributes)
            and (not filters.get("scope") or "local" in filters.get("scope"))
        )

    return keep


def _has_label(value: str, labels: dict[str, str]) -> bool:
    """`KEY` is among `labels`, or `KEY=VALUE` is."""
    key, sep, wanted = value.partition("=")
    return key in labels and (not sep or labels[key] == wanted)


def _reference_matches(pattern: str, name: str) -> bool:
    """docker's reference filter: a glob (path.Match) against `name:tag` or the name alone, in the
    familiar form (`busybox`, not `docker.io/library/busybox`)."""
    repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    # path.Match's `*` stops at `/`; fnmatch's does not: translate it per segment
    regex = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in pattern)
    return any(re.fullmatch(regex, text) for text in (name, repository))


def _created_of(containers: list[Container], name: str) -> str:
    wanted = name.lstrip("/")
    for c in containers:
        if c.name == wanted or c.id == name:
            return c.config.created
    matches = [c for c in containers if c.id.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0].config.created
    raise UsageError(f"No such container: {name}")


def _image_ids_descending_from(store: Store, names: list[str]) -> set[str]:
    """The ids of the images named and of every stored image built on one of them (docker's
    ancestor: an image or a descendant). A name that is no image adds nothing."""
    from minirun.errors import MinirunError

    wanted = []
    for name in names:
        try:
            wanted.append(store.images.lookup(name))
        except MinirunError:
            continue
    keys = {image.lineage_key() for image in wanted}
    return {image.id for image in wanted} | {
        image.id for image in store.images.all() if keys & set(image.ancestor_keys())
    }


def _network_names(store: Store, values: list[str]) -> set[str] | None:
    """The names of the networks named by name or id; None when no network filter is given."""
    if not values:
        return None
    from minirun.errors import MinirunError
    from minirun.net.networks import Networks

    names = set()
    networks = Networks(store)
    for value in values:
        try:
            names.add(networks.find(value).name)
        except MinirunError:
            names.add(value)  # a network since removed: its containers still say its name
    return names


def _networks_of(c: Container) -> list[str]:
    """Its first network as it ran (the name it had), and every network it is on."""
    first = (c.state.get("NetworkSettings") or {}).get("Network") or c.config.network
    if c.config.networks is None:
        return [first]
    return [first, *(w["name"] for w in c.config.networks)]


def _port_range(value: str, key: str) -> tuple[int, int, str]:
    """`80`, `80/udp`, `8000-8080/tcp` -> (first, last, protocol)."""
    ports, _, proto = value.partition("/")
    first, _, last = ports.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise UsageError(f"invalid filter '{key}={value}'") from None
    if not (0 < low <= high <= 65535) or (proto or "tcp") not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid filter '{key}={value}'")
    return low, high, proto or "tcp"


def _published(c: Container) -> set[tuple[int, str]]:
    return {(int(port), proto) for _, _, port, proto in c.config.ports}


def _exposed(store: Store, c: Container) -> set[tuple[int, str]]:
    from minirun.errors import MinirunError

    try:
        exposed = store.images.get(c.config.image).config.get("config", {}).get("ExposedPorts") or {}
    except MinirunError:
        return set()
    found = set()
    for spec in exposed if isinstance(exposed, dict) else ():
        port, _, proto = str(spec).partition("/")
        if port.isdigit():
            found.add((int(port), proto or "tcp"))
    return found


def _ports_in(ports: set[tuple[int, str]], ranges: list[tuple[int, int, str]]) -> bool:
    return any(low <= port <= high and proto == wanted for port, proto in ports for low, high, wanted in ranges)
