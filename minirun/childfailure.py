"""How a forked child (or a helper process) tells the process that started it why it failed: one
report on a pipe, `<exit code>[:<kind>]\\n<message>`, and no report at all when it succeeded. The
kind is the error's class in minirun.errors (NotFound, Forbidden...), so that the parent raises
what the child raised; a report without one (an older process's) reads as a MinirunError. A child that
execs leaves EOF behind (the pipe is O_CLOEXEC), so its parent reads until EOF: nothing read means
the exec happened.

Used by PID 1 (launch), exec's child (execin), the private-mount child (privatemounts) and a
detached container's monitor answering the CLI (monitor, detach). Lean: os and errors only.
"""

from __future__ import annotations

import os

from minirun.errors import EXIT_RUNTIME, MinirunError, error_kind, rebuild_error

TYPE_CHECKING = False  # collections.abc and typing stay off the start path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def encode_report(code: int, message: str, kind: str = "MinirunError") -> bytes:
    return f"{code}:{kind}\n{message}".encode(errors="replace")


def parse_report(data: bytes) -> MinirunError:
    """The error a report describes (EXIT_RUNTIME when its code is unreadable)."""
    head, _, message = data.decode(errors="replace").partition("\n")
    code_text, _, kind = head.partition(":")
    return rebuild_error(kind, message, int(code_text) if code_text.isdigit() else EXIT_RUNTIME)


def send_report(fd: int, code: int, message: str, kind: str = "MinirunError") -> None:
    os.write(fd, encode_report(code, message, kind))


def read_report(fd: int) -> MinirunError | None:
    """Read `fd` to EOF and close it: the child's error, or None when it reported nothing."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return parse_report(b"".join(chunks)) if chunks else None


def exit_reporting(fd: int, body: Callable[[], object], what: str) -> NoReturn:
    """In a forked child that must exec: run `body()`, which execs or raises. Whatever it raised
    goes to the parent on `fd`, and the child exits with that code. Never returns: the child never
    unwinds into the stack it shares with its parent."""
    code, message, kind = EXIT_RUNTIME, f"{what} failed", "MinirunError"
    try:
        body()
    except MinirunError as exc:
        code, message, kind = exc.exit_code, exc.message, error_kind(exc)
    except BaseException as exc:  # anything else is a bug; still one line, never a traceback
        message = f"{what}: {type(exc).__name__}: {exc}"
    try:
        send_report(fd, code, message, kind)
    finally:
        os._exit(code)
