"""A layer's files created by a second process, beside the one that reads and checks the tar.

Unpacking a layer is two kinds of work: Python reading, checking and hashing the tar (the applier
in minirun.layer.archive), and the kernel creating files. For a 20,000-file layer the second is
about two thirds of the time. Run one after the other, they cost the sum. Here a forked writer
creates the files while the applier moves on, so the two overlap on two cores.

- **Order.** The applier decides every create (path, mode, owner, xattrs, times) and checks every
  path first. The writer performs the creates in the order they were decided, through one pipe
  (marshal batches). It creates with O_EXCL | O_NOFOLLOW, as the applier would, and only in
  directories the applier has already made.
- **Contents.** File data goes through a ring of shared memory, mapped before the fork. The
  applier reads the tar straight into the ring, then hashes and records those very bytes; the
  writer writes them out. No byte of the tar is read twice. (Or, when the tar is a file mapped
  under a read lease, the writer writes straight from that mapping: see minirun.layer.leasedmap.)
- **Acknowledgements.** The writer answers marks on a second pipe: a mark frees ring space once
  every job before it is done. The same pipe carries the writer's first error back. The writer
  stops at that error, and the applier raises it.

The writer is a plain fork of a single-threaded process (callers check `can_fork`). It imports
nothing, and it exits when the job pipe closes. It holds every descriptor the applier's process
held (the staged layer's lock among them) until then, so nobody takes the layer for abandoned
while files still land in it. It dies with the applier (PR_SET_PDEATHSIG): a layer nobody will
commit needs no more files, and its lock is then free for the next command's sweep.
"""

from __future__ import annotations

import errno
import fcntl
import marshal
import mmap
import os
import signal
import struct
import sys

from minirun.errors import BadArchive, MinirunError

# 4 MiB: the applier runs up to that far ahead of the writer. A bigger ring costs page faults
# (each layer maps a fresh one) and gained nothing (scripts/bench_load.py, bench_import.py).
RING_SIZE = 4 << 20
_BATCH_JOBS = 128  # jobs per pipe write
_LAG = 2 * _BATCH_JOBS  # jobs the writer may have ahead of it before the applier creates files itself
_PIPE_SIZE = 1 << 20  # F_SETPIPE_SZ of the job pipe: the applier can run this far ahead
_F_SETPIPE_SZ = 1031
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LENGTH = struct.Struct("!I")
_ACK = struct.Struct("!QQ")  # a mark passed: its number and position
NO_CHANGE = -1  # for uid and mode: leave as the kernel made it

# Jobs: tuples, first item the kind.
_FILE = 0  # path, mode, ranges, uid, gid, chmod, xattrs, mtime_ns: the whole file
_OPEN = 1  # path, mode, ranges: create and write; more ranges follow, then _CLOSE
_WRITE = 2  # ranges: write to the file being written
_CLOSE = 3  # uid, gid, chmod, xattrs, mtime_ns: finish the file being written
_SYMLINK = 4  # path, target, uid, gid, xattrs, mtime_ns
_LINK = 5  # target, path
_MARK = 6  # number, position: acknowledged once every job before it is done
# xattrs: None, or (the member's name for messages, {name: value}) without overlay's own.


def can_fork() -> bool:
    """True when a writer may be forked and has a core to run on: this process runs no other
    thread (a fork copies only the calling thread, so another's locks would stay held), and it
    may run on two CPUs or more."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


class WriterFailed(Exception):
    """What the writer reported: `kind` "os" (errno, strerror, filename), "bad" (a BadArchive's
    message) or "error" (text)."""

    def __init__(self, kind: str, details: tuple) -> None:
        super().__init__(kind, details)
        self.kind, self.details = kind, details

    def exception(self) -> Exception:
        """The error as the applier would have raised it, had it made the call itself."""
        if self.kind == "os":
            return OSError(*self.details)
        if self.kind == "bad":
            return BadArchive(self.details[0])
        return MinirunError(f"unpacking failed: {self.details[0]}")


class FileWriter:
    """The applier's side: queue creates, lend ring space for the tar's bytes, and wait for the
    writer at the end (`finish`) or when the applier must see the disk as decided (`settle`).

    The ring is lent in order: room() hands out the space after the last, once the writer is
    done with what was there before. Whoever calls room() must be done with everything it was
    lent earlier, in the sense that every job that will read those bytes has been queued or
    handed to write() (a mark then frees them for good once the writer passes it).

    `source`: the tar itself, mapped (minirun.layer.leasedmap), in place of a ring: write() then
    takes offsets into it, and room() is never called."""

    def __init__(self, ring_size: int | None = None, source: memoryview | None = None) -> None:
        ring_size = ring_size or RING_SIZE
        self._ring: mmap.mmap | None = None
        if source is None:
            self._ring = mmap.mmap(-1, ring_size)  # MAP_SHARED: the writer sees what is read into it
            self._view = memoryview(self._ring)
        else:
            self._view = source  # mapped before the fork: the writer sees it too
            ring_size = len(source)
        self._counter = mmap.mmap(-1, mmap.PAGESIZE)  # the writer counts the jobs it has done there
        self._done = memoryview(self._counter).cast("Q")
        self._size = ring_size
        jobs_read, self._jobs_fd = os.pipe()
        self._acks_fd, acks_write = os.pipe()
        try:
            fcntl.fcntl(self._jobs_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:  # over /proc/sys/fs/pipe-max-size for an unprivileged user: the default will do
            pass
        import prctl  # here, not in the writer: it imports nothing (~2 ms, so not at the top either)

        applier = os.getpid()
        try:
            self.pid = os.fork()
        except OSError:  # EAGAIN, ENOMEM: the caller creates the files itself
            for fd in (jobs_read, self._jobs_fd, self._acks_fd, acks_write):
                os.close(fd)
            raise
        if self.pid == 0:  # the writer: never returns
            prctl.set_pdeathsig(signal.SIGKILL)  # a SIGKILLed applier takes its writer along
            if os.getppid() != applier:  # it died before that took hold
                os._exit(1)
            os.close(self._jobs_fd)  # else the job pipe would never end
            os.close(self._acks_fd)
            _serve(jobs_read, acks_write, self._view, self._done)
        os.close(jobs_read)
        os.close(acks_write)
        os.set_blocking(self._acks_fd, False)
        self._jobs: list[tuple] = []
        self._queued = 0  # jobs queued so far
        self._acks = b""
        self._produced = 0  # ring bytes lent so far (a position that only grows; offset = position % size)
        self._done_with = 0  # the caller is done with the ring before this position (see room())
        self._freed = 0  # the writer is done with the ring before this position
        self._marked = 0  # the position of the last mark
        self._marks = 0  # marks sent (each carries its number)
        self._passed = 0  # the number of the last mark the writer passed
        self.room_offset = 0  # the ring offset of the last room()
        self._file: list = []  # path, mode and ranges of a file whose job is not yet queued
        self._opened = False  # whether that file's _OPEN job has gone
        self._failure: WriterFailed | None = None
        self._status = 0

    # -- the ring -----------------------------------------------------------------------------
    def room(self, size: int) -> memoryview:
        """Ring space for the next `size` bytes (at most a quarter of the ring), contiguous."""
        self._done_with = self._produced
        size = min(size, self._size // 4)
        start = self._produced
        offset = start % self._size
        if offset + size > self._size:  # contiguous only: skip the ring's tail
            start += self._size - offset
            offset = 0
        needed = start + size - self._size  # the writer must be done with the ring before this
        if self._freed < needed or self._done_with - self._marked >= self._size // 4:
            self._mark()  # a mark now, at the last point the writer can be told of
        while self._freed < needed:
            self._wait()
        self._produced = start
        self.room_offset = offset
        return self._view[offset : offset + size]

    def filled(self, count: int) -> None:
        """The first `count` bytes of the last room() are in use."""
        self._produced += count

    # -- creates ------------------------------------------------------------------------------
    def open(self, path: str, mode: int) -> None:
        """Start a file; write() gives its contents, then close() finishes it."""
        self._file = [path, mode]
        self._opened = False

    def write(self, start: int, end: int) -> None:
        """The open file's next contents: the ring's bytes from offset `start` to `end`."""
        self._file += (start, end)

    def close(self, uid: int, gid: int, chmod: int, xattrs: tuple | None, mtime_ns: int) -> None:
        """Finish the open file: chown (unless uid is NO_CHANGE), chmod, xattrs, times."""
        if self._opened:
            self._send_ranges()
            self._queue((_CLOSE, uid, gid, chmod, xattrs, mtime_ns))
        else:
            path, mode, *ranges = self._file
            self._queue((_FILE, path, mode, tuple(ranges), uid, gid, chmod, xattrs, mtime_ns))
        self._file = []

    def symlink(self, path: str, target: str, uid: int, gid: int, xattrs: tuple | None, mtime_ns: int) -> None:
        self._queue((_SYMLINK, path, target, uid, gid, xattrs, mtime_ns))

    def link(self, target: str, path: str) -> None:
        self._queue((_LINK, target, path))

    def _send_ranges(self) -> None:
        """Queue the open file's ranges so far (as its _OPEN job, or a _WRITE after it)."""
        if not self._file:
            return
        if not self._opened:
            path, mode, *ranges = self._file
            self._queue((_OPEN, path, mode, tuple(ranges)))
            self._opened = True
        elif len(self._file) > 2:
            self._queue((_WRITE, tuple(self._file[2:])))
        del self._file[2:]

    # -- the pipes ----------------------------------------------------------------------------
    def lagging(self) -> bool:
        """Whether the writer has more than enough queued: the applier had better create the next
        file itself, so that both cores stay busy (the writer's share of the work is the larger)."""
        return self._queued - self._done[0] > _LAG

    def _queue(self, job: tuple) -> None:
        self._queued += 1
        self._jobs.append(job)
        if len(self._jobs) >= _BATCH_JOBS:
            self._flush()

    def _flush(self) -> None:
        if self._jobs:
            payload = marshal.dumps(self._jobs)
            self._jobs = []
            data = memoryview(_LENGTH.pack(len(payload)) + payload)
            try:
                while data:
                    data = data[os.write(self._jobs_fd, data) :]
            except BrokenPipeError:  # the writer stopped: its report says why
                while self._read_acks(block=True):
                    pass
                self._raise_failure()
        self._read_acks(block=False)
        if self._failure is not None:  # the writer stopped at it: no use going on
            raise self._failure

    def _mark(self) -> int:
        """Queue a mark at the point the caller is done with; returns its number."""
        self._send_ranges()  # the jobs that read the ring before the mark go before it
        self._marks += 1
        self._marked = self._done_with
        self._queue((_MARK, self._marks, self._marked))
        self._flush()
        return self._marks

    def _wait(self) -> None:
        """Block until the writer passes another mark, or fails."""
        passed = self._passed
        while self._passed == passed:
            if not self._read_acks(block=True):
                self._raise_failure()
        if self._failure is not None:
            raise self._failure

    def _read_acks(self, block: bool) -> bool:
        """Take what the writer sent (marks passed, its error); False at its end (EOF)."""
        if block:
            import select

            select.select([self._acks_fd], [], [])
        try:
            chunk = os.read(self._acks_fd, 1 << 16)
        except BlockingIOError:
            return True
        self._acks += chunk
        while self._acks[:1] == b"A" and len(self._acks) >= 1 + _ACK.size:
            self._passed, self._freed = _ACK.unpack_from(self._acks, 1)
            self._acks = self._acks[1 + _ACK.size :]
        if self._acks[:1] == b"E" and len(self._acks) >= 1 + _LENGTH.size:
            end = 1 + _LENGTH.size + _LENGTH.unpack_from(self._acks, 1)[0]
            if len(self._acks) >= end:  # the writer's last word
                kind, details = marshal.loads(self._acks[1 + _LENGTH.size : end])
                self._failure = WriterFailed(kind, tuple(details))
        return bool(chunk)

    def _raise_failure(self) -> None:
        raise self._failure or WriterFailed("error", ("the file writer ended without a report",))

    # -- the end ------------------------------------------------------------------------------
    def settle(self) -> None:
        """Return once every create queued so far is done (the disk is as decided)."""
        mark = self._mark()
        while self._passed < mark:
            self._wait()

    def finish(self) -> None:
        """Every create done and the writer gone; raises the writer's error, if it had one."""
        self._send_ranges()
        self._flush()
        os.close(self._jobs_fd)
        self._jobs_fd = -1
        try:
            while self._read_acks(block=True):
                pass
        finally:
            self._reap()
        if self._failure is not None:
            raise self._failure
        if self._status != 0:
            raise WriterFailed("error", (f"the file writer ended with status {self._status:#x}",))

    def reported(self) -> WriterFailed | None:
        """After a failure of the applier's own: let the writer finish what was queued before
        it, and return the writer's error, which then came first (None if it had none)."""
        try:
            self._file = []  # a file cut short: not the writer's to finish
            self.finish()
        except WriterFailed as failure:
            return failure
        except OSError:
            pass
        return None

    def stop(self) -> None:
        """Kill the writer if it still runs (the applier failed); always reaps it."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()

    def _reap(self) -> None:
        for fd in (self._jobs_fd, self._acks_fd):
            if fd >= 0:
                os.close(fd)
        self._jobs_fd = self._acks_fd = -1
        if self.pid:
            self._status = os.waitpid(self.pid, 0)[1]
            self.pid = 0
        self._done.release()
        self._counter.close()
        if self._ring is not None:  # (a source is the caller's)
            self._view.release()
            try:
                self._ring.close()
            except BufferError:  # a view of it still held (a traceback's): the collector closes it
                pass


# -- the writer ---------------------------------------------------------------------------------


def _serve(jobs_fd: int, acks_fd: int, ring: memoryview, done: memoryview) -> None:
    """The forked writer's life: do the jobs in order until the pipe closes, then exit."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # ^C: the applier's to handle, and it kills us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The descriptors the applier's process holds stay open here until the last create: the
        # staged layer's liveness lock (no sweep takes the dir while files still land in it), a
        # pipe whose end tells a parent that this process is done (load's layer workers).
        _run(jobs_fd, acks_fd, ring, done)
        status = 0
    except BaseException as exc:  # reported, never raised: this process must not return
        report: tuple
        if isinstance(exc, BadArchive):
            report = ("bad", (exc.message,))
        elif isinstance(exc, OSError):
            report = ("os", (exc.errno, exc.strerror, exc.filename))
        else:
            report = ("error", (f"{type(exc).__name__}: {exc}",))
        try:
            payload = marshal.dumps(report)
            os.write(acks_fd, b"E" + _LENGTH.pack(len(payload)) + payload)
        except BaseException:
            pass
    finally:
        os._exit(status)


def _finish(fd: int, uid: int, gid: int, new_mode: int, xattrs, mtime_ns: int) -> None:
    """A written file's owner, mode, xattrs and time, in that order."""
    if uid != NO_CHANGE:  # chown first: it clears setuid/setgid bits and capabilities
        os.fchown(fd, uid, gid)
    if new_mode != NO_CHANGE:
        os.fchmod(fd, new_mode)
    if xattrs is not None:
        set_xattrs(fd, xattrs[1], True, xattrs[0])
    os.utime(fd, ns=(mtime_ns, mtime_ns))


def _run(jobs_fd: int, acks_fd: int, ring: memoryview, done: memoryview) -> None:
    jobs = os.fdopen(jobs_fd, "rb", buffering=1 << 16)
    write, utime = os.write, os.utime
    current = -1  # the file an _OPEN job left open
    count = 0
    while head := jobs.read(_LENGTH.size):
        payload = jobs.read(_LENGTH.unpack(head)[0])
        for job in marshal.loads(payload):
            done[0] = count  # the jobs before this one (read by lagging())
            count += 1
            kind = job[0]
            if kind == _FILE:
                _, path, mode, ranges, uid, gid, new_mode, xattrs, mtime_ns = job
                fd = os.open(path, _OPEN_FLAGS, mode)
                try:
                    for i in range(0, len(ranges), 2):
                        _write_all(write, fd, ring[ranges[i] : ranges[i + 1]])
                    _finish(fd, uid, gid, new_mode, xattrs, mtime_ns)
                finally:
                    os.close(fd)
            elif kind == _SYMLINK:
                _, path, target, uid, gid, xattrs, mtime_ns = job
                os.symlink(target, path)
                if uid != NO_CHANGE:
                    os.chown(path, uid, gid, follow_symlinks=False)
                if xattrs is not None:
                    set_xattrs(path, xattrs[1], False, xattrs[0])
                utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            elif kind == _LINK:
                os.link(job[1], job[2], follow_symlinks=False)
            elif kind == _OPEN:
                current = os.open(job[1], _OPEN_FLAGS, job[2])
                for i in range(0, len(job[3]), 2):
                    _write_all(write, current, ring[job[3][i] : job[3][i + 1]])
            elif kind == _WRITE:
                for i in range(0, len(job[1]), 2):
                    _write_all(write, current, ring[job[1][i] : job[1][i + 1]])
            elif kind == _CLOSE:
                _, uid, gid, new_mode, xattrs, mtime_ns = job
                try:
                    _finish(current, uid, gid, new_mode, xattrs, mtime_ns)
                finally:
                    os.close(current)
                    current = -1
            elif kind == _MARK:
                os.write(acks_fd, b"A" + _ACK.pack(job[1], job[2]))
            else:
                raise ValueError(f"unknown job {kind!r}")


def _write_all(write, fd: int, data: memoryview) -> None:
    while data:
        data = data[write(fd, data) :]


def set_xattrs(target: str | int, xattrs: dict[str, bytes], follow: bool, member: str) -> None:
    """Set a member's xattrs, as docker does: a namespace this filesystem lacks (EOPNOTSUPP) and
    user.* on a symlink (EPERM: Linux forbids it) are skipped; any other refusal is an error."""
    for name, value in xattrs.items():
        try:
            os.setxattr(target, name, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EPERM):
                raise BadArchive(f"cannot set xattr {name} on {member!r}: {exc.strerror}") from exc
