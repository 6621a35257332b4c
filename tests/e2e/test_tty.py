"""`minirun run -t` / `-it` for real: the CLI runs on a pty of the test's, as in a terminal."""

from __future__ import annotations

import os
import signal
import termios
import time

import pytest

from tests.helpers import PTY_TIMEOUT, PtyCli, set_pty_size

TIMEOUT = PTY_TIMEOUT


class Terminal(PtyCli):
    """`minirun run ARGS` on a pty; `read_until` keeps everything read in `output`."""

    def start(self, *args: str) -> Terminal:
        self.spawn("run", *args)
        return self

    def read_until(self, needle: bytes) -> bytes:
        deadline = time.monotonic() + TIMEOUT
        while needle not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} in {self.output!r}"
            self.read_for(left)
        return self.output


@pytest.fixture
def terminal(isolated_store):
    opened = []

    def make(rows: int = 24, cols: int = 80) -> Terminal:
        opened.append(Terminal(isolated_store, rows, cols))
        return opened[-1]

    yield make
    for term in opened:
        term.close()


def test_the_pty_is_the_containers_own(terminal, busybox):
    script = (
        "tty; test -t 0 && test -t 1 && test -t 2 && echo all-terminals; stty size; echo TERM=$TERM;"
        "[ /dev/console -ef /dev/pts/0 ] && echo console-is-the-pty; ls /dev/pts | tr '\\n' ' '; echo;"
        "echo to-stderr >&2; exit 7"
    )
    term = terminal(rows=33, cols=101).start("--rm", "-t", "busybox", "sh", "-c", script)
    assert term.wait() == 7
    assert term.text().splitlines() == [
        "/dev/pts/0",
        "all-terminals",
        "33 101",
        "TERM=xterm",
        "console-is-the-pty",
        "0 ptmx ",  # none of the host's ptys
        "to-stderr",  # docker merges stderr into the pty
    ]
    assert termios.tcgetattr(term.slave) == term.mode_before  # -t alone leaves the terminal as it is


def test_tty_alone(terminal, busybox):
    term = terminal().start("--rm", "-t", "busybox", "tty")
    assert term.wait() == 0
    assert term.output == b"/dev/pts/0\r\r\n"  # the container's pty's \r\n, the outer pty's ONLCR


def test_term_from_the_image_or_e_wins(cli, busybox):
    assert (
        cli("run", "--rm", "-t", "-e", "TERM=vt100", "busybox", "sh", "-c", "echo $TERM", input=b"").out == "vt100\r\n"
    )


def test_interactive_cat_echoes_and_ends_on_ctrl_d(terminal, busybox):
    term = terminal().start("--rm", "-it", "busybox", "sh", "-c", "echo ready; exec cat")
    term.read_until(b"ready\r\n")
    assert termios.tcgetattr(term.slave)[3] & termios.ICANON == 0  # raw while attached
    term.type(b"hello\r")
    # the container's pty echoes (the outer one is raw), then cat writes the line back
    assert term.read_until(b"hello\r\nhello\r\n").endswith(b"ready\r\nhello\r\nhello\r\n")
    term.type(b"\x04")
    assert term.wait() == 0
    assert termios.tcgetattr(term.slave) == term.mode_before


def test_interactive_shell_exit_code(terminal, busybox):
    term = terminal().start("--rm", "-it", "busybox", "sh")
    term.read_until(b"# ")
    term.type(b"echo $((6 * 7)); exit 3\r")
    assert term.wait() == 3
    assert b"\r\n42\r\n" in term.output
    assert termios.tcgetattr(term.slave) == term.mode_before


def test_ctrl_c_is_a_byte_through_the_pty(terminal, busybox):
    # raw mode: the container's own line discipline turns ^C into its SIGINT
    script = "trap 'echo got-int; exit 5' INT; echo ready; while true; do sleep 0.05; done"
    term = terminal().start("--rm", "-it", "busybox", "sh", "-c", script)
    term.read_until(b"ready\r\n")
    term.type(b"\x03")
    assert term.wait() == 5
    assert b"got-int" in term.output
    assert termios.tcgetattr(term.slave) == term.mode_before


def test_signals_are_forwarded_and_the_terminal_restored(terminal, busybox):
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done"
    term = terminal().start("--rm", "-it", "busybox", "sh", "-c", script)
    term.read_until(b"ready\r\n")
    term.proc.send_signal(signal.SIGTERM)
    assert term.wait() == 42
    assert b"got-term" in term.output
    assert termios.tcgetattr(term.slave) == term.mode_before


def test_window_changes_reach_the_container(terminal, busybox):
    script = "trap 'stty size; exit 0' WINCH; echo ready; while true; do sleep 0.05; done"
    term = terminal(rows=33, cols=101).start("--rm", "-t", "busybox", "sh", "-c", script)
    term.read_until(b"ready")
    set_pty_size(term.master, 40, 120)  # the kernel sends the CLI SIGWINCH; it resizes the container's pty
    assert term.wait() == 0
    assert term.text().splitlines() == ["ready", "40 120"]


def test_t_without_a_terminal(cli, busybox):
    result = cli("run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty size; exit 7", input=b"ignored\n")
    assert (result.code, result.out, result.err) == (7, "/dev/pts/0\r\n24 80\r\n", "")


def test_it_without_a_terminal_is_refused(cli, busybox, isolated_store):
    result = cli("run", "--rm", "-it", "busybox", "true", input=b"")
    assert (result.code, result.err) == (125, "minirun: error: the input device is not a TTY\n")
    assert not (isolated_store / "containers").exists() or os.listdir(isolated_store / "containers") == []


def test_failures_with_t_keep_their_codes(cli, busybox):
    result = cli("run", "--rm", "-t", "busybox", "nosuchcommand", input=b"")
    assert result.code == 127
    assert result.err == 'minirun: error: exec: "nosuchcommand": executable file not found in $PATH\n'


def test_the_user_owns_its_terminal(cli, busybox):
    result = cli("run", "--rm", "-t", "-u", "nobody", "busybox", "stat", "-c", "%U %a", "/dev/pts/0", input=b"")
    assert result.out == "nobody 620\r\n"


def test_containers_without_t_are_unchanged(cli, busybox):
    result = cli("run", "--rm", "busybox", "sh", "-c", "test -t 1 || echo no-tty; echo ${TERM:-unset}")
    assert result.out == "no-tty\nunset\n"
