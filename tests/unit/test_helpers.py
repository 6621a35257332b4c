"""Helper processes (monitor, log copier, port proxy) start as `python -S -P` on one boot line."""

from __future__ import annotations

import subprocess

from minirun.helpers import helper_argv


def test_a_helper_calls_its_target_with_the_rest_of_argv(tmp_path):
    # json.dumps(["a", "b"]) is the "exit status": sys.exit prints a string and exits 1
    done = subprocess.run(helper_argv("json:dumps", "a", "b"), capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (1, '["a", "b"]\n')


def test_a_helper_imports_nothing_from_its_cwd(tmp_path):
    """`python -c` puts the cwd first on sys.path: a helper started from a directory holding a
    json.py would run it, as root."""
    (tmp_path / "json.py").write_text("import sys\nsys.stderr.write('from the cwd')\nsys.exit(9)\n")
    done = subprocess.run(helper_argv("json:dumps", "a"), cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (1, '["a"]\n')
