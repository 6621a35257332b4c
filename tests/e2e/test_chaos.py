"""Chaos: kill -9 at random moments of run, run -d, exec, commit, rm, build, load and pull, 100
times over, then `system check --repair` leaves a store that checks clean, and nothing of ours
stays on the host (mounts, processes, cgroups; no address booked, no port published)."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from minirun.runtime import cgroups
from tests.helpers import minirun_in as done
from tests.helpers import minirun_started as minirun
from tests.helpers import wait_until
from tests.registryserver import minirun_config, registry  # noqa: F401 - fixtures

ITERATIONS = 100
SEED = 20261203  # the same kills every run: a failure can be replayed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def operations(store, tmp_path, registry_host: str) -> dict[str, list[str]]:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text("FROM busybox\nRUN echo one > /one\nRUN sleep 0.2; echo two > /two\n")
    return {
        "run": ["run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo hi; sleep 0.3"],
        "run-kept": ["run", "--network", "none", "busybox", "sleep", "0.3"],
        "run-d": ["run", "-d", "--rm", "-p", "127.0.0.1::80", "busybox", "sleep", "0.4"],
        "exec": ["exec", "box", "sh", "-c", "echo x > /tmp/x; sleep 0.3"],
        "commit": ["commit", "box", "chaos:commit"],
        "rm": ["rm", "-f", "victim"],
        "build": ["build", "-q", "-t", "chaos:build", str(context)],
        "load": ["load", "-q", "-i", str(tmp_path / "busybox.tar")],
        "pull": ["pull", "-q", f"{registry_host}/chaos:1"],
    }


def test_kill_9_anywhere_then_system_check_repairs_everything(busybox, isolated_store, tmp_path, registry):
    store = isolated_store
    assert done(store, "save", "-o", str(tmp_path / "busybox.tar"), "busybox").returncode == 0
    assert done(store, "tag", "busybox", f"{registry.host}/chaos:1").returncode == 0
    assert done(store, "push", "-q", f"{registry.host}/chaos:1").returncode == 0
    assert done(store, "run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "3000").returncode == 0
    ops = operations(store, tmp_path, registry.host)
    cgroups_before = _cgroups()
    rng = random.Random(SEED)
    for _ in range(ITERATIONS):
        name = rng.choice(sorted(ops))
        if name == "rm":
            done(store, "run", "-d", "--name", "victim", "--network", "none", "busybox", "sleep", "3000")
        proc = minirun(store, *ops[name])
        time.sleep(rng.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if name == "rm":
            done(store, "rm", "-f", "victim")
    time.sleep(1)  # what the guards and monitors of killed clients do, done
    repaired = done(store, "system", "check", "--repair")
    print(repaired.stdout)  # what the kills left, for whoever reads a failure
    assert repaired.returncode == 0, repaired.stdout
    check = done(store, "system", "check")
    assert check.returncode == 0 and check.stdout.endswith("no problems\n"), check.stdout
    # and then the host: every container removed, nothing of ours is left
    ids = done(store, "ps", "-aq").stdout.split()
    if ids:
        assert done(store, "rm", "-f", *ids).returncode == 0
    assert wait_until(lambda: _cgroups() <= cgroups_before), _cgroups() - cgroups_before
    with open("/proc/mounts") as f:
        assert [line for line in f if str(store) in line] == []
    final = done(store, "system", "check")
    assert final.returncode == 0, final.stdout


def _cgroups() -> set[str]:
    found = set()
    for hierarchy in cgroups.hierarchies():
        try:
            parent = f"{hierarchy.mount}/{cgroups.PARENT}"
            found |= {f"{parent}/{d}" for d in os.listdir(parent)}
        except FileNotFoundError:
            continue
    return found
