"""docker's resource options: --memory, --memory-swap, --memory-reservation, --oom-kill-disable,
--memory-swappiness (v1: memory.swappiness; warned about and dropped on v2, as docker),
--cpus, --cpu-shares, --cpuset-cpus, --pids-limit and the block I/O ones (--blkio-weight,
--blkio-weight-device, --device-read-bps and its three siblings), parsed and checked the way the
docker CLI and daemon do it (same values, same wording), into the fields docker's HostConfig
names: Memory, MemorySwap, MemoryReservation, OomKillDisable, MemorySwappiness, NanoCpus, CpuShares, CpusetCpus,
PidsLimit, BlkioWeight, BlkioWeightDevice, BlkioDevice{Read,Write}{Bps,IOps}. A container's
config.json records them under `resources`; only the fields that were given are kept. `update`
merges new values into that record.

On the run path: only stdlib modules already loaded there (fractions only with --cpus).
"""

from __future__ import annotations

import os

from minirun.errors import UsageError

MIN_MEMORY = 6 * 1024 * 1024  # docker's linuxMinMemory
PIDS_MAX = 4194304  # the kernel's PID_MAX_LIMIT: pids.max refuses more (EINVAL)
# podman's default (containers.conf pids_limit): a fork bomb in one container cannot take the
# host's PIDs (pid_max is 32768 on many hosts) from every other process. docker sets none.
DEFAULT_PIDS_LIMIT = 2048
FIELDS = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpusetCpus", "PidsLimit")
# flag -> (its name in docker's messages, the HostConfig field)
FLAGS = {
    "memory": ("-m, --memory", "Memory"),
    "memory_swap": ("--memory-swap", "MemorySwap"),
    "memory_reservation": ("--memory-reservation", "MemoryReservation"),  # v1 soft limit, v2 memory.low
    "oom_kill_disable": ("--oom-kill-disable", "OomKillDisable"),  # a flag: True or unset (v1 only)
    "memory_swappiness": ("--memory-swappiness", "MemorySwappiness"),  # 0-100, v1 only; -1: the kernel's
    "cpus": ("--cpus", "NanoCpus"),
    "cpu_shares": ("-c, --cpu-shares", "CpuShares"),
    "cpuset_cpus": ("--cpuset-cpus", "CpusetCpus"),
    "pids_limit": ("--pids-limit", "PidsLimit"),
    "blkio_weight": ("--blkio-weight", "BlkioWeight"),
    # repeatable, each PATH:VALUE (docker's opts.ValidateWeightDevice, ValidateThrottle*Device)
    "blkio_weight_device": ("--blkio-weight-device", "BlkioWeightDevice"),
    "device_read_bps": ("--device-read-bps", "BlkioDeviceReadBps"),
    "device_write_bps": ("--device-write-bps", "BlkioDeviceWriteBps"),
    "device_read_iops": ("--device-read-iops", "BlkioDeviceReadIOps"),
    "device_write_iops": ("--device-write-iops", "BlkioDeviceWriteIOps"),
}
_DEVICE_FLAGS = ("blkio_weight_device", "device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def add_options(p) -> None:
    """The options on an argparse parser (run's); values stay text until parse_options. (The
    boolean --oom-kill-disable is cli/runargs.py's, made as its other docker booleans.)"""
    p.add_argument("-m", "--memory", default=None, help="Memory limit")
    p.add_argument(
        "--memory-swap", default=None, help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"
    )
    p.add_argument("--memory-reservation", default=None, help="Memory soft limit")
    p.add_argument("--memory-swappiness", default=None, help="Tune container memory swappiness (0 to 100) (default -1)")
    p.add_argument("--cpus", default=None, help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", default=None, help="CPU shares (relative weight)")
    p.add_argument("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--pids-limit", default=None, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--blkio-weight", default=None, help="Block IO (relative weight), between 10 and 1000, or 0")
    p.add_argument(
        "--blkio-weight-device", action="append", default=None, help="Block IO weight (relative device weight)"
    )
    p.add_argument("--device-read-bps", action="append", default=None, help="Limit read rate (bytes per second)")
    p.add_argument("--device-write-bps", action="append", default=None, help="Limit write rate (bytes per second)")
    p.add_argument("--device-read-iops", action="append", default=None, help="Limit read rate (IO per second)")
    p.add_argument("--device-write-iops", action="append", default=None, help="Limit write rate (IO per second)")


def parse_options(values: dict) -> dict:
    """{"memory": "512m", ...} (flag names, text or None; a list for the repeatable per-device
    ones; a bool for --oom-kill-disable) -> {"Memory": 536870912, ...} with only the given ones.
    Syntax errors are the CLI's (`invalid argument ... for ... flag`)."""
    result: dict = {}
    for key, text in values.items():
        if key == "oom_kill_disable":
            if text:  # false is docker's default: nothing recorded
                result["OomKillDisable"] = True
            continue
        if not text and (text is None or key in _DEVICE_FLAGS):
            continue
        flag, field = FLAGS[key]
        if key == "memory_swappiness":
            if (swappiness := _swappiness(text)) is not None:
                result[field] = swappiness
            continue
        if key in _DEVICE_FLAGS:
            result[field] = [_parse_device(key, flag, item) for item in text]
        else:
            result[field] = _parse_value(key, flag, text)
    return result


def _swappiness(text: str) -> int | None:
    """--memory-swappiness: 0 to 100; -1 (docker's default) leaves the kernel's: None."""
    body = text[1:] if text[:1] in "+-" else text
    if not (body.isdigit() and body.isascii()):
        raise UsageError(
            f'invalid argument "{text}" for "--memory-swappiness" flag: strconv.ParseInt: parsing "{text}": invalid syntax'
        )
    value = int(text)
    if value == -1:
        return None
    if not 0 <= value <= 100:  # docker's CLI's check, its words
        raise UsageError(f"invalid value: {value}. Valid memory swappiness range is 0-100")
    return value


def _parse_device(key: str, flag: str, text: str) -> dict:
    """PATH:WEIGHT, PATH:RATE[unit] or PATH:IOPS as docker's opts package checks them; the
    device's numbers are found when the limits are applied (cgroups.resolve_devices)."""

    def bad(reason: str) -> UsageError:
        return UsageError(f'invalid argument "{text}" for "{flag}" flag: {reason}')

    path, colon, value = text.partition(":")
    if not colon:
        raise bad(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise bad(f"bad format for device path: {text}")
    if key == "blkio_weight_device":
        weight = int(value) if value.isdigit() and value.isascii() else -1
        if not 0 <= weight < 1 << 16 or (weight > 0 and not 10 <= weight <= 1000):
            raise bad(f"invalid weight for device: {text}")
        return {"Path": path, "Weight": weight}
    if key.endswith("_bps"):
        rate = ram_in_bytes(value) if value else None
        if rate is None:
            raise bad(
                f"invalid rate for device: {text}. The correct format is <device-path>:<number>[<unit>]. "
                "Number must be a positive integer. Unit is optional and can be kb, mb, or gb"
            )
        return {"Path": path, "Rate": rate}
    if not (value.isdigit() and value.isascii() and int(value) < 1 << 64):
        raise bad(
            f"invalid rate for device: {text}. The correct format is <device-path>:<number>. "
            "Number must be a positive integer"
        )
    return {"Path": path, "Rate": int(value)}


def _parse_value(key: str, flag: str, text: str):
    def bad(reason: str) -> UsageError:
        return UsageError(f'invalid argument "{text}" for "{flag}" flag: {reason}')

    if key == "memory_swap" and text == "-1":
        return -1
    if key in ("memory", "memory_swap", "memory_reservation"):
        size = ram_in_bytes(text)
        if size is None:
            raise bad(f"invalid size: '{text}'")
        return size
    if key == "cpus":
        return nano_cpus(text, bad)
    if key == "blkio_weight":
        if not (text.isdigit() and text.isascii() and int(text) < 1 << 16):
            raise bad(f'strconv.ParseUint: parsing "{text}": invalid syntax')
        return int(text)
    if key in ("cpu_shares", "pids_limit"):
        body = text[1:] if text[:1] in "+-" else text
        if not body.isdigit() or not body.isascii():
            raise bad(f'strconv.ParseInt: parsing "{text}": invalid syntax')
        number = int(text)
        if not -(1 << 63) <= number < 1 << 63:
            raise bad(f'strconv.ParseInt: parsing "{text}": value out of range')
        return number
    return text  # cpuset_cpus: checked against the host by validate


def ram_in_bytes(text: str) -> int | None:
    """go-units RAMInBytes: `512m`, `1g`, `1.5GiB`, `100` (bytes); binary units, truncated."""
    rest = text
    if rest[-1:] in ("b", "B"):
        rest = rest[:-1]
    if rest[-1:] in ("i", "I"):
        rest = rest[:-1]
    unit = ""
    if rest[-1:].lower() in _UNITS and rest[-1:]:
        unit, rest = rest[-1].lower(), rest[:-1]
    if rest.endswith(" "):
        rest = rest[:-1]
    whole, _, fraction = rest.partition(".")
    if not whole.isdigit() or not whole.isascii() or ("." in rest and not (fraction.isdigit() and fraction.isascii())):
        return None
    return int(float(rest) * _UNITS[unit])


def nano_cpus(text: str, bad) -> int:
    """docker's ParseCPUs (a big.Rat: `1.5`, `3/2`, `15e-1`) -> billionths of a CPU, exactly;
    integer arithmetic only (fractions would load decimal, ~1.5 ms of the run path)."""
    number = rational(text.strip())
    if number is None:
        raise bad(f"failed to parse {text} as a rational number")
    numerator, denominator = number
    if (numerator * 1_000_000_000) % denominator:
        raise bad("value is too precise")
    return numerator * 1_000_000_000 // denominator


def rational(text: str) -> tuple[int, int] | None:
    """(numerator, denominator) of `a/b` or a decimal with an optional exponent; None if neither."""
    sign = -1 if text[:1] == "-" else 1
    body = text[1:] if text[:1] in "+-" else text
    if "/" in body:
        top, _, bottom = body.partition("/")
        if not (_digits(top) and _digits(bottom)) or int(bottom) == 0:
            return None
        return sign * int(top), int(bottom)
    mantissa, _, exponent = body.lower().partition("e")
    whole, _, fraction = mantissa.partition(".")
    if not (whole or fraction) or not all(_digits(part) for part in (whole, fraction) if part):
        return None
    power = -len(fraction)
    if "e" in body.lower():
        exp_body = exponent[1:] if exponent[:1] in "+-" else exponent
        if not _digits(exp_body) or len(exp_body) > 4:
            return None
        power += int(exponent)
    value = sign * int((whole or "0") + fraction)
    return (value * 10**power, 1) if power >= 0 else (value, 10**-power)


def _digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def validate(resources: dict, ncpu: int | None = None, available: str | None = None) -> None:
    """The daemon's checks of a complete set (after defaults), docker's wording."""
    memory, swap = resources.get("Memory", 0), resources.get("MemorySwap", 0)
    if memory and memory < MIN_MEMORY:
        raise UsageError("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise UsageError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise UsageError("You should always set the Memory limit when using Memoryswap limit, see usage")
    reservation = resources.get("MemoryReservation", 0)
    if memory > 0 and reservation > 0 and memory < reservation:
        raise UsageError("Minimum memory limit can not be less than memory reservation limit, see usage")
    if 0 < reservation < MIN_MEMORY:
        raise UsageError("Minimum memory reservation allowed is 6MB")
    nano = resources.get("NanoCpus", 0)
    if nano:
        ncpu = ncpu or len(os.sched_getaffinity(0))
        # below 0.01 the CFS quota would be under the kernel's 1 ms minimum
        if nano < 10_000_000 or nano > ncpu * 1_000_000_000:
            raise UsageError(f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    pids = resources.get("PidsLimit")
    if pids is not None and pids > PIDS_MAX:  # (0 or less: unlimited, as docker has it)
        raise UsageError(f"invalid --pids-limit {pids}: the kernel allows at most {PIDS_MAX} (0 or -1 for unlimited)")
    weight = resources.get("BlkioWeight", 0)
    if weight and not 10 <= weight <= 1000:
        raise UsageError("Range of blkio weight is from 10 to 1000")
    if resources.get("CpuShares", 0) < 0:
        raise UsageError(f"invalid CPU shares {resources['CpuShares']}: the minimum is 2 (0 for the default)")
    cpuset = resources.get("CpusetCpus")
    if cpuset:
        requested = parse_cpu_list(cpuset)
        if requested is None:
            raise UsageError(f"Invalid value {cpuset} for cpuset cpus: invalid format: {cpuset}")
        if available is None:
            from minirun.runtime import cgroups

            available = cgroups.available_cpus()
        if not requested <= (parse_cpu_list(available) or set()):
            raise UsageError(f"Requested CPUs are not available - requested {cpuset}, available: {available}")


def for_run(given: dict, ncpu: int | None = None, available: str | None = None) -> dict:
    """A new container's resources: docker's default swap (memory+swap = twice the memory)."""
    resources = dict(given)
    if resources.get("Memory", 0) > 0 and not resources.get("MemorySwap"):
        resources["MemorySwap"] = resources["Memory"] * 2
    validate(resources, ncpu, available)
    return resources


def default_pids_limit(resources: dict) -> None:
    """A new container without --pids-limit gets podman's DEFAULT_PIDS_LIMIT, recorded (inspect shows
    it, `update` changes it), where the host has a pids controller, as podman sets it only there.
    An explicit 0 or -1 stays: no limit."""
    if "PidsLimit" in resources:
        return
    from minirun.runtime import cgroups

    if cgroups.owner("pids") is not None:
        resources["PidsLimit"] = DEFAULT_PIDS_LIMIT


def discard_unsupported(resources: dict) -> list[str]:
    """docker's daemon drops a block weight the kernel has no file for (no CFQ, no BFQ), and
    OomKillDisable where the memory controller is cgroup v2's (which has no such switch), with
    these warnings, rather than fail the create or update: `resources` loses those fields."""
    warnings = []
    if resources.get("OomKillDisable") or resources.get("MemorySwappiness") is not None:
        from minirun.runtime import cgroups

        memory = cgroups.owner("memory")
        v1 = memory is not None and memory.version == 1
        if resources.get("OomKillDisable") and not v1:
            del resources["OomKillDisable"]
            warnings.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
        if resources.get("MemorySwappiness") is not None and not v1:  # v2 has no memory.swappiness
            del resources["MemorySwappiness"]
            warnings.append(
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. "
                "Memory swappiness discarded."
            )
    if not (resources.get("BlkioWeight") or resources.get("BlkioWeightDevice")):
        return warnings
    from minirun.runtime import cgroups

    if cgroups.block_weights():
        return warnings
    if resources.pop("BlkioWeight", 0):
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
    if resources.pop("BlkioWeightDevice", None):
        warnings.append(
            "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded."
        )
    return warnings


def merged(current: dict, changes: dict, ncpu: int | None = None, available: str | None = None) -> dict:
    """`update`: the container's resources with `changes` in (a 0 or empty value changes nothing,
    as in docker); a memory limit above the memory+swap already set needs a new memory-swap."""
    result = dict(current)
    memory, swap = changes.get("Memory", 0), changes.get("MemorySwap", 0)
    if memory:
        if memory > result.get("MemorySwap", 0) > 0 and not swap:
            raise UsageError(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        result["Memory"] = memory
    if swap:
        result["MemorySwap"] = swap
    for field in ("NanoCpus", "CpuShares", "CpusetCpus", "BlkioWeight", "MemoryReservation"):
        if changes.get(field):
            result[field] = changes[field]
    if changes.get("PidsLimit") is not None:
        result["PidsLimit"] = changes["PidsLimit"]
    validate(result, ncpu, available)
    return result


def parse_cpu_list(text: str) -> set[int] | None:
    """`0-2,4` -> {0, 1, 2, 4}; None when malformed (docker's ParseUintList)."""
    cpus: set[int] = set()
    if not text:
        return cpus
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not (low.isdigit() and low.isascii()) or (dash and not (high.isdigit() and high.isascii())):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            return None
        cpus.update(range(first, last + 1))
    return cpus


def host_config(resources: dict) -> dict:
    """The HostConfig fields of inspect, with docker's defaults for the ones not set."""
    return {
        "Memory": resources.get("Memory", 0),
        "MemorySwap": resources.get("MemorySwap", 0),
        "MemoryReservation": resources.get("MemoryReservation", 0),
        "OomKillDisable": resources.get("OomKillDisable", False),
        "MemorySwappiness": resources.get("MemorySwappiness"),
        "NanoCpus": resources.get("NanoCpus", 0),
        "CpuShares": resources.get("CpuShares", 0),
        "CpusetCpus": resources.get("CpusetCpus", ""),
        "PidsLimit": resources.get("PidsLimit"),
        "BlkioWeight": resources.get("BlkioWeight", 0),
        **{field: resources.get(field, []) for _, field in (FLAGS[key] for key in _DEVICE_FLAGS)},
    }


def update_container(containers, container, changes: dict) -> dict:
    """docker update: the merged limits go into the running container's cgroups first (a write
    the kernel refuses, say a memory limit below what is in use, changes nothing), then into
    config.json, under the store lock and re-read there so a concurrent rename is kept."""
    from minirun import leanjson
    from minirun.containers.liveness import is_running, refresh
    from minirun.runtime import cgroups
    from minirun.store.fsutil import atomic_write

    with containers.store.locked():
        fresh = refresh(containers, containers.load(container.id), reload=False)
        resources = merged(fresh.config.resources, changes)
        if is_running(fresh) and cgroups.existing_paths(fresh.id):
            cgroups.apply(fresh.id, resources)
        fresh.config.resources = resources
        atomic_write(
            os.path.join(fresh.dir, "config.json"), leanjson.dumps(fresh.config.to_json()).encode(), durable=False
        )
    return resources
