"""The Engine API with a terminal: the docker CLI run under a pty of a known size, as a user's
shell runs it (`docker run -it`, `docker exec -it`). The size reaches the container's terminal
through the API's resize calls, which the CLI makes after the start; the container polls for it
(the CLI's first resize follows the start, as against dockerd before API 1.42's ConsoleSize)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import time

from tests.e2e.engineapi import DOCKER, service  # noqa: F401 (the fixture)

ROWS, COLS = 33, 101
NEW_ROWS, NEW_COLS = 41, 120


def wait_for_size(rows: int, cols: int) -> str:
    """Shell: the size the container's terminal has once it is rows x cols (at most ~10 s), else
    the last one seen, printed as size=..."""
    return (
        f'for i in $(seq 100); do s=$(stty size); [ "$s" = "{rows} {cols}" ] && break; sleep 0.1; done; echo "size=$s"'
    )


def docker_on_a_pty(
    service,  # noqa: F811
    *args: str,
    resize_after: str = "",
    type_after: tuple[str, str] = ("", ""),
    timeout: float = 60,
) -> tuple[int, str]:
    """The docker CLI with a pty of ROWS x COLS as its stdin, stdout and stderr: exit code, output.
    Once the output shows `resize_after`, the terminal becomes NEW_ROWS x NEW_COLS and the CLI gets
    the SIGWINCH a user's terminal would send it; once it shows type_after[0], type_after[1] is typed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    process = subprocess.Popen(
        [str(DOCKER), *args], stdin=slave, stdout=slave, stderr=slave, env=service.env, start_new_session=True
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the CLI and every child of it closed the pty
                    break
                if not data:
                    break
                output += data
                if resize_after and resize_after.encode() in output:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", NEW_ROWS, NEW_COLS, 0, 0))
                    process.send_signal(signal.SIGWINCH)
                    resize_after = ""
                if type_after[0] and type_after[0].encode() in output:
                    os.write(master, type_after[1].encode())
                    type_after = ("", "")
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, output.decode(errors="replace")


def test_docker_run_it_gives_the_container_the_terminals_size(service):  # noqa: F811
    code, output = docker_on_a_pty(service, "run", "--rm", "-it", "busybox", "sh", "-c", wait_for_size(ROWS, COLS))
    assert code == 0, output
    assert f"size={ROWS} {COLS}" in output, output


def test_docker_exec_it_follows_the_terminals_size(service):  # noqa: F811
    """The first size, then a window resized while the command runs (the CLI's SIGWINCH: a resize
    call, passed on to `minirun exec -t` and from it to the container's terminal)."""
    started = service.docker("run", "-d", "--name", "box", "busybox", "sleep", "300")
    assert started.returncode == 0, started.stderr
    script = wait_for_size(ROWS, COLS) + "; " + wait_for_size(NEW_ROWS, NEW_COLS)
    code, output = docker_on_a_pty(
        service, "exec", "-it", "box", "sh", "-c", script, resize_after=f"size={ROWS} {COLS}"
    )
    assert code == 0, output
    assert f"size={ROWS} {COLS}" in output and f"size={NEW_ROWS} {NEW_COLS}" in output, output


def test_a_running_containers_terminal_follows_the_window(service):  # noqa: F811
    """docker run -it, then the window resized while it runs: the resize reaches its monitor."""
    script = wait_for_size(ROWS, COLS) + "; " + wait_for_size(NEW_ROWS, NEW_COLS)
    code, output = docker_on_a_pty(
        service, "run", "--rm", "-it", "busybox", "sh", "-c", script, resize_after=f"size={ROWS} {COLS}"
    )
    assert code == 0, output
    assert f"size={NEW_ROWS} {NEW_COLS}" in output, output


def test_the_detach_keys_end_an_api_attach_and_leave_the_container_running(service):  # noqa: F811
    """dockerd's escape proxy, server side (the docker CLI also watches the keys itself, so this
    speaks the API): the keys typed end the hijacked attach; the container goes on."""
    started = service.docker("run", "-dit", "--name", "kept", "busybox", "cat")
    assert started.returncode == 0, started.stderr
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(service.path)
    try:
        sock.sendall(
            b"POST /v1.41/containers/kept/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,ctrl-y HTTP/1.1\r\n"
            b"Host: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(b"echoed\r")  # cat, on the container's terminal, says it back
        seen = head.partition(b"\r\n\r\n")[2]
        while b"echoed" not in seen:
            seen += sock.recv(4096)
        sock.sendall(b"\x18\x19")
        while chunk := sock.recv(4096):  # the service ends the attach: EOF
            seen += chunk
    finally:
        sock.close()
    running = service.docker("inspect", "-f", "{{.State.Running}}", "kept")
    assert running.stdout.strip() == "true", running.stderr
