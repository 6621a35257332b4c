"""Fixtures for tests that run containers: the busybox image, and a check that no mount of the
test's store outlives the test (the overlay lives in the container's own mount namespace)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minirun.image.embedded import find_image
from minirun.store import Store
from tests.forkserver import run_minirun


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory):
    """A store made once per test process, holding the embedded busybox, the init layer and the
    compiled seccomp profile that a store's first container makes: a test's store starts as its
    copy (`cp -a`, ~20 ms) rather than building them (~120 ms of CPU, in ~700 tests). Its event
    log is left out: a test's events are its own."""
    root = tmp_path_factory.mktemp("busybox-template") / "store"
    find_image(Store(str(root)), "busybox")
    code, _, err = run_minirun(
        ["run", "--rm", "--network", "none", "busybox", "true"], dict(os.environ, MINIRUN_ROOT=str(root))
    )
    assert code == 0, err
    os.unlink(root / "events.log")
    return root


@pytest.fixture
def busybox(store, isolated_store, busybox_template):
    if not isolated_store.exists():
        subprocess.run(["cp", "-a", "--", str(busybox_template), str(isolated_store)], check=True)
    return find_image(store, "busybox")


def store_mounts(root) -> list[str]:
    with open("/proc/mounts") as mounts:
        return [line for line in mounts if str(root) in line]


@pytest.fixture(autouse=True)
def no_leaked_mounts(isolated_store):
    yield
    assert store_mounts(isolated_store) == []


@pytest.fixture(autouse=True)
def no_container_outlives_its_test(isolated_store):
    """A test that fails halfway may leave a detached container running; it goes with the test
    (by its ids), not minutes later into a store pytest has deleted, leaving its cgroups behind."""
    yield
    containers = isolated_store / "containers"
    ids = [d.name for d in containers.iterdir() if (d / "config.json").exists()] if containers.is_dir() else []
    # restarting: a monitor waiting out a restart policy's back-off would start it again
    running = [i for i in ids if any(s in _text(containers / i / "state.json") for s in ('"running"', '"restarting"'))]
    if running:
        env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
        subprocess.run(
            [sys.executable, "-m", "minirun", "rm", "-f", *running], env=env, capture_output=True, timeout=120
        )


def _text(path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
