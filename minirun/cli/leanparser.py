"""The argument parser of every verb on the lean path (run, exec, ps, diff, import)."""

from __future__ import annotations

import argparse

from minirun.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 125) instead of printing usage and exiting 2;
    the parser of every verb on the lean path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)
