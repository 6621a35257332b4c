"""`run`'s mount requests as docker reads them: `-v [SRC:]DST[:MODE]`, `--mount key=value,...`
and `--volumes-from CONTAINER[:MODE]`, parsed and checked before anything is created. Pure:
which volume a name means and where it lives is mounts.py's business.

docker's rules: a `-v` source that is an absolute path is a bind, any other source a volume's
name, no source an anonymous volume; MODE is a comma list of at most one each of ro/rw,
z/Z (SELinux labels: accepted, nothing to relabel here), nocopy, a propagation and a
consistency. Propagation other than (r)private is refused rather than ignored: a container's
mounts live in a private mount namespace here, nothing propagates either way.
"""

from __future__ import annotations

import os

from minirun.errors import UsageError

_RW = ("ro", "rw")
_LABELS = ("z", "Z")
_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_SUPPORTED_PROPAGATIONS = ("", "private", "rprivate")
_CONSISTENCIES = ("consistent", "cached", "delegated")
_COPY = ("nocopy",)
BIND_PROPAGATION = "rprivate"  # docker's default for binds, shown in inspect


class MountSpec:
    """One mount a container asks for. `source`: a host path (bind), a volume name ("" for an
    anonymous volume), "" for tmpfs. `mode`: -v's MODE as typed (docker keeps it for inspect)."""

    __slots__ = (
        "type",
        "source",
        "target",
        "readonly",
        "mode",
        "nocopy",
        "propagation",
        "tmpfs",
        "volume_options",
        "volume_labels",
        "raw",
    )

    def __init__(self, type: str, source: str, target: str, readonly: bool = False, mode: str = "") -> None:
        self.type, self.source, self.target, self.readonly, self.mode = type, source, target, readonly, mode
        self.nocopy = False
        self.propagation = ""
        self.tmpfs = ""  # tmpfs: the options for the mount (size=,mode=,ro), as --tmpfs takes them
        self.volume_options: dict[str, str] | None = None  # --mount volume-opt: the new volume's driver options
        self.volume_labels: dict[str, str] | None = None  # --mount volume-label
        self.raw = ""  # -v's text as typed: docker's HostConfig.Binds lists it

    def __repr__(self) -> str:
        return f"MountSpec({self.type}, {self.source!r} -> {self.target!r}{', ro' if self.readonly else ''})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountSpec) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


def valid_mode(mode: str) -> bool:
    """docker's linuxValidMountMode: known words, at most one of each kind."""
    if mode == "":
        return True
    counts: dict[tuple[str, ...], int] = {}
    for word in mode.split(","):
        kind = next((k for k in (_RW, _LABELS, _PROPAGATIONS, _COPY, _CONSISTENCIES) if word in k), None)
        if kind is None:
            return False
        counts[kind] = counts.get(kind, 0) + 1
    return all(n == 1 for n in counts.values())


def _config_error(kind: str, why: str) -> str:
    return f'invalid mount config for type "{kind}": {why}'


def _check_target(kind: str, target: str) -> str:
    if not target:
        raise UsageError(_config_error(kind, "field Target must not be empty"))
    if os.path.normpath(target) in ("/", "//"):
        raise UsageError(_config_error(kind, "invalid specification: destination can't be '/'"))
    if not target.startswith("/"):
        raise UsageError(_config_error(kind, f"invalid mount path: '{target}' mount path must be absolute"))
    return os.path.normpath(target)


def _check_propagation(kind: str, propagation: str) -> None:
    if propagation and propagation not in _PROPAGATIONS:
        raise UsageError(_config_error(kind, f"invalid propagation mode: {propagation}"))
    if propagation not in _SUPPORTED_PROPAGATIONS:
        raise UsageError(
            _config_error(kind, f"propagation {propagation} is not supported: a container's mounts are private here")
        )


def _check_bind_source(source: str) -> str:
    if not source.startswith("/"):
        raise UsageError(_config_error("bind", f"invalid mount path: '{source}' mount path must be absolute"))
    if not os.path.exists(source):
        raise UsageError(_config_error("bind", f"bind source path does not exist: {source}"))
    return os.path.normpath(source)


def _check_volume_name(name: str) -> None:
    from minirun.store.volumes import validate_name

    validate_name(name)


def parse_volume(spec: str) -> MountSpec:
    """`-v [SRC:]DST[:MODE]` (docker's ParseMountRaw)."""
    parts = spec.split(":", 3)
    if not parts[0] or len(parts) > 3:
        raise UsageError(f"invalid volume specification: '{spec}'")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):  # `/data:ro`: an anonymous volume takes no mode
            raise UsageError(f"invalid volume specification: '{spec}'")
        source, target = parts
    else:
        source, target, mode = parts
    if not valid_mode(mode):
        raise UsageError(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    try:
        mount = MountSpec(kind, source, _check_target(kind, target), readonly="ro" in words, mode=mode)
        mount.nocopy = "nocopy" in words
        mount.raw = spec
        mount.propagation = next((w for w in words if w in _PROPAGATIONS), "")
        if kind == "bind":
            mount.source = _check_bind_source(source)
            _check_propagation(kind, mount.propagation)
        else:
            if mount.propagation:
                raise UsageError(_config_error(kind, "field BindOptions must not be specified"))
            if source:
                _check_volume_name(source)
    except UsageError as exc:
        raise UsageError(f"invalid volume specification: '{spec}': {exc.message}") from None
    return mount


_GROUP_KEYS = ("bind-propagation", "bind-nonrecursive", "volume-nocopy", "volume-driver", "tmpfs-size", "tmpfs-mode")
_MOUNT_FLAGS = ("readonly", "ro", "volume-nocopy", "bind-nonrecursive")  # keys that may stand alone


def parse_mount(spec: str) -> MountSpec:
    """`--mount type=bind|volume|tmpfs,source=,target=,...` (docker's MountOpt, then the daemon's
    checks): a CSV line of key=value fields; a problem is `invalid argument ... for "--mount" flag`."""
    try:
        return _parse_mount(spec)
    except UsageError as exc:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: {exc.message}') from None


def _parse_mount(spec: str) -> MountSpec:
    import csv

    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as exc:
        raise UsageError(str(exc)) from None
    values: dict[str, str] = {}
    groups: set[str] = set()  # which of the volume-*, bind-*, tmpfs-* options appear
    options: dict[str, str] | None = None  # None: no volume-opt at all (docker's nil)
    labels: dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep:
            if key not in _MOUNT_FLAGS:
                raise UsageError(f"invalid field '{field}' must be a key=value pair")
            value = "true"
        if key in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            if value.lower() not in ("1", "t", "true", "0", "f", "false"):
                raise UsageError(f"invalid value for {key}: {value}")
            value = "true" if value.lower() in ("1", "t", "true") else "false"
        if key in ("volume-opt", "volume-label"):
            if key == "volume-opt" and options is None:
                options = {}
            pairs = options if key == "volume-opt" else labels
            name, _, setting = value.partition("=")
            if name and pairs is not None:
                pairs[name] = setting
        elif key in ("type", "source", "src", "target", "dst", "destination", "readonly", "ro", "consistency"):
            values[{"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}.get(key, key)] = value
        elif key in _GROUP_KEYS:
            values[key] = value
        else:
            raise UsageError(f"unexpected key '{key}' in '{field}'")
        if key.split("-")[0] in ("volume", "bind", "tmpfs") and "-" in key:
            groups.add(key.split("-")[0])
    kind = values.get("type", "volume").lower()
    if not kind:
        raise UsageError("type is required")
    if not values.get("target"):
        raise UsageError("target is required")
    for group in sorted(groups):
        if group != kind:
            raise UsageError(f"cannot mix '{group}-*' options with mount type '{kind}'")
    return _mount_of_kind(kind, values, options, labels)


def _mount_of_kind(kind: str, values: dict[str, str], options: dict[str, str] | None, labels: dict) -> MountSpec:
    """The daemon's checks of one --mount, by type."""
    source = values.get("source", "")
    if kind == "bind" and (source == "." or source.startswith("./")):
        source = os.path.abspath(source)  # the CLI resolves these against its cwd, as docker's does
    readonly = values.get("readonly") == "true"
    if kind not in ("bind", "volume", "tmpfs"):
        if kind in ("npipe", "cluster", "image"):
            raise UsageError(_config_error(kind, f"mount type {kind} is not supported"))
        raise UsageError(_config_error(kind, "mount type unknown"))
    mount = MountSpec(kind, source, _check_target(kind, values["target"]), readonly=readonly)
    if kind == "bind":
        if not source:
            raise UsageError(_config_error(kind, "field Source must not be empty"))
        mount.source = _check_bind_source(source)
        mount.propagation = values.get("bind-propagation", "").lower()
        _check_propagation(kind, mount.propagation)
        if values.get("bind-nonrecursive") == "true":
            raise UsageError(_config_error(kind, "bind-nonrecursive is not supported: binds are recursive here"))
    elif kind == "volume":
        if source:
            _check_volume_name(source)
        elif readonly:
            raise UsageError(_config_error(kind, "must not set ReadOnly mode when using anonymous volumes"))
        driver = values.get("volume-driver", "")
        if driver not in ("", "local"):
            raise UsageError(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        mount.nocopy = values.get("volume-nocopy") == "true"
        mount.volume_options = options
        mount.volume_labels = labels or None
        if options:
            from minirun.store.volumes import validate_options

            validate_options(options)
    else:
        if source:
            raise UsageError(_config_error(kind, "field Source must not be specified"))
        mount.tmpfs = _tmpfs_options(values, readonly)
    return mount


def _tmpfs_options(values: dict[str, str], readonly: bool) -> str:
    """tmpfs-size and tmpfs-mode as docker hands them to the kernel (the size in the largest of
    g, m, k that divides it), with ro; checked as --tmpfs options are."""
    words = ["ro"] if readonly else []
    if "tmpfs-mode" in values:
        text = values["tmpfs-mode"]
        if not text or not all(c in "01234567" for c in text) or int(text, 8) >= 1 << 32:
            raise UsageError(f"invalid value for tmpfs-mode: {text}")
        if int(text, 8):
            words.append(f"mode={int(text, 8):o}")
    if "tmpfs-size" in values:
        from minirun.containers.resources import ram_in_bytes

        size = ram_in_bytes(values["tmpfs-size"])
        if size is None or size < 0:
            raise UsageError(f"invalid value for tmpfs-size: {values['tmpfs-size']}")
        if size:
            suffix = next((s for s, d in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)) if size % d == 0), "")
            divisor = {"g": 1 << 30, "m": 1 << 20, "k": 1 << 10, "": 1}[suffix]
            words.append(f"size={size // divisor}{suffix}")
    return ",".join(words)


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """`CONTAINER[:ro|rw]` -> (container, mode); docker refuses propagation and copy modes here."""
    if not spec:
        raise UsageError("volumes-from specification cannot be an empty string")
    name, _, mode = spec.partition(":")
    if not mode:
        return name, "rw"
    words = mode.split(",")
    if not valid_mode(mode) or any(w in _PROPAGATIONS or w in _COPY for w in words):
        raise UsageError(f"invalid mode: {mode}")
    return name, mode


def targets(mounts: list[MountSpec]) -> list[str]:
    return [m.target for m in mounts]
