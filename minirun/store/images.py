"""Image configs by id (`images/<hex>.json`, id = sha256 of those bytes) and tags (`tags.json`)."""

from __future__ import annotations

import os

from minirun import events, leanjson
from minirun.errors import Conflict, DamagedRecord, NotFound, UsageError, warn
from minirun.store.fsutil import atomic_write, read_record

TYPE_CHECKING = False  # reference (regexes) and hashlib load only where used: diff and ps never do
if TYPE_CHECKING:
    from minirun.store.reference import Reference


class Image:
    """A stored image: its id ("sha256:<hex>") and parsed config. A plain class: `dataclasses`
    costs ~9 ms of imports on every ps and diff."""

    __slots__ = ("id", "config", "_lineage")

    def __init__(self, id: str, config: dict) -> None:
        self.id, self.config = id, config
        self._lineage: list[str] | None = None

    def __repr__(self) -> str:
        return f"Image(id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and (self.id, self.config) == (other.id, other.config)

    @property
    def hex(self) -> str:
        return self.id.split(":", 1)[1]

    @property
    def short_id(self) -> str:
        return self.hex[:12]

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def history(self) -> list[dict]:
        return list(self.config.get("history", []))

    @property
    def created(self) -> str:
        created = self.config.get("created")  # a loaded or pulled config may lack it, or hold junk
        return created if isinstance(created, str) else ""

    @property
    def labels(self) -> dict[str, str]:
        labels = (self.config.get("config") or {}).get("Labels")
        return labels if isinstance(labels, dict) else {}

    def lineage_key(self) -> str:
        return self._lineage_keys()[-1]

    def ancestor_keys(self) -> list[str]:
        """The lineage keys of every strict prefix of this image: the images a build made on the
        way to it (docker's parent images), nearest first."""
        return self._lineage_keys()[-2::-1]

    def _lineage_keys(self) -> list[str]:
        if self._lineage is None:
            self._lineage = lineage_keys(self.history, self.diff_ids)
        return self._lineage


def lineage_keys(history: list[dict], diff_ids: list[str]) -> list[str]:
    """An image as its history and layers, and each prefix of it: the key of the image a build
    made at each entry but the last, then the whole image's. Two images with the same key are the
    same image up to their configs, and one whose key is another's prefix key is its parent.

    The keys are chained digests, one step an entry (with the layer it made), so an image of n
    entries costs n digests: a key of each prefix's whole text cost n^2, and a crafted config of
    40,000 empty entries made every `images` take 40 s and 3 GB, and `rmi` longer still."""
    import hashlib

    keys: list[str] = []
    state, used = hashlib.sha256(b"lineage").digest(), 0
    for entry in history:
        layer = None
        if not entry.get("empty_layer") and used < len(diff_ids):
            layer, used = diff_ids[used], used + 1
        state = hashlib.sha256(state + leanjson.dumps([entry, layer], sort_keys=True).encode()).digest()
        keys.append(_lineage_end(state, []))
    if keys:
        keys.pop()  # the whole image's comes last, with any layers its history does not account for
    keys.append(_lineage_end(state, diff_ids[used:]))
    return keys


def _lineage_end(state: bytes, rest: list[str]) -> str:
    import hashlib

    return hashlib.sha256(state + b"end" + leanjson.dumps(rest).encode()).hexdigest()


def config_bytes(config: dict) -> bytes:
    return leanjson.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def image_id(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImageStore:
    def __init__(self, store_root: str) -> None:
        self.root = store_root
        self.dir = os.path.join(store_root, "images")
        self.tags_path = os.path.join(store_root, "tags.json")
        # image id -> ["name@sha256:..."]: the manifests it was pulled or pushed as (docker's
        # RepoDigests), apart from tags.json so a tag's removal never loses them
        self.digests_path = os.path.join(store_root, "repodigests.json")

    def ensure_dirs(self) -> None:
        os.makedirs(self.dir, exist_ok=True)

    # -- reading -------------------------------------------------------------------------
    def _config_path(self, hexid: str) -> str:
        return os.path.join(self.dir, hexid + ".json")

    def get(self, id_: str) -> Image:
        """The image; DamagedRecord naming its config file if that cannot be read as a config."""
        hexid = id_.split(":", 1)[-1]
        path = self._config_path(hexid)
        try:
            config = read_record(path)
        except FileNotFoundError:
            raise NotFound(f"No such image: {id_}") from None
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        if (
            not isinstance(rootfs, dict)
            or not isinstance(rootfs.get("diff_ids"), list)
            or not all(isinstance(d, str) for d in rootfs["diff_ids"])
        ):
            raise DamagedRecord(path, "not an image config (no rootfs.diff_ids)")
        history = config.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise DamagedRecord(path, "not an image config (a history that is not a list of entries)")
        return Image(id="sha256:" + hexid, config=config)

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return ["sha256:" + n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]

    def all(self) -> list[Image]:
        """Every image that can be read; one that cannot is skipped with a warning naming its file."""
        images = []
        for id_ in self.ids():
            try:
                images.append(self.get(id_))
            except NotFound:
                continue  # removed meanwhile
            except DamagedRecord as exc:
                _warn_once(exc)
        return images

    def tags(self) -> dict[str, str]:
        """`name:tag` -> image id, only for images whose config exists. A damaged tags.json reads
        as no tags, with a warning: the images are still there, listed by id."""
        try:
            tags = self.read_tags()
        except DamagedRecord as exc:
            _warn_once(exc)
            return {}
        present = set(self.ids())
        return {ref: id_ for ref, id_ in tags.items() if id_ in present}

    def tags_damaged(self) -> bool:
        try:
            self.read_tags()
        except DamagedRecord:
            return True
        return False

    def read_tags(self) -> dict[str, str]:
        """tags.json as it is; DamagedRecord if it is not a map of names to image ids (writers
        call this, so a damaged file is never overwritten with less than it held)."""
        try:
            tags = read_record(self.tags_path)
        except FileNotFoundError:
            return {}
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise DamagedRecord(self.tags_path, "not a map of names to image ids")
        return tags

    def repo_digests(self, id_: str) -> list[str]:
        """docker's RepoDigests of an image; [] when the record is missing or damaged."""
        try:
            digests = self._read_digests()
        except DamagedRecord as exc:
            _warn_once(exc)
            return []
        return list(digests.get(id_, []))

    def add_repo_digest(self, id_: str, name: str, digest: str) -> None:
        """Record that `id_` is `name@digest` (a pull or push); one digest a repository, the latest."""
        digests = self._read_digests()
        kept = [d for d in digests.get(id_, []) if d.rsplit("@", 1)[0] != name]
        digests[id_] = sorted(kept + [f"{name}@{digest}"])
        atomic_write(self.digests_path, leanjson.dumps(digests, indent=1, sort_keys=True).encode())

    def _read_digests(self) -> dict[str, list[str]]:
        try:
            data = read_record(self.digests_path)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(d, str) for d in v) for v in data.values()
        ):
            raise DamagedRecord(self.digests_path, "not a map of image ids to digest references")
        return data

    def tags_of(self, id_: str) -> list[str]:
        return sorted(ref for ref, target in self.tags().items() if target == id_)

    def lookup(self, text: str) -> Image:
        """An image by `name[:tag]`, full id, or unique id prefix (docker's order)."""
        from minirun.store.reference import looks_like_id, parse_reference

        ref: Reference | None
        try:
            ref = parse_reference(text)
        except UsageError:
            ref = None
        if ref is not None:
            target = self.tags().get(str(ref))
            if target is not None:
                return self.get(target)
        if looks_like_id(text):
            prefix = text.split(":", 1)[-1]
            matches = [i for i in self.ids() if i.split(":", 1)[1].startswith(prefix)]
            if len(matches) == 1:
                return self.get(matches[0])
            if len(matches) > 1:
                raise Conflict(f"multiple images found with provided prefix: {text}")
        shown = str(ref) if ref is not None and not looks_like_id(text) else text
        raise NotFound(f"No such image: {shown}")

    # -- writing (callers hold the store lock) -------------------------------------------
    def raw_config(self, id_: str) -> bytes:
        """The config's bytes exactly as stored: their sha256 is the image id."""
        try:
            with open(self._config_path(id_.split(":", 1)[-1]), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"No such image: {id_}") from None

    def write(self, config: dict, raw: bytes | None = None) -> Image:
        """Store a config: `raw` verbatim when given (it must parse to `config`), else ours."""
        data = config_bytes(config) if raw is None else raw
        id_ = image_id(data)
        path = self._config_path(id_.split(":", 1)[1])
        if not os.path.exists(path):
            atomic_write(path, data)
        return Image(id=id_, config=leanjson.loads(data))

    def _write_tags(self, tags: dict[str, str]) -> None:
        atomic_write(self.tags_path, leanjson.dumps(tags, indent=1, sort_keys=True).encode())

    def tag(self, ref: Reference, id_: str) -> None:
        """Point `ref` at the image; a tag already there is not written again (a rebuild from
        the cache retags its image), but is reported as a tag event all the same, as docker's."""
        tags = self.read_tags()
        if tags.get(str(ref)) != id_:
            tags[str(ref)] = id_
            self._write_tags(tags)
        events.record(self.root, "image", "tag", id_, {"name": str(ref)})

    def untag(self, ref: str) -> None:
        tags = self.read_tags()
        id_ = tags.pop(ref, None)
        self._write_tags(tags)
        if id_ is not None:
            events.record(self.root, "image", "untag", id_, {"name": ref})

    def delete(self, id_: str) -> None:
        tags = self.read_tags()
        kept = {ref: target for ref, target in tags.items() if target != id_}
        if kept != tags:
            self._write_tags(kept)
        try:
            digests = self._read_digests()
        except DamagedRecord:
            digests = {}  # left as it is: an entry for a deleted image is never shown
        if digests.pop(id_, None) is not None:
            atomic_write(self.digests_path, leanjson.dumps(digests, indent=1, sort_keys=True).encode())
        try:
            os.unlink(self._config_path(id_.split(":", 1)[1]))
        except FileNotFoundError:
            return
        events.record(self.root, "image", "delete", id_, {"name": id_})


_warned: set[str] = set()


def _warn_once(damage: DamagedRecord) -> None:
    """Say once per command which record was skipped (listings read the store many times)."""
    if damage.path not in _warned:
        _warned.add(damage.path)
        warn(f"skipped {damage.message}")
