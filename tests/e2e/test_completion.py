"""bash completion: the script `minirun completion bash` prints, run by bash as a shell would,
completes verbs, group subcommands, options from each verb's own parser, and names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def complete(isolated_store, *words: str) -> list[str]:
    """What bash offers after `minirun WORDS...` (the last word unfinished)."""
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]  # the venv's `minirun`
    script = subprocess.run(
        [sys.executable, "-m", "minirun", "completion", "bash"], capture_output=True, text=True, env=env, check=True
    ).stdout
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("minirun", *words))
    shell = f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _minirun; printf "%s\\n" "${{COMPREPLY[@]}}"'
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize(
    "words, expected",
    [
        (["r"], ["rename", "restart", "rm", "rmi", "run"]),
        (["container", "l"], ["list", "logs", "ls"]),
        (["ps", "--f"], ["--filter", "--format"]),  # a lean verb's parser
        (["history", "--f"], ["--format"]),  # a typer verb's
        (["run", "--priv"], ["--privileged"]),
        (["--"], ["--debug", "--help", "--root", "--version"]),
    ],
)
def test_verbs_subcommands_and_options(isolated_store, words, expected):
    assert complete(isolated_store, *words) == expected


def test_container_and_image_names(cli, busybox, isolated_store):
    assert cli("run", "--name", "webapp", "--network", "none", "busybox", "true").code == 0
    assert complete(isolated_store, "rm", "we") == ["webapp"]
    assert complete(isolated_store, "container", "logs", "") == ["webapp"]
    assert complete(isolated_store, "run", "busy") == ["busybox:latest"]
    assert complete(isolated_store, "--root", str(isolated_store), "rmi", "") == ["busybox:latest"]
    assert complete(isolated_store, "rm", "webapp", "") == []  # the first operand only
