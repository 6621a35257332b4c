"""Volumes: directories the store owns that outlive containers (docker's `local` driver).

`volumes/<name>/` holds `_data` (what a container sees) and `volume.json` (docker's fields:
Name, Driver, CreatedAt, Labels, Options). A volume is made in a temp dir and renamed into
place, and removed by renaming it aside first, so it is listed whole or not at all. Callers
hold the store lock for both. Which containers use a volume is the containers' records to
say (containers/mounts.py): this module knows no containers. Imports only os, json and time
at the top: a detached --rm container's log copier removes its anonymous volumes with it.
"""

from __future__ import annotations

import json
import os
import time

DIR_NAME = "volumes"
DATA_NAME = "_data"
RECORD_NAME = "volume.json"
TMP_PREFIX = ".tmp-"
DRIVER = "local"
# docker >= 23 marks the volumes it names itself; `volume prune` removes only these unless -a
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
# the local driver's options (docker's validOpts) and the ones each needs beside it
OPTION_KEYS = ("type", "o", "device", "size")
_NEEDS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class Volume:
    """One volume's record. `labels` and `options` are None when none were given (docker's
    null), {} when `volume create` gave an empty set."""

    __slots__ = ("name", "driver", "created", "labels", "options", "dir")

    def __init__(self, name: str, created: str, labels: dict | None, options: dict | None, dir: str) -> None:
        self.name, self.driver, self.created = name, DRIVER, created
        self.labels, self.options, self.dir = labels, options, dir

    @property
    def mountpoint(self) -> str:
        """docker's Mountpoint: where the data lives (a `type=none` volume shows its device instead)."""
        return os.path.join(self.dir, DATA_NAME)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})

    def to_json(self) -> dict:
        """docker volume inspect's document."""
        return {
            "CreatedAt": self.created,
            "Driver": self.driver,
            "Labels": self.labels,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": self.options,
            "Scope": "local",
        }


def validate_name(name: str) -> None:
    """docker's local driver: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (so no `/`, no `..` alone, never empty)."""
    from minirun.errors import UsageError

    if len(name) == 1:
        raise UsageError("volume name is too short, names should be at least two alphanumeric characters")
    if not name or name[0] not in _ALNUM or not all(c in _ALNUM or c in "_.-" for c in name):
        raise UsageError(
            f'"{name}" includes invalid characters for a local volume name, only "{NAME_CHARS}" are allowed. '
            "If you intended to pass a host directory, use absolute path"
        )


def validate_options(options: dict[str, str]) -> None:
    """docker's checks of the local driver's options: known keys, the ones each needs, and no
    quota (`size`) without quota support, which minirun's store does not have."""
    from minirun.errors import UsageError

    for key in options:
        if key not in OPTION_KEYS:
            raise UsageError(f'invalid option: "{key}"')
    if options.get("size", "0") != "0":
        raise UsageError("quota size requested but no quota support")
    for key, needed in _NEEDS.items():
        for other in needed if key in options else ():
            if other not in options:
                raise UsageError(f'missing required option: "{other}"')


def rfc3339_seconds(when: float) -> str:
    """docker's CreatedAt: RFC 3339 to the second, in the local time zone (Z for UTC)."""
    local = time.localtime(when)
    offset = local.tm_gmtoff
    sign = "+" if offset > 0 else "-"
    zone = "Z" if offset == 0 else f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


def anonymous_name() -> str:
    """docker's name for a volume nobody named: 64 hex digits, as a container id."""
    return os.urandom(32).hex()


class VolumeStore:
    """The volumes of one store. Writers (create, remove) must hold the store lock."""

    def __init__(self, store_root: str) -> None:
        self.root = store_root
        self.dir = os.path.join(store_root, DIR_NAME)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def data_path(self, name: str) -> str:
        return os.path.join(self.dir, name, DATA_NAME)

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if not n.startswith(".") and os.path.isfile(self.record_path(n)))

    def record_path(self, name: str) -> str:
        return os.path.join(self.dir, name, RECORD_NAME)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.record_path(name))

    def get(self, name: str) -> Volume:
        """The volume; NotFound (docker's "no such volume") for a name that is none, or no
        valid name at all (it cannot be a path out of the store)."""
        from minirun.errors import DamagedRecord, NotFound, UsageError
        from minirun.store.fsutil import read_record

        try:
            validate_name(name)
            data = read_record(self.record_path(name))
        except (UsageError, FileNotFoundError, NotADirectoryError):
            raise NotFound(f"get {name}: no such volume") from None
        if not isinstance(data, dict) or data.get("Name") != name or not isinstance(data.get("CreatedAt"), str):
            raise DamagedRecord(self.record_path(name), "not a volume's record")
        labels, options = data.get("Labels"), data.get("Options")
        if not all(v is None or (isinstance(v, dict) and _all_text(v)) for v in (labels, options)):
            raise DamagedRecord(self.record_path(name), "labels or options that are not text")
        return Volume(name, data["CreatedAt"], labels, options, self.path(name))

    def all(self) -> list[Volume]:
        from minirun.errors import NotFound

        found = []
        for name in self.names():
            try:
                found.append(self.get(name))
            except NotFound:
                continue  # removed meanwhile
        return found

    def create(self, name: str, labels: dict | None = None, options: dict | None = None) -> Volume:
        """A new, empty volume (the caller checked the name is free and holds the lock): built
        under a temp name, then renamed into place, so a crash leaves only a temp dir."""
        validate_name(name)
        validate_options(options or {})
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.sweep()
        tmp = os.path.join(self.dir, TMP_PREFIX + os.urandom(8).hex())
        os.mkdir(tmp, 0o700)
        try:
            os.mkdir(os.path.join(tmp, DATA_NAME), 0o755)
            os.chmod(os.path.join(tmp, DATA_NAME), 0o755)  # whatever the umask says: docker's mode
            volume = Volume(name, rfc3339_seconds(time.time()), labels, options, self.path(name))
            record = {k: v for k, v in volume.to_json().items() if k not in ("Mountpoint", "Scope")}
            with open(os.path.join(tmp, RECORD_NAME), "w") as f:
                json.dump(record, f)
            os.rename(tmp, self.path(name))
        except BaseException:
            from minirun.store.fsutil import remove_tree

            remove_tree(tmp)
            raise
        return volume

    def remove(self, name: str) -> None:
        """Gone at once (renamed aside), then its data deleted; the caller checked nobody uses it."""
        from minirun.store.fsutil import remove_tree

        validate_name(name)  # a name is never a path: nothing outside volumes/ goes
        aside = os.path.join(self.dir, TMP_PREFIX + os.urandom(8).hex())
        os.rename(self.path(name), aside)
        remove_tree(aside)

    def sweep(self) -> None:
        """Temp dirs left by a crash mid-create or mid-remove (we hold the lock: none is alive)."""
        from minirun.store.fsutil import remove_tree

        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.startswith(TMP_PREFIX):
                remove_tree(os.path.join(self.dir, entry))


def _all_text(mapping: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
