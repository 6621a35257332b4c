"""Detached containers for real: run -d, the monitor, logs, ps, stop, kill, rm, start, wait."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import wait_until

ID64 = re.compile(r"^[0-9a-f]{64}\n$")


def state_of(store_root, container_id) -> dict:
    return json.loads((store_root / "containers" / container_id / "state.json").read_text())


def processes_of(container_id: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if container_id in line]


@pytest.fixture(autouse=True)
def nothing_left_running(cli, isolated_store):
    yield
    # whatever a test left running is killed and removed, so no monitor outlives the test
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    if ids:  # one `rm` for them all: each CLI start costs ~0.3 s of CPU
        cli("rm", "-f", *ids)
    assert not [p for p in processes_of(str(isolated_store)) if "logcopier" in p or "monitor" in p]


def test_run_d_prints_the_id_and_keeps_running(cli, busybox, isolated_store):
    started = time.monotonic()
    result = cli("run", "-d", "--name", "myapp", "busybox", "sleep", "100000")
    assert result.code == 0 and ID64.match(result.out), result
    assert time.monotonic() - started < 10
    container_id = result.out.strip()
    state = state_of(isolated_store, container_id)
    assert state["Status"] == "running" and state["Pid"] > 0
    table = cli("ps").out.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = table[1]
    assert row.startswith(container_id[:12]) and '"sleep 100000"' in row and "Up " in row and row.endswith("myapp")
    assert cli("ps", "-q").out == container_id[:12] + "\n"
    assert cli("ps", "-q", "--no-trunc").out == container_id + "\n"
    record = json.loads(cli("ps", "--format", "json").out)
    assert record["Names"] == "myapp" and record["State"] == "running"


def test_logs_keep_streams_apart(cli, busybox):
    cid = cli("run", "-d", "busybox", "sh", "-c", "echo one; echo two >&2; echo three").out.strip()
    assert cli("wait", cid).out == "0\n"
    logs = cli("logs", cid)
    assert (logs.out, logs.err) == ("one\nthree\n", "two\n")
    tail = cli("logs", "--tail", "1", cid)  # the last entry of either stream
    assert (tail.out + tail.err) in ("three\n", "two\n")
    quiet = cli("run", "-d", "busybox", "sh", "-c", "seq 1 5").out.strip()
    cli("wait", quiet)
    assert cli("logs", "--tail", "2", quiet).out == "4\n5\n"
    stamped = cli("logs", "-t", cid).out.splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one$", stamped[0])


def test_logs_follow_until_exit(cli, busybox):
    cid = cli("run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done").out.strip()
    followed = cli("logs", "-f", cid)
    assert followed.out == "1\n2\n3\n"


def test_stop_kills_a_process_that_ignores_sigterm_after_the_timeout(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done").out.strip()
    started = time.monotonic()
    assert cli("stop", "-t", "1", cid).out == cid + "\n"
    took = time.monotonic() - started
    assert 0.9 < took < 10
    state = state_of(isolated_store, cid)
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert "Exited (137)" in cli("ps", "-a").out


def test_stop_of_a_cooperating_process_is_quick(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done").out.strip()
    started = time.monotonic()
    cli("stop", cid)
    assert time.monotonic() - started < 5
    assert state_of(isolated_store, cid)["ExitCode"] == 3


def test_kill_with_a_signal(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.1; done").out.strip()
    assert cli("kill", "-s", "USR1", cid).code == 0
    assert cli("wait", cid).out == "7\n"
    assert cli("kill", cid).code == 125  # not running any more
    bad = cli("kill", "-s", "NOSUCHSIG", cid)
    assert bad.code == 125 and "invalid signal" in bad.err


def test_rm_needs_force_for_a_running_container(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sleep", "1000").out.strip()
    refused = cli("rm", cid)
    assert refused.code == 125 and "cannot remove a running container" in refused.err
    assert cli("rm", "-f", cid).code == 0
    assert not (isolated_store / "containers" / cid).exists()
    assert wait_until(lambda: not processes_of(cid))
    assert cli("ps", "-a", "-q").out == ""


def test_start_runs_an_exited_container_again_on_the_same_upper(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sh", "-c", "echo run >> /count; wc -l < /count").out.strip()
    assert cli("wait", cid).out == "0\n"
    assert cli("start", cid).out == cid + "\n"
    assert cli("wait", cid).out == "0\n"
    assert cli("logs", cid).out.split() == ["1", "2"]
    attached = cli("start", "-a", cid)
    assert attached.out == "3\n" and attached.code == 0
    assert (isolated_store / "containers" / cid / "upper" / "count").read_text() == "run\nrun\nrun\n"


def test_wait_prints_the_exit_code(cli, busybox):
    cid = cli("run", "-d", "busybox", "sh", "-c", "sleep 0.3; exit 42").out.strip()
    assert cli("wait", cid).out == "42\n"
    assert "Exited (42)" in cli("ps", "-a").out


def test_eight_parallel_detached_containers(cli, busybox):
    def start(i):
        return cli("run", "-d", "--name", f"par{i}", "busybox", "sh", "-c", f"echo hello-{i}").out.strip()

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(start, range(8)))
    assert all(ID64.match(i + "\n") for i in ids) and len(set(ids)) == 8
    for i, cid in enumerate(ids):
        assert cli("wait", cid).out == "0\n"
        assert cli("logs", f"par{i}").out == f"hello-{i}\n"


def test_a_monitor_killed_with_9_leaves_an_honest_state(cli, busybox, isolated_store):
    cid = cli("run", "-d", "busybox", "sleep", "1000").out.strip()
    state = state_of(isolated_store, cid)
    os.kill(state["MonitorPid"], signal.SIGKILL)
    # the container dies with its monitor (nobody else could record its exit) ...
    assert wait_until(
        lambda: (
            not os.path.exists(f"/proc/{state['Pid']}")
            or open(f"/proc/{state['Pid']}/stat").read().split(") ")[1][0] == "Z"
        )
    )
    # ... and the next ps says so instead of "Up"
    row = cli("ps", "-a").out.splitlines()[1]
    assert "Exited (255)" in row
    assert cli("ps", "-q").out == ""
    doc = json.loads(cli("inspect", cid).out)[0]
    assert doc["State"]["Running"] is False and "monitor" in doc["State"]["Error"]
    assert cli("wait", cid).out == "255\n"


def test_run_d_with_rm_removes_itself(cli, busybox, isolated_store):
    cid = cli("run", "-d", "--rm", "busybox", "true").out.strip()
    assert wait_until(lambda: not (isolated_store / "containers" / cid).exists())


def test_inspect_rename_top_prune(cli, busybox, isolated_store):
    cid = cli("run", "-d", "--name", "first", "busybox", "sleep", "1000").out.strip()
    doc = json.loads(cli("inspect", "first").out)[0]
    assert doc["Id"] == cid and doc["Name"] == "/first" and doc["State"]["Status"] == "running"
    assert doc["GraphDriver"]["Name"] == "overlay" and doc["GraphDriver"]["Data"]["UpperDir"].endswith(cid + "/upper")
    assert doc["Path"] == "sleep" and doc["Args"] == ["1000"]
    assert cli("rename", "first", "second").code == 0
    assert cli("ps").out.splitlines()[1].endswith("second")
    top = cli("top", "second").out.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and top[1].endswith("sleep 1000")
    done = cli("run", "-d", "busybox", "true").out.strip()
    cli("wait", done)
    pruned = cli("container", "prune", "-f")
    assert done in pruned.out and cid not in pruned.out and "Total reclaimed space" in pruned.out
    assert cli("ps", "-a", "-q", "--no-trunc").out == cid + "\n"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["stop", "nosuch"], "No such container: nosuch"),
        (["logs", "nosuch"], "No such container"),
        (["wait", "nosuch"], "No such container"),
        (["top", "nosuch"], "No such container"),
        (["rename", "nosuch", "x2"], "No such container"),
        (["ps", "--bogus"], "--bogus"),
        (["logs", "--tail", "x", "nosuch"], "--tail"),
    ],
)
def test_bad_input_is_one_line_and_125(cli, args, needle):
    result = cli(*args)
    lines = result.err.strip().splitlines()
    assert result.code == 125 and len(lines) == 1 and lines[0].startswith("minirun: error: ") and needle in lines[0], (
        result
    )


# 400 CLI starts: over a minute alone, and it has taken 300 s with three more xdist workers on two
# cores another test session also used (tests/conftest.py marks it slow and starts it first)
@pytest.mark.timeout(600)
def test_many_run_d_rm_f_cycles_leave_nothing(cli, busybox, isolated_store):
    cycles = int(os.environ.get("MINIRUN_CYCLES", "200"))
    with ThreadPoolExecutor(2) as pool:

        def cycle(i):
            cid = cli("run", "-d", "busybox", "sleep", "1000").out.strip()
            assert cli("rm", "-f", cid).code == 0
            return cid

        ids = list(pool.map(cycle, range(cycles)))
    assert len(set(ids)) == cycles
    assert os.listdir(isolated_store / "containers") == []
    assert not processes_of(str(isolated_store))
    assert not [line for line in open("/proc/mounts") if str(isolated_store) in line]


def test_logs_since_and_until_pick_by_time(cli, busybox):
    """--since at or after, --until before, in each of docker's forms: the entries' own stamps split
    the output exactly (read back with -t), and a relative time counts back from now."""
    cid = cli("run", "-d", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; sleep 0.3; done").out.strip()
    assert cli("wait", cid).out == "0\n"
    stamps = [line.split()[0] for line in cli("logs", "-t", cid).out.splitlines()]
    assert len(stamps) == 4
    third = stamps[2]
    assert cli("logs", "--since", third, cid).out == "3\n4\n"
    assert cli("logs", "--until", third, cid).out == "1\n2\n"
    assert cli("logs", "--since", stamps[1], "--until", stamps[3], cid).out == "2\n3\n"
    assert cli("logs", "--since", "1h", cid).out == "1\n2\n3\n4\n"
    assert cli("logs", "--until", "1h", cid).out == ""
    assert cli("logs", "--since", "0", cid).out == "1\n2\n3\n4\n"  # Unix seconds
    # --until now: everything so far, and a follow ends at once
    assert cli("logs", "-f", "--until", "0s", cid).out == "1\n2\n3\n4\n"
    bad = cli("logs", "--since", "yesterday", cid)
    assert bad.code == 125 and bad.err.startswith("minirun: error: --since: invalid time 'yesterday'")


def test_ps_last_latest_and_size(cli, busybox):
    ids = []
    for script in ("true", "echo hello > /file", "sleep 100"):
        started = cli("run", "-d", "--network", "none", "busybox", "sh", "-c", script)
        assert started.code == 0, started.err
        ids.append(started.out.strip()[:12])
    cli("wait", ids[0])
    cli("wait", ids[1])
    try:
        assert cli("ps", "-q").out.split() == [ids[2]]  # running only
        assert cli("ps", "-n", "2", "-q").out.split() == [ids[2], ids[1]]  # the newest, any state
        assert cli("ps", "-l", "-q").out.split() == [ids[2]]
        sized = cli("ps", "-a", "-s").out.splitlines()
        assert sized[0].split()[-1] == "SIZE"
        by_id = {line.split()[0]: line for line in sized[1:]}
        assert re.search(r"  6B \(virtual \d+(\.\d+)?[kM]B\)$", by_id[ids[1]]), by_id[ids[1]]
        assert re.search(r"  0B \(virtual \d+(\.\d+)?[kM]B\)$", by_id[ids[0]]), by_id[ids[0]]
    finally:
        cli("rm", "-f", *ids)


def test_a_container_started_while_prune_looks_at_it_is_not_pruned(cli, busybox, isolated_store):
    """`container prune` measures an exited container's upper dir; the container is started
    meanwhile (the prune is held there, SIGSTOPped, as a busy host may hold it). Once the prune
    goes on, the running container stays, listed and running: prune once went by what it had
    read before, killed the new PID 1 through its cgroups and removed the record."""
    import sys

    script = "[ -f /again ] && exec sleep 1000; touch /again; mkdir /many; cd /many; seq 30000 | xargs touch"
    run = cli("run", "-d", "--network", "none", "busybox", "sh", "-c", script)
    assert run.code == 0, run
    cid = run.out.strip()
    assert cli("wait", cid).out == "0\n"
    upper = str(isolated_store / "containers" / cid / "upper")
    prune = subprocess.Popen(
        [sys.executable, "-m", "minirun", "container", "prune", "-f"],
        env=dict(os.environ, MINIRUN_ROOT=str(isolated_store)),
        stdout=subprocess.PIPE,
        text=True,
    )

    def in_the_upper() -> bool:  # an fd of the prune's in the upper dir: it is measuring it
        for fd in os.listdir(f"/proc/{prune.pid}/fd"):
            try:
                if os.readlink(f"/proc/{prune.pid}/fd/{fd}").startswith(upper):
                    return True
            except OSError:
                continue
        return False

    try:
        while not in_the_upper():
            assert prune.poll() is None, "the prune ended before it was seen measuring the container"
        os.kill(prune.pid, signal.SIGSTOP)
        assert cli("start", cid).code == 0
    finally:
        os.kill(prune.pid, signal.SIGCONT)
        pruned = prune.communicate(timeout=120)[0]
    assert cid not in pruned, pruned
    assert cli("ps", "-q", "--no-trunc").out == cid + "\n"
    assert cli("inspect", "-f", "{{.State.Status}}", cid).out == "running\n"
