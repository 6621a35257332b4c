"""Fixtures for tests that run containers: the busybox image, and a check that no mount of the
test's store outlives the test (the overlay lives in the container's own mount namespace)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minirun.image.embedded import find_image


@pytest.fixture
def busybox(store):
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
