"""The error hierarchy: every error carries its exit code and a one-line message."""

from __future__ import annotations

# docker's exit codes for failures of the runtime itself, not of the command.
EXIT_RUNTIME = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class MinirunError(Exception):
    """A failure the user can act on; printed as `minirun: error: <message>`."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class UsageError(MinirunError):
    """Bad flags, bad references, bad instructions."""


class NotFound(MinirunError):
    """An image, container or file named by the user does not exist."""


class Conflict(MinirunError):
    """The request contradicts the store's state (in use, ambiguous, duplicate)."""


class Forbidden(MinirunError):
    """Refused by what the container was made with (a read-only root or volume), whoever asks, or
    by where it is (already on the network a connect names: docker's "endpoint ... exists")."""


class BadArchive(MinirunError):
    """A tar stream that is corrupt or tries to write outside its layer."""


class DamagedRecord(MinirunError):
    """A record of the store (or an input file) that cannot be read as what it should be: the
    message names the file, so whoever reads it knows which one to look at."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"damaged record {path}: {why}")
        self.path = path


class SyscallError(MinirunError):
    """A kernel call failed: the message names the call, the path and the errno text."""

    def __init__(self, call: str, errno_: int, path: str | None = None) -> None:
        import os

        where = f" `{path}`" if path else ""
        super().__init__(f"{call}{where}: {os.strerror(errno_)}")
        self.call = call
        self.errno = errno_
        self.path = path


def one_line(text: str) -> str:
    """`text` as one line of printable characters: newlines, carriage returns, escape sequences and
    every other unprintable character (bidi controls, lone surrogates) escaped as Python's repr
    writes them. Messages quote names from archives, registries and users; none can add a line
    (a forged `Loaded image: ...`) or restyle the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def warn(message: str) -> None:
    """One `minirun: warning: ...` line on stderr: something was skipped, the command went on."""
    import sys

    print(f"minirun: warning: {one_line(message)}", file=sys.stderr)


def report(exc: BaseException, debug: bool = False) -> int:
    """Print one `minirun: error: ...` line for `exc` (a traceback too with --debug); return the
    exit code. Unexpected exceptions are bugs, still shown as one line; whatever the message
    holds, it is printed as exactly one line."""
    import sys

    if debug:
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, MinirunError):
        message, code = exc.message, exc.exit_code
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message, code = f"{exc.strerror or exc}{where}", EXIT_RUNTIME
    else:
        message, code = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", EXIT_RUNTIME
    print(f"minirun: error: {one_line(str(message))}", file=sys.stderr)
    return code


def error_kind(exc: MinirunError) -> str:
    """The name of the class of this module that `exc` is, to raise again in another process
    (rebuild_error): its own if plain, else the nearest plain one it derives from."""
    for cls in type(exc).__mro__:
        if cls.__module__ == __name__ and _plain(cls):
            return cls.__name__
    return "MinirunError"


def rebuild_error(kind: str, message: str, exit_code: int | None = None) -> MinirunError:
    """The error another process reported by error_kind's name (MinirunError for a name unknown here)."""
    cls = globals().get(kind)
    if not (isinstance(cls, type) and issubclass(cls, MinirunError) and _plain(cls)):
        cls = MinirunError
    return cls(message, exit_code)


def _plain(cls: type) -> bool:
    """Made from a message and an exit code alone (not DamagedRecord, SyscallError...)."""
    return cls.__init__ is MinirunError.__init__  # type: ignore[misc]
