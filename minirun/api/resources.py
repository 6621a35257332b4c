"""`/containers/{id}/stats` and `/containers/{id}/update`: the CLI's `stats` readings
(containers/stats.py) in docker's StatsResponse shape, and its `update` (containers/resources.py,
autostart.set_policy) from docker's UpdateConfig."""

from __future__ import annotations

import asyncio
import json
import os

from aiohttp import web

from minirun.api.common import as_json, blocking, body, find, flag
from minirun.api.errors import ApiError

_NEVER = "0001-01-01T00:00:00Z"  # Go's zero time, as dockerd reports a reading never taken

# -- stats ---------------------------------------------------------------------------------------


class Reading:
    """One sample (containers/stats.py) with when it was taken and the network's interfaces."""

    def __init__(self, container) -> None:
        from minirun.containers import stats
        from minirun.timestamps import rfc3339_now

        self.sample = stats.take(container)
        self.read = rfc3339_now()
        running = self.sample.usage is not None
        self.networks = stats.net_interfaces(container.state.get("Pid") or 0) if running else None


def _cpu(reading: Reading | None, cpus: int) -> dict:
    usage = reading.sample.usage if reading is not None else None
    document: dict = {
        "cpu_usage": {"total_usage": usage["cpu_ns"] if usage else 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
    if usage is not None and reading is not None:
        document.update(system_cpu_usage=reading.sample.system_ns, online_cpus=cpus)
    return document


def document(container, reading: Reading | None, previous: Reading | None, host_memory: int, cpus: int) -> dict:
    """docker's StatsResponse: what its clients compute CPU % (cpu_stats against precpu_stats),
    memory, network and block I/O from. Zeros for a container that does not run."""
    usage = reading.sample.usage if reading is not None else None
    result: dict = {
        "name": "/" + container.name,
        "id": container.id,
        "read": reading.read if usage is not None and reading is not None else _NEVER,
        "preread": previous.read if previous is not None and previous.sample.usage is not None else _NEVER,
        "num_procs": 0,
        "storage_stats": {},
        "pids_stats": {},
        "blkio_stats": {key: None for key in _BLKIO_KEYS},
        "cpu_stats": _cpu(reading if usage else None, cpus),
        "precpu_stats": _cpu(previous if previous is not None and previous.sample.usage else None, cpus),
        "memory_stats": {},
    }
    if usage is None or reading is None:
        return result
    limit = usage["memory_limit"]
    if not limit or (host_memory and limit > host_memory):
        limit = host_memory  # dockerd caps the limit it reports at the machine's memory
    # the usage is already without the inactive file cache (cgroups.usage), which docker's
    # clients take out of `usage` themselves: none is left to take
    result["memory_stats"] = {"usage": usage["memory"], "limit": limit, "stats": {"inactive_file": 0}}
    result["pids_stats"] = {"current": usage["pids"]}
    pids_limit = container.config.resources.get("PidsLimit") or 0
    if pids_limit > 0:
        result["pids_stats"]["limit"] = pids_limit
    result["blkio_stats"]["io_service_bytes_recursive"] = [
        {"major": 0, "minor": 0, "op": "read", "value": usage["blk_read"]},
        {"major": 0, "minor": 0, "op": "write", "value": usage["blk_write"]},
    ]
    if reading.networks:  # none with --network host or none, as dockerd reports them
        result["networks"] = reading.networks
    return result


_BLKIO_KEYS = (
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queue_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "io_time_recursive",
    "sectors_recursive",
)


async def stats(request: web.Request) -> web.StreamResponse:
    """stream (the default): a reading a second, the first without precpu_stats, until the
    client leaves or the container is removed; stream=0: one reading a second after another (a
    CPU % comes out), one-shot=1 with it: at once, without precpu_stats. dockerd's rules."""
    from minirun.containers import stats as stats_
    from minirun.containers.liveness import is_running, refresh

    stream, one_shot = flag(request, "stream", True), flag(request, "one-shot")
    if one_shot and stream:
        raise ApiError(400, "cannot have stream=true and one-shot=true")
    cs, container = await blocking(find, request)
    host_memory, cpus = stats_.host_memory_bytes(), stats_.online_cpus()

    def take(container) -> tuple:
        container = refresh(cs, container, reload=True, record=False) if os.path.isdir(container.dir) else None
        return container, (Reading(container) if container is not None and is_running(container) else None)

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if not stream:
        container, reading = await blocking(take, container)
        previous = None
        if reading is not None and not one_shot:
            await asyncio.sleep(stats_.INTERVAL)
            previous, (container, reading) = reading, await blocking(take, container)
        if container is None:
            raise ApiError(404, f"No such container: {request.match_info['id']}")
        return as_json(document(container, reading, previous, host_memory, cpus))
    await response.prepare(request)
    previous = None
    try:
        while True:
            found, reading = await blocking(take, container)
            if found is None:
                break  # removed: nothing more to read
            container = found
            line = json.dumps(document(container, reading, previous, host_memory, cpus)) + "\n"
            await response.write(line.encode())
            previous = reading
            await asyncio.sleep(stats_.INTERVAL)
        await response.write_eof()
    except ConnectionError:
        pass  # the client left
    return response


# -- update --------------------------------------------------------------------------------------

# UpdateConfig's fields minirun applies (containers/resources.py), and those it does not
_APPLIED = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpusetCpus", "PidsLimit")
_IGNORED = (
    "BlkioWeight",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetMems",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemorySwappiness",
)


def update_changes(config: dict) -> tuple[dict, dict | None, list[str]]:
    """docker's UpdateConfig -> (resources to merge, the restart policy or None, warnings). A 0
    or empty value changes nothing, as in docker; CpuQuota/CpuPeriod become NanoCpus."""
    from minirun.containers.resources import validate
    from minirun.containers.restartpolicy import parse_policy

    changes: dict = {}
    for field in _APPLIED:
        value = config.get(field)
        if value is None:
            continue
        wanted = str if field == "CpusetCpus" else int
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise ApiError(400, f"invalid {field}: {value!r}")
        if value or field == "PidsLimit":
            changes[field] = value
    quota, period = config.get("CpuQuota") or 0, config.get("CpuPeriod") or 100_000
    if not isinstance(quota, int) or not isinstance(period, int) or period <= 0:
        raise ApiError(400, "invalid CpuQuota or CpuPeriod")
    if quota > 0 and not changes.get("NanoCpus"):
        changes["NanoCpus"] = quota * 1_000_000_000 // period
    if "NanoCpus" in changes:
        validate({"NanoCpus": changes["NanoCpus"]})  # the range of CPUs, in docker's words
    warnings = [f"minirun does not apply {field}: it was ignored" for field in _IGNORED if config.get(field)]
    policy = None
    restart = config.get("RestartPolicy") or {}
    if not isinstance(restart, dict):
        raise ApiError(400, "invalid RestartPolicy")
    if restart.get("Name"):
        count = restart.get("MaximumRetryCount") or 0
        policy = parse_policy(f"{restart['Name']}:{count}" if count else str(restart["Name"]))
    return changes, policy, warnings


async def update(request: web.Request) -> web.Response:
    from minirun.containers.autostart import set_policy
    from minirun.containers.resources import update_container

    changes, policy, warnings = update_changes(await body(request))

    def run() -> None:
        cs, container = find(request)
        if policy is not None:
            set_policy(cs, container, policy)
        if changes:
            update_container(cs, container, changes)

    await blocking(run)
    return as_json({"Warnings": warnings})


ROUTES = [
    web.get("/containers/{id}/stats", stats, allow_head=False),
    web.post("/containers/{id}/update", update),
]
