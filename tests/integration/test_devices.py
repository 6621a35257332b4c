"""devices.py against the real kernel, one cgroup version at a time: the v1 devices controller's
rules and the v2 eBPF program (a container on this hybrid host gets the v1 rules alone, so the e2e
tests never see the program). A forked child joins a test cgroup, makes device nodes on a tmpfs of its own
(no nodev: only the policy stands in the way) and opens them; without the policy the same opens work.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from minirun.runtime import cgroups, devices
from tests.helpers import in_mount_ns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")

# (name, type, major, minor, open flags): /dev/kmsg opened for writing needs no capability
NODES = (
    ("kmsg", stat.S_IFCHR, 1, 11, os.O_WRONLY),
    ("null", stat.S_IFCHR, 1, 3, os.O_RDWR),
    ("loop0", stat.S_IFBLK, 7, 0, os.O_RDONLY),
)


def opens_in(cgroup: str) -> dict[str, int]:
    """In a child joined to `cgroup`: mknod each of NODES on a fresh tmpfs and open it; errno or 0."""

    def body() -> dict[str, int]:
        cgroups.join([cgroup])
        import tempfile

        from minirun import linux

        where = tempfile.mkdtemp(prefix="devices-test-")
        linux.mount("tmpfs", where, "tmpfs", 0, "size=64k")
        found = {}
        try:
            for name, kind, major, minor, flags in NODES:
                path = f"{where}/{name}"
                try:
                    os.mknod(path, kind | 0o600, os.makedev(major, minor))
                except OSError as exc:
                    found[f"mknod {name}"] = exc.errno
                    continue
                try:
                    os.close(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC))
                    found[name] = 0
                except OSError as exc:
                    found[name] = exc.errno
        finally:
            # the mount goes with the namespace, the dir under it would stay in the host's /tmp
            linux.umount2(where, linux.MNT_DETACH)
            os.rmdir(where)
        return found

    return in_mount_ns(body)


def test_v1_rules_allow_dockers_nodes_and_refuse_the_rest(made_cgroup):
    path = made_cgroup("devices", 1)
    assert opens_in(path)["kmsg"] == 0  # the attack, before any rule
    devices.apply([(path, 1, True)], list(devices.DEFAULT_RULES))
    with open(f"{path}/devices.list") as f:
        assert f.read().split("\n")[:2] == ["c *:* m", "b *:* m"]
    got = opens_in(path)
    assert (got["kmsg"], got["null"], got["loop0"]) == (errno.EPERM, 0, errno.EPERM)
    assert "mknod kmsg" not in got  # mknod of anything stays allowed, as in docker


def test_the_v2_program_allows_dockers_nodes_and_refuses_the_rest(made_cgroup):
    path = made_cgroup("", 2)
    assert opens_in(path)["kmsg"] == 0
    devices.attach_program(path, devices.bpf_program(list(devices.DEFAULT_RULES)))
    got = opens_in(path)
    assert (got["kmsg"], got["null"], got["loop0"]) == (errno.EPERM, 0, errno.EPERM)
    assert "mknod kmsg" not in got and "mknod loop0" not in got


def test_beside_a_v1_devices_controller_the_v2_cgroup_gets_no_program(made_cgroup):
    """The hybrid layout: the kernel asks the v1 controller on every open, after any v2 program,
    so the rules there are the whole policy (as runc's are on such a host), and a program loaded
    for the v2 cgroup too cost ~0.6 ms of every start."""
    v1, v2 = made_cgroup("devices", 1), made_cgroup("", 2)
    devices.apply([(v1, 1, True), (v2, 2, False)], list(devices.DEFAULT_RULES))
    assert opens_in(v1)["kmsg"] == errno.EPERM
    assert opens_in(v2)["kmsg"] == 0  # no program there


@pytest.mark.parametrize("version", [1, 2])
def test_a_rule_grants_exactly_its_access(made_cgroup, version):
    path = made_cgroup("devices" if version == 1 else "", version)
    rules = [("c", 1, 11, "rm"), ("c", 1, 3, "rw"), ("b", 7, -1, "rwm")]  # kmsg not for writing, null not made
    devices.apply([(path, version, version == 1)], rules)
    got = opens_in(path)
    assert (got["kmsg"], got["mknod null"], got["loop0"]) == (errno.EPERM, errno.EPERM, 0)
    devices_all = made_cgroup("devices" if version == 1 else "", version)
    devices.apply([(devices_all, version, version == 1)], list(devices.ALL_DEVICES))
    assert set(opens_in(devices_all).values()) == {0}


def test_the_program_is_a_whole_number_of_instructions_ending_in_exit():
    program = devices.bpf_program(list(devices.DEFAULT_RULES))
    assert len(program) % 8 == 0 and program[-8] == 0x95  # BPF_JMP | BPF_EXIT


@pytest.fixture
def made_cgroup():
    """A cgroup of the test's own in the hierarchy of `controller` (v1) or the v2 mount; removed after."""
    made: list[str] = []

    def make(controller: str, version: int) -> str:
        hierarchy = next(
            (h for h in _mounted() if h.version == version and (version == 2 or controller in h.controllers)), None
        )
        if hierarchy is None:
            pytest.skip(f"no cgroup v{version} {controller} hierarchy on this host")
        path = f"{hierarchy.mount}/minirun-devices-test-{os.getpid()}-{len(made)}"
        os.mkdir(path)
        made.append(path)
        return path

    yield make
    assert cgroups.remove(made) == []


def _mounted() -> list[cgroups.Hierarchy]:
    with open("/proc/self/mountinfo") as f:
        return cgroups.parse_mountinfo(f.read())
