"""`stats`: docker's live resource table, from the containers' cgroups and /proc.

CPU % is docker's: the container's CPU time over the host's, between two samples, times the
online CPUs. MEM USAGE leaves out the inactive file cache, as docker counts it; LIMIT is the
memory limit, or the host's memory without one. NET I/O is PID 1's network namespace
(/proc/PID/net/dev, loopback left out); BLOCK I/O the cgroup's bytes read and written.
"""

from __future__ import annotations

import os

from minirun.humanize import bytes_size

HEADERS = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
INTERVAL = 1.0  # seconds between samples: docker's daemon samples once a second


class Sample:
    """One reading of one container; `usage` is None for a container that is not running."""

    __slots__ = ("usage", "system_ns", "net")

    def __init__(self, usage: dict | None, system_ns: int, net: tuple[int, int]) -> None:
        self.usage, self.system_ns, self.net = usage, system_ns, net


def take(container) -> Sample:
    from minirun.runtime import cgroups

    state = container.state
    usage = cgroups.usage(container.id) if state.get("Status") == "running" else None
    net = net_bytes(state.get("Pid") or 0) if usage is not None else (0, 0)
    return Sample(usage, system_cpu_ns(), net)


def row(container, before: Sample, after: Sample, no_trunc: bool = False, host_memory: int | None = None) -> list[str]:
    """The table's cells for `container` from two samples. Pure but for the host's memory size."""
    ident = container.id if no_trunc else container.id[:12]
    usage = after.usage
    if usage is None:
        return [ident, container.name, "0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    cpu = cpu_percent(
        before.usage["cpu_ns"] if before.usage else 0, usage["cpu_ns"], before.system_ns, after.system_ns, online_cpus()
    )
    limit = usage["memory_limit"]
    host = host_memory if host_memory is not None else host_memory_bytes()
    if not limit or (host and limit > host):
        limit = host  # docker's daemon caps the limit it reports at the machine's memory
    memory = usage["memory"]
    percent = memory / limit * 100 if limit else 0.0
    rx, tx = after.net
    return [
        ident,
        container.name,
        f"{cpu:.2f}%",
        f"{bytes_size(memory)} / {bytes_size(limit)}",
        f"{percent:.2f}%",
        f"{human_size(rx)} / {human_size(tx)}",
        f"{human_size(usage['blk_read'])} / {human_size(usage['blk_write'])}",
        str(usage["pids"]),
    ]


def cpu_percent(cpu_before: int, cpu_after: int, system_before: int, system_after: int, cpus: int) -> float:
    """docker's calculateCPUPercentUnix."""
    cpu_delta, system_delta = cpu_after - cpu_before, system_after - system_before
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * cpus * 100.0
    return 0.0


def human_size(n: float) -> str:
    from minirun.humanize import human_size as decimal

    return decimal(n, 3)


def system_cpu_ns() -> int:
    """The host's CPU time (user..softirq of /proc/stat's cpu line), as docker's daemon sums it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                ticks = sum(int(v) for v in line.split()[1:8])
                return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


def online_cpus() -> int:
    return os.sysconf("SC_NPROCESSORS_ONLN") or 1


def host_memory_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def net_bytes(pid: int) -> tuple[int, int]:
    """(received, sent) bytes of every interface but lo in `pid`'s network namespace; (0, 0)
    when that is the host's own (--network host: docker reports no networks then)."""
    if pid <= 0:
        return 0, 0
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            return 0, 0
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    return parse_net_dev(lines)


def parse_net_dev(lines: list[str]) -> tuple[int, int]:
    rx = tx = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


# /proc/net/dev's counters, in its order, as docker's NetworkStats names them
_NET_FIELDS = {
    0: "rx_bytes",
    1: "rx_packets",
    2: "rx_errors",
    3: "rx_dropped",
    8: "tx_bytes",
    9: "tx_packets",
    10: "tx_errors",
    11: "tx_dropped",
}


def net_interfaces(pid: int) -> dict[str, dict[str, int]]:
    """Each interface but lo of `pid`'s network namespace with its counters (the Engine API's
    `networks`); none when that namespace is the host's (--network host)."""
    if pid <= 0:
        return {}
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            return {}
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return {}
    return parse_net_interfaces(lines)


def parse_net_interfaces(lines: list[str]) -> dict[str, dict[str, int]]:
    found = {}
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 12:
            continue
        found[name.strip()] = {key: int(fields[i]) for i, key in _NET_FIELDS.items()}
    return found
