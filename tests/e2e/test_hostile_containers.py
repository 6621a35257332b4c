"""What a container leaves in its writable layer, made to trip the host's verbs that read or remove
it afterwards: none of them may jam the store for the other containers, or keep the container
from going with `rm`, as none of docker's do."""

from __future__ import annotations

import os
import subprocess

import pytest

# dirs nested one name at a time, past Python's recursion limit (busybox's cd stops at PATH_MAX)
DEEP = "i=0; while [ $i -lt 1500 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done"


@pytest.fixture
def deep_store(isolated_store):
    """pytest's own cleanup (shutil.rmtree, recursive) fails on a tree this deep: whatever a
    failing test leaves goes by GNU rm, which has no such limit."""
    yield isolated_store
    subprocess.run(["rm", "-rf", "--", str(isolated_store)], check=True)


def test_a_tree_deeper_than_any_limit_never_jams_the_store(cli, busybox, deep_store):
    isolated_store = deep_store
    made = cli("run", "--name", "deep", "--network", "none", "busybox", "sh", "-c", DEEP)
    assert made.code == 0, made.err
    # whatever the commit makes of it, what it leaves behind (an unfinished layer) is swept
    # by the next verb that takes the store's lock, as any unfinished layer is
    cli("commit", "deep", "deep:1")
    run = cli("run", "--rm", "--network", "none", "busybox", "true")
    assert run.code == 0, run.err
    removed = cli("rm", "deep")
    assert removed.code == 0, removed.err
    assert os.listdir(isolated_store / "containers") == []
    check = cli("system", "check")
    assert check.code == 0, check.out + check.err
