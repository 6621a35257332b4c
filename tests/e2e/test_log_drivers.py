"""Bounded logs: --log-driver json-file|local|none and --log-opt max-size/max-file/compress with
docker's semantics, a store-wide default in <store>/daemon.json, and a bounded default of minirun's
own (docker's json-file default grows without end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import wait_until

# prints "line 0" ... "line N-1" (about 90 bytes a log entry)
COUNT = "i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); done"


def run_d(cli, *args: str) -> str:
    started = cli("run", "-d", "--network", "none", *args)
    assert started.code == 0, started
    return started.out.strip()


def exited(cli, cid: str) -> None:
    assert wait_until(lambda: json.loads(cli("inspect", cid).out)[0]["State"]["Status"] == "exited", timeout=60)


def log_files(store, cid: str) -> list[str]:
    return sorted(n for n in os.listdir(store / "containers" / cid) if n.startswith("container.log"))


def numbers(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines()]


def test_the_default_log_is_bounded(cli, busybox):
    cid = run_d(cli, "busybox", "true")
    assert json.loads(cli("inspect", cid).out)[0]["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "20m", "max-file": "5", "compress": "false"},
    }


@pytest.mark.parametrize("compress", ["false", "true"])
def test_json_file_rotates_and_logs_reads_across_the_files(cli, busybox, isolated_store, compress):
    cid = run_d(
        cli,
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        f"compress={compress}",
        "busybox",
        "sh",
        "-c",
        COUNT.format(n=3000),
    )
    exited(cli, cid)
    files = log_files(isolated_store, cid)
    suffix = ".gz" if compress == "true" else ""
    assert wait_until(
        lambda: (
            log_files(isolated_store, cid) == ["container.log", f"container.log.1{suffix}", f"container.log.2{suffix}"]
        )
    ), files
    sizes = [os.path.getsize(isolated_store / "containers" / cid / name) for name in log_files(isolated_store, cid)]
    assert max(sizes) <= 20 << 10  # each file within max-size: the file rotates between two entries
    shown = numbers(cli("logs", cid).out)
    assert shown and shown[-1] == 2999 and shown == list(range(shown[0], 3000))  # the newest, in order, no gap
    assert shown[0] > 0  # the oldest were rotated away
    tail = cli("logs", "--tail", str(len(shown) - 5), cid).out
    assert numbers(tail) == shown[5:]  # --tail reaches back into the rotated files


def test_logs_follow_goes_on_across_a_rotation(cli, busybox, isolated_store):
    cid = run_d(
        cli,
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=5",
        "busybox",
        "sh",
        "-c",
        "sleep 1; "
        + COUNT.format(n=600)
        .replace("; i=", "; usleep 2000; i=", 1)
        .replace("i=$((i+1))", "i=$((i+1)); [ $((i % 50)) -eq 0 ] && usleep 50000"),
    )
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    follow = subprocess.run(
        [sys.executable, "-m", "minirun", "logs", "-f", cid], env=env, capture_output=True, text=True, timeout=120
    )
    assert follow.returncode == 0, follow.stderr
    assert numbers(follow.stdout) == list(range(600))  # every line once, in order, through ~5 rotations
    assert len(log_files(isolated_store, cid)) >= 3


def test_the_local_driver_compresses_by_default_and_none_keeps_nothing(cli, busybox, isolated_store):
    local = run_d(
        cli, "--log-driver", "local", "--log-opt", "max-size=10k", "busybox", "sh", "-c", COUNT.format(n=2000)
    )
    exited(cli, local)
    assert json.loads(cli("inspect", local).out)[0]["HostConfig"]["LogConfig"]["Config"]["compress"] == "true"
    assert wait_until(lambda: "container.log.1.gz" in log_files(isolated_store, local))
    assert numbers(cli("logs", local).out)[-1] == 1999
    silent = run_d(cli, "--log-driver", "none", "busybox", "sh", "-c", COUNT.format(n=2000))
    exited(cli, silent)
    assert log_files(isolated_store, silent) == []
    refused = cli("logs", silent)
    assert refused.code == 125 and refused.err == "minirun: error: configured logging driver does not support reading\n"


def test_a_store_wide_default_in_daemon_json(cli, busybox, isolated_store):
    (isolated_store / "daemon.json").write_text('{"log-driver": "local", "log-opts": {"max-size": "1m"}}')
    cid = run_d(cli, "busybox", "true")
    assert json.loads(cli("inspect", cid).out)[0]["HostConfig"]["LogConfig"] == {
        "Type": "local",
        "Config": {"max-size": "1m", "max-file": "5", "compress": "true"},
    }
    # the flags win; the store's options count only for the store's driver
    other = run_d(cli, "--log-driver", "json-file", "busybox", "true")
    assert json.loads(cli("inspect", other).out)[0]["HostConfig"]["LogConfig"]["Config"]["max-size"] == "20m"
    (isolated_store / "daemon.json").write_text('{"log-driver": ')
    broken = cli("run", "-d", "busybox", "true")
    assert broken.code == 125 and f"damaged record {isolated_store / 'daemon.json'}" in broken.err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--log-driver", "syslog"], 'logging driver "syslog" is not supported'),
        (["--log-opt", "max-size=10x"], "invalid log size: '10x'"),
        (["--log-opt", "max-file=0"], "max-file cannot be less than 1"),
        (
            ["--log-opt", "max-size=-1", "--log-opt", "max-file=3"],
            "max-file cannot be greater than 1 when max-size is not set",
        ),
        (["--log-opt", "compress=maybe"], "invalid value for compress"),
        (["--log-opt", "labels=x"], "unknown log opt 'labels' for json-file log driver"),
        (["--log-driver", "none", "--log-opt", "max-size=1m"], "unknown log opt 'max-size' for none log driver"),
        (["--log-opt", "nonsense"], "invalid log option 'nonsense'"),
    ],
)
def test_bad_log_options_are_refused_before_anything_is_created(cli, busybox, args, message):
    result = cli("run", "-d", *args, "busybox", "true")
    assert result.code == 125 and message in result.err and result.err.count("\n") == 1, result
    assert cli("ps", "-aq").out == ""


def test_unbounded_on_request(cli, busybox):
    cid = run_d(cli, "--log-opt", "max-size=-1", "--log-opt", "max-file=1", "busybox", "true")
    assert json.loads(cli("inspect", cid).out)[0]["HostConfig"]["LogConfig"]["Config"]["max-size"] == "-1"


def test_a_log_read_begun_before_the_container_is_removed_reads_it_whole(cli, busybox, store):
    """read_entries opens the log at the call: a reader that answers first and reads after (the
    Engine API sends its headers; docker-py's run() then removes the container and reads the
    stream) still gets every line, the container and its files gone meanwhile."""
    from minirun.containers.container import Containers
    from minirun.containers.logs import read_entries

    done = cli("run", "-d", "--name", "gone", "busybox", "sh", "-c", "echo one; echo two")
    assert done.code == 0, done.err
    containers = Containers(store)
    assert wait_until(lambda: containers.find("gone").state.get("Status") == "exited")
    entries = read_entries(containers.find("gone"), None, True, lambda: False)
    assert cli("rm", "gone").code == 0
    assert not os.path.exists(os.path.join(str(store.root), "containers", done.out.strip()))
    assert [e["log"] for e in entries] == ["one\n", "two\n"]
