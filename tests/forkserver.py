"""The tests' CLI calls, forked from a process that has already imported typer and the standard
library's heavy modules, instead of a new interpreter each time: the suite makes ~2,000 CLI calls,
and a fresh start is ~20 ms of Python plus up to ~80 ms of imports each, most of the suite's CPU.

Each call is still the CLI as a user runs it: its own process, `minirun.cli.main.main()` with the
call's argv, environment, working directory and stdio, its exit status taken by waitpid. What the
fork saves is only the work every start repeats. minirun's own modules are imported fresh by each
call (some read the environment at import: hostwide.py, embedded.py), never preloaded here.
Start time and imports are measured by real starts elsewhere (tests/e2e/test_hot_verbs.py,
test_one_cli.py, scripts/); MINIRUN_TEST_FORKSERVER=0 makes tests/conftest.py's `cli` start
interpreters again.

The server (`python tests/forkserver.py SOCKET`) forks a waiter per request, which forks the CLI
and reports its pid, then its exit code (as subprocess: -N for signal N); stdio come as fds."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

# what the CLI's verbs import that costs most (typer alone is ~70 ms); nothing of minirun's
PRELOAD = ("typer", "typer.main", "argparse", "json", "subprocess", "dataclasses", "inspect", "tarfile", "hashlib")
MAIN_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minirun", "__main__.py")
_INT = struct.Struct("i")
SERVER: ForkServer | None = None  # this test process's (tests/conftest.py), None: no server


def serve(path: str) -> None:
    # the minirun beside these tests, not one installed in the venv (a worktree's tests would
    # otherwise run another checkout's CLI): `python tests/forkserver.py` puts only tests/ first
    sys.path.insert(0, os.path.dirname(os.path.dirname(MAIN_FILE)))
    for name in PRELOAD:
        __import__(name)
    assert not [m for m in sys.modules if m.startswith("minirun")], "the server must not import minirun"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the waiter waits for its CLI
            _wait_for_one(conn)
        conn.close()


def _wait_for_one(conn: socket.socket) -> None:
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _become_the_cli(request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(_INT.pack(pid))
        _, status = os.waitpid(pid, 0)
        conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))
    finally:
        os._exit(0)


def _become_the_cli(request: dict, fds: list[int]) -> None:
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [MAIN_FILE, *request["argv"]]
        if "random" in sys.modules:  # a fork shares its parent's generator state
            sys.modules["random"].seed()
        from minirun.cli.main import main

        main()  # ends with os._exit
    finally:
        os._exit(120)


def run_minirun(argv: list[str], env: dict[str, str], input: bytes | None = None, timeout: float = 300):
    """(exit code, stdout, stderr) of `minirun ARGV`: through this test process's server
    (SERVER, which tests/conftest.py starts), or a new interpreter when there is none."""
    if SERVER is not None:
        return SERVER.run(argv, env, input, timeout)
    done = subprocess.run(
        [sys.executable, "-m", "minirun", *argv], input=input, capture_output=True, env=env, timeout=timeout
    )
    return done.returncode, done.stdout, done.stderr


class ForkServer:
    """The client: one server per test process, started at the session's start."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != "ready\n":
            raise RuntimeError("the CLI fork server did not start")

    def run(
        self, argv: list[str], env: dict[str, str], input: bytes | None, timeout: float
    ) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of `minirun ARGV`, as subprocess.run would give them."""
        # stdin a pipe, as subprocess.run's input= gives it (a verb may not seek it); the output in
        # memory files read once the CLI is gone, so nothing it leaves running can hold the call up
        writer = None
        if input is None:
            stdin = os.open(os.devnull, os.O_RDONLY)
        else:
            stdin, feed = os.pipe()
            writer = threading.Thread(target=_feed, args=(feed, input), daemon=True)
            writer.start()
        out, err = _memfd("stdout"), _memfd("stderr")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self.path)
                request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd()}).encode()
                socket.send_fds(conn, [request], [stdin, out, err])
                deadline = time.monotonic() + timeout
                conn.settimeout(timeout)
                pid = _read_int(conn)
                conn.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    code = _read_int(conn)
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(["minirun", *argv], timeout) from None
            return code, _contents(out), _contents(err)
        finally:
            for fd in (stdin, out, err):
                os.close(fd)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _memfd(name: str) -> int:
    return os.memfd_create(name)


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:  # the verb did not read it all, as with subprocess.run
        pass
    finally:
        os.close(fd)


def _contents(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def _read_int(conn: socket.socket) -> int:
    data = b""
    while len(data) < _INT.size:
        chunk = conn.recv(_INT.size - len(data))
        if not chunk:
            raise RuntimeError("the CLI fork server's waiter went away")
        data += chunk
    return _INT.unpack(data)[0]


if __name__ == "__main__":
    serve(sys.argv[1])
