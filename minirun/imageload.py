"""`load`: images from an archive into the store, every byte checked on the way in.

Formats: docker-save archives (`manifest.json` naming a config and layer tars: the legacy
`<id>/layer.tar` form, containers/image's `<digest>.tar` form, and docker >= 25's combined form
whose paths are `blobs/sha256/<hex>`), and OCI image layouts (`oci-layout`, `index.json`,
`blobs/`). Layers may be plain, gzip or zstd tars.

The archive is read at random: its members are indexed once (offset and size), small JSON
members are read with pread, and each layer is unpacked straight from its bytes inside the
archive, several layers at once, each by a child process (they become separate overlay lower dirs,
so nothing orders them). A pipe is spooled to an unnamed temp file in the store first, as
docker spools it. Everything is verified before anything becomes visible: blob digests (configs,
manifests, compressed layers), every layer's diff_id against its config, sizes against
descriptors; the staged layers are committed with their images only when all of them passed.
"""
from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Callable

from minirun.errors import BadArchive, MinirunError
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
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh")
# Unpacking is mostly kernel time (creating files) plus a hashing thread per layer: one layer per
# core keeps the cores busy; more only contend (scripts/bench_load.py, 2 cores: 3 were slower).
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))


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
        self._index()

    def _index(self) -> None:
        import tarfile

        links: dict[str, str] = {}
        raw = os.fdopen(self.reopen(), "rb")  # its own offset, from 0
        try:
            with tarfile.open(fileobj=raw, mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
                for info in tar:
                    name = _clean(info.name)
                    if info.issym():
                        target = info.linkname if info.linkname.startswith("/") else \
                            os.path.join(os.path.dirname(name), info.linkname)
                        links[name] = _clean(os.path.normpath(target))
                    elif info.islnk():
                        links[name] = _clean(info.linkname)
                    elif info.isreg():
                        if info.offset_data + info.size > self.size:
                            raise BadArchive(f"truncated archive: {name} ends past the end of the file")
                        self.members[name] = Member(name, info.offset_data, info.size)
                end = tar.offset
        except tarfile.TarError as exc:
            raise BadArchive(f"invalid archive: {str(exc) or type(exc).__name__}") from None
        finally:
            raw.close()
        # tarfile ends quietly at a truncated header: the end-of-archive block must be there.
        if os.pread(self.fd, _BLOCK, end) != bytes(_BLOCK):
            raise BadArchive("truncated or corrupt archive: no end-of-archive marker after the last member")
        for name in links:
            target = self._resolve(name, links)
            if target is not None:
                self.members[name] = Member(name, target.offset, target.size)

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

    def read(self, name: str, what: str) -> bytes:
        member = self.member(name, what)
        if member.size > _MAX_JSON:
            raise BadArchive(f"{what}: {name} is too large ({member.size} bytes)")
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
    config: dict
    layers: list[LayerPlan]
    refs: list[Reference] = field(default_factory=list)

    @property
    def id(self) -> str:
        return sha256_digest(self.raw_config)


def read_plans(archive: Archive) -> list[ImagePlan]:
    """The images in the archive, their configs and manifests verified, layers not yet read."""
    if archive.has("manifest.json"):
        plans = _docker_plans(archive)
    elif archive.has("index.json"):
        plans = _oci_plans(archive)
    else:
        raise BadArchive("not an image archive: neither manifest.json (docker save) nor index.json (OCI layout) found")
    if not plans:
        raise BadArchive("the archive holds no image")
    return _merge(plans)


def _merge(plans: list[ImagePlan]) -> list[ImagePlan]:
    """One plan per image: an image named by several entries gets all their names."""
    by_id: dict[str, ImagePlan] = {}
    for plan in plans:
        seen = by_id.setdefault(plan.id, plan)
        if seen is not plan:
            seen.refs += [r for r in plan.refs if r not in seen.refs]
    return list(by_id.values())


def _digest_in_path(path: str) -> str | None:
    """The blob digest a layer path promises: `blobs/sha256/<hex>`, or `<hex>.tar` as
    containers/image names its blobs; a legacy `<v1 id>/layer.tar` promises nothing."""
    import re

    path = _clean(path)
    match = re.fullmatch(r"blobs/sha256/([a-f0-9]{64})|([a-f0-9]{64})\.(?:tar|tar\.gz|tgz|tar\.zst|json)", path)
    if match is None:
        return None
    return "sha256:" + (match.group(1) or match.group(2))


def _docker_plans(archive: Archive) -> list[ImagePlan]:
    import json

    try:
        entries = json.loads(archive.read("manifest.json", "manifest.json"))
    except ValueError:
        raise BadArchive("manifest.json: invalid JSON") from None
    if not isinstance(entries, list):
        raise BadArchive("manifest.json: not a list of images")
    plans = []
    for n, entry in enumerate(entries, 1):
        what = f"manifest.json entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list) or not all(isinstance(p, str) for p in entry["Layers"]):
            raise BadArchive(f"{what}: needs a Config path and a list of Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadArchive(f"{what}: RepoTags is not a list of names")
        raw = archive.read(entry["Config"], f"{what} config")
        promised = _digest_in_path(entry["Config"])
        if promised is not None and sha256_digest(raw) != promised:
            raise BadArchive(f"{what} config {entry['Config']}: digest mismatch (got {sha256_digest(raw)})")
        config = _parse_config(raw, f"{what} config")
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(entry["Layers"]):
            raise BadArchive(f"{what}: {len(entry['Layers'])} layers, but its config lists {len(diff_ids)} diff_ids")
        layers = [
            LayerPlan(diff_id, archive.member(path, f"{what} layer {i + 1}"), _digest_in_path(path),
                      f"layer {i + 1} ({path})")
            for i, (diff_id, path) in enumerate(zip(diff_ids, entry["Layers"]))
        ]
        plans.append(ImagePlan(raw, config, layers, _references(tags, what)))
    return plans


def _oci_plans(archive: Archive) -> list[ImagePlan]:
    layout = load_json(archive.read("oci-layout", "OCI layout"), "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise BadArchive("oci-layout: no imageLayoutVersion")
    index = parse_index(archive.read("index.json", "OCI layout"))
    plans = []
    for n, desc in enumerate(index["manifests"], 1):
        what = f"index.json entry {n}"
        manifest = _manifest_for(archive, desc, what)
        config_desc = manifest["config"]
        if config_desc.get("mediaType") not in (None, OCI_CONFIG, DOCKER_CONFIG):
            raise BadArchive(f"{what}: not a container image (config of type {config_desc['mediaType']})")
        raw = _read_blob(archive, config_desc, f"{what} config")
        config = _parse_config(raw, f"{what} config")
        diff_ids = config["rootfs"]["diff_ids"]
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
        plans.append(ImagePlan(raw, config, layers, _references(_oci_names(desc), what)))
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


# -- layers ------------------------------------------------------------------------------------
# Each layer is unpacked by a child process of its own (fork), several at a time. Threads were
# measured first (scripts/bench_load.py, 10 layers x 2,000 files, 2 cores): the per-member Python
# work of the applier holds the GIL, so two threads gained little over one (1.3-1.6 s vs 1.8 s)
# where two processes take 1.1 s. The parent stages each layer (its temp dir and the flock that
# keeps a sweep away stay the parent's), the child fills it and sends back what it applied; on any
# failure the parent kills the other children and discards every staged layer.

class _Section(io.RawIOBase):
    """`size` bytes of a file from `offset`, read by pread."""

    def __init__(self, fd: int, offset: int, size: int, progress: Callable[[int], None]) -> None:
        self._fd, self._at, self._left = fd, offset, size
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [memoryview(buf)[:n]], self._at)
        if got <= 0:
            raise BadArchive("truncated archive: a layer is cut short")
        self._at += got
        self._left -= got
        self._progress(got)
        return got


def _apply_member(store: Store, staged: StagedLayer, archive: Archive, plan: LayerPlan,
                  advanced: Callable[[int], None]) -> str:
    """Unpack the layer into `staged`; returns the digest of its bytes as the archive has them."""
    from minirun.archive import HashingReader

    member = plan.member
    fd = archive.reopen()
    try:
        if os.pread(fd, 6, member.offset).startswith(_COMPRESSED_MAGIC):
            # The compressed bytes have a digest of their own: hash them as they stream by.
            reader = HashingReader(_Section(fd, member.offset, member.size, advanced))  # type: ignore[arg-type]
            store.layers.unpack(staged, reader)  # type: ignore[arg-type]
            reader.drain()  # bytes past the compressed stream's end count for the digest too
            return "sha256:" + reader.hasher.hexdigest()
        # An uncompressed member is unpacked in place (pread + copy_file_range): its blob digest
        # is the diff_id the unpacking computes.
        with open(fd, "rb", closefd=False) as f:
            f.seek(member.offset)
            applied = store.layers.unpack(staged, f, length=member.size)
        advanced(member.size)
        return applied.diff_id
    except BadArchive as exc:
        raise BadArchive(f"{plan.what}: {exc.message}") from exc
    finally:
        os.close(fd)


def _check(plan: LayerPlan, staged: StagedLayer, blob_digest: str) -> None:
    if plan.blob_digest is not None and blob_digest != plan.blob_digest:
        raise BadArchive(f"{plan.what}: digest mismatch (expected {plan.blob_digest}, got {blob_digest})")
    actual = staged.applied.diff_id  # type: ignore[union-attr]
    if actual != plan.diff_id:
        raise BadArchive(f"{plan.what}: diff_id mismatch (the config says {plan.diff_id}, the layer is {actual})")


class _Child:
    """A forked process unpacking one layer; it reports on a pipe: progress, then a result."""

    _HEADER = struct.Struct("!cI")

    def __init__(self, store: Store, archive: Archive, plan: LayerPlan, staged: StagedLayer) -> None:
        self.plan, self.staged = plan, staged
        self.buffer = b""
        self.result: tuple[str, object] | None = None
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            self._run(store, archive, write_fd)
        os.close(write_fd)
        self.pid, self.fd = pid, read_fd

    def _run(self, store: Store, archive: Archive, out: int) -> None:
        import pickle
        import signal

        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent handles ^C and stops us
            pending = [0]

            def advanced(n: int) -> None:
                pending[0] += n
                if pending[0] >= _CHUNK:
                    self._send(out, b"P", str(pending[0]).encode())
                    pending[0] = 0

            digest = _apply_member(store, self.staged, archive, self.plan, advanced)
            if pending[0]:
                self._send(out, b"P", str(pending[0]).encode())
            self._send(out, b"R", pickle.dumps((self.staged.applied, digest)))
            status = 0
        except BaseException as exc:
            try:  # plain values: an exception class need not survive pickling
                if isinstance(exc, MinirunError):
                    error = ("bad" if isinstance(exc, BadArchive) else "error", exc.message, exc.exit_code)
                elif isinstance(exc, OSError):
                    error = ("os", exc.errno, exc.strerror, exc.filename)
                else:
                    error = ("error", f"internal error: {type(exc).__name__}: {exc}", None)
                self._send(out, b"E", pickle.dumps(error))
            except BaseException:
                pass
        finally:
            os._exit(status)

    def _send(self, out: int, tag: bytes, payload: bytes) -> None:
        data = self._HEADER.pack(tag, len(payload)) + payload
        while data:
            data = data[os.write(out, data):]

    def read(self, progress: Progress) -> bool:
        """Take what the child wrote; False at its end (EOF)."""
        chunk = os.read(self.fd, 1 << 16)
        self.buffer += chunk
        while len(self.buffer) >= self._HEADER.size:
            tag, size = self._HEADER.unpack_from(self.buffer)
            end = self._HEADER.size + size
            if len(self.buffer) < end:
                break
            payload, self.buffer = self.buffer[self._HEADER.size:end], self.buffer[end:]
            if tag == b"P":
                progress.layer_advanced(self.plan.diff_id, int(payload))
            else:
                import pickle

                self.result = (tag.decode(), pickle.loads(payload))
        return bool(chunk)

    def finish(self) -> None:
        """Reap the child; raise what it reported, or check what it applied."""
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        if self.result is None:
            raise MinirunError(f"{self.plan.what}: unpacking ended without a result (status {status})")
        kind, value = self.result
        if kind == "E":
            raise _error(value)  # type: ignore[arg-type]
        self.staged.applied, digest = value  # type: ignore[misc]
        _check(self.plan, self.staged, digest)

    def kill(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _error(reported: tuple) -> BaseException:
    if reported[0] == "os":
        return OSError(*reported[1:])
    kind, message, exit_code = reported
    return BadArchive(message) if kind == "bad" else MinirunError(message, exit_code)


def _stage(store: Store) -> StagedLayer:
    with store.locked():
        return store.layers.stage()


def unpack_layers(store: Store, archive: Archive, plans: list[ImagePlan], progress: Progress,
                  workers: int = DEFAULT_WORKERS) -> dict[str, StagedLayer]:
    """Stage every layer the store lacks, several at once; all or none (on failure every staged
    layer is discarded)."""
    todo: dict[str, LayerPlan] = {}
    stored: set[str] = set()
    for plan in plans:
        for layer in plan.layers:
            if layer.diff_id in todo:
                continue
            todo[layer.diff_id] = layer
            progress.layer_started(layer.diff_id, layer.member.size)  # rows in layer order
            if store.layers.exists(layer.diff_id):
                stored.add(layer.diff_id)
                progress.layer_finished(layer.diff_id, "Already exists")
    # Largest first: the last layers to start are then the short ones, and the workers end together.
    queue = sorted((layer for key, layer in todo.items() if key not in stored),
                   key=lambda layer: layer.member.size, reverse=True)
    staged: dict[str, StagedLayer] = {}
    try:
        if workers <= 1 or len(queue) <= 1:
            for plan in queue:  # no process to fork for
                staged[plan.diff_id] = layer = _stage(store)
                digest = _apply_member(store, layer, archive, plan,
                                       lambda n, key=plan.diff_id: progress.layer_advanced(key, n))
                _check(plan, layer, digest)
                progress.layer_finished(plan.diff_id, "Loaded")
        else:
            _unpack_in_children(store, archive, queue, staged, progress, workers)
    except BaseException:
        for layer in staged.values():
            store.layers.discard(layer)
        raise
    return staged


def _unpack_in_children(store: Store, archive: Archive, queue: list[LayerPlan], staged: dict[str, StagedLayer],
                        progress: Progress, workers: int) -> None:
    import select

    _preload()
    running: dict[int, _Child] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                plan = queue.pop(0)
                staged[plan.diff_id] = layer = _stage(store)
                child = _Child(store, archive, plan, layer)
                running[child.fd] = child
            for fd in select.select(list(running), [], [])[0]:
                child = running[fd]
                if not child.read(progress):
                    del running[fd]
                    child.finish()
                    progress.layer_finished(child.plan.diff_id, "Loaded")
    except BaseException:
        for child in running.values():
            child.kill()
        raise


def _preload() -> None:
    """Import in the parent what children import lazily: each would otherwise pay for it."""
    import gzip  # noqa: F401
    import pickle  # noqa: F401
    import tarfile  # noqa: F401

    import zstandard  # noqa: F401

    import minirun.archive  # noqa: F401
    import minirun.tarsplit  # noqa: F401


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
        if position == 0 and not os.pread(fd, 6, 0).startswith(_COMPRESSED_MAGIC):
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
