"""The command line of minirun's own helper processes (a detached container's monitor, the log
copier it execs into, the port proxy): a fresh `python -S`, so none of the CLI's imports and none
of site's start-up work, with only the package's parent and the site dirs put back on sys.path,
running one "module:function". `-P` keeps the cwd off sys.path: `-c` would put it first, and a
root helper started from a directory holding a `json.py` would run that.

Lean on purpose (os and sys only): the monitor imports it, and its start is on `run -d`'s clock.
"""

from __future__ import annotations

import os
import sys

# argv[1]: the dirs to put in front of sys.path; argv[2]: "module:function", called with the rest
# of argv as a list, its result the exit status. __import__, not importlib: one import fewer.
_BOOT = (
    "import sys; sys.path[:0] = sys.argv[1].split(':'); m, _, f = sys.argv[2].partition(':'); "
    "sys.exit(getattr(__import__(m, fromlist=[f]), f)(sys.argv[3:]))"
)
_SITE_DIRS = ("site-packages", "dist-packages")


def search_path() -> str:
    """The package's parent, then the site dirs this process has, `:`-joined. Read off sys.path,
    not sysconfig: in a `-S` process in a venv sysconfig names the base install's dirs (only site
    points sys.prefix at the venv), and a helper may start another (the monitor starts the proxy)."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    site = [p for p in sys.path if os.path.basename(p) in _SITE_DIRS]
    return ":".join(dict.fromkeys([parent, *site]))


def helper_argv(target: str, *args: str) -> list[str]:
    """The argv of a `python -S -P` that runs `target` ("package.module:function") on `args`."""
    return [sys.executable, "-S", "-P", "-c", _BOOT, search_path(), target, *args]
