"""The monitors' server (containers/monitorserver.py): one process per store monitors every
detached container, each in a thread that is its PID 1's parent; a monitor's fds are its own; a
server's death takes its own containers alone (MINIRUN_MONITOR_GROUP makes another); it leaves
once its last monitor has gone."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time

import pytest

from minirun.containers.monitorclient import socket_path
from minirun.containers.monitorserver import IDLE_SECONDS


def state_of(store, cid: str) -> dict:
    return json.loads((store / "containers" / cid / "state.json").read_text())


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def wait_until(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def fds_of(pid: int) -> list[str]:
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return names


def test_one_server_monitors_every_container_in_threads(cli, busybox, isolated_store, monkeypatch):
    ids = [cli("run", "-d", "--network", "none", "busybox", "sleep", "1000").out.strip() for _ in range(2)]
    states = [state_of(isolated_store, cid) for cid in ids]
    servers = {s["MonitorPid"] for s in states}
    assert len(servers) == 1  # both monitored by one process
    (server,) = servers
    assert [parent_of(s["Pid"]) for s in states] == [server, server]  # the recorded monitor is PID 1's parent
    with open(f"/proc/{server}/cmdline", "rb") as f:
        assert b"monitorserver" in f.read()
    assert len(os.listdir(f"/proc/{server}/task")) == 3  # its own thread and one per container
    for state in states:  # what the server holds of the other container never reaches a PID 1
        assert sorted(os.listdir(f"/proc/{state['Pid']}/fd")) == ["0", "1", "2"]
    path = socket_path(str(isolated_store))
    for where in (path, os.path.dirname(path)):  # whoever reaches it starts containers: root alone
        assert os.stat(where).st_uid == 0 and not stat.S_IMODE(os.stat(where).st_mode) & 0o077

    # another group's server: its death takes its own container, and nothing else
    with monkeypatch.context() as env:
        env.setenv("MINIRUN_MONITOR_GROUP", "other")
        other = cli("run", "-d", "--network", "none", "busybox", "sleep", "1000").out.strip()
    other_server = state_of(isolated_store, other)["MonitorPid"]
    assert other_server != server
    os.kill(other_server, signal.SIGKILL)
    assert wait_until(lambda: "Exited (255)" in cli("ps", "-a", "--filter", f"id={other}").out)
    assert cli("exec", ids[0], "true").code == 0 and cli("exec", ids[1], "true").code == 0

    # a stop is recorded by the container's thread, which leaves nothing of its own open
    log = str(isolated_store / "containers" / ids[0] / "container.log")
    assert log in fds_of(server)
    assert cli("stop", "-t", "0", ids[0]).code == 0
    assert state_of(isolated_store, ids[0])["Status"] == "exited"
    assert wait_until(lambda: len(os.listdir(f"/proc/{server}/task")) == 2)
    assert not any(ids[0] in name for name in fds_of(server))
    assert cli("exec", ids[1], "true").code == 0

    # the server leaves after the last
    assert cli("rm", "-f", *ids, other).code == 0
    assert wait_until(lambda: not os.path.exists(f"/proc/{server}"), IDLE_SECONDS + 10)
    assert not os.path.exists(path)


def test_a_monitor_threads_failure_ends_its_container_recorded(cli, busybox, isolated_store):
    """monitor.failed, what the server calls when a monitor's thread raises: PID 1 (the thread's
    child) killed and reaped, the exit recorded as the monitor's failure, never left `running`."""
    from minirun.containers import monitor
    from minirun.containers.container import Containers
    from minirun.procs import start_time
    from minirun.store import Store

    cid = cli("create", "--network", "none", "busybox", "sleep", "300").out.strip()
    containers = Containers(Store(str(isolated_store)))
    pid = os.fork()
    if pid == 0:  # stands for PID 1: this process's child, as PID 1 is its monitor thread's
        time.sleep(300)
        os._exit(0)
    running = dict(Status="running", Running=True, Pid=pid, PidStartTime=start_time(pid))
    try:
        # another process's container: not this one's to end
        containers.update_state(containers.load(cid), **running, MonitorPid=1, MonitorStartTime=start_time(1))
        monitor.failed([str(isolated_store), cid], RuntimeError("boom"))
        assert state_of(isolated_store, cid)["Status"] == "running" and os.waitpid(pid, os.WNOHANG) == (0, 0)

        me = dict(MonitorPid=os.getpid(), MonitorStartTime=start_time(os.getpid()))
        containers.update_state(containers.load(cid), **running, **me)
        monitor.failed([str(isolated_store), cid], RuntimeError("boom"))
        with pytest.raises(ChildProcessError):  # killed and reaped by failed()
            os.waitpid(pid, os.WNOHANG)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    state = state_of(isolated_store, cid)
    assert state["Status"] == "exited" and state["ExitCode"] == 255 and not state["Running"]
    assert state["Error"] == "the container's monitor failed: RuntimeError: boom"
    assert "Exited (255)" in cli("ps", "-a").out


def test_a_detached_rm_gives_its_name_back(cli, busybox, isolated_store):
    cid = cli("run", "-d", "--rm", "--name", "brief", "--network", "none", "busybox", "true").out.strip()
    assert wait_until(lambda: not (isolated_store / "containers" / cid).exists())
    assert not os.path.lexists(isolated_store / "names" / "brief")  # the monitor's finisher took its link
    assert cli("run", "--rm", "--name", "brief", "--network", "none", "busybox", "true").code == 0


def test_a_silent_client_keeps_no_start_waiting(cli, busybox, isolated_store):
    """A client that connects to the server and says nothing (a `run -d` stopped between its
    connect and its request, anyone's wedged program) must not hold the server: the next
    `run -d` is served by the same server while that connection stays open."""
    import socket
    import subprocess

    from tests.forkserver import run_minirun

    first = cli("run", "-d", "--network", "none", "busybox", "sleep", "1000").out.strip()
    server = state_of(isolated_store, first)["MonitorPid"]
    silent = []
    for _ in range(72):  # more than wait at once (MAX_WAITING, 64): the oldest go, the server stays
        silent.append(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        silent[-1].setblocking(False)  # a full backlog says EAGAIN: the server has not accepted yet
        # (the limit ends a test that would hang: a server that accepts at all does so at once)
        assert wait_until(lambda: silent[-1].connect_ex(socket_path(str(isolated_store))) in (0, errno.EISCONN), 60)
        silent[-1].setblocking(True)
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
        argv = ["run", "-d", "--network", "none", "busybox", "sleep", "1000"]
        try:  # the limit only ends a test that would hang: the server answers at once or never
            code, out, _ = run_minirun(argv, env, None, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("`run -d` waited for the silent client")
        assert code == 0
        second = out.decode().strip()
        assert state_of(isolated_store, second)["MonitorPid"] == server
        assert state_of(isolated_store, second)["Status"] == "running"
        for conn in silent[:8]:  # the oldest were let go
            assert conn.recv(1) == b""
    finally:
        for conn in silent:
            conn.close()
