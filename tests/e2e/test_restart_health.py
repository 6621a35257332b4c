"""Restart policies, the `restart` verb, `system boot` and health checks, on real containers.

The record is polled from state.json and health.json directly (a CLI start costs ~0.3 s of CPU);
what the user types is checked once per behaviour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from minirun.procs import is_alive, parent_of
from tests.helpers import wait_until


def state_of(store_root, container_id) -> dict:
    return json.loads((store_root / "containers" / container_id / "state.json").read_text())


def health_of(store_root, container_id) -> dict:
    try:
        return json.loads((store_root / "containers" / container_id / "health.json").read_text())
    except (OSError, ValueError):
        return {}


def actions(cli, container_id: str) -> list[str]:
    out = cli(
        "events", "--since", "10m", "--until", "0s", "--filter", f"container={container_id}", "--format", "{{.Action}}"
    )
    return out.out.split("\n")[:-1]


@pytest.fixture(autouse=True)
def nothing_left_running(cli, isolated_store):
    yield
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    if ids:
        cli("rm", "-f", *ids)


def test_on_failure_2_restarts_exactly_twice(cli, busybox, isolated_store):
    run = cli("run", "-d", "--network", "none", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    assert run.code == 0, run
    cid = run.out.strip()

    def settled() -> bool:
        state = state_of(isolated_store, cid)
        return state["Status"] == "exited" and state.get("RestartCount") == 2

    assert wait_until(settled), state_of(isolated_store, cid)
    inspect = json.loads(cli("inspect", cid).out)[0]
    assert inspect["RestartCount"] == 2
    assert inspect["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert inspect["State"]["ExitCode"] == 3 and not inspect["State"]["Restarting"]
    # the log went on across the restarts: three runs, three lines
    assert cli("logs", cid).out == "run\n" * 3
    seen = actions(cli, cid)
    assert seen.count("start") == 3 and seen.count("die") == 3, seen


def test_foreground_run_hands_its_restarts_to_a_monitor(cli, busybox, isolated_store):
    """docker's client returns at the first exit and the daemon restarts the container: here a
    monitor takes it over."""
    run = cli("run", "--name", "fg", "--network", "none", "--restart", "on-failure:1", "busybox", "sh", "-c", "exit 4")
    assert run.code == 4, run
    cid = json.loads(cli("inspect", "fg").out)[0]["Id"]
    assert wait_until(
        lambda: (
            state_of(isolated_store, cid)["Status"] == "exited"
            and state_of(isolated_store, cid).get("RestartCount") == 1
        )
    )


def test_always_stop_restart_and_boot(cli, busybox, isolated_store):
    """One container: `always` brings it back after it exits by itself, not after `stop`;
    `restart` gives a new PID 1; `system boot` starts it again after its processes were killed
    as a reboot would (monitor and PID 1 with SIGKILL)."""
    script = "if [ -f /restarted ]; then exec sleep 1000; fi; touch /restarted; exit 0"
    run = cli("run", "-d", "--name", "svc", "--network", "none", "--restart", "always", "busybox", "sh", "-c", script)
    assert run.code == 0, run
    cid = run.out.strip()

    def running_again() -> bool:
        state = state_of(isolated_store, cid)
        return state["Status"] == "running" and state.get("RestartCount") == 1

    assert wait_until(running_again), state_of(isolated_store, cid)
    assert cli("stop", "-t", "0", "svc").code == 0
    stopped = state_of(isolated_store, cid)
    assert stopped["Status"] == "exited"
    # no restart may follow: past twice the back-off it would have waited, it is still down
    time.sleep(2 * stopped["RestartBackoffMs"] / 1000 + 0.5)
    assert state_of(isolated_store, cid)["Status"] == "exited"
    assert "Exited (137)" in cli("ps", "-a", "--format", "{{.Status}}").out

    assert cli("start", "svc").code == 0
    first = state_of(isolated_store, cid)
    assert first["Status"] == "running" and first["RestartCount"] == 0  # a start by the user begins anew
    assert cli("restart", "-t", "0", "svc").out == "svc\n"
    second = state_of(isolated_store, cid)
    assert second["Status"] == "running" and second["Pid"] != first["Pid"]
    assert actions(cli, cid)[-2:] == ["start", "restart"]

    # a reboot, as far as the container can tell: its monitor and PID 1 die at once
    monitor = parent_of(second["Pid"])
    os.kill(monitor, signal.SIGKILL)
    os.kill(second["Pid"], signal.SIGKILL)
    assert wait_until(lambda: not is_alive(second["Pid"], second["PidStartTime"]))
    boot = cli("system", "boot")
    assert boot.code == 0 and boot.out == "svc\n", boot
    third = state_of(isolated_store, cid)
    assert third["Status"] == "running" and third["Pid"] not in (first["Pid"], second["Pid"])
    assert cli("system", "boot").out == ""  # a running one is left alone


def test_healthcheck_turns_healthy_then_unhealthy(cli, busybox, isolated_store):
    # the check also tells what it may do: no more than an `exec` (docker's capabilities, no_new_privs, fds 0-2)
    walls = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status && ls /proc/self/fd"
    check = f"test -f /tmp/ok && {walls} || {{ [ -f /tmp/slow ] && sleep 5; exit 1; }}"
    run = cli(
        "run", "-d", "--name", "web", "--network", "none",
        "--health-cmd", check, "--health-interval", "200ms", "--health-timeout", "1s", "--health-retries", "2",
        "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 1000",
    )  # fmt: skip
    assert run.code == 0, run
    cid = run.out.strip()
    assert wait_until(lambda: health_of(isolated_store, cid).get("Status") == "healthy")
    assert "(healthy)" in cli("ps", "--format", "{{.Status}}").out
    assert cli("ps", "-q", "--filter", "health=healthy").out == cid[:12] + "\n"
    assert cli("ps", "-q", "--filter", "health=unhealthy").out == ""
    healthy = health_of(isolated_store, cid)["Log"][-1]
    assert healthy["ExitCode"] == 0
    # ls's own directory fd is the 3: nothing of the monitor's reached the check
    assert healthy["Output"] == "CapEff:\t00000000800405fb\nNoNewPrivs:\t1\n0\n1\n2\n3\n", healthy

    assert cli("exec", "web", "rm", "/tmp/ok").code == 0
    assert wait_until(lambda: health_of(isolated_store, cid).get("Status") == "unhealthy")
    health = json.loads(cli("inspect", "-f", "{{json .State.Health}}", "web").out)
    assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
    assert 1 <= len(health["Log"]) <= 5 and health["Log"][-1]["ExitCode"] == 1

    # a check past its timeout: docker's -1 and message
    assert cli("exec", "web", "touch", "/tmp/slow").code == 0
    assert wait_until(lambda: any(e["ExitCode"] == -1 for e in health_of(isolated_store, cid).get("Log", [])))
    timed_out = next(e for e in health_of(isolated_store, cid)["Log"] if e["ExitCode"] == -1)
    assert timed_out["Output"] == "Health check exceeded timeout (1s)"
    inspect = json.loads(cli("inspect", "web").out)[0]
    assert inspect["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", check]
    assert inspect["Config"]["Healthcheck"]["Interval"] == 200_000_000
    seen = actions(cli, cid)
    assert "health_status: healthy" in seen and "health_status: unhealthy" in seen, seen


def test_a_pid_1_that_closes_its_output_is_still_served(cli, busybox, isolated_store):
    """PID 1 closes its stdout and stderr and lives on: its monitor still runs its health checks
    and still hands an attach client's input to its stdin (the copier once ended at the pipes'
    EOF and waited for PID 1's exit, serving nothing: `attach` hung, proxying even its SIGTERM
    into a socket nobody read, and the health stayed `starting` for good)."""
    run = cli(
        "run", "-d", "-i", "--network", "none", "--health-cmd", "test -f /tmp/hello", "--health-interval", "200ms",
        "busybox", "sh", "-c", "exec >&- 2>&-; read word; touch /tmp/$word; exec sleep 1000",
    )  # fmt: skip
    assert run.code == 0, run
    cid = run.out.strip()
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    attach = subprocess.Popen(
        [sys.executable, "-m", "minirun", "attach", cid], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        assert attach.stdin is not None
        attach.stdin.write(b"hello\n")
        attach.stdin.flush()
        assert wait_until(lambda: health_of(isolated_store, cid).get("Status") == "healthy"), health_of(
            isolated_store, cid
        )
        assert cli("stop", "-t", "1", cid).code == 0
        assert attach.wait(timeout=60) == 137
    finally:
        attach.kill()
        attach.wait()
