"""cgroups.py on a cgroup v2 hierarchy of the real kernel, as root.

These machines are hybrid: the v1 hierarchies hold every controller and the v2 mount
(/sys/fs/cgroup/unified) has none, so minirun leaves it alone (tests/e2e/test_limits.py covers
the v1 layout). Here the module is pointed at that v2 mount instead, which is what a unified
host looks like minus its controllers: creating, joining through cgroup.procs, the cgroup
namespace's view, CPU time from cpu.stat, cgroup.kill and removal all run for real; the limits
(whose files need controllers) are covered by tests/unit/test_resources.py.
"""

from __future__ import annotations

import json
import os

import pytest

from minirun import linux
from minirun.errors import MinirunError
from minirun.runtime import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


@pytest.fixture
def v2(monkeypatch):
    with open("/proc/self/mountinfo") as f:
        found = [h for h in cgroups.parse_mountinfo(f.read()) if h.version == 2]
    if not found:
        pytest.skip("no cgroup v2 hierarchy mounted")
    hierarchy = found[0]
    with open(f"{hierarchy.mount}/cgroup.controllers") as f:
        hierarchy.controllers = tuple(f.read().split())
    monkeypatch.setattr(cgroups, "_detected", [hierarchy])
    monkeypatch.setattr(cgroups, "_unused_v2", False)
    parent = f"{hierarchy.mount}/{cgroups.PARENT}"
    made_parent = not os.path.exists(parent)
    yield hierarchy
    if made_parent and os.path.isdir(parent):  # minirun itself makes none in a v2 hierarchy without controllers
        os.rmdir(parent)


@pytest.fixture
def container_id():
    cid = os.urandom(32).hex()
    yield cid
    cgroups.remove(cgroups.container_paths(cid))
    assert cgroups.existing_paths(cid) == []


def in_child(body) -> dict:
    """Run body() in a forked child; its dict comes back as JSON (or the error's text)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            result = body()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    return json.loads(data)


def own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        return next(line.strip() for line in f if line.startswith("0::"))


def test_a_v2_container_cgroup_from_creation_to_removal(v2, container_id, tmp_path):
    paths = cgroups.create(container_id, {})
    # v2 holds the devices policy here (its program): the processes go one below it
    outer = f"{v2.mount}/{cgroups.PARENT}/{container_id}"
    assert paths == [f"{outer}/{cgroups.INNER}"] and os.path.isdir(paths[0])
    assert cgroups.layout() == "v2" and cgroups.namespace_mounts() == [(os.path.basename(v2.mount), "cgroup2", None)]

    def body() -> dict:
        cgroups.join(paths)
        seen = {"before": own_cgroup()}
        sum(range(3_000_000))  # some CPU time to be counted
        linux.unshare(linux.CLONE_NEWCGROUP | linux.CLONE_NEWNS)
        seen["inside"] = own_cgroup()
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount("cgroup2", str(tmp_path), "cgroup2", linux.MS_RDONLY)
        seen["listing"] = sorted(os.listdir(tmp_path))
        with open(tmp_path / "cgroup.procs") as f:
            seen["procs"] = f.read().split()
        seen["pid"] = str(os.getpid())
        return seen

    seen = in_child(body)
    assert "error" not in seen, seen
    assert seen["before"] == f"0::/{cgroups.PARENT}/{container_id}/{cgroups.INNER}"
    assert seen["inside"] == "0::/"  # the cgroup namespace's root is the container's cgroup
    assert cgroups.PARENT not in seen["listing"] and "cgroup.procs" in seen["listing"]  # nothing above it
    assert seen["procs"] == [seen["pid"]]
    usage = cgroups.usage(container_id)
    assert usage is not None and usage["cpu_ns"] > 0  # v2's cpu.stat, even without the cpu controller
    assert cgroups.oom_killed(paths) is False  # no memory controller: nothing to read, no OOM kill
    assert cgroups.remove(paths) == [] and not os.path.exists(paths[0]) and not os.path.exists(outer)
    assert cgroups.usage(container_id) is None


def test_removal_kills_what_is_left_through_cgroup_kill(v2, container_id):
    paths = cgroups.create(container_id, {})
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            cgroups.join(paths)
            os.write(ready_w, b"in")
            os.read(hold_r, 1)  # blocks: the parent never writes
        finally:
            os._exit(1)
    os.close(ready_w)
    os.close(hold_r)
    assert os.read(ready_r, 2) == b"in"
    os.close(ready_r)
    with open(f"{paths[0]}/cgroup.procs") as f:
        assert f.read().split() == [str(pid)]
    assert cgroups.remove(paths) == []
    _, status = os.waitpid(pid, 0)
    os.close(hold_w)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert not os.path.exists(paths[0])


def test_a_limit_no_hierarchy_can_hold_fails_and_leaves_nothing(v2, container_id):
    if "pids" in v2.controllers:
        pytest.skip("this v2 hierarchy has the pids controller")
    with pytest.raises(MinirunError, match="no cgroup hierarchy has the pids controller"):
        cgroups.create(container_id, {"PidsLimit": 10})
    assert cgroups.existing_paths(container_id) == []


def test_joining_a_missing_cgroup_is_an_error(v2, container_id):
    result = in_child(lambda: cgroups.join([f"{v2.mount}/{cgroups.PARENT}/{container_id}"]) or {})
    assert result["error"].startswith("MinirunError: cgroup: join ")


def _born(paths: list[str]) -> tuple[str, list[str]]:
    """cgroups.fork_in(paths): the child's v2 cgroup line, read before it joins anything, and
    what it was left to join."""
    read_fd, write_fd = os.pipe()
    pid, to_join = cgroups.fork_in(paths)
    if pid == 0:
        try:
            os.write(write_fd, json.dumps([own_cgroup(), to_join]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        line, left = json.loads(f.read())
    os.waitpid(pid, 0)
    return line, left


def test_a_child_is_born_in_the_v2_cgroup_with_nothing_left_to_join(v2, container_id):
    paths = cgroups.create(container_id, {})
    # from a fork of the test process, which has threads of its own (a fork has one)
    seen = in_child(lambda: dict(zip(("line", "left"), _born(paths))))
    line, left = seen["line"], seen["left"]
    # clone3's CLONE_INTO_CGROUP (Linux >= 5.7): no write to cgroup.procs, whose lock waits for RCU
    assert line == f"0::/{cgroups.PARENT}/{container_id}/{cgroups.INNER}"
    assert left == []


def test_with_other_threads_the_child_is_forked_and_joins_itself(v2, container_id):
    import threading

    paths = cgroups.create(container_id, {})
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        line, left = _born(paths)  # a raw clone beside other threads is unsound: os.fork instead
    finally:
        stop.set()
        thread.join()
    assert line != f"0::/{cgroups.PARENT}/{container_id}/{cgroups.INNER}"
    assert left == paths


def test_a_launchers_child_is_born_in_the_v2_cgroup_as_its_parents_child(v2, container_id):
    """After linux.hand_children_to_parent() (a monitor's launcher) the child is cloned with
    CLONE_PARENT, which clone3 takes only without an exit signal of its own: it must still be
    born in the cgroup, and be the launcher's parent's child, which gets its SIGCHLD and reaps it."""
    paths = cgroups.create(container_id, {})

    def parent() -> dict:
        read_fd, write_fd = os.pipe()
        launcher = os.fork()
        if launcher == 0:
            try:
                linux.hand_children_to_parent()
                pid, to_join = cgroups.fork_in(paths)
                if pid == 0:
                    os.write(write_fd, json.dumps([own_cgroup(), to_join, os.getppid()]).encode() + b"\n")
                    os._exit(0)
                os.write(write_fd, json.dumps(pid).encode() + b"\n")
            finally:
                os._exit(0)
        os.close(write_fd)
        os.waitpid(launcher, 0)
        with os.fdopen(read_fd) as f:  # two lines, in either order: the launcher's and the child's
            lines = [json.loads(line) for line in f.read().split("\n") if line]
        child = next(item for item in lines if isinstance(item, int))
        report = next(item for item in lines if isinstance(item, list))
        reaped, status = os.waitpid(child, 0)  # ours to reap: ChildProcessError otherwise
        return {"report": report, "ours": reaped == child and os.WIFEXITED(status), "me": os.getpid()}

    seen = in_child(parent)
    line, left, its_parent = seen["report"]
    assert line == f"0::/{cgroups.PARENT}/{container_id}/{cgroups.INNER}" and left == []
    assert seen["ours"] and its_parent == seen["me"]
