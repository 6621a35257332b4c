"""Paths below a directory as path-taking calls accept them, however long: a container may nest
dirs one name at a time past PATH_MAX (4,096 bytes), which no call takes whole (ENAMETOOLONG).

A path short enough goes as it is, so normal trees see no change. A longer one is cut, on names,
into chunks of at most CHUNK bytes: all but the last are opened in turn (each below the one
before, never following a link), and the path becomes /proc/self/fd/N/LAST, N the dir open at
the last cut. The dirs open at cuts are kept (a few, oldest closed first): the paths of one
subtree share them. A path made here is valid until the next one is asked for.

minirun.linux (ctypes, ~9 ms) is imported only when a path is long: `diff` takes this module on
its hot path, where paths are short.
"""

from __future__ import annotations

import os

SHORT = 3072  # a path with its root at most this long is passed whole
CHUNK = 2048
_KEEP = 64
_OPEN_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class ShortPaths:
    """Paths below the dir `root` (a path), short enough for any call; or below other roots
    named at each call, which then share the few dirs kept open."""

    def __init__(self, root: str = "") -> None:
        self.root = root
        self._fds: dict[tuple[str, str], int] = {}  # (root, a cut's path below it) -> its dir, oldest first

    def __call__(self, rel: str, root: str | None = None) -> str:
        """The path of `rel` (below `root`, by default the one given at the start; "" for the
        root itself), whole or through an open dir."""
        if root is None:
            root = self.root
        if len(root) + len(rel) < SHORT:
            return f"{root}/{rel}" if rel else root
        cuts = cuts_of(rel)
        if not cuts:  # a long root, a short rel: nothing to cut
            return f"{root}/{rel}"
        return f"/proc/self/fd/{self._open(root, rel, cuts)}/{rel[cuts[-1] + 1 :]}"

    def _open(self, root: str, rel: str, cuts: list[int]) -> int:
        """The dir `rel` has at its last cut, opened chunk by chunk from the deepest cut kept."""
        from minirun import linux

        beneath = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
        i = len(cuts) - 1
        while i >= 0 and (root, rel[: cuts[i]]) not in self._fds:
            i -= 1
        fd = self._fds[root, rel[: cuts[i]]] if i >= 0 else -1
        for j in range(i + 1, len(cuts)):
            chunk = rel[cuts[j - 1] + 1 if j else 0 : cuts[j]]
            if fd < 0:
                top = os.open(root, _OPEN_DIR)
                try:
                    fd = linux.openat2(top, chunk, _OPEN_DIR, beneath)
                finally:
                    os.close(top)
            else:
                fd = linux.openat2(fd, chunk, _OPEN_DIR, beneath)
            if len(self._fds) >= _KEEP:
                os.close(self._fds.pop(next(iter(self._fds))))  # the oldest (the base is used)
            self._fds[root, rel[: cuts[j]]] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def cuts_of(rel: str) -> list[int]:
    """Where `rel` is cut (indexes of "/"): every chunk between cuts, and what follows the last,
    at most CHUNK bytes. Cuts fall where they would for any longer path with this prefix."""
    cuts, start = [], 0
    while len(rel) - start > CHUNK:
        slash = rel.rfind("/", start, start + CHUNK + 1)
        if slash <= start:  # a name longer than a chunk: no name is (NAME_MAX is 255)
            raise OSError(36, "File name too long", rel[:64] + "...")
        cuts.append(slash)
        start = slash + 1
    return cuts
