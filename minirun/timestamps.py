"""The timestamps records, events and logs hold: UTC with nanoseconds, fixed width, as docker
writes them. Apart from humanize.py (docker's formats for people, and the parsing of what they
type) so that the paths that only write one (every start, the log copier) import this alone."""

from __future__ import annotations

import time


def rfc3339_now() -> str:
    """UTC now with nanoseconds, fixed width: `2026-11-28T20:37:38.123456789Z`."""
    return rfc3339_ns(time.time_ns())


def rfc3339_ns(ns: int) -> str:
    """A time in nanoseconds since the epoch, as rfc3339_now writes it."""
    # time.strftime is what datetime's formatting calls too
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"
