"""runtime/hooks.py's runner, the one every OCI hook kind goes through (no root needed): the
state on stdin, args and env as given, the exit status and the end of the output in the error,
the timeout, a missing program."""

from __future__ import annotations

import json

import pytest

from minirun.errors import MinirunError
from minirun.runtime import hooks

STATE = {"ociVersion": "1.0.2", "id": "box", "pid": 7, "status": "created", "bundle": "/b"}


def test_the_state_goes_to_stdin_with_args_and_env(tmp_path):
    out = tmp_path / "out"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f'cat > {out}; echo "$0 $X" >> {out}.args', "zero"], "env": ["X=y"]}
    hooks.run(hook, STATE, "prestart")
    assert json.loads(out.read_text()) == STATE
    assert (tmp_path / "out.args").read_text() == "zero y\n"


def test_a_failure_says_the_status_and_the_end_of_the_output():
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "echo why >&2; exit 4"]}
    with pytest.raises(MinirunError, match="createRuntime hook /bin/sh: exit status 4: why"):
        hooks.run(hook, STATE, "createRuntime")


def test_a_hook_past_its_timeout_is_killed():
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30"], "timeout": 1}
    with pytest.raises(MinirunError, match="timeout after 1 seconds"):
        hooks.run(hook, STATE, "poststart")


def test_a_missing_program_is_named(tmp_path):
    with pytest.raises(MinirunError, match="cannot run it"):
        hooks.run({"path": str(tmp_path / "nosuch")}, STATE, "poststop")


def test_a_hook_that_reads_nothing_and_prints_much_still_ends():
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "head -c 200000 /dev/zero; exit 0"]}
    hooks.run(hook, STATE, "prestart")  # the pipe is drained while it runs: no deadlock
