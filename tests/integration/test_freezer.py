"""The freezer behind pause/unpause (runtime/freezer.py), on the real kernel, in each kind of
hierarchy this host has: a busy process in a frozen cgroup stops counting, and counts again
once thawed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from minirun.runtime import cgroups
from minirun.runtime.freezer import cgroup_frozen, set_frozen
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")

# a counter that never sleeps nor forks: 8 bytes rewritten in place, as fast as it can
COUNTER = "import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ni = 0\nwhile True:\n    i += 1\n    os.pwrite(fd, i.to_bytes(8, 'little'), 0)\n"


def _mounts() -> dict[int, str]:
    """A mount for each freezer this host has: v1's freezer controller, a v2 hierarchy."""
    with open("/proc/self/mountinfo") as f:
        found = cgroups.parse_mountinfo(f.read())
    mounts = {}
    for h in found:
        if h.version == 2 or "freezer" in h.controllers:
            mounts.setdefault(h.version, h.mount)
    return mounts


@pytest.mark.parametrize("version", [1, 2])
def test_a_frozen_cgroup_stops_its_processes_until_thawed(tmp_path, version):
    mount = _mounts().get(version)
    if mount is None:
        pytest.skip(f"no cgroup v{version} freezer on this host")
    path = f"{mount}/{cgroups.PARENT}/freezer-test-{os.getpid()}"
    os.makedirs(path)
    counter = tmp_path / "count"
    counter.write_bytes(bytes(8))
    proc = subprocess.Popen([sys.executable, "-c", COUNTER, str(counter)])
    try:
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(proc.pid))

        def count() -> int:
            return int.from_bytes(counter.read_bytes(), "little")

        assert wait_until(lambda: count() > 1000)
        set_frozen(path, version, True)
        assert cgroup_frozen(path, version)
        frozen_at = count()
        time.sleep(0.2)
        assert count() == frozen_at
        with open(f"/proc/{proc.pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
        assert state in ("S", "D")  # a busy loop is R: frozen, it sleeps in the kernel's freezer
        set_frozen(path, version, False)
        assert not cgroup_frozen(path, version)
        assert wait_until(lambda: count() > frozen_at + 1000)
    finally:
        set_frozen(path, version, False)  # first: a frozen v1 task cannot even die
        proc.kill()
        proc.wait()
        assert wait_until(lambda: _rmdir(path))


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
