"""One file on a FUSE filesystem whose server changes it at will, as any user who may mount a FUSE
filesystem (fusermount is setuid on most hosts) can hand root a file: nobody on this host opens
it for writing, so no lease on it ever breaks, yet its bytes change under a reader.

The server speaks the kernel's FUSE protocol (<linux/fuse.h>) over /dev/fuse itself, in a
process of its own (a reader in the test's process may fault on a page only the server can
fill): enough of it for a lookup, a stat, an open and reads of one read-only file. `served_file`
mounts it; its `change()` makes the server answer with the second contents from then on and
drop the kernel's cached pages of the file (FUSE_NOTIFY_INVAL_INODE), mapped ones included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

_IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, extlen, pad
_OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # ino, size, blocks, a/m/ctime, their ns, mode, nlink...
_ENTRY_TIMES = struct.Struct("<QQQQII")  # nodeid, generation, entry_valid, attr_valid, their ns
_READ_IN = struct.Struct("<QQI")  # fh, offset, size
_INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")
_LOOKUP, _FORGET, _GETATTR, _OPEN, _READ, _STATFS, _RELEASE, _FLUSH, _INIT = 1, 2, 3, 14, 15, 17, 18, 25, 26
_OPENDIR, _READDIR, _RELEASEDIR, _ACCESS, _INTERRUPT, _DESTROY, _BATCH_FORGET = 27, 28, 29, 34, 36, 38, 42
_NOTIFY_INVAL_INODE = 2
_MAX_PAGES_FLAG, _MAX_PAGES = 1 << 22, 256  # reads of up to 1 MiB
_ROOT, _FILE = 1, 2
_NAME = "file"


def _attr(node: int, size: int) -> bytes:
    mode, nlink = (0o40755, 2) if node == _ROOT else (0o100644, 1)
    return _ATTR.pack(node, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, mode, nlink, 0, 0, 0, 4096, 0)


def serve(fd: int, first: bytes, then: bytes) -> None:
    """Answer the kernel on `fd` until the filesystem is unmounted; a line on stdin switches the
    file from `first` to `then` and drops its cached pages, and "changed" on stdout says done."""
    contents = [first]

    def reply(unique: int, body: bytes = b"", error: int = 0) -> None:
        os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(body), -error, unique) + body)

    def switch() -> None:  # a thread of its own: the kernel may wait on a read only the loop answers
        for _ in sys.stdin:
            contents[0] = then
            notify = struct.pack("<Qqq", _FILE, 0, 0)  # the whole file
            os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(notify), _NOTIFY_INVAL_INODE, 0) + notify)
            print("changed", flush=True)

    threading.Thread(target=switch, daemon=True).start()
    while True:
        try:
            request = os.read(fd, (_MAX_PAGES + 1) * 4096)
        except OSError as error:
            if error.errno == errno.EINTR:
                continue
            return  # ENODEV: unmounted
        _, opcode, unique, node, *_ = _IN_HEADER.unpack_from(request)
        body = request[_IN_HEADER.size :]
        size = len(contents[0])
        if opcode == _INIT:
            major, minor, readahead = struct.unpack_from("<III", body)
            reply(
                unique,
                _INIT_OUT.pack(7, min(minor, 31), readahead, _MAX_PAGES_FLAG, 16, 12, 1 << 20, 1, _MAX_PAGES, 0, 0, 0),
            )
        elif opcode == _LOOKUP:
            if node == _ROOT and body.rstrip(b"\0") == _NAME.encode():
                reply(unique, _ENTRY_TIMES.pack(_FILE, 0, 3600, 3600, 0, 0) + _attr(_FILE, size))
            else:
                reply(unique, error=errno.ENOENT)
        elif opcode == _GETATTR:
            reply(unique, struct.pack("<QII", 3600, 0, 0) + _attr(node, size))
        elif opcode in (_OPEN, _OPENDIR):
            reply(unique, struct.pack("<QIi", 0, 0, 0))
        elif opcode == _READ:
            _, offset, length = _READ_IN.unpack_from(body)
            reply(unique, contents[0][offset : offset + length] if node == _FILE else b"")
        elif opcode == _STATFS:
            reply(unique, struct.pack("<5Q10I", 0, 0, 0, 0, 0, 4096, 255, 4096, 0, *[0] * 6))
        elif opcode in (_RELEASE, _RELEASEDIR, _FLUSH, _ACCESS):
            reply(unique)
        elif opcode == _READDIR:
            reply(unique)  # nothing to list: the file is looked up by name
        elif opcode in (_FORGET, _BATCH_FORGET, _INTERRUPT):
            pass  # no reply is due
        elif opcode == _DESTROY:
            reply(unique)
            return
        else:
            reply(unique, error=errno.ENOSYS)


@contextlib.contextmanager
def served_file(mountpoint: Path, first: bytes, then: bytes) -> Iterator[tuple[Path, Callable[[], None]]]:
    """`first` as a file on FUSE mounted at `mountpoint`: (its path, change), where change() makes
    it `then` (as long as `first`: a reader's offsets stay right) and returns once the kernel has
    dropped every page of it it held. Unmounted (and the server gone) at the end."""
    from minirun import linux

    assert len(first) == len(then)
    mountpoint.mkdir(exist_ok=True)
    (mountpoint.parent / "first").write_bytes(first)
    (mountpoint.parent / "then").write_bytes(then)
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    server = None
    try:
        linux.mount(
            "fusefile",
            str(mountpoint),
            "fuse",
            linux.MS_NOSUID | linux.MS_NODEV,
            f"fd={fd},rootmode=40000,user_id=0,group_id=0",
        )
        try:
            server = subprocess.Popen(
                [sys.executable, "-m", "tests.fusefile", str(fd), str(mountpoint.parent)],
                pass_fds=(fd,),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).parent.parent,
            )

            def change() -> None:
                server.stdin.write("change\n")
                server.stdin.flush()
                assert server.stdout.readline() == "changed\n"

            yield mountpoint / _NAME, change
        finally:
            linux.umount2(str(mountpoint), linux.MNT_DETACH)
    finally:
        os.close(fd)
        if server is not None:
            server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # the detached mount still held by someone: no ENODEV yet
                server.kill()
                server.wait()
            server.stdout.close()


if __name__ == "__main__":
    where = Path(sys.argv[2])
    serve(int(sys.argv[1]), (where / "first").read_bytes(), (where / "then").read_bytes())
