"""The `minirun` command itself: the script scripts/setup.sh writes over the one pip makes.

pip's script runs a full interpreter start (site, the venv's .pth files) and imports `re` for an
argv[0] fix-up that only Windows needs: ~15 ms of CPU before any verb begins, as much as a whole
`exec` should take. This one runs `python -S -P`, as minirun's helper processes do (helpers.py),
with the package's parent and the site dirs put back on sys.path by hand, and imports minirun's
modules from the bundle written beside it (codebundle.py).

    python -m minirun.launcher PATH [MODULE]   (re)writes the script at PATH, for this interpreter,
                                               running MODULE's main() (minirun.cli.main's by default),
                                               and the bundle
"""

from __future__ import annotations

import os
import sys

from minirun import codebundle
from minirun.atomicfile import atomic_write
from minirun.helpers import search_path


def script(python: str, dirs: list[str], module: str = "minirun.cli.main") -> str:
    """The text of the command: `-SP` travels as one shebang argument, which python splits."""
    return (
        f"#!{python} -SP\n"
        "# minirun's command, written by `python -m minirun.launcher` (minirun/launcher.py)\n"
        "import sys\n"
        f"sys.path[:0] = {dirs!r}\n"
        "import minirun.codebundle\n"
        "minirun.codebundle.install()\n"
        f"from {module} import main\n"
        # the guard: multiprocessing's spawn runs the parent's __main__ file again in each child
        # (as __mp_main__), and `system service`'s workers are such children
        'if __name__ == "__main__":\n'
        "    main()\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.stderr.write("usage: python -m minirun.launcher PATH [MODULE]\n")
        return 2
    path = os.path.abspath(argv[0])
    module = argv[1] if len(argv) == 2 else "minirun.cli.main"
    atomic_write(path, script(sys.executable, search_path().split(":"), module).encode(), mode=0o755)
    codebundle.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
