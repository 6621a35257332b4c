"""A full disk takes no container down and wedges no command: a store on a small ext4 that the
test makes (a loop device) and unmounts, filled to the last block from the host."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.helpers import minirun_in as minirun
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


@pytest.fixture
def small_store(tmp_path):
    """A 64 MiB ext4 at tmp_path/disk holding the store; the busybox image is built there first."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True)  # no reserve
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    store = mount / "store"
    try:
        assert minirun(store, "run", "--rm", "--network", "none", "busybox", "true").returncode == 0
        yield store
    finally:
        ids = minirun(store, "ps", "-aq").stdout.split()
        if ids:
            minirun(store, "rm", "-f", *ids)
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)


def fill(path) -> None:
    """Write zeros until the disk refuses a single byte more."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue
    assert os.statvfs(os.path.dirname(path)).f_bavail == 0


def test_a_full_disk_keeps_containers_running_and_every_command_working(small_store):
    store = small_store
    logger = minirun(
        store,
        "run",
        "-d",
        "--name",
        "logger",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do echo tick; sleep 0.02; done",
    ).stdout.strip()
    idle = minirun(store, "run", "-d", "--name", "idle", "--network", "none", "busybox", "sleep", "300").stdout.strip()
    assert minirun(store, "tag", "busybox", "spare:1").returncode == 0
    assert minirun(store, "run", "--name", "done", "--network", "none", "busybox", "true").returncode == 0
    fill(store.parent / "fill")
    time.sleep(1)  # the logger writes on; its copier must drop, not die

    ps = minirun(store, "ps", "-a")
    assert ps.returncode == 0, ps
    assert sorted(line.split()[-1] for line in ps.stdout.splitlines()[1:] if " Up " in line) == ["idle", "logger"], (
        ps.stdout
    )
    for args in (
        ["inspect", "logger"],
        ["logs", "--tail", "1", "logger"],
        ["images"],
        ["top", "logger"],
        ["stats", "--no-stream"],
    ):
        done = minirun(store, *args)
        assert done.returncode == 0, (args, done.stderr)
    # the ways out work on the full disk: stop records the exit, rm -f, rmi, prune free space
    assert minirun(store, "stop", "-t", "1", "logger").returncode == 0
    state = json.loads(minirun(store, "inspect", "logger").stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] in (137, 143), state
    record = json.loads((store / "containers" / logger / "state.json").read_text())
    assert record["LogBytesDropped"] > 0, record  # what the disk refused was counted
    dropped = minirun(store, "logs", "logger")
    assert dropped.returncode == 0 and "bytes of this container's output were dropped" in dropped.stderr
    assert minirun(store, "rm", "-f", idle).returncode == 0
    assert minirun(store, "rmi", "spare:1").returncode == 0
    assert minirun(store, "container", "prune", "-f").returncode == 0
    assert minirun(store, "ps", "-aq").stdout == ""
    assert minirun(store, "system", "prune", "-f").returncode == 0


def test_commands_that_only_read_write_nothing(small_store, tmp_path, monkeypatch):
    """ps, inspect, logs, images, top, stats, port and system df against a read-only view of the
    store: any write they tried would fail there."""
    store = small_store
    running = minirun(
        store, "run", "-d", "--name", "up", "--network", "none", "busybox", "sh", "-c", "echo hello; sleep 300"
    ).stdout.strip()
    assert minirun(store, "run", "--name", "down", "--network", "none", "busybox", "true").returncode == 0
    with monkeypatch.context() as env:  # a monitors' server of its own, whose death takes only it
        env.setenv("MINIRUN_MONITOR_GROUP", "orphan")
        orphan = minirun(
            store, "run", "-d", "--name", "orphan", "--network", "none", "busybox", "sleep", "300"
        ).stdout.strip()
    state = json.loads((store / "containers" / orphan / "state.json").read_text())
    os.kill(state["MonitorPid"], 9)  # its record says running; whoever looks first finds out it is not
    assert wait_until(lambda: not os.path.exists(f"/proc/{state['Pid']}"))
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(store), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        assert wait_until(lambda: "hello" in minirun(view, "logs", "up").stdout)
        for args in (
            ["ps", "-a"],
            ["inspect", "up", "down"],
            ["logs", "up"],
            ["images"],
            ["top", "up"],
            ["stats", "--no-stream", "up"],
            ["port", "up"],
            ["system", "df"],
            ["history", "busybox"],
        ):
            done = minirun(view, *args)
            assert done.returncode == 0 and "Read-only" not in done.stderr, (args, done.stderr)
        shown = minirun(view, "ps", "-a").stdout
        assert "Exited (255)" in [line for line in shown.splitlines() if "orphan" in line][0], shown
    finally:
        subprocess.run(["umount", str(view)], check=True)
    assert minirun(store, "rm", "-f", running).returncode == 0
