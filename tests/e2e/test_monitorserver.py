"""The monitors' server (containers/monitorserver.py): one per store forks every detached
container's monitor; the monitor, not the throwaway launcher, is PID 1's parent; killing the
server touches nothing that runs; it leaves once its last monitor has gone."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

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


def test_one_server_forks_the_monitors_which_are_pid1s_parents(cli, busybox, isolated_store):
    ids = [cli("run", "-d", "--network", "none", "busybox", "sleep", "1000").out.strip() for _ in range(2)]
    states = [state_of(isolated_store, cid) for cid in ids]
    monitors = [s["MonitorPid"] for s in states]
    assert [parent_of(s["Pid"]) for s in states] == monitors  # the recorded monitor is PID 1's parent
    servers = {parent_of(m) for m in monitors}
    assert len(servers) == 1  # both forked by one server
    path = socket_path(str(isolated_store))
    for where in (path, os.path.dirname(path)):  # whoever reaches it starts containers: root alone
        assert os.stat(where).st_uid == 0 and not stat.S_IMODE(os.stat(where).st_mode) & 0o077
    (server,) = servers
    with open(f"/proc/{server}/cmdline", "rb") as f:
        assert b"monitorserver" in f.read()

    # killed, it takes nothing with it; the next detached start starts a new one
    os.kill(server, signal.SIGKILL)
    assert wait_until(lambda: not os.path.exists(f"/proc/{server}") or parent_of(server) == 0)
    assert cli("exec", ids[0], "true").code == 0
    third = cli("run", "-d", "--network", "none", "busybox", "sleep", "1000").out.strip()
    assert parent_of(state_of(isolated_store, third)["MonitorPid"]) not in (server, 0)

    # a monitor's exit is still recorded by the monitor, and the server leaves after the last
    assert cli("stop", "-t", "0", ids[0]).code == 0
    assert state_of(isolated_store, ids[0])["Status"] == "exited"
    new_server = parent_of(state_of(isolated_store, third)["MonitorPid"])
    assert cli("rm", "-f", *ids, third).code == 0
    assert wait_until(lambda: not os.path.exists(f"/proc/{new_server}"), IDLE_SECONDS + 10)
    assert not os.path.exists(path)
