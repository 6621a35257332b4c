"""`load`: images from an archive into the store, every byte checked on the way in.

Formats: docker-save archives (`manifest.json` naming a config and layer tars: the legacy
`<id>/layer.tar` form, containers/image's `<digest>.tar` form, and docker >= 25's combined form
whose paths are `blobs/sha256/<hex>`), and OCI image layouts (`oci-layout`, `index.json`,
`blobs/`). Layers may be plain, gzip or zstd tars.

The archive is read at random: its members are indexed once (offset and size), small JSON
members are read with pread, and its images are planned (configs and manifests verified, each
layer located in the archive); minirun.distribution.layerworkers then unpacks the layers straight from their
bytes inside the archive, several at once (they become separate overlay lower dirs, so nothing
orders them). A pipe is spooled to an unnamed temp file in the store first, as docker spools it.
Everything is verified before anything becomes visible: blob digests (configs, manifests,
compressed layers), every layer's diff_id against its config, sizes against descriptors; the
staged layers are committed with their images only when all of them passed.

A small compressed archive can claim gigabytes: the index holds no tar header above 1 MiB, and
documents, configs, entries and names have limits (the _MAX_* below), so what load holds in memory
stays in the tens of MiB whatever the archive says.
"""

from __future__ import annotations

import functools
import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from minirun.distribution.layerworkers import DEFAULT_WORKERS, unpack_layers
from minirun.errors import BadArchive, MinirunError
from minirun.image.manifests import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_CONFIG,
    OCI_CONFIG,
    check_descriptor,
    check_digest,
    familiar_name,
    is_index,
    layer_media_compression,
    load_json,
    parse_index,
    parse_json,
    parse_manifest,
    pick_platform,
    sha256_digest,
    verify_blob,
)
from minirun.layer.compression import corrupt, decompressed, is_bad_data, is_compressed_at

if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.layers import StagedLayer
    from minirun.store.reference import Reference

_CHUNK = 1 << 20
_BLOCK = 512
# Limits on what an archive may make this process hold (a crafted archive is small compressed):
_MAX_DOCUMENT = 4 << 20  # manifest.json, index.json, a manifest: the registry's limit on manifests
_MAX_CONFIG = 8 << 20  # an image config, as pull takes it
_MAX_CONFIGS = 32 << 20  # all the configs of one archive, held until the images are committed
_MAX_IMAGES = 1000  # entries in manifest.json or index.json
_MAX_FILES = 100_000  # files and links in the archive (directories are not kept)
_MAX_NAME_BYTES = 16 << 20  # their names and link targets, in all


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """What load reports while it works; the CLI draws it (or not)."""

    def spooled(self, nbytes: int) -> None:
        pass

    def layer_started(self, key: str, total: int) -> None:
        pass

    def layer_advanced(self, key: str, nbytes: int) -> None:
        pass

    def layer_finished(self, key: str, note: str) -> None:
        pass


# -- the outer archive -------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of the data, in the archive file
    size: int


class Archive:
    """An uncompressed tar file, indexed by member name; read at random, never extracted."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.members: dict[str, Member] = {}
        self._links: dict[str, str] = {}
        self._name_bytes = 0
        self._index()

    def _index(self) -> None:
        """Headers by minirun.layer.tarheaders, which holds no extended header above MAX_EXTENDED in
        memory (tarfile reads whatever size a PAX or GNU long-name header claims: a crafted 1 MB
        archive made it take gigabytes); from a member it does not handle on, tarfile through
        tarheaders.open_tarfile, which refuses any single read of that size."""
        from minirun.layer.tarheaders import BLOCK, HeaderReader, Unsupported

        reader = HeaderReader(_PreadSource(self.fd, self.size))
        try:
            try:
                for member in reader:
                    self._add(member.name, member.type, member.linkname, member.offset, member.size)
                end = reader.pos
            except Unsupported as rest:
                end = self._index_with_tarfile(rest.start)
        except BadArchive as exc:
            if exc.message.startswith(("truncated archive", "not an image archive")):
                raise
            raise BadArchive(f"invalid archive: {exc.message}") from None
        # The end-of-archive block must be there: without it the archive was cut short.
        if os.pread(self.fd, BLOCK, end) != bytes(BLOCK):
            raise BadArchive("truncated or corrupt archive: no end-of-archive marker after the last member")
        for name in self._links:
            target = self._resolve(name, self._links)
            if target is not None:
                self.members[name] = Member(name, target.offset, target.size)

    def _index_with_tarfile(self, start: int) -> int:
        """The members from `start` on, by tarfile (PAX global headers, sparse files, ...);
        returns where the end-of-archive block must be."""
        import tarfile

        from minirun.layer.tarheaders import open_tarfile

        raw = os.fdopen(self.reopen(), "rb")  # its own offset
        try:
            raw.seek(start)
            with open_tarfile(raw, start) as tar:
                while (info := tar.next()) is not None:
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every TarInfo it read; nothing here needs them
                    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
                        continue  # its data is not where it could be read from: not an image file
                    kind = b"0" if info.isreg() else b"2" if info.issym() else b"1" if info.islnk() else b"5"
                    self._add(info.name, kind, info.linkname, info.offset_data, info.size)
                return tar.offset
        except tarfile.TarError as exc:
            raise BadArchive(str(exc) or type(exc).__name__) from None
        finally:
            raw.close()

    def _add(self, raw_name: str, kind: bytes, linkname: str, offset: int, size: int) -> None:
        """Index one member: regular files by name, links to resolve once all are known."""
        from minirun.layer.tarheaders import REGULAR_TYPES

        if kind not in REGULAR_TYPES and kind not in (b"1", b"2"):
            return  # directories and the like name nothing to read
        name = _clean(raw_name)
        self._name_bytes += len(name) + len(linkname)
        if len(self.members) + len(self._links) >= _MAX_FILES or self._name_bytes > _MAX_NAME_BYTES:
            raise BadArchive(
                f"not an image archive: more than {_MAX_FILES} files, or names of more than {_MAX_NAME_BYTES >> 20} MiB"
            )
        if kind == b"2":
            target = linkname if linkname.startswith("/") else os.path.join(os.path.dirname(name), linkname)
            self._links[name] = _clean(os.path.normpath(target))
        elif kind == b"1":
            self._links[name] = _clean(linkname)
        else:
            if offset + size > self.size:
                raise BadArchive(f"truncated archive: {name} ends past the end of the file")
            self.members[name] = Member(name, offset, size)

    def _resolve(self, name: str, links: dict[str, str]) -> Member | None:
        for _ in range(16):  # a loop of links names nothing
            name = links.get(name, name)
            if name in self.members:
                return self.members[name]
            if name not in links:
                return None
        return None

    def has(self, name: str) -> bool:
        return name in self.members

    def member(self, name: str, what: str) -> Member:
        try:
            return self.members[_clean(name)]
        except KeyError:
            raise BadArchive(f"{what}: {name} is missing from the archive") from None

    def read(self, name: str, what: str, limit: int) -> bytes:
        """A small member (a JSON document) whole; one above `limit` bytes is not what it claims."""
        member = self.member(name, what)
        if member.size > limit:
            raise BadArchive(f"{what}: {name} is too large ({member.size} bytes, at most {limit})")
        data = os.pread(self.fd, member.size, member.offset)
        if len(data) != member.size:
            raise BadArchive(f"truncated archive: {name} is cut short")
        return data

    def reopen(self) -> int:
        """A new file description of the archive (its own offset), for one worker thread."""
        return os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)


class _PreadSource:
    """The archive's header blocks for tarheaders.HeaderReader, by pread: member data between
    them is never read while indexing."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size

    def begin_member(self, offset: int) -> None:
        pass

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        return os.pread(self.fd, size, offset) if size else b""


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def blob_path(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


# -- what the archive holds --------------------------------------------------------------------


@dataclass
class LayerPlan:
    diff_id: str  # what the config says the layer is
    member: Member
    blob_digest: str | None  # what the archive says the member's bytes hash to, when it says
    what: str  # how error messages name it


@dataclass
class ImagePlan:
    id: str  # the config's digest
    raw_config: bytes
    diff_ids: list[str]
    layers: list[LayerPlan]
    names: dict[Reference, None] = field(default_factory=dict)  # ordered, each once

    @property
    def refs(self) -> list[Reference]:
        return list(self.names)

    def config(self) -> dict:
        """Parsed when committed, one image at a time: a parsed config can take many times its
        size (plans hold the bytes only, at most _MAX_CONFIGS of them)."""
        return load_json(self.raw_config, "image config")


class _Plans:
    """The images met so far, one plan per image id (an image several entries name gets all
    their names, and the first entry's layers), and the configs already read, by member: each
    is read, hashed and parsed once, however many entries name it."""

    def __init__(self) -> None:
        self.by_id: dict[str, ImagePlan] = {}
        self._configs: dict[Member, tuple[str, bytes, list[str]]] = {}
        self._config_bytes = 0

    def config(self, member: Member, what: str, read: Callable[[], bytes]) -> tuple[str, bytes, list[str]]:
        """(image id, bytes, diff_ids) of the config in `member`; `read()` the first time only."""
        known = self._configs.get(member)
        if known is None:
            raw = read()
            self._config_bytes += len(raw)
            if self._config_bytes > _MAX_CONFIGS:
                raise BadArchive(f"{what}: the archive's image configs take more than {_MAX_CONFIGS >> 20} MiB")
            known = self._configs[member] = (sha256_digest(raw), raw, _config_diff_ids(raw, what))
        return known

    def add(self, image_id: str, raw: bytes, diff_ids: list[str], layers: list[LayerPlan]) -> None:
        if image_id not in self.by_id:
            self.by_id[image_id] = ImagePlan(image_id, raw, diff_ids, layers)

    def name(self, image_id: str, refs: list[Reference]) -> None:
        self.by_id[image_id].names.update(dict.fromkeys(refs))


def read_plans(archive: Archive) -> list[ImagePlan]:
    """The images in the archive, their configs and manifests verified, layers not yet read."""
    if archive.has("manifest.json"):
        plans = _docker_plans(archive)
    elif archive.has("index.json"):
        plans = _oci_plans(archive)
    else:
        raise BadArchive("not an image archive: neither manifest.json (docker save) nor index.json (OCI layout) found")
    if not plans.by_id:
        raise BadArchive("the archive holds no image")
    return list(plans.by_id.values())


def _digest_in_path(path: str) -> str | None:
    """The blob digest a layer path promises: `blobs/sha256/<hex>`, or `<hex>.tar` as
    containers/image names its blobs; a legacy `<v1 id>/layer.tar` promises nothing."""
    import re

    path = _clean(path)
    match = re.fullmatch(r"blobs/sha256/([a-f0-9]{64})|([a-f0-9]{64})\.(?:tar|tar\.gz|tgz|tar\.zst|json)", path)
    if match is None:
        return None
    return "sha256:" + (match.group(1) or match.group(2))


def _check_count(count: int, what: str) -> None:
    if count > _MAX_IMAGES:
        raise BadArchive(f"{what}: {count} entries, more than the {_MAX_IMAGES} an archive may hold")


def _docker_plans(archive: Archive) -> _Plans:
    doc = parse_json(archive.read("manifest.json", "docker archive", _MAX_DOCUMENT), "manifest.json")
    if not isinstance(doc, list):
        raise BadArchive("manifest.json: not a list of images")
    _check_count(len(doc), "manifest.json")
    entries = [_docker_entry(entry, f"manifest.json entry {n}") for n, entry in enumerate(doc, 1)]
    del doc  # whatever else the entries held: only these fields are kept
    plans = _Plans()
    for n, (path, layer_paths, tags) in enumerate(entries, 1):
        what = f"manifest.json entry {n}"
        image_id, raw, diff_ids = plans.config(
            archive.member(path, f"{what} config"),
            f"{what} config",
            functools.partial(_read_config_path, archive, path, f"{what} config"),
        )
        if len(diff_ids) != len(layer_paths):
            raise BadArchive(f"{what}: {len(layer_paths)} layers, but its config lists {len(diff_ids)} diff_ids")
        layers = [
            LayerPlan(
                diff_id,
                archive.member(layer_path, f"{what} layer {i + 1}"),
                _digest_in_path(layer_path),
                f"layer {i + 1} ({layer_path})",
            )
            for i, (diff_id, layer_path) in enumerate(zip(diff_ids, layer_paths))
        ]
        plans.add(image_id, raw, diff_ids, layers)
        plans.name(image_id, _references(tags, what))
    return plans


def _docker_entry(entry: object, what: str) -> tuple[str, list[str], list[str]]:
    """(Config, Layers, RepoTags) of a manifest.json entry, checked."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("Config"), str)
        or not isinstance(entry.get("Layers"), list)
        or not all(isinstance(p, str) for p in entry["Layers"])
    ):
        raise BadArchive(f"{what}: needs a Config path and a list of Layers")
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadArchive(f"{what}: RepoTags is not a list of names")
    return entry["Config"], entry["Layers"], tags


def _read_config_path(archive: Archive, path: str, what: str) -> bytes:
    raw = archive.read(path, what, _MAX_CONFIG)
    promised = _digest_in_path(path)
    if promised is not None and sha256_digest(raw) != promised:
        raise BadArchive(f"{what} {path}: digest mismatch (got {sha256_digest(raw)})")
    return raw


def _oci_plans(archive: Archive) -> _Plans:
    layout = load_json(archive.read("oci-layout", "OCI layout", _MAX_DOCUMENT), "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise BadArchive("oci-layout: no imageLayoutVersion")
    index = parse_index(archive.read("index.json", "OCI layout", _MAX_DOCUMENT))
    _check_count(len(index["manifests"]), "index.json")
    plans = _Plans()
    planned: dict[str, str] = {}  # manifest digest -> image id: another entry naming it adds names only
    for n, desc in enumerate(index["manifests"], 1):
        what = f"index.json entry {n}"
        refs = _references(_oci_names(desc), what)
        image_id = planned.get(desc["digest"])
        if image_id is None:
            image_id = planned[desc["digest"]] = _plan_manifest(archive, plans, desc, what)
        plans.name(image_id, refs)
    return plans


def _plan_manifest(archive: Archive, plans: _Plans, desc: dict, what: str) -> str:
    manifest = _manifest_for(archive, desc, what)
    config_desc = manifest["config"]
    if config_desc.get("mediaType") not in (None, OCI_CONFIG, DOCKER_CONFIG):
        raise BadArchive(f"{what}: not a container image (config of type {config_desc['mediaType']})")
    image_id, raw, diff_ids = plans.config(
        archive.member(blob_path(config_desc["digest"]), f"{what} config"),
        f"{what} config",
        lambda: _read_blob(archive, config_desc, f"{what} config", _MAX_CONFIG),
    )
    if len(diff_ids) != len(manifest["layers"]):
        raise BadArchive(f"{what}: {len(manifest['layers'])} layers, but its config lists {len(diff_ids)} diff_ids")
    layers = []
    for i, (diff_id, layer) in enumerate(zip(diff_ids, manifest["layers"])):
        layer_what = f"layer {i + 1} ({layer['digest']})"
        try:
            layer_media_compression(layer["mediaType"])
        except MinirunError as exc:
            raise BadArchive(f"{what} {layer_what}: {exc.message}") from None
        member = archive.member(blob_path(layer["digest"]), f"{what} {layer_what}")
        if member.size != layer["size"]:
            raise BadArchive(
                f"{what} {layer_what}: {member.size} bytes in the archive, {layer['size']} in the manifest"
            )
        layers.append(LayerPlan(diff_id, member, layer["digest"], layer_what))
    plans.add(image_id, raw, diff_ids, layers)
    return image_id


def _manifest_for(archive: Archive, desc: dict, what: str) -> dict:
    """The image manifest an index entry leads to: through a nested index, the host's platform."""
    for _ in range(4):  # indexes nest; not deeply in any real layout
        data = _read_blob(archive, desc, what)
        doc = load_json(data, what)
        if not is_index(doc, desc.get("mediaType")):
            return parse_manifest(data)
        nested = parse_index(data)
        desc = pick_platform(nested)
    raise BadArchive(f"{what}: image indexes nested too deeply")


def _read_blob(archive: Archive, desc: dict, what: str, limit: int = _MAX_DOCUMENT) -> bytes:
    check_descriptor(desc, what)
    if desc["size"] > limit:
        raise BadArchive(f"{what}: {desc['digest']} is too large ({desc['size']} bytes, at most {limit})")
    return verify_blob(archive.read(blob_path(desc["digest"]), what, limit), desc, what)


def _oci_names(desc: dict) -> list[str]:
    """containerd's full image name, else OCI's ref.name when it is a whole reference; a bare
    tag (what `skopeo copy ... oci:dir:tag` writes) names no repository: the image loads untagged."""
    annotations = desc.get("annotations") or {}
    if not isinstance(annotations, dict):
        return []
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if isinstance(name, str) and name:
        return [name]
    ref = annotations.get(ANNOTATION_REF_NAME)
    if isinstance(ref, str) and any(c in ref for c in "/:@"):
        return [ref]
    return []


def _references(names: list[str], what: str) -> list[Reference]:
    from minirun.store.reference import parse_reference

    refs: dict[Reference, None] = {}
    for name in names:
        try:
            ref = parse_reference(familiar_name(name))
        except MinirunError as exc:
            raise BadArchive(f"{what}: invalid image name {name!r}: {exc.message}") from None
        if ref.digest is None:  # a digest names content, not a tag to set
            refs[ref] = None
    return list(refs)


def _config_diff_ids(raw: bytes, what: str) -> list[str]:
    """The config's diff_ids, once it is checked to be a linux image config."""
    config = load_json(raw, what)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not diff_ids:
        raise BadArchive(f"{what}: no rootfs.diff_ids")
    for diff_id in diff_ids:
        check_digest(diff_id, f"{what} diff_id")
    if config.get("os") not in (None, "", "linux"):
        raise BadArchive(f"{what}: cannot load a {config['os']} image on linux")
    return diff_ids


# -- the whole load ----------------------------------------------------------------------------


@dataclass
class Loaded:
    image_id: str
    refs: list[str]
    replaced: list[tuple[str, str]]  # (name, old image id) for a tag that moved to this image


def load_archive(
    store: Store, stream: BinaryIO, progress: Progress | None = None, workers: int = DEFAULT_WORKERS
) -> list[Loaded]:
    """Load every image in the archive `stream` holds; nothing is stored unless all of it checks out."""
    progress = progress or Progress()
    fd = _archive_fd(store, stream, progress)
    try:
        archive = Archive(fd)
        plans = read_plans(archive)
        staged = unpack_layers(store, archive, plans, progress, workers)
        return _commit(store, plans, staged)
    finally:
        if fd != _fileno(stream):
            os.close(fd)


def _commit(store: Store, plans: list[ImagePlan], staged: dict[str, StagedLayer]) -> list[Loaded]:
    loaded = []
    try:
        for plan in plans:
            mine = [staged.pop(d) for d in dict.fromkeys(layer.diff_id for layer in plan.layers) if d in staged]
            before = store.images.tags()
            image = store.commit_image(
                mine,
                plan.config(),
                plan.refs[0] if plan.refs else None,
                raw_config=plan.raw_config,
                more_refs=plan.refs[1:],
            )
            names = [str(ref) for ref in plan.refs]
            replaced = [(n, before[n]) for n in names if before.get(n) not in (None, image.id)]
            loaded.append(Loaded(image.id, names, replaced))
    finally:
        for layer in staged.values():  # left by a failed commit
            store.layers.discard(layer)
    return loaded


def _fileno(stream: BinaryIO) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return -1


def _archive_fd(store: Store, stream: BinaryIO, progress: Progress) -> int:
    """A descriptor of the uncompressed archive: the input itself when it is a regular file read
    from its start, else an unnamed temp file in the store holding the input (decompressed)."""
    fd = _fileno(stream)
    if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
        position = os.lseek(fd, 0, os.SEEK_CUR)
        if position == 0 and not is_compressed_at(fd, 0):
            return fd
    return _spool(store, stream, progress)


def _spool(store: Store, stream: BinaryIO, progress: Progress) -> int:
    import tempfile

    store.ensure()
    # O_TMPFILE in the store: on its filesystem, and gone however this process ends.
    spool = tempfile.TemporaryFile(dir=store.root)
    try:
        source = decompressed(stream)
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            try:
                n = source.readinto(buffer)  # type: ignore[attr-defined]
            except Exception as exc:
                if is_bad_data(exc):
                    raise corrupt(exc, "archive") from None
                raise
            if not n:
                break
            spool.write(view[:n])
            progress.spooled(n)
        spool.flush()
        if spool.tell() == 0:
            raise BadArchive("empty input: no archive to load (use -i FILE or pipe one in)")
        return os.dup(spool.fileno())
    finally:
        spool.close()
