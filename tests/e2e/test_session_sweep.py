"""A test session killed before its end (no pytest_sessionfinish) leaves its processes, mounts,
bridges, nft table, cgroups and run dir on the host; the next session's start sweeps them
(tests/sessions.py), and only those of a session whose record proves it dead.

Here the sessions are made by hand, of real kernel objects: a dead one, whose recorded pytest
is a child that ran and was reaped, with a container its worker gw0 started as the tests start
them (the CLI, on a bridge network: the bridge, its veth, the nft table, the cgroups, the PID 1
and the monitor are minirun's own), a stand-in for its CLI fork server and an overlay mounted
under its tmp dir; a live one, recorded with this process; and run dirs whose record is missing
or unsound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from minirun.procs import is_alive, start_time
from tests import sessions
from tests.conftest import require_root
from tests.forkserver import run_minirun


def _fresh_sessions(count: int) -> list[sessions.Names]:
    """Ids no session on the host has, nor any name of theirs."""
    found: list[sessions.Names] = []
    while len(found) < count:
        names = sessions.Names.of_session(os.urandom(3).hex()[:5])
        if names not in found and not names.in_use():
            found.append(names)
    return found


def _dead_pid() -> tuple[int, int]:
    """A pid and start time that were a process's: a child that ran and was reaped."""
    child = subprocess.Popen(["sleep", "60"])
    start = start_time(child.pid)
    child.kill()
    child.wait()
    assert start is not None
    return child.pid, start


def _bridge(name: str) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)


def _stray_in(cgroup: str) -> tuple[int, int]:
    """A process in `cgroup`, not this one's child (its parent gone) and started with no name of
    a session in its environment: found by its cgroup alone."""
    os.makedirs(cgroup)
    sh = subprocess.run(
        ["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], env={}, capture_output=True, check=True, timeout=10
    )
    pid = int(sh.stdout)
    Path(cgroup, "cgroup.procs").write_text(str(pid))
    start = start_time(pid)
    assert start is not None
    return pid, start


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _overlay(under: Path) -> Path:
    for name in ("lower", "upper", "work", "merged"):
        (under / name).mkdir(parents=True)
    options = f"lowerdir={under}/lower,upperdir={under}/upper,workdir={under}/work"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(under / "merged")], check=True)
    return under / "merged"


def _remove(names: sessions.Names, tmp: Path) -> None:
    sessions.kill_processes(names)
    sessions.unmount_under([str(tmp), names.run_dir])
    sessions.remove_names(names)


def test_a_dead_sessions_leftovers_are_swept_and_a_live_ones_are_not(tmp_path, busybox_template):
    require_root()
    dead, live, unrecorded = _fresh_sessions(3)
    dead_id, live_id = dead.nft_table.removeprefix("miniruntest"), live.nft_table.removeprefix("miniruntest")
    dead_tmp, live_tmp = tmp_path / "dead", tmp_path / "live"
    helpers: list[subprocess.Popen] = []
    stray = (0, 0)
    try:
        os.mkdir(dead.run_dir)  # claimed; its record, naming a pytest gone, is written last
        store = dead_tmp / "store"
        dead_tmp.mkdir()
        subprocess.run(["cp", "-a", "--", str(busybox_template), str(store)], check=True)
        env = dict(os.environ, **dead.env, MINIRUN_ROOT=str(store))
        env["MINIRUN_CGROUP_PARENT"] += "gw0"
        code, out, err = run_minirun(["run", "-d", "busybox", "sleep", "1000"], env)
        assert code == 0, err
        state = json.loads((store / "containers" / out.decode().strip() / "state.json").read_text())
        container = [(state["Pid"], state["PidStartTime"]), (state["MonitorPid"], state["MonitorStartTime"])]
        veths = os.listdir(f"/sys/class/net/{dead.bridge_prefix}0/brif")
        assert veths and sessions.cgroup_parents(dead.cgroup_parent)
        helpers.append(subprocess.Popen(["sleep", "1000"], env=dict(os.environ, **dead.env)))  # its fork server
        stray = _stray_in(f"{sessions.cgroup_mounts()[0]}/{dead.cgroup_parent}gw1/stray")
        dead_mount = _overlay(dead_tmp / "mnt")

        os.mkdir(live.run_dir)
        sessions.Record(live_id, os.getpid(), start_time(os.getpid()) or 0, [str(live_tmp)]).write()
        _bridge(f"{live.bridge_prefix}0")
        subprocess.run(["nft", "add", "table", "ip", live.nft_table], check=True)
        os.mkdir(f"{sessions.cgroup_mounts()[0]}/{live.cgroup_parent}")
        helpers.append(subprocess.Popen(["sleep", "1000"], env=dict(os.environ, **live.env)))
        live_mount = _overlay(live_tmp / "mnt")
        live_before = live.in_use()

        os.mkdir(unrecorded.run_dir)  # a session from before records, or one about to write its own
        _bridge(f"{unrecorded.bridge_prefix}0")

        # The dead session dies: from now on any sweeper may take it (another worker's test, another
        # session starting on the host); whoever does, it is done when this sweep returns (the flock).
        sessions.Record(dead_id, *_dead_pid(), [str(dead_tmp)]).write()
        swept = sessions.sweep_dead_sessions()

        assert not [line for line in swept if live_id in line], swept
        assert dead.in_use() == []
        assert not [veth for veth in veths if os.path.exists(f"/sys/class/net/{veth}")]
        assert not [p for p, s in [*container, stray] if is_alive(p, s)]
        assert helpers[0].wait(timeout=10) == -9
        assert not _mounted(dead_mount)

        assert live.in_use() == live_before and len(live_before) == 4
        assert helpers[1].poll() is None
        assert _mounted(live_mount)
        assert unrecorded.in_use() == [f"link {unrecorded.bridge_prefix}0", f"run dir {unrecorded.run_dir}"]
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
        if is_alive(*stray):
            os.kill(stray[0], signal.SIGKILL)  # the sweep missed it: nothing else finds it
        _remove(dead, dead_tmp)
        _remove(live, live_tmp)
        sessions.remove_names(unrecorded)


@pytest.mark.parametrize(
    "record",
    [
        "{",
        '{"session": "OTHER", "pid": PID, "start": START, "tmp": []}',  # another session's record
        '{"session": "SESSION", "pid": PID, "start": START, "tmp": ["/tmp"]}',  # every mount under /tmp
        '{"session": "SESSION", "pid": PID, "start": START, "tmp": ["relative/dir"]}',
        '{"session": "SESSION", "pid": PID, "start": null, "tmp": []}',
    ],
)
def test_a_record_not_whole_and_sound_is_never_swept(record):
    require_root()
    names, other = _fresh_sessions(2)
    session = names.nft_table.removeprefix("miniruntest")
    pid, start = _dead_pid()
    text = record.replace("OTHER", other.nft_table.removeprefix("miniruntest")).replace("SESSION", session)
    try:
        os.mkdir(names.run_dir)
        Path(names.run_dir, sessions.RECORD).write_text(text.replace("PID", str(pid)).replace("START", str(start)))
        _bridge(f"{names.bridge_prefix}0")

        assert not [line for line in sessions.sweep_dead_sessions() if session in line]

        assert names.in_use() == [f"link {names.bridge_prefix}0", f"run dir {names.run_dir}"]
    finally:
        sessions.remove_names(names)
