"""docker's resource values (--memory, --cpus, ...), their cgroup v1/v2 file writes, the cgroup
layout read from mountinfo, and the stats arithmetic: the pure parts, without root."""

from __future__ import annotations

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.containers import stats
from minirun.containers.resources import (
    for_run,
    host_config,
    merged,
    nano_cpus,
    parse_cpu_list,
    parse_options,
    ram_in_bytes,
    validate,
)
from minirun.errors import UsageError
from minirun.humanize import bytes_size
from minirun.runtime import cgroups
from minirun.runtime.cgroups import cpu_weight, flat_keyed, io_bytes, layout, limit_writes, parse_mountinfo

MiB = 1 << 20


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512m", 512 * MiB),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("1gb", 1 << 30),
        ("100", 100),
        ("100b", 100),
        ("1.5g", 3 << 29),
        ("10 m", 10 * MiB),
        ("4k", 4096),
        ("1t", 1 << 40),
        ("0", 0),
        ("1.2.3", None),
        ("", None),
        ("-1", None),
        ("m", None),
        ("12x", None),
        ("1mm", None),
        ("١٢", None),
    ],
)
def test_ram_in_bytes_takes_go_units_spelling(text, expected):
    assert ram_in_bytes(text) == expected


@pytest.mark.parametrize(
    "text,nano",
    [
        ("1.5", 1_500_000_000),
        ("2", 2_000_000_000),
        ("0.01", 10_000_000),
        (".5", 500_000_000),
        ("3/2", 1_500_000_000),
        ("15e-1", 1_500_000_000),
        ("0.000000001", 1),
        ("-1", -1_000_000_000),
    ],
)
def test_cpus_are_exact_rationals(text, nano):
    assert nano_cpus(text, lambda reason: UsageError(reason)) == nano


def test_run_options_become_hostconfig_fields_with_dockers_default_swap():
    opts = parse_run_args(
        ["-m", "512m", "--cpus", "1.5", "-c", "512", "--cpuset-cpus", "0", "--pids-limit", "64", "img"]
    )
    assert opts.resources == {
        "Memory": 512 * MiB,
        "MemorySwap": 1024 * MiB,
        "NanoCpus": 1_500_000_000,
        "CpuShares": 512,
        "CpusetCpus": "0",
        "PidsLimit": 64,
    }
    assert parse_run_args(["img"]).resources == {}
    assert parse_run_args(["-m", "32m", "--memory-swap", "-1", "img"]).resources == {
        "Memory": 32 * MiB,
        "MemorySwap": -1,
    }
    assert parse_run_args(["-m", "32m", "--memory-swap", "64m", "img"]).resources["MemorySwap"] == 64 * MiB
    assert parse_run_args(["--pids-limit", "-1", "img"]).resources == {"PidsLimit": -1}


def test_memory_reservation_and_oom_kill_disable_are_dockers_hostconfig_fields():
    argv = ["-m", "64m", "--memory-reservation", "16m", "--oom-kill-disable", "img"]
    assert parse_run_args(argv).resources == {
        "Memory": 64 * MiB,
        "MemorySwap": 128 * MiB,
        "MemoryReservation": 16 * MiB,
        "OomKillDisable": True,
    }
    assert parse_run_args(["--oom-kill-disable=false", "img"]).resources == {}  # docker's default: not recorded
    assert parse_run_args(["--oom-kill-disable=true", "img"]).resources == {"OomKillDisable": True}
    assert parse_run_args(["--memory-reservation", "6m", "img"]).resources == {"MemoryReservation": 6 * MiB}
    assert limit_writes({"MemoryReservation": 16 * MiB, "OomKillDisable": True}, 1) == [
        ("memory", "memory.oom_control", "1"),
        ("memory", "memory.soft_limit_in_bytes", str(16 * MiB)),
    ]
    assert limit_writes({"MemoryReservation": 16 * MiB, "OomKillDisable": True}, 2) == [
        ("memory", "memory.low", str(16 * MiB))  # (v2 has no OOM switch: discarded at create, with a warning)
    ]


def test_block_io_flags_are_dockers_hostconfig_fields():
    argv = ["--blkio-weight", "300", "--blkio-weight-device", "/dev/vda:200", "--device-read-bps", "/dev/vda:1mb"]
    argv += ["--device-write-bps", "/dev/vda:512k", "--device-read-iops", "/dev/vda:100"]
    argv += ["--device-write-iops", "/dev/vda:200", "--device-write-iops", "/dev/vdb:7"]
    assert parse_run_args([*argv, "img"]).resources == {
        "BlkioWeight": 300,
        "BlkioWeightDevice": [{"Path": "/dev/vda", "Weight": 200}],
        "BlkioDeviceReadBps": [{"Path": "/dev/vda", "Rate": MiB}],
        "BlkioDeviceWriteBps": [{"Path": "/dev/vda", "Rate": 512 << 10}],
        "BlkioDeviceReadIOps": [{"Path": "/dev/vda", "Rate": 100}],
        "BlkioDeviceWriteIOps": [{"Path": "/dev/vda", "Rate": 200}, {"Path": "/dev/vdb", "Rate": 7}],
    }


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-m", "5x"], 'invalid argument "5x" for "-m, --memory" flag: invalid size: \'5x\''),
        (
            ["--memory-swap", "lots", "-m", "8m"],
            'invalid argument "lots" for "--memory-swap" flag: invalid size: \'lots\'',
        ),
        (["-m", "5m"], "Minimum memory limit allowed is 6MB"),
        (
            ["-m", "10m", "--memory-swap", "8m"],
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (["--memory-swap", "64m"], "You should always set the Memory limit when using Memoryswap limit, see usage"),
        (["--cpus", "x"], 'invalid argument "x" for "--cpus" flag: failed to parse x as a rational number'),
        (["--cpus", "0.0000000001"], 'invalid argument "0.0000000001" for "--cpus" flag: value is too precise'),
        (["--cpus", "1000"], "range of CPUs is from 0.01 to"),
        (["--cpus", "0.001"], "range of CPUs is from 0.01 to"),
        (["--cpus", "-1"], "range of CPUs is from 0.01 to"),
        (
            ["-c", "x"],
            'invalid argument "x" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "x": invalid syntax',
        ),
        (["-c", "-5"], "invalid CPU shares -5"),
        (
            ["--pids-limit", "1.5"],
            'invalid argument "1.5" for "--pids-limit" flag: strconv.ParseInt: parsing "1.5": invalid syntax',
        ),
        (["--pids-limit", "99999999999999999999"], "value out of range"),
        (["--cpuset-cpus", "1-0"], "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
        (["--cpuset-cpus", "0,,1"], "Invalid value 0,,1 for cpuset cpus: invalid format: 0,,1"),
        (["--cpuset-cpus", "a"], "invalid format: a"),
        (["--cpuset-cpus", "100000"], "Requested CPUs are not available - requested 100000, available: "),
        (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000"),
        (["--blkio-weight", "x"], 'for "--blkio-weight" flag: strconv.ParseUint: parsing "x": invalid syntax'),
        (["--blkio-weight-device", "/dev/vda"], 'for "--blkio-weight-device" flag: bad format: /dev/vda'),
        (["--blkio-weight-device", "vda:100"], "bad format for device path: vda:100"),
        (["--blkio-weight-device", "/dev/vda:5"], "invalid weight for device: /dev/vda:5"),
        (["--device-read-bps", "/dev/vda:x"], "invalid rate for device: /dev/vda:x. The correct format is"),
        (["--device-write-iops", "/dev/vda:1k"], "invalid rate for device: /dev/vda:1k."),
        (["--memory-reservation", "lots"], 'invalid argument "lots" for "--memory-reservation" flag: invalid size'),
        (["--memory-reservation", "5m"], "Minimum memory reservation allowed is 6MB"),
        (
            ["-m", "8m", "--memory-reservation", "16m"],
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
    ],
)
def test_bad_values_are_usage_errors_in_dockers_words(argv, message):
    with pytest.raises(UsageError) as err:
        parse_run_args(argv + ["img"])
    assert message in err.value.message
    assert err.value.exit_code == 125


def test_pids_limit_stops_at_the_kernels_maximum():
    """pids.max takes at most PID_MAX_LIMIT (4194304); 0 and negatives mean unlimited, as in docker."""
    assert parse_run_args(["--pids-limit", "4194304", "img"]).resources == {"PidsLimit": 4194304}
    for unlimited in ("0", "-1", "-5"):
        assert limit_writes(parse_run_args(["--pids-limit", unlimited, "img"]).resources, 1) == [
            ("pids", "pids.max", "max")
        ]
    for too_many in ("4194305", "99999999"):
        with pytest.raises(UsageError) as err:
            parse_run_args(["--pids-limit", too_many, "img"])
        assert err.value.message == (
            f"invalid --pids-limit {too_many}: the kernel allows at most 4194304 (0 or -1 for unlimited)"
        )
    with pytest.raises(UsageError, match="at most 4194304"):
        merged({"PidsLimit": 10}, {"PidsLimit": 4194305})


def test_cpuset_lists():
    assert parse_cpu_list("0-2,4") == {0, 1, 2, 4}
    assert parse_cpu_list("3") == {3}
    assert parse_cpu_list("") == set()
    for bad in ("1-", "-1", "0-1-2", "x", "1,", " 1"):
        assert parse_cpu_list(bad) is None
    validate({"CpusetCpus": "1,3"}, available="0-3")
    with pytest.raises(UsageError, match="requested 1,4, available: 0-3"):
        validate({"CpusetCpus": "1,4"}, available="0-3")


def test_cpus_range_follows_the_cpus_we_may_use():
    for_run({"NanoCpus": 4_000_000_000}, ncpu=4)
    with pytest.raises(UsageError, match=r"^range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available$"):
        for_run({"NanoCpus": 4_000_000_001}, ncpu=4)


def test_update_merges_like_docker():
    current = for_run({"Memory": 32 * MiB})
    assert current == {"Memory": 32 * MiB, "MemorySwap": 64 * MiB}
    # within memory+swap: only the memory limit moves
    assert merged(current, {"Memory": 48 * MiB}) == {"Memory": 48 * MiB, "MemorySwap": 64 * MiB}
    with pytest.raises(
        UsageError,
        match="^Memory limit should be smaller than already set memoryswap limit, "
        "update the memoryswap at the same time$",
    ):
        merged(current, {"Memory": 100 * MiB})
    assert merged(current, {"Memory": 100 * MiB, "MemorySwap": 200 * MiB}) == {
        "Memory": 100 * MiB,
        "MemorySwap": 200 * MiB,
    }
    with pytest.raises(UsageError, match="memoryswap limit should be larger"):
        merged(current, {"MemorySwap": 16 * MiB})
    # docker's update --memory-reservation: below the memory limit, 6 MB at least
    assert merged(current, {"MemoryReservation": 16 * MiB})["MemoryReservation"] == 16 * MiB
    with pytest.raises(UsageError, match="can not be less than memory reservation limit"):
        merged(current, {"MemoryReservation": 48 * MiB})
    # no earlier limit: any memory limit goes
    assert merged({}, {"Memory": 100 * MiB, "PidsLimit": 10}) == {"Memory": 100 * MiB, "PidsLimit": 10}
    # 0 or empty changes nothing; a pids limit of 0 or -1 lifts it
    assert merged({"CpuShares": 512, "PidsLimit": 10}, {"CpuShares": 0, "PidsLimit": -1}) == {
        "CpuShares": 512,
        "PidsLimit": -1,
    }


def test_inspect_shows_dockers_names_and_defaults():
    assert host_config({}) == {
        "Memory": 0,
        "MemorySwap": 0,
        "NanoCpus": 0,
        "CpuShares": 0,
        "CpusetCpus": "",
        "PidsLimit": None,
        "MemoryReservation": 0,
        "OomKillDisable": False,
        "MemorySwappiness": None,
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
    }
    assert host_config({"Memory": 7, "PidsLimit": 64})["PidsLimit"] == 64


def test_parse_options_keeps_only_given_flags():
    assert parse_options({"memory": None, "pids_limit": "0", "cpuset_cpus": "0-1"}) == {
        "PidsLimit": 0,
        "CpusetCpus": "0-1",
    }


# -- cgroup files ----------------------------------------------------------------------------------

FULL = {
    "Memory": 32 * MiB,
    "MemorySwap": 64 * MiB,
    "NanoCpus": 1_500_000_000,
    "CpuShares": 512,
    "CpusetCpus": "0-1",
    "PidsLimit": 64,
}


def test_v1_files():
    assert limit_writes(FULL, 1, current_memory=1 << 62) == [
        ("memory", "memory.limit_in_bytes", str(32 * MiB)),
        ("memory", "memory.memsw.limit_in_bytes", str(64 * MiB)),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "150000"),
        ("cpu", "cpu.shares", "512"),
        ("cpuset", "cpuset.cpus", "0-1"),
        ("pids", "pids.max", "64"),
    ]


def test_v1_memory_and_swap_keep_swap_above_memory_in_every_order():
    # memory+swap may never be below memory: growing writes memory+swap first, shrinking last
    grow = limit_writes({"Memory": 100 * MiB, "MemorySwap": 200 * MiB}, 1, current_memory=32 * MiB)
    assert [name for _, name, _ in grow] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    shrink = limit_writes({"Memory": 16 * MiB, "MemorySwap": 32 * MiB}, 1, current_memory=32 * MiB)
    assert [name for _, name, _ in shrink] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    unlimited = limit_writes({"Memory": 16 * MiB, "MemorySwap": -1}, 1, current_memory=1 << 62)
    assert unlimited == [
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.limit_in_bytes", str(16 * MiB)),
    ]


def test_v2_files():
    assert limit_writes(FULL, 2) == [
        ("memory", "memory.max", str(32 * MiB)),
        ("memory", "memory.swap.max", str(32 * MiB)),  # v2's swap is swap alone: memory+swap - memory
        ("cpu", "cpu.max", "150000 100000"),
        ("cpu", "cpu.weight", "59"),
        ("cpuset", "cpuset.cpus", "0-1"),
        ("pids", "pids.max", "64"),
    ]
    assert limit_writes({"Memory": 8 * MiB, "MemorySwap": -1, "PidsLimit": 0}, 2) == [
        ("memory", "memory.max", str(8 * MiB)),
        ("memory", "memory.swap.max", "max"),
        ("pids", "pids.max", "max"),
    ]
    assert limit_writes({}, 1) == limit_writes({}, 2) == []


@pytest.mark.parametrize(
    "shares,weight", [(0, 0), (1, 1), (2, 1), (512, 59), (1024, 100), (2048, 174), (262144, 10000), (10**6, 10000)]
)
def test_cpu_shares_to_weight_as_runc_converts(shares, weight):
    assert cpu_weight(shares) == weight


HYBRID = """\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
31 20 0:25 / /mnt/again\\040here rw,relatime - cgroup cgroup rw,cpu,cpuacct
32 20 0:40 / /tmp rw - tmpfs tmpfs rw
"""


def test_hybrid_mountinfo():
    found = parse_mountinfo(HYBRID)
    assert [(h.mount, h.version, h.controllers, h.options) for h in found] == [
        ("/sys/fs/cgroup/unified", 2, (), ""),
        ("/sys/fs/cgroup/systemd", 1, (), "name=systemd"),
        ("/sys/fs/cgroup/cpu,cpuacct", 1, ("cpu", "cpuacct"), "cpu,cpuacct"),
        ("/sys/fs/cgroup/memory", 1, ("memory",), "memory"),
        ("/sys/fs/cgroup/pids", 1, ("pids",), "pids"),
    ]  # name=systemd has no controller, only its name; the second mount of cpu,cpuacct is the same hierarchy
    # the container joins and sees a named hierarchy too: left at its root, it would find release_agent
    assert cgroups.namespace_mounts(found[1:2]) == [("systemd", "cgroup", "name=systemd")]
    assert layout(found[1:]) == "v1"
    with_controllers = [h for h in found if h.controllers]
    assert layout(with_controllers) == "v1"
    assert cgroups.owner("cpuacct", with_controllers).mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert cgroups.namespace_mounts(with_controllers) == [
        ("cpu,cpuacct", "cgroup", "cpu,cpuacct"),
        ("memory", "cgroup", "memory"),
        ("pids", "cgroup", "pids"),
    ]
    found[0].controllers = ("hugetlb",)  # a controller only v2 has: a hybrid host
    assert layout(found) == "hybrid"
    assert cgroups.namespace_mounts(found)[0] == ("unified", "cgroup2", None)


def test_unified_mountinfo():
    text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    (unified,) = parse_mountinfo(text)
    unified.controllers = ("cpu", "memory", "pids")
    assert layout([unified]) == "v2"
    assert unified.path("abc") == f"/sys/fs/cgroup/{cgroups.PARENT}/abc"
    # docker's view: cgroup2 over /sys/fs/cgroup itself
    assert cgroups.namespace_mounts([unified]) == [("", "cgroup2", None)]


def test_escaped_mount_points():
    text = "".join(line + "\n" for line in HYBRID.splitlines() if "/sys/fs/cgroup/cpu,cpuacct" not in line)
    assert [h.mount for h in parse_mountinfo(text) if "cpu" in h.controllers] == ["/mnt/again here"]


def test_counters():
    assert flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")["oom_kill"] == 2
    assert flat_keyed("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")["oom_kill"] == 1
    v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:16 Read 10\n8:16 Write 0\nTotal 12298\n"
    assert io_bytes(v1, 1) == (4106, 8192)
    v2 = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=10 wbytes=1\n"
    assert io_bytes(v2, 2) == (4106, 8193)


# -- stats arithmetic --------------------------------------------------------------------------------


def test_dockers_size_formats():
    assert bytes_size(0) == "0B"
    assert bytes_size(520 * 1024) == "520KiB"
    assert bytes_size(32 * MiB) == "32MiB"
    assert bytes_size(1.5 * (1 << 30)) == "1.5GiB"
    assert bytes_size(33554431) == "32MiB"  # %.4g rounds
    assert stats.human_size(1234) == "1.23kB"


def test_cpu_percent_is_dockers():
    # half a CPU-second used while the host's two CPUs spent two seconds: 25% of the host, 50% of a CPU
    assert stats.cpu_percent(0, 500_000_000, 0, 2_000_000_000, 2) == pytest.approx(50.0)
    assert stats.cpu_percent(10, 10, 0, 100, 2) == 0.0
    assert stats.cpu_percent(0, 10, 100, 100, 2) == 0.0


class _Container:
    id = "a" * 64
    name = "web"


def test_rows():
    usage = {"cpu_ns": 0, "memory": 16 * MiB, "memory_limit": 32 * MiB, "pids": 3, "blk_read": 2048, "blk_write": 0}
    before = stats.Sample(dict(usage), 0, (0, 0))
    after = stats.Sample(dict(usage, cpu_ns=10**9), stats.online_cpus() * 10**9, (1500, 20))
    row = stats.row(_Container(), before, after, host_memory=1 << 30)
    assert row == ["a" * 12, "web", "100.00%", "16MiB / 32MiB", "50.00%", "1.5kB / 20B", "2.05kB / 0B", "3"]
    unlimited = stats.Sample(dict(usage, memory_limit=0), 0, (0, 0))
    assert stats.row(_Container(), unlimited, unlimited, host_memory=1 << 30)[3:5] == ["16MiB / 1GiB", "1.56%"]
    stopped = stats.Sample(None, 0, (0, 0))
    assert stats.row(_Container(), stopped, stopped, no_trunc=True) == [
        "a" * 64,
        "web",
        "0.00%",
        "0B / 0B",
        "0.00%",
        "0B / 0B",
        "0B / 0B",
        "0",
    ]


def test_net_dev_leaves_out_loopback():
    lines = [
        "    lo:  100  1 0 0 0 0 0 0   100  1 0 0 0 0 0 0",
        "  eth0: 2000  5 0 0 0 0 0 0   300  3 0 0 0 0 0 0",
        "  eth1:   10  1 0 0 0 0 0 0     1  1 0 0 0 0 0 0",
    ]
    assert stats.parse_net_dev(lines) == (2010, 301)


def test_memory_swappiness_is_checked_as_docker_checks_it():
    assert parse_options({"memory_swappiness": "0"}) == {"MemorySwappiness": 0}
    assert parse_options({"memory_swappiness": "100"}) == {"MemorySwappiness": 100}
    assert parse_options({"memory_swappiness": "-1"}) == {}  # docker's default: the kernel's
    with pytest.raises(UsageError, match="invalid value: 101. Valid memory swappiness range is 0-100"):
        parse_options({"memory_swappiness": "101"})
    with pytest.raises(UsageError, match="invalid value: -2"):
        parse_options({"memory_swappiness": "-2"})
    with pytest.raises(UsageError, match="invalid syntax"):
        parse_options({"memory_swappiness": "x"})
    assert parse_run_args(["--memory-swappiness", "7", "busybox"]).resources == {"MemorySwappiness": 7}
    assert limit_writes({"MemorySwappiness": 7}, 1) == [("memory", "memory.swappiness", "7")]
