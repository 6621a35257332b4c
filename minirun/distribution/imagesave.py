"""`save`: stored images as one archive in docker >= 25's combined form, which both docker-save
readers (`manifest.json`, `repositories`) and OCI-layout readers (`oci-layout`, `index.json`)
take: every blob once under `blobs/sha256/`, layers as the exact uncompressed tars whose digests
are their diff_ids, configs byte for byte (so the image id survives a save -> load round trip).

The tar is written as a stream, in the order docker's archive has (sorted paths), with the layer
tars rebuilt from the store on the fly: nothing is staged on disk.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from minirun.errors import MinirunError, UsageError
from minirun.image.manifests import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    OCI_MANIFEST,
    full_name,
    image_manifest,
    sha256_digest,
)

if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.images import Image
    from minirun.store.reference import Reference

_CHUNK = 1 << 20
_BLOCK = 512
OCI_LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'  # docker's bytes, space included


@dataclass
class Selected:
    image: Image
    refs: list[Reference] = field(default_factory=list)


def select_images(store: Store, names: list[str]) -> list[Selected]:
    """The images `names` denote, as docker save reads them: `name:tag` saves that tag, a bare
    repository name every tag it has, an image id the image alone (no tags)."""
    from minirun.image.embedded import find_image
    from minirun.store.reference import parse_reference

    chosen: dict[str, Selected] = {}
    for text in names:
        try:
            ref: Reference | None = parse_reference(text, default_tag=None)
        except UsageError:
            ref = None  # a full image id
        if ref is not None and ref.tag is None and ref.digest is None:
            tagged = sorted(
                (name, id_) for name, id_ in store.images.tags().items() if name.rpartition(":")[0] == ref.name
            )
            for name, id_ in tagged:
                _add_ref(chosen.setdefault(id_, Selected(store.images.get(id_))), parse_reference(name))
            if tagged:
                continue
        image = find_image(store, text)
        entry = chosen.setdefault(image.id, Selected(image))
        if ref is not None and ref.digest is None:
            named = parse_reference(text)  # `name` means `name:latest`
            if store.images.tags().get(str(named)) == image.id:  # else `text` was an id (prefix)
                _add_ref(entry, named)
    return list(chosen.values())


def _add_ref(entry: Selected, ref: Reference) -> None:
    if ref not in entry.refs:
        entry.refs.append(ref)


@dataclass
class _Blob:
    name: str
    size: int
    data: bytes | None = None  # small blobs; a layer is streamed from the store instead
    diff_id: str | None = None


def plan_archive(store: Store, selected: list[Selected]) -> list[_Blob]:
    """Every member of the archive, in docker's order, with its size known before any is written."""
    blobs: dict[str, _Blob] = {}
    manifest_json = []
    index_entries = []
    repositories: dict[str, dict[str, str]] = {}
    for entry in selected:
        image = entry.image
        if not image.diff_ids:
            raise MinirunError(f"cannot save image {image.short_id}: it has no layers")
        for diff_id in image.diff_ids:
            name = _blob_name(diff_id)
            if name not in blobs:
                blobs[name] = _Blob(name, store.layers.tar_size(diff_id), diff_id=diff_id)
        config = store.images.raw_config(image.id)
        config_name = _blob_name(sha256_digest(config))
        blobs[config_name] = _Blob(config_name, len(config), data=config)
        manifest = image_manifest(store, image)
        manifest_digest = sha256_digest(manifest)
        blobs[_blob_name(manifest_digest)] = _Blob(_blob_name(manifest_digest), len(manifest), data=manifest)

        descriptor = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
        own = [
            {
                **descriptor,
                "annotations": {
                    ANNOTATION_IMAGE_NAME: f"{full_name(ref.name)}:{ref.tag}",
                    ANNOTATION_REF_NAME: ref.tag,
                },
            }
            for ref in entry.refs
        ]
        if not own:
            own = [dict(descriptor)]  # docker lists only tagged images; OCI readers need the others too
        platform = {k: image.config[k] for k in ("architecture", "os", "variant") if image.config.get(k)}
        for each in own:
            if platform:
                each["platform"] = platform
        index_entries += own
        for ref in entry.refs:
            repositories.setdefault(ref.name, {})[ref.tag or "latest"] = image.diff_ids[-1].split(":", 1)[1]
        manifest_json.append(
            {
                "Config": config_name,
                "RepoTags": [str(r) for r in entry.refs] or None,
                "Layers": [_blob_name(d) for d in image.diff_ids],
            }
        )

    members = [_Blob("blobs/", 0), _Blob("blobs/sha256/", 0)]
    members += [blobs[name] for name in sorted(blobs)]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
    members.append(_small("index.json", json.dumps(index, separators=(",", ":")).encode()))
    # json.NewEncoder in docker: compact, sorted map keys, one trailing newline.
    members.append(_small("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode() + b"\n"))
    members.append(_small("oci-layout", OCI_LAYOUT))
    if repositories:
        members.append(
            _small("repositories", json.dumps(repositories, separators=(",", ":"), sort_keys=True).encode() + b"\n")
        )
    return members


def _small(name: str, data: bytes) -> _Blob:
    return _Blob(name, len(data), data=data)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def write_archive(store: Store, members: list[_Blob], out: BinaryIO) -> None:
    for member in members:
        is_dir = member.name.endswith("/")
        info = tarfile.TarInfo(member.name)
        info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        info.mode = 0o755 if is_dir else 0o644
        info.size = member.size
        info.mtime = 0  # same images, same archive bytes
        out.write(info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict"))
        if member.data is not None:
            out.write(member.data)
        elif member.diff_id is not None:
            _copy_layer(store, member, out)
        padding = -member.size % _BLOCK
        if padding:
            out.write(bytes(padding))
    out.write(bytes(2 * _BLOCK))
    out.flush()


def _copy_layer(store: Store, member: _Blob, out: BinaryIO) -> None:
    assert member.diff_id is not None
    left = member.size
    with store.layers.open_tar(member.diff_id) as layer:
        while left:
            chunk = layer.read(min(_CHUNK, left))
            if not chunk:
                raise MinirunError(f"layer {member.diff_id}: its tar ended {left} bytes early")
            out.write(chunk)
            left -= len(chunk)
        if layer.read(1):  # reading to the end is also what checks the rebuilt tar's digest
            raise MinirunError(f"layer {member.diff_id}: its tar is longer than recorded")


def save_images(store: Store, names: list[str], out: BinaryIO) -> None:
    members = plan_archive(store, select_images(store, names))
    write_archive(store, members, out)


def save_to_file(store: Store, names: list[str], path: str) -> None:
    """Write to a temp file beside `path`, renamed over it once complete (removed on failure), as
    docker's CLI does: a failed save never leaves a partial archive under the name. Only a
    regular file is replaced: the rename would put the archive in place of a device, a FIFO, a
    symlink (not its target) or whatever else has the name, so those are refused."""
    import tempfile

    from minirun.store.fsutil import replace_when_done

    _check_destination(path)
    members = plan_archive(store, select_images(store, names))  # bad names fail before any file exists
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise MinirunError(f"failed to save image: {path}: {exc.strerror}") from None
    try:
        with replace_when_done(tmp, path), open(fd, "wb", buffering=_CHUNK) as out:
            write_archive(store, members, out)
            _check_destination(path)  # again: the save may have taken minutes
    except OSError as exc:
        if exc.filename == tmp:  # the rename (it names its source): name the target, not our temp file
            raise MinirunError(f"failed to save image: {path}: {exc.strerror}") from None
        raise


# moby's atomicwriter refuses these destinations, in this order, with these words.
_REFUSED_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link directly"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device file"),
    (stat.S_ISBLK, "a block device file"),
)


def _check_destination(path: str) -> None:
    """`path` may be replaced by a new file: its directory exists, and it does not, or it is a
    regular file (lstat: the rename replaces a symlink itself, not what it points to)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not stat.S_ISDIR(os.stat(directory).st_mode):
            raise MinirunError(f"failed to save image: invalid output path: {directory!r} is not a directory")
    except FileNotFoundError:
        raise MinirunError(
            f"failed to save image: invalid output path: directory {directory!r} does not exist"
        ) from None
    except NotADirectoryError:
        raise MinirunError(f"failed to save image: invalid output path: {directory!r} is not a directory") from None
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MinirunError(f"failed to save image: failed to stat output path {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        return
    for test, kind in _REFUSED_KINDS:
        if test(mode):
            raise MinirunError(f"failed to save image: cannot write to {kind}: {path}")
    raise MinirunError(f"failed to save image: unknown file mode {mode:#o}: {path}")
