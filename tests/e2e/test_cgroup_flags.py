"""--memory-swappiness and --cgroupns for real: the kernel's files read back, the container's view
of its cgroups, and the wall that stays up in the host's cgroup namespace (its limits read-only)."""

from __future__ import annotations

import json
import os

import pytest

from minirun.runtime import cgroups


def _v1_memory() -> bool:
    owner = cgroups.owner("memory")
    return owner is not None and owner.version == 1


@pytest.fixture(autouse=True)
def needs_cgroups():
    if os.geteuid() != 0 or not cgroups.hierarchies():
        pytest.skip("needs root and a writable cgroup hierarchy")


@pytest.fixture(autouse=True)
def nothing_left(cli, isolated_store):
    yield
    for cid in cli("ps", "-a", "-q", "--no-trunc").out.split():
        cli("rm", "-f", cid)


def _host_file(cid: str, controller: str, name: str) -> str:
    with open(f"{cgroups.owner(controller).path(cid)}/{name}") as f:
        return f.read().strip()


def test_memory_swappiness_is_written_to_the_kernel(cli, busybox):
    if not _v1_memory():
        pytest.skip("memory.swappiness is cgroup v1's")
    inside = cli(
        "run", "--rm", "--memory-swappiness", "17", "busybox", "cat", "/sys/fs/cgroup/memory/memory.swappiness"
    )
    assert (inside.code, inside.out.strip()) == (0, "17"), inside
    started = cli("run", "-d", "--memory-swappiness", "0", "busybox", "sleep", "60")
    assert started.code == 0, started
    cid = started.out.strip()
    assert _host_file(cid, "memory", "memory.swappiness") == "0"
    host_config = json.loads(cli("inspect", cid).out)[0]["HostConfig"]
    assert host_config["MemorySwappiness"] == 0
    bad = cli("run", "--rm", "--memory-swappiness", "101", "busybox", "true")
    assert bad.code == 125 and "Valid memory swappiness range is 0-100" in bad.err, bad


def test_cgroupns_host_shows_the_hosts_paths_and_private_its_own_root(cli, busybox):
    private = cli("run", "--rm", "busybox", "cat", "/proc/self/cgroup")
    assert private.code == 0, private
    assert {line.split(":", 2)[2] for line in private.out.splitlines()} == {"/"}, private.out
    started = cli("run", "-d", "--cgroupns", "host", "busybox", "sleep", "60")
    assert started.code == 0, started
    cid = started.out.strip()
    seen = cli("exec", cid, "cat", "/proc/self/cgroup").out.splitlines()
    # each its own cgroup, below the devices policy in the devices hierarchy (cgroups.INNER)
    ends = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in seen if not line.startswith("0::")}
    assert ends and all(
        path.endswith(cid if kind != "devices" else f"{cid}/{cgroups.INNER}") for kind, path in ends.items()
    ), seen
    inspected = json.loads(cli("inspect", cid).out)[0]["HostConfig"]
    assert inspected["CgroupnsMode"] == "host"
    bad = cli("run", "--rm", "--cgroupns", "container:x", "busybox", "true")
    assert bad.code == 125 and "invalid CGROUP mode" in bad.err, bad


def test_cgroupns_host_cannot_write_its_own_limits(cli, busybox):
    """In the host's cgroup namespace the container's cgroups are bound at /sys/fs/cgroup (as
    runc binds them): read-only, so its root cannot lift the limits it was given."""
    if not _v1_memory():
        pytest.skip("no cgroup v1 memory hierarchy on this host")
    attack = (
        "echo 1073741824 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo wrote;"
        "mount -o remount,rw /sys/fs/cgroup/memory && echo remounted;"
        "mkdir /sys/fs/cgroup/memory/escape && echo made; true"
    )
    started = cli("run", "-d", "--cgroupns", "host", "--memory", "64m", "busybox", "sleep", "60")
    assert started.code == 0, started
    cid = started.out.strip()
    result = cli("exec", cid, "sh", "-c", attack)
    assert result.code == 0, result
    assert "wrote" not in result.out and "remounted" not in result.out and "made" not in result.out, result
    assert "Read-only file system" in result.err, result
    assert _host_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    # with CAP_SYS_ADMIN it could mount a hierarchy's root (release_agent): refused before anything is made
    refused = cli("run", "--rm", "--cgroupns", "host", "--cap-add", "SYS_ADMIN", "busybox", "true")
    assert refused.code == 125 and "--cgroupns host with CAP_SYS_ADMIN" in refused.err, refused
