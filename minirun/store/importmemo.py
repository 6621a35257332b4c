"""Which layer a tar file on this host became: `import` of the same, unchanged file again (under
another name, say) finds its layer here and unpacks nothing.

A file is known by what the kernel says of it: device, inode, size, mtime and ctime (to the
nanosecond). Writing to a file changes its ctime, and no call sets ctime back, so a file that
still matches is the file that was imported. The memo lives in the store (`imports.json`), holds
the most recent MAX_ENTRIES files, and is only a hint: the layer must still be in the store, which
commit_image checks under the store lock."""

from __future__ import annotations

import os
import stat

from minirun import leanjson
from minirun.atomicfile import atomic_write

MEMO_NAME = "imports.json"
MAX_ENTRIES = 64


def file_key(fd: int, at_start: bool = True) -> str | None:
    """The identity of the regular file open on `fd` (`at_start`: only if it is to be read from its
    start); None for anything else (a pipe, stdin, a file read partway): those are unpacked every time."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (at_start and os.lseek(fd, 0, os.SEEK_CUR) != 0):
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def lookup(store_root: str, key: str) -> str | None:
    """The diff_id the file `key` became, if the memo knows it."""
    return _read(store_root).get(key)


def remember(store_root: str, key: str, diff_id: str) -> None:
    """Best effort: a memo that cannot be written costs the next import its shortcut, no more."""
    memo = _read(store_root)
    memo.pop(key, None)
    memo[key] = diff_id  # the newest last: the oldest go first
    kept = dict(list(memo.items())[-MAX_ENTRIES:])
    try:
        atomic_write(os.path.join(store_root, MEMO_NAME), leanjson.dumps(kept).encode(), mode=0o600, durable=False)
    except OSError:
        pass


def _read(store_root: str) -> dict[str, str]:
    try:
        with open(os.path.join(store_root, MEMO_NAME), "rb") as f:
            memo = leanjson.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return {}
    if not isinstance(memo, dict):
        return {}
    return {k: v for k, v in memo.items() if isinstance(k, str) and isinstance(v, str)}
