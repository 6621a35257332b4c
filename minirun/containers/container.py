"""Container records on disk: `containers/<id>/` with config.json (what to run), state.json (what
happened), the writable layer (upper/ work/) and the files minirun provides (hosts, hostname,
resolv.conf). config.json is written once; state.json is replaced atomically on every change."""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.errors import Conflict, DamagedRecord, NotFound, UsageError
from minirun.store import Store
from minirun.store.fsutil import atomic_write, read_record, remove_tree

TYPE_CHECKING = False  # typing costs ~6 ms of every start
if TYPE_CHECKING:
    from typing import Any

HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


# (field, default) of a container's config.json, in order; a callable default makes a fresh value.
# Plain classes rather than dataclasses: `dataclasses` pulls in `inspect`, ~9 ms of every ps/diff.
_CONFIG_FIELDS = (
    ("id", None),
    ("name", None),
    ("image", None),  # image: the id that keeps its layers alive
    ("image_ref", None),  # as the user typed it, for ps
    ("created", None),
    ("argv", None),
    ("env", None),
    ("workdir", "/"),
    ("user", ""),
    ("hostname", ""),
    ("binds", list),  # [source, target, readonly]
    ("tmpfs", list),  # TARGET or TARGET:OPTIONS, as --tmpfs took it
    ("readonly", False),
    ("network", "none"),
    ("auto_remove", False),
    ("interactive", False),
    ("tty", False),
    ("resources", dict),  # docker's HostConfig names (Memory, NanoCpus, ...): only those given; update rewrites it
    ("ports", list),  # -p: [host_ip ("" = all), host_port (0 = picked at start), container_port, proto]
    # privileges.py: --cap-add/--cap-drop (normalized), --privileged, --security-opt as docker records them
    ("cap_add", list),
    ("cap_drop", list),
    ("privileged", False),
    ("security_opt", list),
    ("devices", list),  # --device: [host path, container path, permissions]
    ("device_cgroup_rules", list),  # --device-cgroup-rule: docker's HostConfig.DeviceCgroupRules, as given
    # docker's HostConfig.LogConfig ({"Type": driver, "Config": {opt: value}}; logconfig.py); {}: unbounded json-file
    ("log_config", dict),
    ("labels", dict),  # the image's Labels, then --label-file and -l on top (docker's Config.Labels)
    ("stdin_once", False),  # docker's StdinOnce (-i, not detached): the attached client's EOF closes stdin
    ("console_size", list),  # docker's HostConfig.ConsoleSize [height, width]: a -t terminal's first; []: 24x80
    # docker's Mounts (containers/mounts.py): binds, volumes and --mount tmpfs as inspect shows them
    ("mounts", list),
    # run's flags as docker records them (runconfig.py shows them in inspect under docker's names)
    ("extra_hosts", list),  # --add-host NAME:IP (or NAME:host-gateway): HostConfig.ExtraHosts
    ("network_aliases", list),  # --network-alias: more names of it on its user network (peers' /etc/hosts)
    # the networks it is on, [{"name", "aliases", "ip"}], the first eth0's: written by network
    # connect/disconnect (and run --network twice); None: `network` with `network_aliases`
    ("networks", lambda: None),
    ("links", list),  # --link [name, alias] on its first network (containers/links.py); a connect's in `networks`
    ("dns", list),  # --dns, --dns-search, --dns-option: written into resolv.conf at create
    ("dns_search", list),
    ("dns_options", list),
    ("init", False),  # --init: tini as the process the container starts, the command its child
    ("ulimits", list),  # --ulimit: [{"Name", "Soft", "Hard"}]
    ("shm_size", 0),  # --shm-size in bytes; 0: docker's 64 MiB
    ("stop_signal", ""),  # --stop-signal, else the image's STOPSIGNAL; "": SIGTERM
    ("stop_timeout", lambda: None),  # --stop-timeout seconds; None: stop's 10 (a callable: None marks required)
    ("group_add", list),  # --group-add: group names (of the container's /etc/group) or gids
    ("sysctls", dict),  # --sysctl, namespaced keys only (runtime/kernelsettings.py)
    ("oom_score_adj", 0),  # --oom-score-adj, PID 1's /proc/self/oom_score_adj; 0: left as inherited
    ("pid_mode", ""),  # --pid, --ipc, --uts: "host" shares the host's namespace
    ("ipc_mode", ""),
    ("uts_mode", ""),
    ("cgroupns_mode", ""),  # --cgroupns: "host" shares the host's cgroup namespace; "" (older records): private
    ("runtime", ""),  # --runtime: an OCI runtime (path or name) runs it from a bundle; "": in-process
    ("publish_all", False),  # -P: every exposed port, on ports picked at each start
    ("exposed_ports", list),  # the image's EXPOSE, --expose and -p's ports: ["80/tcp", ...]
    # docker's HostConfig.RestartPolicy {"Name", "MaximumRetryCount"} (restartpolicy.py); {}: "no"
    ("restart_policy", dict),
    # docker's Config.Healthcheck (Test, Interval, Timeout, StartPeriod, StartInterval in ns, Retries;
    # healthconfig.py), the image's merged with --health-*; {}: none
    ("healthcheck", dict),
)
_REQUIRED = {name for name, default in _CONFIG_FIELDS if default is None}
_KNOWN = frozenset(name for name, _ in _CONFIG_FIELDS)
_KNOWN_WITH_COPY = _KNOWN | {"Image"}  # to_json's copy of `image`
# defaults split once: plain values copied as they are, callables called for a fresh value each time
_PLAIN_DEFAULTS = {name: default for name, default in _CONFIG_FIELDS if default is not None and not callable(default)}
_FRESH_DEFAULTS = tuple((name, default) for name, default in _CONFIG_FIELDS if callable(default))
_DEFAULT_VALUES: dict[str, object] = {**_PLAIN_DEFAULTS, **{name: make() for name, make in _FRESH_DEFAULTS}}


class ContainerConfig:
    """What to run: written once into config.json (rename rewrites `name`, update `resources`)."""

    id: str
    name: str
    image: str
    image_ref: str
    created: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    hostname: str
    binds: list[list]
    tmpfs: list[str]
    readonly: bool
    network: str
    auto_remove: bool
    interactive: bool
    tty: bool
    resources: dict
    ports: list[list]
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    security_opt: list[str]
    devices: list[list]
    device_cgroup_rules: list[str]
    log_config: dict
    labels: dict
    stdin_once: bool
    console_size: list[int]
    mounts: list[dict]
    extra_hosts: list[str]
    network_aliases: list[str]
    networks: list[dict] | None
    links: list[list[str]]
    dns: list[str]
    dns_search: list[str]
    dns_options: list[str]
    init: bool
    ulimits: list[dict]
    shm_size: int
    stop_signal: str
    stop_timeout: int | None
    group_add: list[str]
    sysctls: dict[str, str]
    oom_score_adj: int
    pid_mode: str
    ipc_mode: str
    uts_mode: str
    cgroupns_mode: str
    runtime: str
    publish_all: bool
    exposed_ports: list[str]
    restart_policy: dict
    healthcheck: dict

    def __init__(self, **values: object) -> None:
        unknown = values.keys() - _KNOWN
        if unknown:
            raise TypeError(f"ContainerConfig: unknown {sorted(unknown)}")
        self._fill(values)

    def _fill(self, values: dict) -> None:
        """The fields from `values` (known names only), defaults for the rest; straight into
        __dict__: ps builds one per container, and 47 setattr calls each showed."""
        missing = _REQUIRED - values.keys()
        if missing:
            raise TypeError(f"ContainerConfig: missing {sorted(missing)}")
        fields = self.__dict__
        fields.update(_PLAIN_DEFAULTS)
        for name, make in _FRESH_DEFAULTS:
            if name not in values:
                fields[name] = make()
        fields.update(values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContainerConfig) and self.to_json() == other.to_json()

    def to_json(self) -> dict:
        data = {name: _copied(getattr(self, name)) for name, _ in _CONFIG_FIELDS}
        data["Image"] = self.image  # the key Store.containers_using reads
        return data

    @classmethod
    def from_json(cls, data: dict) -> ContainerConfig:
        """Unknown keys are dropped: to_json's `Image`, or a field a later minirun added."""
        if data.keys() == _KNOWN_WITH_COPY:  # as to_json wrote it: every field, nothing to fill
            config = cls.__new__(cls)
            config.__dict__.update(data)
            del config.__dict__["Image"]
            return config
        if not data.keys() <= _KNOWN_WITH_COPY:
            data = {k: v for k, v in data.items() if k in _KNOWN}
        config = cls.__new__(cls)
        config._fill(data)
        config.__dict__.pop("Image", None)
        return config


def without_defaults(data: dict) -> dict:
    """A config.json's fields but those from_json fills in itself with the very same value (and
    to_json's copy `Image`): how listindex.py caches a config, at a third of its size. What it
    leaves out is only right under the same defaults: DEFAULTS_TAG names them."""
    return {
        key: value
        for key, value in data.items()
        if key in _KNOWN
        and not (key in _DEFAULT_VALUES and type(value) is type(_DEFAULT_VALUES[key]) and value == _DEFAULT_VALUES[key])
    }


DEFAULTS_TAG = repr(sorted(_DEFAULT_VALUES.items())).encode()  # the defaults, as without_defaults counts on them


class Container:
    __slots__ = ("config", "dir", "state")

    def __init__(self, config: ContainerConfig, dir: str, state: dict) -> None:
        self.config, self.dir, self.state = config, dir, state

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def upper(self) -> str:
        return os.path.join(self.dir, "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.dir, "work")

    def provided_file(self, name: str) -> str:
        """hosts, hostname, resolv.conf: bind-mounted over the container's /etc files."""
        return os.path.join(self.dir, name)


class Containers:
    """The store's container records. Names are also links, `<store>/names/<name>` -> id, so
    that a name is found (find) and checked (create, rename) without reading every record. The
    records stay the truth: a link counts only when its container's record carries that name
    (a crash, or an --rm by a monitor, may leave one pointing elsewhere), and a store from before
    the links has them made once, under the lock, by the first create or rename (`.complete`
    marks that); until then, lookups read every record, as they used to."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.containers_dir
        self.names_dir = names_dir(store.root)

    def _path(self, id_: str) -> str:
        return os.path.join(self.dir, id_)

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [n for n in names if len(n) == 64 and os.path.exists(os.path.join(self.dir, n, "config.json"))]

    def load(self, id_: str) -> Container:
        """The container's record; DamagedRecord (naming the file) if a part cannot be read."""
        path = self._path(id_)
        try:
            config = _config_from(read_record(os.path.join(path, "config.json")), os.path.join(path, "config.json"))
            state = read_record(os.path.join(path, "state.json"))
        except FileNotFoundError:
            raise NotFound(f"No such container: {id_}") from None
        return _checked(config, path, state)

    def from_records(self, id_: str, config_data: object, state_data: object) -> Container:
        """The container whose config.json and state.json held these (parsed) values, checked as
        `load` checks what it reads: DamagedRecord naming the file at fault. listindex.py hands
        over the values it cached."""
        path = f"{self.dir}/{id_}"  # self._path's, without os.path.join's checks (ps: once a container)
        return _checked(_config_from(config_data, path + "/config.json"), path, state_data)

    def load_or_dead(self, id_: str) -> Container:
        """The record, or for one that is damaged a stand-in in docker's `dead` state that still
        lists, inspects and removes (its processes are found through its cgroups)."""
        try:
            return self.load(id_)
        except DamagedRecord as exc:
            return self._dead(id_, exc)

    def _dead(self, id_: str, damage: DamagedRecord) -> Container:
        path = self._path(id_)
        try:  # a good config.json beside a damaged state.json keeps its name and image
            config = _config_from(read_record(os.path.join(path, "config.json")), os.path.join(path, "config.json"))
        except (DamagedRecord, FileNotFoundError):
            config = ContainerConfig(id=id_, name="", image="", image_ref="", created=_mtime(path), argv=[], env=[])
        state = {
            "Status": "dead",
            "Running": False,
            "Pid": 0,
            "ExitCode": 0,
            "Error": damage.message,
            "StartedAt": "0001-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "OOMKilled": False,
        }
        return Container(config=config, dir=path, state=state)

    def all(self) -> list[Container]:
        found = []
        for id_ in self.ids():
            try:
                found.append(self.load_or_dead(id_))
            except NotFound:
                continue  # removed meanwhile
        return found

    def find(self, text: str) -> Container:
        """By full id, name, or unique id prefix (docker's order)."""
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text) and os.path.isdir(self._path(text)):
            return self.load_or_dead(text)
        wanted = text.lstrip("/")
        named = self.named(wanted)
        if named is not None:
            return named
        if self._names_complete():  # no such name: an id prefix, found without reading records
            prefixed = [id_ for id_ in self.ids() if id_.startswith(text)] if text else []
            if len(prefixed) == 1:
                return self.load_or_dead(prefixed[0])
            if len(prefixed) > 1:
                raise Conflict(f"multiple containers found with provided prefix: {text}")
            raise NotFound(f"No such container: {text}")
        containers = self.all()
        for container in containers:
            if container.name == wanted:
                return container
        matches = [c for c in containers if c.id.startswith(text)] if text else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Conflict(f"multiple containers found with provided prefix: {text}")
        raise NotFound(f"No such container: {text}")

    def named(self, name: str) -> Container | None:
        """The container whose record carries `name`, through its link (None: no link does)."""
        try:
            id_ = os.readlink(os.path.join(self.names_dir, name))
        except (OSError, ValueError):  # no link; a name no link could have (NUL)
            return None
        if len(id_) != 64 or "/" in id_:
            return None
        try:
            container = self.load_or_dead(id_)
        except NotFound:
            return None
        return container if container.config.name == name else None

    def claim_name(self, name: str, id_: str) -> None:
        """Under the store lock: `name` is `id_`'s from now on, or Conflict if another has it."""
        self._complete_names()
        owner = self.named(name)
        if owner is not None and owner.id != id_:
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{owner.id}". You have to remove (or rename) that container to be able to reuse that name.'
            )
        self._link(name, id_)

    def release_name(self, name: str, id_: str) -> None:
        """Under the store lock: `name`'s link goes, if it still points to `id_`."""
        release_name(self.names_dir, name, id_)

    def _link(self, name: str, id_: str) -> None:
        temporary = os.path.join(self.names_dir, f".new-{id_}")
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        os.symlink(id_, temporary)
        os.replace(temporary, os.path.join(self.names_dir, name))  # a stale link replaced at once

    def _names_complete(self) -> bool:
        return os.path.exists(os.path.join(self.names_dir, ".complete"))

    def _complete_names(self) -> None:
        """Under the store lock: a store from before the links gets them, once."""
        if self._names_complete():
            return
        os.makedirs(self.names_dir, exist_ok=True)
        for container in self.all():
            if container.name:
                self._link(container.name, container.id)
        with open(os.path.join(self.names_dir, ".complete"), "w"):
            pass

    def create(self, config: ContainerConfig, resolv_conf: bytes) -> Container:
        """Write the record and the empty writable layer; the name is checked under the lock."""
        from minirun.containers.names import generate_name

        with self.store.locked():
            if config.name:
                validate_name(config.name)
                self.claim_name(config.name, config.id)
            else:
                self._complete_names()
                config.name = generate_name(set(os.listdir(self.names_dir)))  # stale ones too: no matter
                self._link(config.name, config.id)
            path = self._path(config.id)
            os.makedirs(os.path.join(path, "upper"), mode=0o755)
            os.mkdir(os.path.join(path, "work"), 0o700)
            hostname = config.hostname
            with open(os.path.join(path, "hostname"), "w") as f:
                f.write(hostname + "\n")
            with open(os.path.join(path, "hosts"), "w") as f:
                f.write(HOSTS_BASE)
            with open(os.path.join(path, "resolv.conf"), "wb") as f:
                f.write(resolv_conf)
            state = {
                "Status": "created",
                "Running": False,
                "Pid": 0,
                "ExitCode": 0,
                "Error": "",
                "StartedAt": "0001-01-01T00:00:00Z",
                "FinishedAt": "0001-01-01T00:00:00Z",
                "OOMKilled": False,
            }

            # Not fsynced: after a power cut a container whose files did not survive is debris
            # (never listed), and state is checked against the live process anyway.
            atomic_write(os.path.join(path, "state.json"), leanjson.dumps(state).encode(), durable=False)
            # config.json last: a dir without it is debris, never listed
            atomic_write(os.path.join(path, "config.json"), leanjson.dumps(config.to_json()).encode(), durable=False)
        created = Container(config=config, dir=path, state=state)
        record_event(self.store.root, created, "create")
        return created

    def update_state(self, container: Container, **fields: object) -> None:
        if container.state.get("Status") == "dead":
            raise Conflict(f"container {container.id} is dead (its record is damaged): remove it with rm -f")

        container.state.update(fields)
        atomic_write(os.path.join(container.dir, "state.json"), leanjson.dumps(container.state).encode(), durable=False)

    def remove(self, container: Container) -> None:
        """The record only: removal.discard also gives back what the container held on the host."""
        # config.json first: a crash mid-removal leaves debris that is never listed
        with self.store.locked():
            try:
                os.unlink(os.path.join(container.dir, "config.json"))
            except FileNotFoundError:
                pass
            if container.name:  # before the dir goes: whoever sees it gone sees the name free
                self.release_name(container.name, container.id)
            remove_tree(container.dir)


_STATUSES = ("created", "running", "exited", "restarting")  # restarting: restartpolicy.py
_PID_FIELDS = ("Pid", "MonitorPid", "GuardPid")


def _config_from(data: object, path: str) -> ContainerConfig:
    """A config.json that is what it says: the fields every reader relies on have their types."""
    if not isinstance(data, dict) or not _typed(data, _STR_FIELDS, str) or not _typed(data, _LIST_FIELDS, list):
        raise DamagedRecord(path, "not a container's config")
    try:
        return ContainerConfig.from_json(data)
    except TypeError as exc:
        raise DamagedRecord(path, str(exc)) from None


_STR_FIELDS = ("id", "name", "image", "created")
_LIST_FIELDS = ("argv", "env")


def _typed(data: dict, keys: tuple[str, ...], kind: type) -> bool:
    for key in keys:  # a loop, not all(<generator>): ps checks a hundred configs
        if not isinstance(data.get(key), kind):
            return False
    return True


def _checked(config: ContainerConfig, path: str, state: object) -> Container:
    _check_state(state, path + "/state.json")  # not os.path.join: ps checks a hundred of these
    assert isinstance(state, dict)
    return Container(config=config, dir=path, state=state)


def _check_state(state: object, path: str) -> None:
    if not isinstance(state, dict) or state.get("Status") not in _STATUSES:
        raise DamagedRecord(path, "not a container's state")
    for key in _PID_FIELDS:
        pid = state.get(key, 0)
        if not isinstance(pid, int) or pid < 0:
            raise DamagedRecord(path, "a pid that is no pid")


def _mtime(path: str) -> str:
    from minirun.timestamps import rfc3339_ns

    try:
        return rfc3339_ns(os.stat(path).st_mtime_ns)
    except OSError:
        return "0001-01-01T00:00:00Z"


def new_container_id() -> str:
    return os.urandom(32).hex()


def names_dir(store_root: str) -> str:
    """Where a store's container names are links to their ids (Containers)."""
    return os.path.join(store_root, "names")


def release_name(directory: str, name: str, id_: str) -> None:
    """`name`'s link in `directory` (names_dir) goes if it still points to `id_` (logcopier's
    --rm, which has no Containers, calls this too)."""
    path = os.path.join(directory, name)
    try:
        if os.readlink(path) == id_:
            os.unlink(path)
    except OSError:
        pass


def validate_name(name: str) -> None:
    # docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+
    if len(name) < 2 or not name[0].isalnum() or not set(name) <= _NAME_CHARS or not name.isascii():
        raise UsageError(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def event_attributes(container: Container) -> dict[str, str]:
    """docker's container event attributes: the container's labels, its image and its name."""
    config = container.config
    return {**config.labels, "image": config.image_ref, "name": config.name}


def record_event(store_root: str, container: Container, action: str, **extra: str) -> None:
    from minirun import events

    events.record(store_root, "container", action, container.id, {**event_attributes(container), **extra})


def _copied(value: Any) -> Any:
    """A deep copy of a JSON value (copy.deepcopy's answer, without its ~2 ms import)."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value
