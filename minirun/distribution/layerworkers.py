"""Unpacking an image archive's layers in parallel worker processes, each layer checked against
what the archive promises (its blob digest, its config's diff_id) before it counts.

Layers are unpacked by worker processes (fork), one per core, each taking the next layer as it
finishes one, straight from its bytes inside the archive (pread, or mapped). Threads were measured
first (scripts/bench_load.py, 10 layers x 2,000 files, 2 cores): the per-member Python work of the
applier holds the GIL, so two threads gained little over one (1.3-1.6 s vs 1.8 s) where two
processes take 1.1 s. The parent stages every
layer (its temp dir and the flock that keeps a sweep away stay the parent's), a worker fills one and
sends back what it applied; on any failure the parent kills the workers and discards every staged
layer. minirun.distribution.imageload reads the archive and plans the layers (the types in
archive_index); this module only unpacks.

A worker creates a layer's files itself while every core has a worker (a forked file writer,
minirun.layer.filewriter, would only add forks, pipes and handovers to busy cores); it forks one
only where cores go spare (`_writers_help`). A worker is stopped with SIGTERM, which unwinds it
and stops its writer; the writer holds the worker's end of the pipe too, so that pipe's end means
nothing of the worker writes any more.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from minirun.errors import BadArchive, MinirunError
from minirun.layer.compression import is_compressed_at

if TYPE_CHECKING:
    from minirun.distribution.archive_index import Archive, ImagePlan, LayerPlan, Progress
    from minirun.store import Store
    from minirun.store.layers import StagedLayer

# Unpacking is mostly kernel time (creating files) plus a hashing thread per layer: one layer per
# core keeps the cores busy; more only contend (scripts/bench_load.py, 2 cores: 3 were slower).
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
_PROGRESS_EVERY = 1 << 20  # bytes a child unpacks between two progress reports to the parent


class _Section(io.RawIOBase):
    """`size` bytes of a file from `offset`, read by pread."""

    def __init__(self, fd: int, offset: int, size: int, progress: Callable[[int], None]) -> None:
        self._fd, self._at, self._left = fd, offset, size
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
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


def _apply_member(
    store: Store,
    staged: StagedLayer,
    archive: Archive,
    plan: LayerPlan,
    advanced: Callable[[int], None],
    fork_writer: bool = True,
) -> str:
    """Unpack the layer into `staged`; returns the digest of its bytes as the archive has them.
    `fork_writer`: whether a file writer may be forked for it (see apply_layer)."""
    from minirun.layer.archive import HashingReader

    member = plan.member
    fd = archive.reopen()
    try:
        if is_compressed_at(fd, member.offset):
            # The compressed bytes have a digest of their own: hash them as they stream by.
            reader = HashingReader(_Section(fd, member.offset, member.size, advanced))  # type: ignore[arg-type]
            store.layers.unpack(staged, reader, fork_writer=fork_writer)  # type: ignore[arg-type]
            reader.drain()  # bytes past the compressed stream's end count for the digest too
            return "sha256:" + reader.hasher.hexdigest()
        # An uncompressed member is unpacked in place (pread + copy_file_range): its blob digest
        # is the diff_id the unpacking computes.
        with open(fd, "rb", closefd=False) as f:
            f.seek(member.offset)
            applied = store.layers.unpack(staged, f, length=member.size, fork_writer=fork_writer)
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


class _Worker:
    """A forked process that unpacks the layers it is sent, one at a time, and reports on a pipe:
    progress, then a result, for each. One per core for the whole load: a fork's copy-on-write
    faults (~2,700 pages of the parent's heap, ~10 ms of CPU) are paid per worker, not per layer.
    The parent sends a layer's index in `queue` (the worker has the plans and staged layers of
    the fork, and `writers`: whether to fork a file writer for each); closing the command pipe
    ends the worker."""

    _HEADER = struct.Struct("!cI")
    _INDEX = struct.Struct("!I")
    pid: int
    fd: int  # what the worker reports
    command: int  # the layers it is sent; -1 once closed

    def __init__(
        self,
        store: Store,
        archive: Archive,
        queue: list[tuple[LayerPlan, StagedLayer]],
        writers: list[bool],
        others: list[_Worker],
    ) -> None:
        self.queue, self.writers = queue, writers
        self.index: int | None = None  # the layer being unpacked
        self.buffer = b""
        self.result: tuple[str, object] | None = None
        read_fd, write_fd = os.pipe()
        command_r, command_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            os.close(command_w)
            for other in others:  # holding another's command pipe open would keep it from its end
                os.close(other.fd)
                os.close(other.command)
            self._serve(store, archive, command_r, write_fd)
        os.close(write_fd)
        os.close(command_r)
        self.pid, self.fd, self.command = pid, read_fd, command_w

    @property
    def plan(self) -> LayerPlan:
        assert self.index is not None
        return self.queue[self.index][0]

    def send(self, index: int) -> bool:
        """Hand it layer `index`; False if it has ended (its EOF is on the way)."""
        try:
            os.write(self.command, self._INDEX.pack(index))
        except BrokenPipeError:
            self.done_sending()
            return False
        self.index, self.result = index, None
        return True

    def done_sending(self) -> None:
        if self.command >= 0:
            os.close(self.command)
            self.command = -1

    def _serve(self, store: Store, archive: Archive, commands: int, out: int) -> None:
        import signal

        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent handles ^C and stops us
            signal.signal(signal.SIGTERM, _stopped)  # how it stops us: unwinding stops our file writer
            while True:
                data = _read_exactly(commands, self._INDEX.size)
                if not data:
                    break
                if not self._unpack(store, archive, self._INDEX.unpack(data)[0], out):
                    break
            status = 0
        finally:
            os._exit(status)

    def _unpack(self, store: Store, archive: Archive, index: int, out: int) -> bool:
        """One layer; False if it failed (reported: the parent stops the load)."""
        import pickle

        plan, staged = self.queue[index]
        try:
            pending = [0]

            def advanced(n: int) -> None:
                pending[0] += n
                if pending[0] >= _PROGRESS_EVERY:
                    self._send(out, b"P", str(pending[0]).encode())
                    pending[0] = 0

            digest = _apply_member(store, staged, archive, plan, advanced, self.writers[index])
            if pending[0]:
                self._send(out, b"P", str(pending[0]).encode())
            self._send(out, b"R", pickle.dumps((staged.applied, digest)))
            return True
        except BaseException as exc:
            if isinstance(exc, SystemExit):  # stopped: the parent is not listening
                raise
            try:  # plain values: an exception class need not survive pickling
                error: tuple
                if isinstance(exc, MinirunError):
                    error = ("bad" if isinstance(exc, BadArchive) else "error", exc.message, exc.exit_code)
                elif isinstance(exc, OSError):
                    error = ("os", exc.errno, exc.strerror, exc.filename)
                else:
                    error = ("error", f"internal error: {type(exc).__name__}: {exc}", None)
                self._send(out, b"E", pickle.dumps(error))
            except BaseException:
                pass
            return False

    def _send(self, out: int, tag: bytes, payload: bytes) -> None:
        data = self._HEADER.pack(tag, len(payload)) + payload
        while data:
            data = data[os.write(out, data) :]

    def read(self, progress: Progress) -> bool:
        """Take what the worker wrote; False at its end (EOF)."""
        chunk = os.read(self.fd, 1 << 16)
        self.buffer += chunk
        while len(self.buffer) >= self._HEADER.size:
            tag, size = self._HEADER.unpack_from(self.buffer)
            end = self._HEADER.size + size
            if len(self.buffer) < end:
                break
            payload, self.buffer = self.buffer[self._HEADER.size : end], self.buffer[end:]
            if tag == b"P":
                progress.layer_advanced(self.plan.diff_id, int(payload))
            else:
                import pickle

                self.result = (tag.decode(), pickle.loads(payload))
        return bool(chunk)

    def take_result(self) -> bool:
        """Check the layer the worker reported (raising what it reported); False if it has not yet."""
        if self.result is None:
            return False
        kind, value = self.result
        if kind == "E":
            raise _error(value)  # type: ignore[arg-type]
        staged = self.queue[self.index][1]  # type: ignore[index]
        sent: tuple = value  # type: ignore[assignment]  # what _unpack sent: (AppliedLayer, digest)
        staged.applied, digest = sent
        _check(self.plan, staged, digest)
        self.index, self.result = None, None
        return True

    def finish(self) -> None:
        """Reap the worker, which has ended (EOF); a layer it had not reported is an error."""
        os.close(self.fd)
        self.done_sending()
        _, status = os.waitpid(self.pid, 0)
        if self.index is not None and not self.take_result():
            raise MinirunError(f"{self.plan.what}: unpacking ended without a result (status {status})")

    def kill(self) -> None:
        """Stop the worker, and return once nothing of it writes any more: its file writer holds
        the pipe too (minirun.layer.filewriter), so its end means both have gone."""
        import signal

        self.done_sending()
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        while os.read(self.fd, 1 << 16):
            pass
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def _error(reported: tuple) -> BaseException:
    if reported[0] == "os":
        return OSError(*reported[1:])
    kind, message, exit_code = reported
    return BadArchive(message) if kind == "bad" else MinirunError(message, exit_code)


def _stage(store: Store) -> StagedLayer:
    with store.locked():
        return store.layers.stage()


def unpack_layers(
    store: Store, archive: Archive, plans: list[ImagePlan], progress: Progress, workers: int = DEFAULT_WORKERS
) -> dict[str, StagedLayer]:
    """Stage every layer the store lacks, several at once; all or none (on failure every staged
    layer is discarded)."""
    todo: dict[str, LayerPlan] = {}
    stored: set[str] = set()
    for image in plans:
        for layer in image.layers:
            if layer.diff_id in todo:
                continue
            todo[layer.diff_id] = layer
            progress.layer_started(layer.diff_id, layer.member.size)  # rows in layer order
            if store.layers.exists(layer.diff_id):
                stored.add(layer.diff_id)
                progress.layer_finished(layer.diff_id, "Already exists")
    # Largest first: the last layers to start are then the short ones, and the workers end together.
    queue = sorted(
        (layer for key, layer in todo.items() if key not in stored), key=lambda layer: layer.member.size, reverse=True
    )
    staged: dict[str, StagedLayer] = {}
    try:
        if workers <= 1 or len(queue) <= 1:
            for plan in queue:  # no process to fork for
                staged[plan.diff_id] = unpacked = _stage(store)
                advanced = functools.partial(progress.layer_advanced, plan.diff_id)
                digest = _apply_member(store, unpacked, archive, plan, advanced)
                _check(plan, unpacked, digest)
                progress.layer_finished(plan.diff_id, "Loaded")
        else:
            _unpack_in_children(store, archive, queue, staged, progress, workers)
    except BaseException:
        for unpacked in staged.values():
            store.layers.discard(unpacked)
        raise
    return staged


def _unpack_in_children(
    store: Store,
    archive: Archive,
    queue: list[LayerPlan],
    staged: dict[str, StagedLayer],
    progress: Progress,
    workers: int,
) -> None:
    import select

    _preload()
    for plan in queue:  # all staged before the workers fork: they inherit the list
        staged[plan.diff_id] = _stage(store)
    jobs = [(plan, staged[plan.diff_id]) for plan in queue]
    writers = _writers_help([plan.member.size for plan in queue], workers)
    next_job = 0
    running: dict[int, _Worker] = {}
    try:
        for _ in range(min(workers, len(jobs))):
            worker = _Worker(store, archive, jobs, writers, list(running.values()))
            running[worker.fd] = worker
            next_job += worker.send(next_job)
        while running:
            for fd in select.select(list(running), [], [])[0]:
                worker = running[fd]
                alive = worker.read(progress)
                if worker.index is not None:
                    diff_id = worker.plan.diff_id
                    if worker.take_result():
                        progress.layer_finished(diff_id, "Loaded")
                        if next_job < len(jobs):
                            next_job += worker.send(next_job)
                        else:
                            worker.done_sending()
                if not alive:
                    del running[fd]
                    worker.finish()
        if next_job < len(jobs):  # every worker ended, killed between two layers: none is left to send to
            raise MinirunError(f"{jobs[next_job][0].what}: the workers ended before unpacking it")
    except BaseException:
        for worker in running.values():
            worker.kill()
        raise


def _writers_help(sizes: list[int], workers: int) -> list[bool]:
    """For each layer of the queue (`sizes`: its bytes, largest first), whether its worker forks a
    file writer: only where a core would go spare. That is every layer when there are fewer than
    workers; else a layer taken after the first round when fewer are left than workers, and the
    first one when it outweighs the rest per other worker (it would run on alone at the end).
    Elsewhere every core has a worker already."""
    count = len(sizes)
    dominant = count > 0 and workers > 1 and sizes[0] * (workers - 1) > sum(sizes[1:])
    return [count < workers or (workers <= i and count - i < workers) or (i == 0 and dominant) for i in range(count)]


def _preload() -> None:
    """Import in the parent what children import lazily: each would otherwise pay for it."""
    import gzip  # noqa: F401
    import pickle  # noqa: F401
    import tarfile  # noqa: F401

    import zstandard  # noqa: F401

    import minirun.layer.archive  # noqa: F401
    import minirun.layer.tarsplit  # noqa: F401
