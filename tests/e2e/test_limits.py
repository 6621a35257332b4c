"""Resource limits for real: --memory (OOM kills), --pids-limit (a fork bomb), --cpus,
--cpu-shares, --cpuset-cpus in the cgroup files, `update`, `stats`, the container's view of its
own cgroup, and no cgroup left behind. This machine's layout (v1 hybrid here) is the one tested;
tests/integration/test_cgroups.py drives a v2 hierarchy."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minirun.runtime import cgroups
from tests.helpers import wait_until

MiB = 1 << 20
# busybox dd reads 100 MB into one buffer: every page of it is touched, so really allocated
ALLOCATE_100M = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"]
# PID 1 execs its sleep (no fork): the bomb at the limit must not stop PID 1 from staying
FORK_BOMB = "f(){ f | f & }; f; exec sleep 120"


def inspect(cli, name) -> dict:
    result = cli("inspect", name)
    assert result.code == 0, result
    return json.loads(result.out)[0]


def cgroup_file(container_id: str, controller: str, name: str) -> str:
    with open(f"{cgroups.owner(controller).path(container_id)}/{name}") as f:
        return f.read().strip()


def left_cgroups(container_id: str) -> list[str]:
    return [p for p in cgroups.container_paths(container_id) if os.path.exists(p)]


@pytest.fixture(autouse=True)
def nothing_left(cli, isolated_store):
    yield
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    for cid in ids:
        cli("rm", "-f", cid)
    assert [p for cid in ids for p in left_cgroups(cid)] == []


@pytest.fixture(autouse=True)
def needs_cgroups():
    if os.geteuid() != 0 or not cgroups.hierarchies():
        pytest.skip("needs root and a writable cgroup hierarchy")


def run_d(cli, *args) -> str:
    result = cli("run", "-d", *args)
    assert result.code == 0, result
    return result.out.strip()


def test_oom_kill_in_the_foreground_is_137_and_recorded(cli, busybox):
    result = cli("run", "--name", "hog", "-m", "32m", "busybox", *ALLOCATE_100M)
    assert result.code == 137, result
    doc = inspect(cli, "hog")
    assert doc["State"]["OOMKilled"] is True and doc["State"]["ExitCode"] == 137
    assert (doc["HostConfig"]["Memory"], doc["HostConfig"]["MemorySwap"]) == (32 * MiB, 64 * MiB)
    assert left_cgroups(doc["Id"]) == []  # removed at the exit, not only at rm
    # the same command with room enough is no OOM kill
    assert cli("run", "--name", "fits", "-m", "256m", "busybox", *ALLOCATE_100M).code == 0
    assert inspect(cli, "fits")["State"]["OOMKilled"] is False


def test_oom_kill_of_a_detached_container(cli, busybox):
    cid = run_d(cli, "-m", "32m", "busybox", *ALLOCATE_100M)
    assert cli("wait", cid).out == "137\n"
    assert inspect(cli, cid)["State"]["OOMKilled"] is True
    assert left_cgroups(cid) == []
    # start again, this time within its limit: the new run is no OOM kill
    assert cli("update", "-m", "200m", "--memory-swap", "400m", cid).code == 0
    assert cli("start", cid).code == 0
    assert cli("wait", cid).out == "0\n"
    assert inspect(cli, cid)["State"]["OOMKilled"] is False


def test_a_fork_bomb_is_contained_by_the_pids_limit(cli, busybox):
    cid = run_d(cli, "--pids-limit", "64", "busybox", "sh", "-c", FORK_BOMB)
    try:
        # the bomb reaches the limit and forks then fail: pids.events counts the refusals
        assert wait_until(lambda: int(cgroup_file(cid, "pids", "pids.events").split()[1]) > 0, timeout=20)
        time.sleep(1)
        assert int(cgroup_file(cid, "pids", "pids.current")) <= 64
        assert cgroup_file(cid, "pids", "pids.max") == "64"
        # the host still forks and answers, and so does minirun
        assert subprocess.run(["true"], timeout=10).returncode == 0
        assert cli("ps", "-q", "--no-trunc").out.split() == [cid]
    finally:
        assert cli("rm", "-f", cid).code == 0
    assert left_cgroups(cid) == []


def test_cpu_limits_show_in_the_cgroup_and_in_inspect(cli, busybox):
    cid = run_d(
        cli, "--name", "cpu", "--cpus", "1.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "busybox", "sleep", "300"
    )
    if cgroups.owner("cpu").version == 1:
        assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "150000"
        assert cgroup_file(cid, "cpu", "cpu.cfs_period_us") == "100000"
        assert cgroup_file(cid, "cpu", "cpu.shares") == "512"
        inside = cli("exec", "cpu", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpuset/cpuset.cpus")
        assert inside.out.split() == ["150000", "0"]
    else:
        assert cgroup_file(cid, "cpu", "cpu.max") == "150000 100000"
        assert cgroup_file(cid, "cpu", "cpu.weight") == "59"
    assert cgroup_file(cid, "cpuset", "cpuset.cpus") == "0"
    host = inspect(cli, "cpu")["HostConfig"]
    assert (host["NanoCpus"], host["CpuShares"], host["CpusetCpus"], host["PidsLimit"]) == (
        1_500_000_000,
        512,
        "0",
        2048 if cgroups.owner("pids") else None,  # podman's default limit, recorded at create
    )
    # the container runs on CPU 0 only
    assert cli("exec", "cpu", "grep", "Cpus_allowed_list", "/proc/self/status").out.split()[-1] == "0"


def test_memory_reservation_oom_kill_disable_and_oom_score_adj(cli, busybox):
    """docker's --memory-reservation (the v1 soft limit, v2's memory.low), --oom-kill-disable
    (v1's memory.oom_control) and --oom-score-adj (PID 1's and every exec'd process's)."""
    cid = run_d(
        cli, "--name", "soft", "-m", "64m", "--memory-reservation", "16m", "--oom-kill-disable",
        "--oom-score-adj", "400", "busybox", "sleep", "300",
    )  # fmt: skip
    memory = cgroups.owner("memory")
    if memory.version == 1:
        assert int(cgroup_file(cid, "memory", "memory.soft_limit_in_bytes")) == 16 * MiB
        assert "oom_kill_disable 1" in cgroup_file(cid, "memory", "memory.oom_control")
    else:
        assert int(cgroup_file(cid, "memory", "memory.low")) == 16 * MiB
    assert cli("exec", "soft", "cat", "/proc/1/oom_score_adj", "/proc/self/oom_score_adj").out.split() == ["400"] * 2
    host = inspect(cli, "soft")["HostConfig"]
    assert (host["MemoryReservation"], host["OomKillDisable"], host["OomScoreAdj"]) == (
        16 * MiB,
        memory.version == 1,
        400,
    )
    plain = run_d(cli, "busybox", "sleep", "300")
    assert (
        cli("exec", plain, "cat", "/proc/self/oom_score_adj").out == Path("/proc/self/oom_score_adj").read_text()
    )  # inherited


def test_update_changes_limits_live_and_records_them(cli, busybox):
    cid = run_d(cli, "--name", "up", "-m", "32m", "busybox", "sleep", "300")
    assert cgroup_file(
        cid, "memory", "memory.limit_in_bytes" if cgroups.owner("memory").version == 1 else "memory.max"
    ) == str(32 * MiB)
    result = cli("update", "-m", "64m", "--memory-swap", "128m", "--pids-limit", "50", "up")
    assert (result.code, result.out) == (0, "up\n"), result
    if cgroups.owner("memory").version == 1:
        assert cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 * MiB)
        assert cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
    else:
        assert cgroup_file(cid, "memory", "memory.max") == str(64 * MiB)
    assert cgroup_file(cid, "pids", "pids.max") == "50"
    host = inspect(cli, "up")["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (64 * MiB, 128 * MiB, 50)
    # docker's rule: memory above the memory+swap already set needs a new --memory-swap; nothing changes
    refused = cli("update", "-m", "200m", "up")
    assert refused.code == 125
    assert refused.err == (
        "minirun: error: Cannot update container up: Memory limit should be smaller than "
        "already set memoryswap limit, update the memoryswap at the same time\n"
    )
    assert inspect(cli, "up")["HostConfig"]["Memory"] == 64 * MiB
    assert cli("update", "--memory-reservation", "16m", "up").code == 0
    soft = "memory.soft_limit_in_bytes" if cgroups.owner("memory").version == 1 else "memory.low"
    assert int(cgroup_file(cid, "memory", soft)) == 16 * MiB
    assert inspect(cli, "up")["HostConfig"]["MemoryReservation"] == 16 * MiB
    no_flags = cli("update", "up")
    assert no_flags.code == 125 and "you must provide one or more flags" in no_flags.err
    bad = cli("update", "--cpus", "lots", "up")
    assert bad.code == 125 and 'invalid argument "lots" for "--cpus" flag' in bad.err
    too_many = cli("update", "--pids-limit", "99999999", "up")
    assert too_many.code == 125 and too_many.err.count("\n") == 1
    assert "invalid --pids-limit 99999999: the kernel allows at most 4194304" in too_many.err
    assert cgroup_file(cid, "pids", "pids.max") == "50" and inspect(cli, "up")["HostConfig"]["PidsLimit"] == 50
    missing = cli("update", "-m", "64m", "nosuch")
    assert missing.code == 125 and "No such container: nosuch" in missing.err


def test_update_of_a_stopped_container_applies_at_its_next_start(cli, busybox):
    cid = run_d(cli, "--name", "later", "busybox", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max")
    assert cli("wait", cid).out == "0\n"
    assert cli("update", "--pids-limit", "33", "later").code == 0
    assert cli("start", cid).code == 0 and cli("wait", cid).out == "0\n"
    if cgroups.owner("pids").version == 1:
        assert cli("logs", "later").out.split() == ["2048", "33"]  # podman's default, then the update's


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_stats_no_stream_shows_the_containers_numbers(cli, busybox):
    busy = run_d(cli, "--name", "busy", "-m", "32m", "busybox", "sh", "-c", "while :; do :; done")
    idle = run_d(cli, "--name", "idle", "--pids-limit", "9", "busybox", "sh", "-c", "sleep 300 & sleep 301; true")
    gone = run_d(cli, "--name", "gone", "busybox", "true")
    cli("wait", gone)
    result = cli("stats", "--no-stream")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert cells(lines[0]) == [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    rows = {cells(line)[1]: cells(line) for line in lines[1:]}
    assert set(rows) == {"busy", "idle"}  # running ones only, without -a
    assert rows["busy"][0] == busy[:12] and rows["idle"][0] == idle[:12]
    # a busy loop gets most of a CPU on a quiet host, a share of it on a loaded one; a sleeper none
    assert float(rows["busy"][2].rstrip("%")) > 5 > float(rows["idle"][2].rstrip("%"))
    used, limit = rows["busy"][3].split(" / ")
    assert limit == "32MiB" and re.fullmatch(r"[\d.]+(B|KiB|MiB)", used)
    assert float(rows["busy"][4].rstrip("%")) > 0
    host_memory = rows["idle"][3].split(" / ")[1]
    assert host_memory.endswith("iB") and host_memory != "32MiB"  # no limit: the host's memory
    assert (rows["busy"][7], rows["idle"][7]) == ("1", "3")  # the loop is the shell's own; sh + 2 sleeps
    for row in rows.values():
        assert re.fullmatch(r"[\d.]+[kMG]?B / [\d.]+[kMG]?B", row[5]) and re.fullmatch(
            r"[\d.]+[kMG]?B / [\d.]+[kMG]?B", row[6]
        )
    every = cli("stats", "--no-stream", "-a").out.splitlines()
    assert sorted(cells(line)[1] for line in every[1:]) == ["busy", "gone", "idle"]
    gone_row = next(cells(line) for line in every if cells(line)[1] == "gone")
    assert gone_row[2:] == ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    named = cli("stats", "--no-stream", "--no-trunc", "idle").out.splitlines()
    assert len(named) == 2 and cells(named[1])[:2] == [idle, "idle"]
    missing = cli("stats", "--no-stream", "nosuch")
    assert missing.code == 125 and "No such container: nosuch" in missing.err


def test_stats_streams_until_interrupted(cli, busybox, isolated_store):
    run_d(cli, "--name", "streamed", "busybox", "sleep", "300")
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "stats"], stdout=subprocess.PIPE, env=env)
    try:
        first = proc.stdout.read1(65536)
        while first.count(b"\033[2J") < 2:
            first += proc.stdout.read1(65536)  # a redraw per second
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert b"CONTAINER ID" in first and b"   streamed   " in first


def test_exec_processes_join_the_cgroup_and_see_it_as_root(cli, busybox):
    cid = run_d(cli, "--name", "ex", "--pids-limit", "20", "busybox", "sleep", "300")
    assert cli("exec", "-d", "ex", "sleep", "301").code == 0
    procs = cgroup_file(cid, "pids", "cgroup.procs").split()
    assert len(procs) == 2 and cgroup_file(cid, "pids", "pids.current") == "2"
    ours = {",".join(h.controllers) for h in cgroups.hierarchies() if h.version == 1}
    for pid in procs:
        with open(f"/proc/{pid}/cgroup") as f:  # seen from the host: the container's cgroup in each v1 hierarchy
            lines = [line.rstrip("\n").split(":", 2) for line in f]
        # (below its devices policy, in the devices hierarchy: cgroups.INNER)
        policy = {
            f"/{cgroups.PARENT}/{cid}/{cgroups.INNER}" for _, controllers, path in lines if controllers == "devices"
        }
        rest = {path for _, controllers, path in lines if controllers in ours and controllers != "devices"}
        assert rest == {f"/{cgroups.PARENT}/{cid}"}
        assert {path for _, controllers, path in lines if controllers == "devices"} == policy
        assert {controllers for _, controllers, _ in lines} >= ours
    inside = cli("exec", "ex", "cat", "/proc/self/cgroup")
    assert inside.code == 0 and inside.out and all(line.endswith(":/") for line in inside.out.splitlines()), inside.out


def test_the_container_sees_its_own_cgroup_read_only(cli, busybox):
    script = (
        "cat /proc/self/cgroup; echo ---; ls /sys/fs/cgroup; echo ---; cat /sys/fs/cgroup/pids/pids.max; "
        "ls /sys/fs/cgroup/pids | grep -c minirun; echo ---; mkdir /sys/fs/cgroup/pids/x 2>&1; "
        "(echo 5 > /sys/fs/cgroup/pids/pids.max) 2>&1; cat /sys/fs/cgroup/pids/pids.max"
    )
    result = cli("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", script)
    assert result.code == 0, result
    own, listing, limit, refused = result.out.split("---\n")
    assert own and all(line.endswith(":/") for line in own.splitlines())
    if cgroups.layout() != "v2":
        # every hierarchy the container has, a hybrid host's v2 one (unified) too where it has controllers
        assert set(listing.split()) == {name for name, _, _ in cgroups.namespace_mounts() if name}
        assert limit.split() == ["10", "0"]  # its own limit, and no `minirun` parent above it
        assert refused.count("Read-only file system") == 2 and refused.endswith("\n10\n")


def test_rm_removes_every_cgroup_dir(cli, busybox):
    cid = run_d(cli, "busybox", "sleep", "300")
    made = left_cgroups(cid)
    assert made and len(made) == len(cgroups.hierarchies())
    assert cli("rm", "-f", cid).code == 0
    assert left_cgroups(cid) == []
    auto = run_d(cli, "--rm", "busybox", "sleep", "300")
    assert left_cgroups(auto)
    assert cli("stop", "-t", "0", auto).code == 0
    assert wait_until(lambda: not left_cgroups(auto))


def test_the_cgroups_of_a_container_whose_monitor_was_killed_go_when_that_is_noticed(cli, busybox, isolated_store):
    cid = run_d(cli, "busybox", "sleep", "300")
    state = json.loads((isolated_store / "containers" / cid / "state.json").read_text())
    os.kill(state["MonitorPid"], 9)  # PID 1 dies with it (its parent-death signal); nobody records the exit
    assert wait_until(lambda: not os.path.exists(f"/proc/{state['Pid']}"))
    assert left_cgroups(cid)
    assert cli("ps", "-a").code == 0  # any look at the container finds out, records 255 and cleans up
    assert inspect(cli, cid)["State"]["ExitCode"] == 255
    assert left_cgroups(cid) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["-m", "5m"], "Minimum memory limit allowed is 6MB"),
        (["-m", "12q"], "invalid size: '12q'"),
        (["--memory-swap", "64m"], "You should always set the Memory limit when using Memoryswap limit"),
        (["--cpus", "9999"], "range of CPUs is from 0.01"),
        (["--cpuset-cpus", "0-9999"], "Requested CPUs are not available - requested 0-9999"),
        (["--pids-limit", "many"], 'invalid argument "many" for "--pids-limit" flag'),
        # above the kernel's PID_MAX_LIMIT: refused before anything is made, not by the cgroup write
        (["--pids-limit", "99999999"], "invalid --pids-limit 99999999: the kernel allows at most 4194304"),
        (["-p", "18083:80", "--pids-limit", "4194305"], "invalid --pids-limit 4194305"),
    ],
)
def test_bad_values_are_125_and_create_nothing(cli, busybox, isolated_store, args, message):
    # values are checked before anything exists: no record, so no cgroup either (one is named by a record's id)
    result = cli("run", *args, "busybox", "true")
    assert result.code == 125 and result.out == ""
    assert result.err.startswith("minirun: error: ") and result.err.count("\n") == 1 and message in result.err
    assert cli("ps", "-a", "-q").out == ""
    assert not (isolated_store / "containers").exists() or os.listdir(isolated_store / "containers") == []


def _whole_disk() -> str:
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("zram", "loop", "ram", "nbd")):
            return name
    pytest.skip("no disk to throttle")


def test_block_io_flags_land_in_the_cgroup_files(cli, busybox):
    """docker's --blkio-weight and --device-{read,write}-{bps,iops}: the device by path, its
    numbers found at start; blkio.* files on v1 (BFQ's weight file where CFQ's is gone), io.* on v2."""
    io = cgroups.owner("blkio") or cgroups.owner("io")
    if io is None:
        pytest.skip("no block I/O controller")
    disk = _whole_disk()
    with open(f"/sys/block/{disk}/dev") as f:
        numbers = f.read().strip()
    device = f"/dev/{disk}"
    if not os.path.exists(device):
        pytest.skip(f"no {device} node")
    flags = ["--blkio-weight", "300", "--device-read-bps", f"{device}:1mb", "--device-write-bps", f"{device}:2mb"]
    flags += ["--device-read-iops", f"{device}:100", "--device-write-iops", f"{device}:200"]
    # without CFQ or BFQ the kernel has no weight file: docker's daemon drops the weight, warning
    weighs = io.version == 2 or any(os.path.exists(f"{io.mount}/{n}") for n in ("blkio.weight", "blkio.bfq.weight"))
    dropped = "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
    started = cli("run", "-d", *flags, "busybox", "sleep", "100")
    assert started.code == 0 and (dropped in started.err) == (not weighs), started
    cid = started.out.strip()
    path = io.path(cid)

    def read(name: str) -> str:
        with open(f"{path}/{name}") as f:
            return f.read().strip()

    if io.version == 1:
        weight = "blkio.weight" if os.path.exists(f"{path}/blkio.weight") else "blkio.bfq.weight"
        assert not weighs or read(weight).split()[-1] == "300"
        assert read("blkio.throttle.read_bps_device") == f"{numbers} {MiB}"
        assert read("blkio.throttle.write_bps_device") == f"{numbers} {2 * MiB}"
        assert read("blkio.throttle.read_iops_device") == f"{numbers} 100"
        assert read("blkio.throttle.write_iops_device") == f"{numbers} 200"
    else:
        line = next(x for x in read("io.max").splitlines() if x.startswith(numbers))
        assert line.split()[1:] == [f"rbps={MiB}", f"wbps={2 * MiB}", "riops=100", "wiops=200"]
    host = inspect(cli, cid)["HostConfig"]
    assert host["BlkioWeight"] == (300 if weighs else 0)
    assert host["BlkioDeviceReadBps"] == [{"Path": device, "Rate": MiB}]
    updated = cli("update", "--blkio-weight", "600", cid)
    assert updated.code == 0 and (dropped in updated.err) == (not weighs), updated
    if io.version == 1 and weighs:
        assert read(weight).split()[-1] == "600"
    missing = cli("run", "--rm", "--device-read-bps", "/dev/nosuchdisk:1mb", "busybox", "true")
    assert missing.code == 125 and "/dev/nosuchdisk: No such file or directory" in missing.err
