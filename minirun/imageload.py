"""`load`: images from an archive into the store, every byte checked on the way in.

Formats: docker-save archives (`manifest.json` naming a config and layer tars: the legacy
`<id>/layer.tar` form, containers/image's `<digest>.tar` form, and docker >= 25's combined form
whose paths are `blobs/sha256/<hex>`), and OCI image layouts (`oci-layout`, `index.json`,
`blobs/`). Layers may be plain, gzip or zstd tars.

The archive is read at random: its members are indexed once (offset and size), small JSON
members are read with pread, and its images are planned (configs and manifests verified, each
layer located in the archive); minirun.layerworkers then unpacks the layers straight from their
bytes inside the archive, several at once (they become separate overlay lower dirs, so nothing
orders them). A pipe is spooled to an unnamed temp file in the store first, as docker spools it.
Everything is verified before anything becomes visible: blob digests (configs, manifests,
compressed layers), every layer's diff_id against its config, sizes against descriptors; the
staged layers are committed with their images only when all of them passed.
"""
from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from minirun.errors import BadArchive, MinirunError
from minirun.layerworkers import COMPRESSED_MAGIC, DEFAULT_WORKERS, unpack_layers
from minirun.manifests import (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, DOCKER_CONFIG, OCI_CONFIG,
                               check_descriptor, check_digest, familiar_name, is_index, layer_media_compression,
                               load_json, parse_index, parse_manifest, pick_platform, sha256_digest, verify_blob)

if TYPE_CHECKING:
    from minirun.reference import Reference
    from minirun.store import Store
    from minirun.store.layers import StagedLayer

_CHUNK = 1 << 20
_BLOCK = 512
_MAX_JSON = 64 << 20  # a config or manifest bigger than this is not one


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
        """Headers by minirun.tarheaders, which holds no extended header above MAX_EXTENDED in
        memory (tarfile reads whatever size a PAX or GNU long-name header claims: a crafted 1 MB
        archive made it take gigabytes); from a member it does not handle on, tarfile through
        archive._TarfileInput, which refuses any single read of that size."""
        from minirun.tarheaders import BLOCK, HeaderReader, Unsupported

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

        from minirun.archive import _TarfileInput

        raw = os.fdopen(self.reopen(), "rb")  # its own offset
        try:
            raw.seek(start)
            with tarfile.open(fileobj=_TarfileInput(raw, start), mode="r:",  # type: ignore[arg-type]
                              encoding="utf-8", errors="surrogateescape") as tar:
                for info in tar:
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
        from minirun.tarheaders import REGULAR_TYPES

        if kind not in REGULAR_TYPES and kind not in (b"1", b"2"):
            return  # directories and the like name nothing to read
        name = _clean(raw_name)
        self._name_bytes += len(name) + len(linkname)
        if len(self.members) + len(self._links) >= _MAX_FILES or self._name_bytes > _MAX_NAME_BYTES:
            raise BadArchive(f"not an image archive: more than {_MAX_FILES} files, or names of more "
                             f"than {_MAX_NAME_BYTES >> 20} MiB")
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
    raw_config: bytes
    diff_ids: list[str]
    layers: list[LayerPlan]
    refs: list[Reference] = field(default_factory=list)

    @property
    def id(self) -> str:
        return sha256_digest(self.raw_config)

    def config(self) -> dict:
        """Parsed when committed, one image at a time: a parsed config can take many times its
        size (plans hold the bytes only, within _MAX_CONFIGS)."""
        return load_json(self.raw_config, "image config")


class _Plans:
    """The images met so far, one plan per image id (an image several entries name gets all
    their names), and the configs already read, by member: each is read and parsed once, however
    many entries name it."""

    def __init__(self) -> None:
        self.by_id: dict[str, ImagePlan] = {}
        self.configs: dict[Member, tuple[bytes, list[str]]] = {}
        self.config_bytes = 0

    def config(self, archive: Archive, member: Member, what: str, read) -> tuple[bytes, list[str]]:
        """(bytes, diff_ids) of a config, `read()` only the first time its member is named."""
        known = self.configs.get(member)
        if known is not None:
            return known
        raw = read()
        self.config_bytes += len(raw)
        if self.config_bytes > _MAX_CONFIGS:
            raise BadArchive(f"{what}: the archive's image configs exceed {_MAX_CONFIGS >> 20} MiB in all")
        known = self.configs[member] = (raw, _config_diff_ids(raw, what))
        return known

    def add(self, raw: bytes, diff_ids: list[str], layers: list[LayerPlan], refs: list[Reference]) -> None:
        plan = self.by_id.setdefault(sha256_digest(raw), ImagePlan(raw, diff_ids, layers, []))
        plan.refs = list(dict.fromkeys(plan.refs + refs))  # the first entry's layers, every name


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
    entries = parse_json(archive.read("manifest.json", "manifest.json", _MAX_DOCUMENT), "manifest.json")
    if not isinstance(entries, list):
        raise BadArchive("manifest.json: not a list of images")
    _check_count(len(entries), "manifest.json")
    plans = _Plans()
    for n, entry in enumerate(entries, 1):
        what = f"manifest.json entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list) or not all(isinstance(p, str) for p in entry["Layers"]):
            raise BadArchive(f"{what}: needs a Config path and a list of Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadArchive(f"{what}: RepoTags is not a list of names")
        path = entry["Config"]
        raw, diff_ids = plans.config(archive, archive.member(path, f"{what} config"), f"{what} config",
                                     lambda: _read_config_path(archive, path, f"{what} config"))
        if len(diff_ids) != len(entry["Layers"]):
            raise BadArchive(f"{what}: {len(entry['Layers'])} layers, but its config lists {len(diff_ids)} diff_ids")
        layers = [
            LayerPlan(diff_id, archive.member(path, f"{what} layer {i + 1}"), _digest_in_path(path),
                      f"layer {i + 1} ({path})")
            for i, (diff_id, path) in enumerate(zip(diff_ids, entry["Layers"]))
        ]
        plans.add(raw, diff_ids, layers, _references(tags, what))
    return plans


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
    seen: set[str] = set()  # manifests already planned: another entry naming one adds its names only
    for n, desc in enumerate(index["manifests"], 1):
        what = f"index.json entry {n}"
        refs = _references(_oci_names(desc), what)
        if desc["digest"] in seen:
            for plan in plans.by_id.values():
                if plan.layers and desc["digest"] in getattr(plan, "manifests", ()):
                    plan.refs = list(dict.fromkeys(plan.refs + refs))
            continue
        seen.add(desc["digest"])
        manifest = _manifest_for(archive, desc, what)
        config_desc = manifest["config"]
        if config_desc.get("mediaType") not in (None, OCI_CONFIG, DOCKER_CONFIG):
            raise BadArchive(f"{what}: not a container image (config of type {config_desc['mediaType']})")
        raw, diff_ids = plans.config(archive, archive.member(blob_path(config_desc["digest"]), f"{what} config"),
                                     f"{what} config", lambda: _read_blob(archive, config_desc, f"{what} config",
                                                                           _MAX_CONFIG))
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
                raise BadArchive(f"{what} {layer_what}: {member.size} bytes in the archive, "
                                 f"{layer['size']} in the manifest")
            layers.append(LayerPlan(diff_id, member, layer["digest"], layer_what))
        plans.add(raw, diff_ids, layers, refs)
    return plans
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


def _read_blob(archive: Archive, desc: dict, what: str) -> bytes:
    check_descriptor(desc, what)
    return verify_blob(archive.read(blob_path(desc["digest"]), what), desc, what)


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
    from minirun.reference import parse_reference

    refs = []
    for name in names:
        try:
            ref = parse_reference(familiar_name(name))
        except MinirunError as exc:
            raise BadArchive(f"{what}: invalid image name {name!r}: {exc.message}") from None
        if ref.digest is None and ref not in refs:  # a digest names content, not a tag to set
            refs.append(ref)
    return refs


def _parse_config(raw: bytes, what: str) -> dict:
    config = load_json(raw, what)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not diff_ids:
        raise BadArchive(f"{what}: no rootfs.diff_ids")
    for diff_id in diff_ids:
        check_digest(diff_id, f"{what} diff_id")
    if config.get("os") not in (None, "", "linux"):
        raise BadArchive(f"{what}: cannot load a {config['os']} image on linux")
    return config


# -- the whole load ----------------------------------------------------------------------------

@dataclass
class Loaded:
    image_id: str
    refs: list[str]
    replaced: list[tuple[str, str]]  # (name, old image id) for a tag that moved to this image


def load_archive(store: Store, stream: BinaryIO, progress: Progress | None = None,
                 workers: int = DEFAULT_WORKERS) -> list[Loaded]:
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
            image = store.commit_image(mine, plan.config, plan.refs[0] if plan.refs else None,
                                       raw_config=plan.raw_config, more_refs=plan.refs[1:])
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
        if position == 0 and not os.pread(fd, 6, 0).startswith(COMPRESSED_MAGIC):
            return fd
    return _spool(store, stream, progress)


def _spool(store: Store, stream: BinaryIO, progress: Progress) -> int:
    import tempfile

    from minirun.archive import decompressed

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
            except (OSError, EOFError, ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                raise BadArchive(f"invalid compressed archive: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            except Exception as exc:
                if type(exc).__module__ in ("zlib", "zstandard", "_lzma", "lzma"):
                    raise BadArchive(f"invalid compressed archive: {exc}") from None
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
