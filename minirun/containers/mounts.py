"""A container's mounts: what -v, --mount, --volumes-from and the image's VOLUME ask for,
resolved when the container is created into

- config.binds: [host source, container target, read-only] for everything mounted from the
  host, volumes included (what the runtime mounts, read-only all the way down, and what `cp`
  reads);
- config.tmpfs: --mount type=tmpfs, and volumes of the local driver's `type=tmpfs`;
- config.mounts: docker's Mounts list (Type, Name, Source, Destination, Driver, Mode, RW,
  Propagation; plus `Anonymous`, docker's empty Spec.Source, which `rm -v` removes): what
  inspect shows, `ps --filter volume=` matches and what makes a volume in use.

docker's rules: a -v or --mount destination replaces a --volumes-from one; an image VOLUME
already covered by any of them (or --tmpfs) gets no anonymous volume; two -v/--mount/--tmpfs
on one destination are an error. A volume is in use while any container's record names it,
running or not, and `volume rm -f` does not change that.

Light at the top (os, json): a detached --rm container's log copier reads its record and
releases its volumes with it, and ps imports mount_points.
"""

from __future__ import annotations

import os

from minirun import leanjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.containers.container import Container, ContainerConfig
    from minirun.containers.mountspec import MountSpec
    from minirun.store import Store
    from minirun.store.volumes import Volume, VolumeStore

# our keys in a config.mounts entry, not docker's: rm -v (and --rm) removes an Anonymous volume;
# Bind is the -v text that asked for it (docker's HostConfig.Binds)
ANONYMOUS, BIND = "Anonymous", "Bind"
_INTERNAL = (ANONYMOUS, BIND)


def mount_points(config: ContainerConfig) -> list[dict]:
    """docker's Mounts of a container. A record from before volumes has only binds."""
    if config.mounts:
        return [{k: v for k, v in m.items() if k not in _INTERNAL} for m in config.mounts]
    return [bind_record(s, t, bool(ro), "ro" if ro else "") for s, t, ro in config.binds]


def bind_record(source: str, target: str, readonly: bool, mode: str, propagation: str = "") -> dict:
    from minirun.containers.mountspec import BIND_PROPAGATION

    return {
        "Type": "bind",
        "Source": source,
        "Destination": target,
        "Mode": mode,
        "RW": not readonly,
        "Propagation": propagation or BIND_PROPAGATION,
    }


def volume_record(volume: str, source: str, target: str, readonly: bool, mode: str, anonymous: bool) -> dict:
    return {
        "Type": "volume",
        "Name": volume,
        "Source": source,
        "Destination": target,
        "Driver": "local",
        "Mode": mode,
        "RW": not readonly,
        "Propagation": "",
        ANONYMOUS: anonymous,
    }


def host_config_binds(config: ContainerConfig) -> list[str]:
    """docker's HostConfig.Binds: the -v options with a source, as typed."""
    if config.mounts:
        return [m[BIND] for m in config.mounts if m.get(BIND)]
    return [f"{s}:{t}" + (":ro" if ro else "") for s, t, ro in config.binds]


def anonymous_destinations(config: ContainerConfig) -> dict[str, dict] | None:
    """docker's Config.Volumes: the image's VOLUMEs and the anonymous -v, by destination."""
    found: dict[str, dict] = {m["Destination"]: {} for m in config.mounts if m.get(ANONYMOUS)}
    return found or None


def volume_names(config: ContainerConfig) -> list[str]:
    return [m["Name"] for m in config.mounts if m.get("Type") == "volume"]


# -- who uses a volume -----------------------------------------------------------------------------


def volume_users(store_root: str) -> dict[str, list[str]]:
    """Volume name -> the ids of the containers whose records name it (read straight from
    config.json: the log copier has no Containers). A record that cannot be read names none."""
    users: dict[str, list[str]] = {}
    directory = os.path.join(store_root, "containers")
    try:
        ids = sorted(os.listdir(directory))
    except FileNotFoundError:
        return users
    for container_id in ids:
        for mount in read_mounts(os.path.join(directory, container_id)):
            if mount.get("Type") == "volume" and isinstance(mount.get("Name"), str):
                users.setdefault(mount["Name"], []).append(container_id)
    return users


def read_mounts(container_dir: str) -> list[dict]:
    """config.mounts of the record in `container_dir`; [] for none, or for a record that is not one."""

    try:
        with open(os.path.join(container_dir, "config.json"), "rb") as f:
            data = leanjson.load(f)
    except (OSError, ValueError, RecursionError):
        return []
    mounts = data.get("mounts") if isinstance(data, dict) else None
    return [m for m in mounts if isinstance(m, dict)] if isinstance(mounts, list) else []


def in_use_error(name: str, users: list[str]) -> Exception:
    from minirun.errors import Conflict

    return Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")


# -- volumes as the CLI handles them ---------------------------------------------------------------


def record_volume_event(store_root: str, action: str, name: str, **attributes: str) -> None:
    from minirun import events

    events.record(store_root, "volume", action, name, {"driver": "local", **attributes})


def check_driver(driver: str) -> None:
    if driver not in ("", "local"):
        from minirun.errors import NotFound

        raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')


def check_options(options: dict[str, str]) -> None:
    """docker's checks of the local driver's options, then minirun's: it mounts `type=tmpfs`
    (options as --tmpfs takes them) and `type=none` with `o=bind` (a host directory), nothing
    that would need a device or a network filesystem mounted on the host."""
    from minirun.errors import UsageError
    from minirun.store.volumes import validate_options

    validate_options(options)
    kind, device, words = options.get("type"), options.get("device", ""), options.get("o", "")
    if kind is None:
        return
    if kind == "tmpfs":
        from minirun.runtime.rootfs import tmpfs_mount

        tmpfs_mount(f"/volume:{words}")
    elif kind == "none":
        given = [w for w in words.split(",") if w]
        if not {"bind", "rbind"} & set(given) or not set(given) <= {"bind", "rbind", "ro", "rw"}:
            raise UsageError(f'invalid options for a type=none volume: o="{words}" (use o=bind, with ro if wanted)')
        if not device.startswith("/"):
            raise UsageError(f'invalid options for a type=none volume: device "{device}" is not an absolute path')
    else:
        raise UsageError(
            f'the local driver here mounts type=tmpfs and type=none (o=bind) volumes only, not type "{kind}"'
        )


def volume_source(volume: Volume) -> tuple[str, str, bool]:
    """How a volume is mounted: ("bind", host path, forced read-only) or ("tmpfs", options, False).
    A `type=tmpfs` volume is a tmpfs of each container's own here (docker shares one host
    tmpfs among the containers running at once; its content dies with the last of them)."""
    options = volume.options or {}
    if options.get("type") == "tmpfs":
        words = options.get("o", "")
        # the kernel's tmpfs defaults (docker mounts it so): exec unless the options say otherwise
        return "tmpfs", ",".join(w for w in ["exec", words] if w), False
    if options.get("type") == "none":
        return "bind", options.get("device", ""), "ro" in options.get("o", "").split(",")
    return "bind", volume.mountpoint, False


def create_volume(store: Store, name: str, labels: dict | None, options: dict | None) -> tuple[Volume, bool]:
    """`volume create`: the volume, and whether it is new (an existing name is docker's answer
    too: the same volume, unchanged). No name: an anonymous volume, as docker makes it."""
    from minirun.store.volumes import VolumeStore, validate_name

    if name:
        validate_name(name)
    else:
        labels = {**(labels or {}), **_anonymous_labels()}
    check_options(options or {})
    volumes = VolumeStore(store.root)
    with store.locked():
        if name and volumes.exists(name):
            return volumes.get(name), False
        volume = volumes.create(name or _anonymous_name(), labels, options)
    record_volume_event(store.root, "create", volume.name)
    return volume, True


def _anonymous_name() -> str:
    from minirun.store.volumes import anonymous_name

    return anonymous_name()


def remove_volume(store: Store, name: str, force: bool) -> bool:
    """`volume rm`: refused while any container's record names it, with or without -f; with -f
    a volume that does not exist is no error (docker's PurgeOnError). True if one was removed."""
    from minirun.errors import NotFound, UsageError
    from minirun.store.volumes import VolumeStore, validate_name

    volumes = VolumeStore(store.root)
    with store.locked():
        try:
            validate_name(name)
        except UsageError:
            raise NotFound(f"get {name}: no such volume") from None
        if not os.path.isdir(volumes.path(name)):  # a damaged record still goes
            if force:
                return False
            raise NotFound(f"get {name}: no such volume")
        users = volume_users(store.root).get(name)
        if users:
            raise in_use_error(name, users)
        volumes.remove(name)
    record_volume_event(store.root, "destroy", name)
    return True


def prune_volumes(store: Store, keep) -> tuple[list[str], int]:
    """`volume prune`: every volume no container uses, without driver options (docker leaves
    those: removing them frees nothing here), for which `keep(volume)` is False."""
    from minirun.store.fsutil import tree_size
    from minirun.store.volumes import VolumeStore

    volumes = VolumeStore(store.root)
    removed, freed = [], 0
    with store.locked():
        users = volume_users(store.root)
        for volume in volumes.all():
            if volume.name in users or volume.options or keep(volume):
                continue
            freed += tree_size(volume.mountpoint)
            volumes.remove(volume.name)
            removed.append(volume.name)
    for name in removed:
        record_volume_event(store.root, "destroy", name)
    from minirun import events

    events.record(store.root, "volume", "prune", "", {"reclaimed": str(freed)})
    return removed, freed


# -- a new container's mounts ----------------------------------------------------------------------


class MountPlan:
    """What a new container mounts, decided before anything is written: its config fields, the
    volumes to make (name, labels, options) and the ones to fill from the image if empty."""

    __slots__ = ("binds", "tmpfs", "records", "new_volumes", "copy_up")

    def __init__(self) -> None:
        self.binds: list[list] = []
        self.tmpfs: list[str] = []
        self.records: list[dict] = []
        self.new_volumes: list[tuple[str, dict | None, dict | None]] = []
        self.copy_up: list[tuple[str, str]] = []  # (container path, host dir): docker's CopyData


def plan_mounts(
    store: Store, specs: list[MountSpec], volumes_from: list[str], tmpfs: list[str], image_config: dict
) -> MountPlan:
    """Resolve the mounts a new container asks for (see the module's docstring for docker's
    rules). Reads the store, writes nothing."""
    from minirun.containers.mountspec import targets
    from minirun.runtime.rootfs import check_targets
    from minirun.store.volumes import VolumeStore

    tmpfs_targets = [t.partition(":")[0] for t in tmpfs]
    check_targets(targets(specs) + tmpfs_targets)  # two on one destination, or one on a wall
    volumes = VolumeStore(store.root)
    plan = MountPlan()
    plan.tmpfs = list(tmpfs)
    covered = set(targets(specs)) | set(tmpfs_targets)  # what --volumes-from and VOLUME give way to
    for record in _from_containers(store, volumes_from):
        if record["Destination"] not in covered:
            covered.add(record["Destination"])
            _add(plan, volumes, record, copy=False)
    for spec in specs:
        _add_spec(plan, volumes, spec)
    image_volumes = image_config.get("Volumes")
    for path in sorted(image_volumes) if isinstance(image_volumes, dict) else ():
        target = os.path.normpath(path) if isinstance(path, str) and path.startswith("/") else None
        if target is None or target == "/" or target in covered:
            continue  # docker skips what is not an absolute path other than /: it could not mount it
        covered.add(target)
        name = _anonymous_name()
        plan.new_volumes.append((name, _anonymous_labels(), None))
        _add(plan, volumes, volume_record(name, volumes.data_path(name), target, False, "", True), copy=True)
    check_targets([b[1] for b in plan.binds] + [t.partition(":")[0] for t in plan.tmpfs])
    return plan


def _anonymous_labels() -> dict[str, str]:
    from minirun.store.volumes import ANONYMOUS_LABEL

    return {ANONYMOUS_LABEL: ""}


def _add_spec(plan: MountPlan, volumes: VolumeStore, spec: MountSpec) -> None:
    if spec.type == "bind":
        record = bind_record(spec.source, spec.target, spec.readonly, spec.mode, spec.propagation)
        plan.records.append({**record, BIND: spec.raw} if spec.raw else record)
        plan.binds.append([spec.source, spec.target, spec.readonly])
    elif spec.type == "tmpfs":
        plan.records.append(
            {
                "Type": "tmpfs",
                "Source": "",
                "Destination": spec.target,
                "Mode": "",
                "RW": not spec.readonly,
                "Propagation": "",
            }
        )
        plan.tmpfs.append(f"{spec.target}:{spec.tmpfs}" if spec.tmpfs else spec.target)
    else:
        name = spec.source or _anonymous_name()
        if not volumes.exists(name) and name not in {n for n, _, _ in plan.new_volumes}:
            labels = {**(spec.volume_labels or {}), **({} if spec.source else _anonymous_labels())}
            if spec.volume_options:
                check_options(spec.volume_options)
            plan.new_volumes.append((name, labels or None, spec.volume_options))
        record = volume_record(
            name, volumes.data_path(name), spec.target, spec.readonly, spec.mode or "z", not spec.source
        )
        if spec.raw and spec.source:
            record[BIND] = spec.raw
        _add(plan, volumes, record, copy=not spec.nocopy)


def _add(plan: MountPlan, volumes: VolumeStore, record: dict, copy: bool) -> None:
    """One mount, from a spec, an image VOLUME or another container: its record, and what the
    runtime mounts for it (a volume's host path depends on its driver options)."""
    from minirun.store.volumes import Volume

    plan.records.append(record)
    target, readonly = record["Destination"], not record["RW"]
    if record["Type"] == "bind":
        plan.binds.append([record["Source"], target, readonly])
        return
    if record["Type"] != "volume":
        return  # a tmpfs of another container's: docker's --volumes-from leaves those
    name = record["Name"]
    planned = {n: options for n, _, options in plan.new_volumes}
    volume = Volume(name, "", None, planned[name], volumes.path(name)) if name in planned else volumes.get(name)
    kind, source, forced_readonly = volume_source(volume)
    if kind == "tmpfs":
        plan.tmpfs.append(f"{target}:{','.join(w for w in ['ro' if readonly else '', source] if w)}")
        return
    plan.binds.append([source, target, readonly or forced_readonly])
    if copy:
        plan.copy_up.append((target, source))


def _from_containers(store: Store, volumes_from: list[str]) -> list[dict]:
    """--volumes-from: the bind and volume mounts of each container named, in order (a later
    one replaces an earlier one's destination), read-only where the mode or the original says."""
    from minirun.containers.container import Containers
    from minirun.containers.mountspec import parse_volumes_from

    chosen: dict[str, dict] = {}
    containers = Containers(store)
    for spec in volumes_from:
        name, mode = parse_volumes_from(spec)
        other = containers.find(name)
        readonly = "ro" in mode.split(",")
        originals = other.config.mounts or [bind_record(s, t, bool(ro), "") for s, t, ro in other.config.binds]
        for mount in originals:
            if mount.get("Type") in ("bind", "volume"):
                copied = {k: v for k, v in mount.items() if k != BIND}  # not this container's -v
                chosen[mount["Destination"]] = dict(copied, RW=bool(mount.get("RW")) and not readonly)
    return list(chosen.values())


def release(store_root: str, names: list[str]) -> list[str]:
    """Remove these volumes, those no container's record names (docker ignores the others: a
    volume another container uses is not this one's to remove). Returns the names removed."""
    if not names:
        return []
    from minirun.store import lock_path
    from minirun.store.fsutil import flocked
    from minirun.store.volumes import VolumeStore

    volumes = VolumeStore(store_root)
    removed = []
    with flocked(lock_path(store_root)):
        users = volume_users(store_root)
        for name in dict.fromkeys(names):
            if name not in users and os.path.isdir(volumes.path(name)):
                volumes.remove(name)
                removed.append(name)
    for name in removed:
        record_volume_event(store_root, "destroy", name)
    return removed


def anonymous_volumes(mounts: list[dict]) -> list[str]:
    from minirun.errors import UsageError
    from minirun.store.volumes import validate_name

    found = []
    for m in mounts:
        if m.get("Type") == "volume" and m.get(ANONYMOUS) and isinstance(m.get("Name"), str):
            try:
                validate_name(m["Name"])  # a record says it: still never a path
            except UsageError:
                continue
            found.append(m["Name"])
    return found


# -- events of a container's start and exit --------------------------------------------------------


def record_mounts(store_root: str, container: Container) -> None:
    """docker's `mount` event for each volume, as the container starts."""
    for m in container.config.mounts:
        if m.get("Type") == "volume":
            attributes = {
                "container": container.id,
                "destination": m["Destination"],
                "propagation": m.get("Propagation", ""),
                "read/write": "true" if m.get("RW") else "false",
            }
            record_volume_event(store_root, "mount", m["Name"], **attributes)


def record_unmounts(store_root: str, container_id: str, mounts: list[dict]) -> None:
    """docker's `unmount` event for each volume, once the container has exited."""
    for m in mounts:
        if m.get("Type") == "volume" and isinstance(m.get("Name"), str):
            record_volume_event(store_root, "unmount", m["Name"], container=container_id)


def exited(container_dir: str) -> list[dict]:
    """The log copier's part once PID 1 is reaped (it has no Container): the unmount events, from
    the record, and the record's mounts for release_anonymous should the container go (--rm)."""
    mounts = read_mounts(container_dir)
    store_root = os.path.dirname(os.path.dirname(container_dir))
    record_unmounts(store_root, os.path.basename(container_dir), mounts)
    return mounts


def release_anonymous(store_root: str, mounts: list[dict]) -> list[str]:
    """A removed container's anonymous volumes (rm -v, --rm), those no other container uses."""
    return release(store_root, anonymous_volumes(mounts))
