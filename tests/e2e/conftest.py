"""Fixtures for tests that run containers: the busybox image, and a check that no mount of the
test's store outlives the test (the overlay lives in the container's own mount namespace)."""
from __future__ import annotations

import pytest

from minirun.embedded import find_image


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
