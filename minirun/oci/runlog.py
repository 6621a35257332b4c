"""runc's --log: where minirun-oci's errors and warnings go, in runc's text or JSON lines
(`--log-format json`: {"level","msg","time"}, which containerd reads back). Without --log a
warning goes to stderr, as runc's logrus writes it; an error is always printed there too (main)."""

from __future__ import annotations

import json
import sys

from minirun.errors import one_line

_log = {"path": "", "format": "text"}


def configure(path: str, format_: str) -> None:
    _log["path"], _log["format"] = path, format_


def warning(message: str) -> None:
    message = one_line(message)
    if not _write("warning", message):
        print(f"minirun-oci: warning: {message}", file=sys.stderr)


def error(message: str) -> None:
    _write("error", one_line(message))


def _write(level: str, message: str) -> bool:
    """The line in the --log file; False without one (or when it cannot be written)."""
    path = _log["path"]
    if not path:
        return False
    import time

    from minirun.timestamps import rfc3339_ns

    now = rfc3339_ns(time.time_ns())
    if _log["format"] == "json":
        line = json.dumps({"level": level, "msg": message, "time": now})
    else:
        line = f'time="{now}" level={level} msg={json.dumps(message)}'
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        return False
    return True
