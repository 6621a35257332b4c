"""What `build` shows as it goes: docker's classic builder's lines (`Step 2/5 : RUN ...`,
` ---> Using cache`, ` ---> <id>`), styled on a terminal, plain with --progress=plain, none in
a pipe or with -q. A RUN's own output goes straight through (with -q it is kept aside and shown
on stderr if the step fails).

Styles are written as SGR codes by hand: rich's import would cost more than a fully cached
build does (scripts/bench_build.py); NO_COLOR or TERM=dumb turn them off."""

from __future__ import annotations

import os
import sys
import time

from minirun.build.builder import Progress
from minirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

    from minirun.runtime.stdiorelay import Relay

PROGRESS_MODES = ("auto", "plain", "tty", "quiet")

# SGR parameters of the styles the terminal view uses
BOLD_BLUE, GREEN, DIM, YELLOW = "1;34", "32", "2", "33"


class BuildView(Progress):
    """`out`: where step lines go (None: none); `styled`: the terminal view (colours where the
    terminal takes them, and each step's time); `capture`: a RUN's output kept aside (-q)."""

    def __init__(self, out: TextIO | None, styled: bool, capture: bool, colour: bool = False) -> None:
        self.out = out
        self.styled = styled
        self.colour = colour
        self.capture = capture
        self._captured: BinaryIO | None = None
        self._null = -1
        self._copier: tuple[int, Relay] | None = None  # copies a RUN's output to ours (run_stdio)
        self._step_started = time.monotonic()

    def _paint(self, text: str, sgr: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.colour and text else text

    def _line(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")

    def step(self, number: int, total: int, text: str) -> None:
        self._step_started = time.monotonic()
        self._line(self._paint(f"Step {number}/{total} : ", BOLD_BLUE) + text)

    def using_cache(self) -> None:
        self._line(self._paint(" ---> Using cache", GREEN))

    def running_in(self, container_id: str) -> None:
        self._line(self._paint(f" ---> Running in {container_id[:12]}", DIM))

    def removing(self, container_id: str) -> None:
        self._line(self._paint(f"Removing intermediate container {container_id[:12]}", DIM))

    def image(self, image_id: str) -> None:
        text = self._paint(f" ---> {image_id.split(':', 1)[-1][:12]}", YELLOW)
        if self.styled:  # the terminal view also says how long the step took
            text += self._paint(f"  {time.monotonic() - self._step_started:.2f}s", DIM)
        self._line(text)

    def run_stdio(self) -> tuple[int, int, int] | None:
        # the step lines so far come before what the RUN writes to the same terminal or file
        sys.stdout.flush()
        sys.stderr.flush()
        if not self.capture:
            from minirun.runtime.stdiorelay import Relay

            # our stdout and stderr, through pipes where they are a host file or terminal
            # (stdiorelay.py says why): a forked copier passes the output on as it comes. (The
            # RUN's stdin is its own /dev/null: launch.py replaces whatever it is given.)
            relay = Relay(interactive=False)
            if not relay.needed:
                return None
            self._copier = (relay.copy_in_child(), relay)
            return (0, relay.child[1], relay.child[2])
        import tempfile

        # (a temp file of our own, unlinked: nothing of the host's for the RUN to chmod or read)
        if self._captured is None:
            self._captured = tempfile.TemporaryFile()
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._captured.seek(0)
        self._captured.truncate()
        fd = self._captured.fileno()
        return (self._null, fd, fd)

    def run_done(self, failed: bool) -> None:
        if self._copier is not None:  # the RUN is over: the copier passes on what is left, then ends
            pid, relay = self._copier
            self._copier = None
            relay.close()
            os.waitpid(pid, 0)
        if self.capture and failed and self._captured is not None:
            self._captured.seek(0)
            sys.stderr.buffer.write(self._captured.read())
            sys.stderr.flush()


def view_for(mode: str, quiet: bool) -> BuildView:
    """The view --progress and -q ask for."""
    if mode not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {mode!r} (use {', '.join(PROGRESS_MODES)})")
    if quiet or mode == "quiet":
        return BuildView(None, False, capture=True)
    if mode == "plain":
        return BuildView(sys.stdout, False, capture=False)
    if mode == "auto" and not sys.stdout.isatty():
        return BuildView(None, False, capture=False)
    return BuildView(sys.stdout, True, capture=False, colour=wants_colour(os.environ))


def wants_colour(environ) -> bool:
    """Colours unless the user or the terminal says no (https://no-color.org, TERM=dumb)."""
    return not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
