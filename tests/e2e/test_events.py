"""`events`: the store's event log, written by the commands that act, read back with docker's
--since/--until/--filter/--format, and followed as it grows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from minirun import events


def actions(cli, *args: str) -> list[tuple[str, str]]:
    done = cli("events", "--since", "1h", "--until", "0s", "--format", "json", *args)
    assert done.code == 0, done.err
    return [(e["Type"], e["Action"].split(":")[0]) for e in map(json.loads, done.out.splitlines())]


def test_a_containers_life_in_events(cli, busybox):
    assert cli("run", "--name", "life", "--network", "none", "-l", "team=a", "busybox", "sh", "-c", "exit 3").code == 3
    assert cli("rename", "life", "life2").code == 0
    assert cli("rm", "life2").code == 0
    assert actions(cli, "--filter", "type=container") == [
        ("container", "create"),
        ("container", "start"),
        ("container", "die"),
        ("container", "rename"),
        ("container", "destroy"),
    ]
    die = json.loads(cli("events", "--since", "1h", "--until", "0s", "--format", "json", "-f", "event=die").out)
    assert die["Actor"]["Attributes"] == {"team": "a", "image": "busybox", "name": "life", "exitCode": "3"}
    # the text form: docker's `TIME TYPE ACTION ID (k=v, ...)`
    line = cli("events", "--since", "1h", "--until", "0s", "-f", "event=die").out
    assert line.endswith(f" container die {die['Actor']['ID']} (exitCode=3, image=busybox, name=life, team=a)\n")


def test_exec_image_and_network_events(cli, busybox):
    box = cli("run", "-d", "--name", "box", "busybox", "sleep", "100")
    assert box.code == 0, box.err
    try:
        assert cli("exec", "box", "true").code == 0
        assert cli("tag", "busybox", "again:1").code == 0
        assert cli("rmi", "again:1").code == 0
    finally:
        cli("rm", "-f", "box")
    seen = actions(cli)
    for expected in [
        ("network", "connect"),
        ("container", "exec_create"),
        ("container", "exec_start"),
        ("container", "exec_die"),
        ("image", "tag"),
        ("image", "untag"),
        ("container", "kill"),
        ("container", "destroy"),
        ("network", "disconnect"),
    ]:
        assert expected in seen, (expected, seen)
    assert actions(cli, "-f", "container=box", "-f", "event=exec_die") == [("container", "exec_die")]
    assert actions(cli, "-f", "image=again:1") == [("image", "tag"), ("image", "untag")]


def test_events_follow_until_a_time(cli, busybox, isolated_store):
    """Without --since only new events; a follow ends at --until. The follower's start is not
    observable, so tags go on until it shows one: the first it shows is a new one, never the old."""
    assert cli("tag", "busybox", "old:1").code == 0
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    until = time.time() + 5
    follower = subprocess.Popen(
        [sys.executable, "-m", "minirun", "events", "--until", f"{until:.3f}", "--format", "json", "-f", "type=image"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert follower.stdout is not None
    shown: list[str] = []
    reader = threading.Thread(target=lambda: shown.extend(follower.stdout), daemon=True)
    reader.start()
    tagged = 0
    while not shown and time.time() < until - 0.5:
        tagged += 1
        assert cli("tag", "busybox", f"followed:{tagged}").code == 0
        time.sleep(0.2)
    assert follower.wait(timeout=30) == 0  # by itself, at --until
    reader.join(timeout=10)
    names = [json.loads(line)["Actor"]["Attributes"]["name"] for line in shown]
    first = int(names[0].rpartition(":")[2])
    assert names == [f"followed:{n}" for n in range(first, tagged + 1)], (names, tagged)


def test_the_log_is_bounded(isolated_store, monkeypatch):
    isolated_store.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(events, "MAX_BYTES", 2000)
    for i in range(100):
        events.record(str(isolated_store), "image", "tag", f"id{i}", {"name": f"n{i}"})
    sizes = [os.path.getsize(isolated_store / name) for name in (events.LOG_NAME, events.LOG_NAME + ".1")]
    assert all(size < 2000 + 400 for size in sizes)
    kept = events.read(str(isolated_store))
    assert kept[-1]["Actor"]["ID"] == "id99" and len(kept) < 100  # the oldest went


def test_bad_input(cli):
    for args, message in [
        (["-f", "type=thing"], "invalid filter 'type=thing'"),
        (["-f", "colour=red"], "invalid filter 'colour'"),
        (["--since", "soon"], "--since: invalid time 'soon'"),
    ]:
        done = cli("events", "--until", "0s", *args)
        assert done.code == 125 and done.err.startswith("minirun: error: " + message), done


def test_a_detached_containers_start_and_die_come_from_its_monitor(cli, busybox):
    started = cli(
        "run", "-d", "--rm", "--name", "bg", "-l", "k=v", "--network", "none", "busybox", "sh", "-c", "exit 5"
    )
    assert started.code == 0, started.err
    assert cli("wait", "bg").code in (0, 125)  # --rm: it may be gone already
    from tests.helpers import wait_until

    assert wait_until(lambda: ("container", "destroy") in actions(cli, "-f", "container=bg"), timeout=30)
    assert actions(cli, "-f", "container=bg") == [
        ("container", "create"),
        ("container", "start"),
        ("container", "die"),
        ("container", "destroy"),
    ]
    die = json.loads(cli("events", "--since", "1h", "--until", "0s", "--format", "json", "-f", "event=die").out)
    assert die["Actor"]["Attributes"] == {"k": "v", "image": "busybox", "name": "bg", "exitCode": "5"}
