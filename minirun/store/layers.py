"""Unpacked layers by diff_id: `layers/<hex>/diff` (an overlay lower dir) and `l/<short>` links to them.

A layer is unpacked under `layers/.tmp-*` and renamed into place only when complete, so a crash
leaves a temp dir (swept later) and never a half layer under a real name.
"""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.store.fsutil import atomic_write, fsync_dir, remove_tree, try_flock

TYPE_CHECKING = False  # typing costs ~4 ms to import; annotations are strings here anyway
if TYPE_CHECKING:
    from typing import BinaryIO

    from minirun.layer.archive import AppliedLayer

TMP_PREFIX = ".tmp-"
SPLIT_NAME = "tar-split"  # the record that rebuilds the layer's exact tar (tarsplit.py)
_INPROGRESS = "inprogress"
# docker's overlay2 keeps 26-character links; `l/<26>:` per layer keeps ~128 lowers in one page.
SHORT_ID_LEN = 26


def digest_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


# Plain classes, not dataclasses: `dataclasses` costs ~9 ms of imports on every ps and diff.
class LayerMeta:
    __slots__ = ("diff_id", "size", "tar_size")

    def __init__(self, diff_id: str, size: int, tar_size: int | None = None) -> None:
        self.diff_id, self.size, self.tar_size = diff_id, size, tar_size


class StagedLayer:
    """A layer unpacked under a temp name, not yet visible; `lock_fd` marks it as alive."""

    __slots__ = ("tmp_dir", "lock_fd", "applied")

    def __init__(self, tmp_dir: str, lock_fd: int, applied: AppliedLayer | None = None) -> None:
        self.tmp_dir, self.lock_fd, self.applied = tmp_dir, lock_fd, applied

    @property
    def diff_dir(self) -> str:
        return os.path.join(self.tmp_dir, "diff")


class LayerStore:
    def __init__(self, store_root: str) -> None:
        self.dir = os.path.join(store_root, "layers")
        self.links = os.path.join(store_root, "l")

    def ensure_dirs(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.links, exist_ok=True)

    # -- reading -------------------------------------------------------------------------
    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.dir, digest_hex(diff_id))

    def diff_dir(self, diff_id: str) -> str:
        """The unpacked layer: what overlay stacks as a lower dir."""
        return os.path.join(self.layer_dir(diff_id), "diff")

    def short_link(self, diff_id: str) -> str:
        return os.path.join(self.links, digest_hex(diff_id)[:SHORT_ID_LEN])

    def exists(self, diff_id: str) -> bool:
        return os.path.isfile(os.path.join(self.layer_dir(diff_id), "meta.json"))

    def meta(self, diff_id: str) -> LayerMeta:
        from minirun.errors import DamagedRecord
        from minirun.store.fsutil import read_record

        path = os.path.join(self.layer_dir(diff_id), "meta.json")
        data = read_record(path)
        try:
            return LayerMeta(diff_id=data["diff_id"], size=int(data["size"]), tar_size=data.get("tar_size"))
        except (TypeError, KeyError, ValueError, AttributeError):
            raise DamagedRecord(path, "not a layer's record") from None

    def tar_size(self, diff_id: str) -> int:
        """The length of the layer's exact uncompressed tar (what open_tar gives)."""
        size = self.meta(diff_id).tar_size
        if size is None or not os.path.exists(os.path.join(self.layer_dir(diff_id), SPLIT_NAME)):
            from minirun.errors import MinirunError

            raise MinirunError(f"layer {diff_id} cannot be exported: the store has no record of its tar")
        return int(size)

    def open_tar(self, diff_id: str) -> BinaryIO:
        """The layer's exact tar, rebuilt from its split; its digest is checked at the end."""
        import io

        from minirun.layer.tarsplit import LayerTarReader

        self.tar_size(diff_id)  # one clear error for a layer without a record
        reader = LayerTarReader(os.path.join(self.layer_dir(diff_id), SPLIT_NAME), self.diff_dir(diff_id), diff_id)
        return io.BufferedReader(reader, 1 << 20)

    def all_ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return ["sha256:" + n for n in names if not n.startswith(".") and self.exists("sha256:" + n)]

    # -- writing -------------------------------------------------------------------------
    def stage(self) -> StagedLayer:
        """A fresh temp dir, marked alive by an flock. Call under the store lock, so that a
        sweep (also under it) never sees a temp dir before its mark exists."""
        tmp_dir = os.path.join(self.dir, TMP_PREFIX + os.urandom(8).hex())
        os.mkdir(tmp_dir, 0o700)
        fd = os.open(os.path.join(tmp_dir, _INPROGRESS), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try_flock(fd)
        os.mkdir(os.path.join(tmp_dir, "diff"), 0o755)
        return StagedLayer(tmp_dir=tmp_dir, lock_fd=fd)

    def unpack(
        self, staged: StagedLayer, stream: BinaryIO, length: int | None = None, fork_writer: bool = True
    ) -> AppliedLayer:
        """Apply a tar stream into the staged dir; no store lock needed (nobody else sees it).
        `length`: the layer is the next `length` bytes of the stream; `fork_writer`: whether a
        file writer may be forked for it (see apply_layer)."""
        from minirun.layer.archive import apply_layer  # tarfile and friends: not on the run path

        split = os.path.join(staged.tmp_dir, SPLIT_NAME)
        staged.applied = apply_layer(stream, staged.diff_dir, length=length, split_path=split, fork_writer=fork_writer)
        return staged.applied

    def commit(self, staged: StagedLayer) -> bool:
        """Make a staged layer visible under its diff_id (call under the store lock).
        Returns False when the store already had it; the staged copy is then dropped."""
        assert staged.applied is not None
        diff_id = staged.applied.diff_id
        try:
            if self.exists(diff_id):
                return False
            meta = {"diff_id": diff_id, "size": staged.applied.size, "tar_size": staged.applied.tar_size}
            atomic_write(os.path.join(staged.tmp_dir, "meta.json"), leanjson.dumps(meta).encode())
            os.unlink(os.path.join(staged.tmp_dir, _INPROGRESS))
            final = self.layer_dir(diff_id)
            remove_tree(final)  # a dir without meta.json is debris of an older crash
            os.rename(staged.tmp_dir, final)
            link = self.short_link(diff_id)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(os.path.relpath(self.diff_dir(diff_id), self.links), link)
            fsync_dir(self.dir)
            return True
        finally:
            self.discard(staged)

    def discard(self, staged: StagedLayer) -> None:
        if staged.lock_fd >= 0:
            os.close(staged.lock_fd)
            staged.lock_fd = -1
        remove_tree(staged.tmp_dir)

    def remove(self, diff_id: str) -> None:
        """Delete a layer nobody uses (the caller checked, under the store lock). The meta file
        goes first, so a crash midway leaves a dir no one trusts rather than a half layer."""
        layer_dir = self.layer_dir(diff_id)
        link = self.short_link(diff_id)
        if os.path.lexists(link):
            os.unlink(link)
        meta = os.path.join(layer_dir, "meta.json")
        if os.path.exists(meta):
            os.unlink(meta)
        remove_tree(layer_dir)

    def sweep(self) -> None:
        """Remove temp dirs whose owner died (their flock is free) and debris without meta.json."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.dir, name)
            if name.startswith(TMP_PREFIX):
                try:
                    fd = os.open(os.path.join(path, _INPROGRESS), os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    remove_tree(path)
                    continue
                try:
                    if try_flock(fd):
                        remove_tree(path)
                finally:
                    os.close(fd)
            elif not os.path.exists(os.path.join(path, "meta.json")):
                remove_tree(path)
