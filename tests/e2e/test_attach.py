"""`create`, `start -a -i`, `attach` and `run -dit` / `run -it` for real: a detached container with
a terminal or open stdin, reached through its monitor's socket; the CLI on a pty of the test's."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import PTY_TIMEOUT, PtyCli, set_pty_size

TIMEOUT = PTY_TIMEOUT
CTRL_P, CTRL_Q = b"\x10", b"\x11"


class Terminal(PtyCli):
    """One CLI command on a pty, started at once; `read_until` consumes what it returns."""

    def __init__(self, store, args: tuple[str, ...], rows: int = 24, cols: int = 80) -> None:
        super().__init__(store, rows, cols)
        self.spawn(*args)

    def read_until(self, needle: bytes, timeout: float = TIMEOUT) -> bytes:
        """The output up to and including the first `needle` not read before; what follows stays.
        b"" if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                assert timeout < TIMEOUT, f"no {needle!r} in {self.output!r}"
                return b""
            self.read_for(left)
        head, _, self.output = self.output.partition(needle)
        return head + needle


@pytest.fixture
def terminal(isolated_store):
    opened: list[Terminal] = []

    def make(*args: str, rows: int = 24, cols: int = 80) -> Terminal:
        opened.append(Terminal(isolated_store, args, rows, cols))
        return opened[-1]

    yield make
    for term in opened:
        term.close()


def _status(cli, name: str) -> str:
    return cli("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").out.strip()


def _ask(term: Terminal, command: bytes, answer: bytes, tries: int = 50) -> None:
    """Type `command` to the container's shell until it prints `answer` (a resize reaches the
    container's terminal a moment after the test makes it)."""
    for _ in range(tries):
        term.type(command + b"; echo =done\r")
        if answer in term.read_until(b"\r\n=done\r\n"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{command!r} never answered {answer!r}")


_AS_NOBODY = """
import os, socket, sys
fd = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)  # opened as root; the socket is what is tried
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(f"/proc/self/fd/{fd}/attach.sock")
except OSError as exc:
    sys.exit(f"connect: {exc.strerror}")
s.settimeout(10)
sys.exit(f"served: {s.recv(100)!r}")
"""


def _only_root_attaches(container_dir) -> None:
    """A user who is not root reaches no container's terminal: the socket file is root's 0600,
    and were its mode loosened, the monitor turns a peer that is not root away (at once, EOF)."""

    def as_nobody() -> str:
        return subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(container_dir)], capture_output=True, text=True, timeout=30
        ).stderr

    assert as_nobody() == "connect: Permission denied\n"
    socket_file = container_dir / "attach.sock"
    assert socket_file.stat().st_mode & 0o777 == 0o600
    socket_file.chmod(0o666)
    try:
        assert as_nobody() == "served: b''\n"
    finally:
        socket_file.chmod(0o600)


def test_run_dit_attach_type_resize_detach_exec_and_exit(cli, terminal, busybox, isolated_store):
    run = cli("run", "-dit", "--name", "box", "--network", "none", "busybox", "sh")
    assert run.code == 0 and len(run.out.strip()) == 64, run.err
    # a terminal's input comes from a terminal: raw mode and the detach keys need one (docker's check)
    refused = cli("attach", "box", input=b"")
    assert (refused.code, refused.err) == (125, "minirun: error: the input device is not a TTY\n")
    # exec -t reaches it: a terminal of its own beside PID 1's, in the container's devpts
    beside = cli("exec", "-t", "box", "sh", "-c", "tty; ls /dev/pts | tr '\\n' ' '", input=b"")
    assert (beside.code, beside.out) == (0, "/dev/pts/1\r\n0 1 ptmx ")

    term = terminal("attach", "box", rows=30, cols=90)
    _ask(term, b"stty size; echo $((6 * 7))", b"\r\n30 90\r\n42\r\n")
    assert term.raw()
    set_pty_size(term.master, 40, 120)  # the attach client's SIGWINCH, passed on to the container's pty
    _ask(term, b"stty size", b"\r\n40 120\r\n")
    # a second client at once, output only: it sees what the first one's typing makes
    watcher = terminal("attach", "--no-stdin", "box", rows=40, cols=120)
    for _ in range(100):
        term.type(b"echo ping\r")
        if watcher.read_until(b"\nping\r", timeout=0.2):  # (its terminal is cooked: \r\r\n)
            break
    else:
        raise AssertionError(f"the second client saw nothing: {watcher.output!r}")
    assert not watcher.raw()  # no stdin attached: its terminal stays as it was
    _only_root_attaches(isolated_store / "containers" / run.out.strip())
    term.type(CTRL_P + CTRL_Q)
    assert term.wait() == 0
    assert b"read escape sequence" in term.output
    assert term.restored()
    assert _status(cli, "box").startswith("Up ")  # detached, not stopped
    assert "42\r\n" in cli("logs", "box").out  # the log got what the terminal showed

    again = terminal("attach", "box")
    _ask(again, b"echo back", b"\r\nback\r\n")
    again.type(b"exit 5\r")
    assert again.wait() == 5  # the container's exit code is attach's
    assert watcher.wait() == 5
    assert again.restored() and watcher.restored()
    assert _status(cli, "box").startswith("Exited (5) ")


def test_create_then_start_a_and_start_ai(cli, busybox):
    created = cli(
        "create", "--name", "job", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert created.code == 0 and len(created.out.strip()) == 64, created.err
    assert _status(cli, "job") == "Created"
    stopped = cli("attach", "job")
    assert (stopped.code, stopped.err) == (
        125,
        "minirun: error: You cannot attach to a stopped container, start it first\n",
    )
    started = cli("start", "-a", "job")
    assert (started.code, started.out, started.err) == (3, "out\n", "err\n")

    # -i: stdin kept open; `start -ai` feeds it, and its EOF is the container's (docker's StdinOnce)
    assert (
        cli("create", "-i", "--name", "fed", "--network", "none", "busybox", "sh", "-c", "cat; echo end; exit 4").code
        == 0
    )
    fed = cli("start", "-ai", "fed", input=b"one\ntwo\n")
    assert (fed.code, fed.out, fed.err) == (4, "one\ntwo\nend\n", "")


def test_run_it_detaches_with_custom_keys(cli, terminal, busybox):
    term = terminal("run", "-it", "--name", "it", "--network", "none", "--detach-keys", "ctrl-a,x", "busybox", "sh")
    _ask(term, b"echo $((6 * 7))", b"\r\n42\r\n")
    term.type(b"\x01x")
    assert term.wait() == 0
    assert term.restored()
    assert _status(cli, "it").startswith("Up ")
    # and `attach --sig-proxy=false` ends with the container's exit code
    back = terminal("attach", "--sig-proxy=false", "it")
    _ask(back, b"echo back", b"\r\nback\r\n")
    back.type(b"exit 6\r")
    assert back.wait() == 6


def test_bad_detach_keys(cli):
    result = cli("attach", "--detach-keys", "ctrl-1", "nothing")
    assert (result.code, result.err) == (125, "minirun: error: invalid detach keys (ctrl-1): unknown key 'ctrl-1'\n")
