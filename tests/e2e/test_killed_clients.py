"""Clients may die: kill -9 at every moment of `run`, `run -d`, `exec` and `start -a`.

minirun's semantics (README, "What survives what"): a foreground container goes with the client
that runs it, and its guard records the exit (137) and honours --rm; a detached one belongs to its
monitor as soon as the monitor exists; an exec'd process and a `start -a`'d container outlive
their client, as in docker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from minirun.procs import is_alive, parent_of
from minirun.runtime import cgroups
from tests.helpers import minirun_started as client
from tests.helpers import wait_until

# kill the client this long after it started: before the record, during set-up, while it runs
DELAYS = (0.0, 0.03, 0.06, 0.09, 0.12, 0.16, 0.2, 0.3, 0.5)


def killed_after(proc: subprocess.Popen, delay: float) -> None:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def ours_left(store, before: set[str] = frozenset()) -> list[str]:
    """Processes, cgroups (but those there `before`) and mounts of the store's containers still on the host."""
    left = [f"cgroup {p}" for p in _cgroup_dirs() if p not in before]
    with open("/proc/mounts") as f:
        left += [line for line in f if str(store) in line]
    left += [f"process {pid}" for pid in os.listdir("/proc") if pid.isdigit() and MARK.encode() in _cmdline(int(pid))]
    return left


def _cgroup_dirs() -> list[str]:
    return [p for h in cgroups.hierarchies() for p in _children(f"{h.mount}/{cgroups.PARENT}")]


def _children(path: str) -> list[str]:
    try:
        return [os.path.join(path, d) for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]
    except FileNotFoundError:
        return []


def _children_of(parent: int) -> list[int]:
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and parent_of(int(pid)) == parent]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


# an odd argument, this process's own: the container's processes are findable by it, and not
# another xdist worker's or test session's, which may run these tests at the same time
MARK = f"29.8{os.getpid() % 1_000_000:06d}"
SLEEPER = ["busybox", "sleep", MARK]


@pytest.mark.parametrize("delay", DELAYS)
def test_a_killed_foreground_rm_client_leaves_nothing(cli, busybox, isolated_store, delay):
    before = set(_cgroup_dirs())
    killed_after(client(isolated_store, "run", "--rm", "--network", "none", *SLEEPER), delay)
    assert wait_until(lambda: cli("ps", "-aq").out == "" and not ours_left(isolated_store, before)), (
        cli("ps", "-a").out,
        ours_left(isolated_store, before),
    )


def test_a_killed_foreground_client_leaves_an_honest_record(cli, busybox, isolated_store):
    before = set(_cgroup_dirs())
    proc = client(isolated_store, "run", "--name", "fg", "--network", "none", *SLEEPER)
    assert wait_until(lambda: '"running"' in cli("inspect", "fg").out)
    killed_after(proc, 0)
    assert wait_until(lambda: json.loads(cli("inspect", "fg").out)[0]["State"]["Status"] == "exited")
    state = json.loads(cli("inspect", "fg").out)[0]["State"]
    assert (state["ExitCode"], state["Error"]) == (137, "the minirun client running it was killed")
    assert wait_until(lambda: not ours_left(isolated_store, before)), ours_left(isolated_store, before)


def test_a_killed_foreground_clients_exit_is_left_to_its_guard(cli, busybox, isolated_store):
    """Between the client's death and its guard's record, PID 1 is gone but the exit is the
    guard's to write: a look then shows the container running, not an exit nobody knows (255)."""
    proc = client(isolated_store, "run", "--name", "fg", "--network", "none", *SLEEPER)
    assert wait_until(lambda: '"running"' in cli("inspect", "fg").out)
    cid = json.loads(cli("inspect", "fg").out)[0]["Id"]
    with open(isolated_store / "containers" / cid / "state.json") as f:
        state = json.load(f)
    (guard,) = [pid for pid in _children_of(proc.pid) if b"minirun-guard" in _cmdline(pid)]
    os.kill(guard, signal.SIGSTOP)  # the guard cannot write until it goes on
    try:
        killed_after(proc, 0)
        assert wait_until(lambda: not is_alive(state["Pid"], state["PidStartTime"]))  # its parent-death signal
        assert json.loads(cli("inspect", "fg").out)[0]["State"]["Status"] == "running"
    finally:
        os.kill(guard, signal.SIGCONT)
    assert wait_until(lambda: json.loads(cli("inspect", "fg").out)[0]["State"]["ExitCode"] == 137)


def test_a_killed_client_frees_its_published_ports(cli, busybox, isolated_store):
    proc = client(isolated_store, "run", "--rm", "--name", "web", "-p", "127.0.0.1::8080", *SLEEPER)
    assert wait_until(lambda: cli("port", "web").out.strip() != "")
    port = int(cli("port", "web").out.strip().rsplit(":", 1)[1])
    killed_after(proc, 0)
    assert wait_until(lambda: cli("ps", "-aq").out == "")
    rerun = cli("run", "--rm", "-p", f"127.0.0.1:{port}:8080", "busybox", "true")  # the port is free again
    assert rerun.code == 0, rerun


@pytest.mark.parametrize("delay", DELAYS)
def test_a_killed_detached_client_leaves_a_container_its_monitor_owns_or_none(cli, busybox, isolated_store, delay):
    before = set(_cgroup_dirs())
    killed_after(client(isolated_store, "run", "-d", "--rm", "--network", "none", *SLEEPER), delay)

    def settled() -> bool:
        listed = cli("ps", "-a").out.splitlines()[1:]
        return all(" Up " in line for line in listed)  # running under a monitor, or gone (--rm)

    assert wait_until(settled), cli("ps", "-a").out
    ids = cli("ps", "-aq").out.split()
    if ids:
        assert cli("rm", "-f", *ids).code == 0
    assert wait_until(lambda: not ours_left(isolated_store, before)), ours_left(isolated_store, before)


def test_an_exec_and_a_start_attach_outlive_their_clients(cli, busybox, isolated_store):
    before = set(_cgroup_dirs())
    assert cli("run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "300").code == 0
    exec_ = client(isolated_store, "exec", "box", "sleep", MARK)
    assert wait_until(lambda: MARK in cli("top", "box").out)
    killed_after(exec_, 0)
    time.sleep(0.2)
    assert MARK in cli("top", "box").out  # docker's exec goes on too
    assert cli("stop", "-t", "0", "box").code == 0
    attach = client(isolated_store, "start", "-a", "box")
    assert wait_until(lambda: '"running"' in cli("inspect", "box").out)
    killed_after(attach, 0.1)
    assert '"running"' in cli("inspect", "box").out  # the monitor has it
    assert cli("rm", "-f", "box").code == 0
    assert wait_until(lambda: not ours_left(isolated_store, before)), ours_left(isolated_store, before)
