"""A container's cgroups: `<hierarchy>/minirun/<container id>` in every cgroup hierarchy that has
controllers, and in every v1 hierarchy that has only a name (name=systemd), for the three layouts
a host may have: v2 (one unified hierarchy), v1 (one hierarchy per controller group under
/sys/fs/cgroup/<ctrl>) and hybrid (v1 controllers beside a v2 mount that holds few or none of
them). The layout is read once per process, from /proc/self/mountinfo.

The parent creates the directories and writes the limits before PID 1 forks; PID 1 (and every
exec'd process) joins them as its very first step, before unshare(CLONE_NEWCGROUP), so the
namespace's root is the container's own cgroup and nothing the container runs is ever outside
it. A named v1 hierarchy holds no limit, but it is joined too (runc joins name=systemd): the
container's root with CAP_SYS_ADMIN may mount any v1 hierarchy the kernel has, and one where it
sat at the root would show it the host's release_agent (a program the kernel runs as root on
the host). The exit is read back here (OOM kills), and the directories go when the container
stops or is removed; the `minirun` parents stay, as docker's `/docker` does.

In the hierarchy that holds the devices policy (the v1 devices controller's, else v2's, with
its program) the container's processes sit one level lower, in `<container id>/inner`, the
policy on `<container id>` above them. A root with CAP_SYS_ADMIN mounts its own cgroups (each
shows the namespace's root, its own cgroup, at the top): where the rules sat on that cgroup it
wrote `a` to devices.allow (the kernel asks only that the parent, the `minirun` parent, allows
it) or detached the program, and opened the host's devices. A write to `inner` is held to the
rules of `<container id>`, which is outside its namespace and out of its reach.

Imports only os and errno (and the tiny errors and hostwide modules): the run path, PID 1 and
the monitor's lean log copier all load it.
"""

from __future__ import annotations

import errno
import os

from minirun import hostwide
from minirun.errors import MinirunError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from minirun.runtime.devices import Rule

    # docker's HostConfig fields as config.json records them (Memory, MemorySwap, NanoCpus,
    # CpuShares, PidsLimit: ints; CpusetCpus: a string), only those given
    Resources = Mapping[str, Any]

PARENT = hostwide.CGROUP_PARENT  # "minirun", unless a sandbox has its own
PROXIES = "proxies"  # PARENT/proxies: every port proxy's tasks under one pids.max (shared_task_limit)
CFS_PERIOD_US = 100000  # docker's --cpus period
# v1 controllers a hierarchy may carry; a hierarchy with none has a name (name=systemd)
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
# what a v2 parent enables for its children (where the hierarchy has them)
V2_WANTED = ("cpu", "cpuset", "io", "memory", "pids")
_EBUSY_RETRIES = 50
_OPTIONAL_FILES = frozenset({"memory.memsw.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"})


class Hierarchy:
    """One mounted cgroup hierarchy: its mount point, version (1 or 2) and controllers."""

    __slots__ = ("mount", "version", "controllers", "options")

    def __init__(self, mount: str, version: int, controllers: tuple[str, ...], options: str = "") -> None:
        self.mount, self.version, self.controllers, self.options = mount, version, controllers, options

    def __repr__(self) -> str:
        return f"Hierarchy({self.mount!r}, v{self.version}, {self.controllers})"

    def path(self, container_id: str) -> str:
        return f"{self.mount}/{PARENT}/{container_id}"

    def at(self, rel: str) -> str:
        """The cgroup `rel` (a path below every hierarchy's root, as an OCI cgroupsPath) here."""
        return f"{self.mount}/{rel.strip('/')}"


# -- the layout -------------------------------------------------------------------------------


def parse_mountinfo(text: str) -> list[Hierarchy]:
    """Every cgroup mount of a mountinfo text, first mount of each hierarchy only. Pure: a v2
    hierarchy's controllers are left empty (they live in its cgroup.controllers file); a named v1
    hierarchy has none, and its name= as its options."""
    found: list[Hierarchy] = []
    seen: set[str | tuple[str, ...]] = set()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2]
        if fstype == "cgroup2":
            key: str | tuple[str, ...] = "v2"
            hierarchy = Hierarchy(_unescape(fields[4]), 2, ())
        elif fstype == "cgroup":
            names = options.split(",")
            controllers = tuple(sorted(n for n in names if n in V1_CONTROLLERS))
            named = [n for n in names if n.startswith("name=")]
            if not controllers and not named:
                continue
            key = controllers or tuple(named)
            hierarchy = Hierarchy(_unescape(fields[4]), 1, controllers, ",".join([*controllers, *named]))
        else:
            continue
        if key not in seen:
            seen.add(key)
            found.append(hierarchy)
    return found


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


_detected: list[Hierarchy] | None = None
_unused_v2 = False  # a v2 mount without controllers was left out (the hybrid layout)


def hierarchies() -> list[Hierarchy]:
    """The host's hierarchies that carry controllers, and its named v1 ones (read once per process)."""
    global _detected, _unused_v2
    if _detected is None:
        found = parse_mountinfo(_read("/proc/self/mountinfo"))
        for hierarchy in found:
            if hierarchy.version == 2:
                try:
                    hierarchy.controllers = tuple(_read(f"{hierarchy.mount}/cgroup.controllers").split())
                except OSError:
                    hierarchy.controllers = ()
        # A v2 hierarchy without controllers (the hybrid layout's unified mount) would hold the
        # container to no limit, and joining it costs an RCU grace period (~10-15 ms) per start.
        # A named v1 hierarchy stays: no limit, but a container left at its root would find
        # the host's release_agent there (the module's docstring).
        _detected = [h for h in found if h.controllers or h.version == 1]
        _unused_v2 = any(h.version == 2 and not h.controllers for h in found)
    return _detected


def layout(found: list[Hierarchy] | None = None) -> str:
    """'v2', 'v1' or 'hybrid' (v1 controllers beside a v2 mount), '' if none; of the host's
    hierarchies, or of `found` (those with controllers: a v2 mount without any does not count)."""
    if found is None:
        found = hierarchies()
        if _unused_v2 and found:
            return "hybrid"
    versions = {h.version for h in found if h.controllers}  # (a named v1 hierarchy limits nothing)
    if versions == {2}:
        return "v2"
    if versions == {1}:
        return "v1"
    return "hybrid" if versions else ""


def owner(controller: str, found: list[Hierarchy] | None = None) -> Hierarchy | None:
    for hierarchy in hierarchies() if found is None else found:
        if controller in hierarchy.controllers:
            return hierarchy
    return None


INNER = "inner"  # where the container's processes sit, below its devices policy (see above)


def _policy_owner(found: list[Hierarchy]) -> Hierarchy | None:
    """The hierarchy whose cgroup holds the devices policy: the v1 controller's, else the v2 one."""
    v1 = next((h for h in found if h.version == 1 and "devices" in h.controllers), None)
    return v1 or next((h for h in found if h.version == 2), None)


def _and_policy(path: str) -> tuple[str, ...]:
    """`path`, and for an `inner` the policy's cgroup above it too: the one fact the remove and
    the OOM read share."""
    return (path, os.path.dirname(path)) if os.path.basename(path) == INNER else (path,)


def container_paths(container_id: str) -> list[str]:
    """The cgroups the container's processes are in (`inner` in the policy's hierarchy)."""
    found = hierarchies()
    policy = _policy_owner(found)
    return [h.path(container_id) + (f"/{INNER}" if h is policy else "") for h in found]


def existing_paths(container_id: str) -> list[str]:
    """The container's cgroups that exist now (none for one that is not running); a policy's
    cgroup whose `inner` is not (or no longer) there stands for it."""
    found = []
    for path in container_paths(container_id):
        if os.path.isdir(path):
            found.append(path)
        elif len(both := _and_policy(path)) == 2 and os.path.isdir(both[1]):
            found.append(both[1])
    return found


# -- limits as file writes (pure) ---------------------------------------------------------------


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000] as runc (>= 1.3) and crun
    map it: a quadratic in log2 space that sends the defaults 1024 to 100 (the older linear
    formula sent 1024 to 39)."""
    import math

    if shares <= 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    exponent = (math.log2(shares) ** 2 + 125 * math.log2(shares)) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10**exponent))


def cfs_quota(nano_cpus: int) -> int:
    """--cpus as a CFS quota in microseconds per CFS_PERIOD_US."""
    return nano_cpus * CFS_PERIOD_US // 1_000_000_000


def limit_writes(
    resources: Resources, version: int, current_memory: int | None = None, bfq: bool = False
) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write, in order, for docker's resource fields in `resources`
    (Memory, MemorySwap, MemorySwappiness, OomKillDisable, KernelMemoryTCP, NanoCpus, CpuShares,
    CpusetCpus, PidsLimit, the Blkio* ones) and the OCI-only ones runc's configs name (BlkioLeafWeight,
    HugepageLimits, NetClsClassid, NetPrioIfpriomap, Rdma, Unified) on a cgroup `version`
    hierarchy. `current_memory` is v1's memory.limit_in_bytes now: v1 refuses a memory limit
    above memory+swap's, so when the memory limit grows, memory+swap must grow first. `bfq`: the
    block weights go to BFQ's files (v1: blkio.weight is absent, as since Linux 5.0 and CFQ's end;
    v2: io.bfq.weight is there). The controller of a write is its v1 name (blkio for v2's io);
    "unified" for the files of linux.resources.unified, which only v2 has."""
    writes: list[tuple[str, str, str]] = []
    memory, swap = resources.get("Memory") or 0, resources.get("MemorySwap") or 0
    if version == 1:
        pairs = []
        if memory > 0:
            pairs.append(("memory.limit_in_bytes", str(memory)))
        if swap == -1 or (swap > 0 and memory > 0):
            memsw = ("memory.memsw.limit_in_bytes", str(swap))
            if swap == -1 or (current_memory is not None and memory > current_memory):
                pairs.insert(0, memsw)
            else:
                pairs.append(memsw)
        writes += [("memory", name, value) for name, value in pairs]
    else:
        if memory > 0:
            writes.append(("memory", "memory.max", str(memory)))
        if swap == -1:
            writes.append(("memory", "memory.swap.max", "max"))
        elif swap > 0 and memory > 0:
            writes.append(("memory", "memory.swap.max", str(swap - memory)))
    if version == 1:  # (v2 has none of these three: oci/config.ignored_settings says so)
        if resources.get("MemorySwappiness") is not None:
            writes.append(("memory", "memory.swappiness", str(resources["MemorySwappiness"])))
        if resources.get("OomKillDisable"):
            writes.append(("memory", "memory.oom_control", "1"))
        if resources.get("KernelMemoryTCP"):
            writes.append(("memory", "memory.kmem.tcp.limit_in_bytes", str(resources["KernelMemoryTCP"])))
    reservation = resources.get("MemoryReservation") or 0
    if reservation > 0:
        writes.append(
            ("memory", "memory.soft_limit_in_bytes", str(reservation))
            if version == 1
            else ("memory", "memory.low", str(reservation))
        )
    quota, period = resources.get("CpuQuota") or 0, resources.get("CpuPeriod") or 0
    if quota or period:  # docker's --cpu-quota/--cpu-period (and an OCI bundle's cpu.quota/period)
        if version == 1:
            writes += [("cpu", "cpu.cfs_period_us", str(period))] if period else []
            writes += [("cpu", "cpu.cfs_quota_us", str(quota))] if quota else []
        else:
            writes.append(("cpu", "cpu.max", f"{quota if quota > 0 else 'max'} {period or CFS_PERIOD_US}"))
    nano = resources.get("NanoCpus") or 0
    if nano > 0:
        if version == 1:
            writes += [
                ("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)),
                ("cpu", "cpu.cfs_quota_us", str(cfs_quota(nano))),
            ]
        else:
            writes.append(("cpu", "cpu.max", f"{cfs_quota(nano)} {CFS_PERIOD_US}"))
    shares = resources.get("CpuShares") or 0
    if shares > 0:
        writes.append(
            ("cpu", "cpu.shares", str(shares)) if version == 1 else ("cpu", "cpu.weight", str(cpu_weight(shares)))
        )
    if resources.get("CpusetCpus"):
        writes.append(("cpuset", "cpuset.cpus", resources["CpusetCpus"]))
    if resources.get("CpusetMems"):
        writes.append(("cpuset", "cpuset.mems", resources["CpusetMems"]))
    pids = resources.get("PidsLimit")
    if pids is not None:
        writes.append(("pids", "pids.max", str(pids) if pids > 0 else "max"))
    writes += [("blkio", name, value) for name, value in blkio_writes(resources, version, bfq)]
    for limit in resources.get("HugepageLimits") or ():
        suffix = "limit_in_bytes" if version == 1 else "max"
        writes.append(("hugetlb", f"hugetlb.{limit['Pagesize']}.{suffix}", str(limit["Limit"])))
    if version == 1:  # net_cls and net_prio are v1 controllers only (runc's fs2 has no network)
        if resources.get("NetClsClassid"):
            writes.append(("net_cls", "net_cls.classid", str(resources["NetClsClassid"])))
        for entry in resources.get("NetPrioIfpriomap") or ():
            writes.append(("net_prio", "net_prio.ifpriomap", f"{entry['Interface']} {entry['Priority']}"))
    for device, limit in (resources.get("Rdma") or {}).items():
        words = [device]  # runc's createCmdString: only the limits given
        words += [f"hca_handle={limit['HcaHandles']}"] if limit.get("HcaHandles") is not None else []
        words += [f"hca_object={limit['HcaObjects']}"] if limit.get("HcaObjects") is not None else []
        writes.append(("rdma", "rdma.max", " ".join(words)))
    if version == 2:
        writes += [("unified", name, str(value)) for name, value in (resources.get("Unified") or {}).items()]
    return writes


# docker's per-device fields, each with its v1 file and v2 io.max key
_THROTTLES = (
    ("BlkioDeviceReadBps", "blkio.throttle.read_bps_device", "rbps"),
    ("BlkioDeviceWriteBps", "blkio.throttle.write_bps_device", "wbps"),
    ("BlkioDeviceReadIOps", "blkio.throttle.read_iops_device", "riops"),
    ("BlkioDeviceWriteIOps", "blkio.throttle.write_iops_device", "wiops"),
)


def blkio_writes(resources: Resources, version: int, bfq: bool = False) -> list[tuple[str, str]]:
    """(file, value) for the block I/O fields, as runc 1.1 writes them (libcontainer/cgroups/fs
    blkio.go, fs2 io.go). Devices are {"Major", "Minor", ...} (resolve_devices makes docker's
    {"Path"} so). v2 has no leaf weights (ignored, as runc does; oci/config says so) and takes
    per-device weights only with BFQ; without BFQ the weight goes to io.weight, scaled from
    blkio's [10, 1000] to [1, 10000]."""
    out: list[tuple[str, str]] = []
    weight, leaf = resources.get("BlkioWeight") or 0, resources.get("BlkioLeafWeight") or 0
    devices = resources.get("BlkioWeightDevice") or ()
    if version == 1:
        if weight:
            out.append(("blkio.bfq.weight" if bfq else "blkio.weight", str(weight)))
        if leaf:
            out.append(("blkio.leaf_weight", str(leaf)))
        for device in devices:
            if device.get("Weight"):
                name = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
                out.append((name, f"{device['Major']}:{device['Minor']} {device['Weight']}"))
            if device.get("LeafWeight"):
                out.append(("blkio.leaf_weight_device", f"{device['Major']}:{device['Minor']} {device['LeafWeight']}"))
    else:
        if weight:
            out.append(("io.bfq.weight", str(weight)) if bfq else ("io.weight", str(io_weight(weight))))
        if bfq:
            out += [("io.bfq.weight", f"{d['Major']}:{d['Minor']} {d['Weight']}") for d in devices if d.get("Weight")]
    for field, v1_file, key in _THROTTLES:
        for device in resources.get(field) or ():
            where = f"{device['Major']}:{device['Minor']}"
            out.append(
                (v1_file, f"{where} {device['Rate']}")
                if version == 1
                else ("io.max", f"{where} {key}={device['Rate']}")
            )
    return out


def io_weight(blkio_weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000], runc's ConvertBlkIOToIOWeightValue."""
    return 1 + (blkio_weight - 10) * 9999 // 990 if blkio_weight else 0


_DEVICE_FIELDS = ("BlkioWeightDevice", *(t[0] for t in _THROTTLES))


def resolve_devices(resources: Resources) -> Resources:
    """`resources` with each block device given by path (docker's {"Path": "/dev/sda"}) given by
    number as well, stat'ed now, as docker's daemon does at each start."""
    if not any(resources.get(f) for f in _DEVICE_FIELDS):
        return resources
    import stat

    resolved = dict(resources)
    for field in _DEVICE_FIELDS:
        entries = []
        for entry in resources.get(field) or ():
            if "Major" not in entry:
                try:
                    info = os.stat(entry["Path"])
                except OSError as exc:
                    raise MinirunError(f"{field}: {entry['Path']}: {exc.strerror}") from None
                if not stat.S_ISBLK(info.st_mode):
                    raise MinirunError(f"{field}: {entry['Path']} is not a block device")
                entry = {**entry, "Major": os.major(info.st_rdev), "Minor": os.minor(info.st_rdev)}
            entries.append(entry)
        if entries:
            resolved[field] = entries
    return resolved


# -- creating, joining, removing ----------------------------------------------------------------


def create(container_id: str, resources: Resources, devices: list[Rule] | None = None) -> list[str]:
    """The container's cgroups with `resources` applied and, given `devices` (devices.rules_for),
    its devices policy; returns their paths for PID 1 to join (`inner` below the policy, made
    after it: a v1 child starts with its parent's rules). Where no hierarchy can be written
    (minirun inside a container with a read-only cgroupfs), a container without limits runs
    without cgroups; one with limits fails."""
    made = create_at(f"{PARENT}/{container_id}", resources, devices)
    policy = _policy_owner(hierarchies())
    if policy is None or policy.path(container_id) not in made:
        return made
    outer = policy.path(container_id)
    inner = f"{outer}/{INNER}"
    try:
        try:
            os.mkdir(inner, 0o755)
        except FileExistsError:
            pass
        if "cpuset" in policy.controllers and policy.version == 1:  # (devices mounted with cpuset)
            _fill_cpuset(inner)
    except OSError as exc:
        remove(made)
        raise _error("create", exc) from None
    return [inner if path == outer else path for path in made]


def create_at(rel: str, resources: Resources, devices: list[Rule] | None = None) -> list[str]:
    """create() for the cgroup `rel` below each hierarchy's root (an OCI bundle's cgroupsPath);
    missing ancestors are made as the `minirun` parent is."""
    made: list[str] = []
    try:
        for hierarchy in hierarchies():
            _ensure_ancestors(hierarchy, rel)
            path = hierarchy.at(rel)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass  # a start after an exit whose cgroup was not removed: used again
            made.append(path)
            if "cpuset" in hierarchy.controllers and hierarchy.version == 1:
                _fill_cpuset(path)
        apply_at(rel, resources)
        if devices is not None and made:
            from minirun.runtime import devices as device_policy

            device_policy.apply([(h.at(rel), h.version, "devices" in h.controllers) for h in hierarchies()], devices)
    except OSError as exc:
        remove(made)
        # (the devices policy of whoever holds the cgroupfs read-only applies to us too)
        if not resources and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return []
        raise _error("create", exc) from None
    except BaseException:
        remove(made)
        raise
    return made


def apply(container_id: str, resources: Resources) -> None:
    """Write the limits into the container's existing cgroups (at create, and by `update`).
    Each controller's files follow its own hierarchy's version (a hybrid host may have both)."""
    apply_at(f"{PARENT}/{container_id}", resources)


def apply_at(rel: str, resources: Resources) -> None:
    """apply() to the cgroup `rel` below each hierarchy's root. A limit no hierarchy can hold is
    an error (runc's), but for the v1-only network controllers on a host with no v1 at all,
    which runc's cgroup v2 code ignores too (oci/config warns)."""
    found = hierarchies()
    resources = resolve_devices(resources)
    memory = owner("memory", found)
    current = None
    if memory is not None and memory.version == 1 and resources.get("Memory"):
        current = int(_read(f"{memory.at(rel)}/memory.limit_in_bytes"))
    bfq = False
    if resources.get("BlkioWeight") or resources.get("BlkioWeightDevice"):  # (a probe only then)
        blkio = _owner_of("blkio", found)
        bfq = blkio is not None and _bfq(blkio, blkio.at(rel))
    writes = {1: limit_writes(resources, 1, current, bfq), 2: limit_writes(resources, 2, None, bfq)}
    for controller in dict.fromkeys(c for version in (1, 2) for c, _, _ in writes[version]):
        if controller == "unified":
            _write_unified(found, rel, [(n, v) for c, n, v in writes[2] if c == controller])
            continue
        hierarchy = _owner_of(controller, found)
        if hierarchy is None:
            if controller in ("net_cls", "net_prio") and not any(h.version == 1 and h.controllers for h in found):
                continue
            raise MinirunError(
                f"cannot set {controller} limit: no cgroup hierarchy has the {controller} controller"
                " (container could not join or create cgroup)"
            )
        path = hierarchy.at(rel)
        if hierarchy.version == 2 and V2_NAMES.get(controller, controller) not in V2_WANTED:
            _ensure_ancestors(hierarchy, rel, (V2_NAMES.get(controller, controller),))
        for _, name, value in (w for w in writes[hierarchy.version] if w[0] == controller):
            if name in _OPTIONAL_FILES and not os.path.exists(f"{path}/{name}"):
                # no swap accounting (swapaccount=0): docker limits memory without swap; no kmem
                # accounting (CONFIG_MEMCG_KMEM off): runc never sets a TCP limit anyway
                continue
            try:
                _write(f"{path}/{name}", value)
            except OSError as exc:
                raise MinirunError(f"cgroup: write {value} to {path}/{name}: {_why(exc, name)}") from None


# v1 controller names whose v2 controller is named otherwise
V2_NAMES = {"blkio": "io"}


def _owner_of(controller: str, found: list[Hierarchy]) -> Hierarchy | None:
    """The hierarchy holding `controller` (a v1 name: a v2 hierarchy holds blkio as io)."""
    for hierarchy in found:
        name = V2_NAMES.get(controller, controller) if hierarchy.version == 2 else controller
        if name in hierarchy.controllers:
            return hierarchy
    return None


def block_weights() -> bool:
    """Whether the kernel takes block I/O weights, as docker's daemon asks it (pkg/sysinfo): v1
    with a weight file at the blkio root, CFQ's or BFQ's (with neither scheduler there is none);
    v2 with the io controller."""
    io = _owner_of("blkio", hierarchies())
    if io is None:
        return False
    if io.version == 2:
        return True
    return any(os.path.exists(f"{io.mount}/{name}") for name in ("blkio.weight", "blkio.bfq.weight"))


def _bfq(hierarchy: Hierarchy, path: str) -> bool:
    """Whether block weights go to BFQ's files, by runc's probes: v1 without blkio.weight (CFQ
    is gone since Linux 5.0), v2 with io.bfq.weight."""
    if hierarchy.version == 1:
        return not os.path.exists(f"{path}/blkio.weight")
    return os.path.exists(f"{path}/io.bfq.weight")


def _write_unified(found: list[Hierarchy], rel: str, entries: list[tuple[str, str]]) -> None:
    """linux.resources.unified: each key a file of the container's cgroup2 cgroup, with runc's
    checks and words (libcontainer/cgroups/fs2 setUnified)."""
    unified = next((h for h in found if h.version == 2), None)
    if unified is None:
        raise MinirunError("invalid configuration: cannot use unified on cgroup v1")
    path = unified.at(rel)
    for name, value in entries:
        if "/" in name or name in ("", ".", ".."):
            raise MinirunError(f"unified resource {name!r} must be a file name (no slashes)")
        controller, dot, _ = name.partition(".")
        if not dot:
            raise MinirunError(f"unified resource {name!r} must be in the form CONTROLLER.PARAMETER")
        if controller != "cgroup" and controller in unified.controllers and controller not in V2_WANTED:
            _ensure_ancestors(unified, rel, (controller,))
        try:
            _write(f"{path}/{name}", value)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM) and controller != "cgroup":
                if controller not in unified.controllers:
                    raise MinirunError(
                        f"unified resource {name!r} can't be set: controller {controller!r} not available"
                    ) from None
            raise MinirunError(f"unable to set unified resource {name!r}: {exc.strerror}") from None


def _why(exc: OSError, name: str) -> str:
    if exc.errno == errno.ENOENT and name.startswith("hugetlb."):
        sizes = ", ".join(hugepage_sizes()) or "none"
        return f"no such huge page size here (the kernel's: {sizes})"
    if exc.errno == errno.ENODEV:
        return "no such block device"
    return exc.strerror or str(exc)


def hugepage_sizes() -> list[str]:
    """The kernel's huge page sizes as cgroup file names spell them (2MB, 1GB), runc's way."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    sizes = []
    for name in names:
        kib = name.removeprefix("hugepages-").removesuffix("kB")
        if kib.isdigit():
            size, unit = int(kib), 0
            while size >= 1024 and size % 1024 == 0 and unit < 3:
                size, unit = size // 1024, unit + 1
            sizes.append((int(kib), f"{size}{('KB', 'MB', 'GB', 'TB')[unit]}"))
    return [text for _, text in sorted(sizes)]


def fork_in(paths: list[str]) -> tuple[int, list[str]]:
    """linux.fork_owned(), the child born in the cgroup2 cgroup among `paths` where the kernel
    allows it; returns the pid (0 in the child) and the paths the child must still join()."""
    from minirun import linux  # ctypes: not for the log copier, which imports this module too

    unified = next((path for path in paths if not os.path.exists(f"{path}/tasks")), None)
    try:
        fd = -1 if unified is None else os.open(unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        fd = -1  # join() will say what is wrong with it
    if fd < 0:
        return linux.fork_owned()[0], paths
    try:
        pid, born_in = linux.fork_owned(fd)
    finally:
        os.close(fd)
    return pid, [path for path in paths if path != unified] if born_in else paths


def shared_task_limit(name: str, limit: int) -> str | None:
    """The cgroup PARENT/`name` of the hierarchy that holds the pids controller, made if missing,
    its pids.max set to `limit`: the processes that join it (writing their pid into its
    cgroup.procs) share that many of the host's tasks. Like PARENT, it stays once made. None
    where there is none to be had: no pids controller, a cgroupfs we cannot write."""
    hierarchy = owner("pids")
    if hierarchy is None:
        return None
    rel = f"{PARENT}/{name}"
    path = hierarchy.at(rel)
    try:
        _ensure_ancestors(hierarchy, rel)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        _write(f"{path}/pids.max", str(limit))
    except (OSError, MinirunError):
        return None
    return path


def join(paths: list[str]) -> None:
    """Move the calling process into `paths`. It must be single-threaded (a fresh fork is): on
    v1 it writes 0 into `tasks`, which moves the caller's one thread without taking the kernel's
    global threadgroup lock (whose RCU grace period costs ~7-15 ms); v2 has only cgroup.procs,
    which fork_in spares where it can."""
    for path in paths:
        name = "tasks" if os.path.exists(f"{path}/tasks") else "cgroup.procs"
        try:
            _write(f"{path}/{name}", "0")
        except OSError as exc:
            raise MinirunError(f"cgroup: join {path}: {exc.strerror}") from None


def remove(paths: list[str]) -> list[str]:
    """rmdir each of `paths` (an `inner` and then the policy's cgroup above it); what still holds
    processes (none once PID 1 is reaped: its PID namespace died with it) is emptied first.
    Returns the paths that stayed."""
    stayed = []
    for path in paths:
        for target in _and_policy(path):
            if not _rmdir_emptied(target):
                stayed.append(target)
                break
    return stayed


def _rmdir_emptied(path: str) -> bool:
    for attempt in range(_EBUSY_RETRIES):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == _EBUSY_RETRIES - 1:  # busy: processes (or child cgroups)
                return False
            _kill_members(path)
            _sleep(0.01)
    return False


def oom_killed(paths: list[str]) -> bool:
    """Whether the kernel's OOM killer killed anything in the container's memory cgroup: v2
    memory.events' oom_kill, v1 memory.oom_control's oom_kill counter (Linux >= 4.13)."""
    for path in paths:
        # an `inner`'s own first (v1 counts a kill in the victim's cgroup alone), then the
        # policy's cgroup (v2: an inner has no memory files; the limits and events are above it)
        for where in _and_policy(path):
            for name in ("memory.events", "memory.oom_control"):
                try:
                    text = _read(f"{where}/{name}")
                except OSError:
                    continue
                return flat_keyed(text).get("oom_kill", 0) > 0
    return False


# -- what the container sees at /sys/fs/cgroup ------------------------------------------------


def namespace_mounts(found: list[Hierarchy] | None = None) -> list[tuple[str, str, str | None]]:
    """(dir under /sys/fs/cgroup, fstype, options) to mount inside the container's cgroup
    namespace, where each shows the container's own cgroup as its root. A v2 hierarchy at
    /sys/fs/cgroup itself goes there (dir ""), as docker mounts it."""
    mounts: list[tuple[str, str, str | None]] = []
    for hierarchy in hierarchies() if found is None else found:
        if hierarchy.version == 2:
            name = "" if hierarchy.mount.rstrip("/") == "/sys/fs/cgroup" else os.path.basename(hierarchy.mount)
            mounts.append((name, "cgroup2", None))
        else:
            mounts.append((os.path.basename(hierarchy.mount.rstrip("/")), "cgroup", hierarchy.options))
    return mounts


def bind_mounts(paths: list[str], found: list[Hierarchy] | None = None) -> list[tuple[str, str, str | None]]:
    """namespace_mounts() for a container without a cgroup namespace of its own (an OCI bundle
    may ask for that): its own cgroup of each hierarchy bound there, as runc binds it, with the
    fstype "bind" and the host path as options."""
    mounts: list[tuple[str, str, str | None]] = []
    for hierarchy in hierarchies() if found is None else found:
        mine = next((p for p in paths if p.startswith(hierarchy.mount.rstrip("/") + "/")), None)
        if mine is None:
            continue
        is_root = hierarchy.version == 2 and hierarchy.mount.rstrip("/") == "/sys/fs/cgroup"
        mounts.append(("" if is_root else os.path.basename(hierarchy.mount.rstrip("/")), "bind", mine))
    return mounts


# -- reading usage (stats) ----------------------------------------------------------------------


def flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    result = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def io_bytes(text: str, version: int) -> tuple[int, int]:
    """(read, written) bytes from v1 blkio.throttle.io_service_bytes_recursive or v2 io.stat."""
    read = written = 0
    for line in text.splitlines():
        parts = line.split()
        if version == 1:
            if len(parts) == 3 and parts[2].isdigit():
                op = parts[1].lower()
                read += int(parts[2]) if op == "read" else 0
                written += int(parts[2]) if op == "write" else 0
        else:
            for item in parts[1:]:
                key, _, value = item.partition("=")
                if value.isdigit():
                    read += int(value) if key == "rbytes" else 0
                    written += int(value) if key == "wbytes" else 0
    return read, written


def usage(container_id: str) -> dict[str, int] | None:
    """What the container's cgroups say now: cpu_ns, memory (minus inactive file cache, as
    docker counts it), memory_limit (0: none), pids, blk_read, blk_write. None without cgroups."""
    return usage_at(f"{PARENT}/{container_id}")


def usage_at(rel: str) -> dict[str, int] | None:
    """usage() of the cgroup `rel` below each hierarchy's root."""
    found = hierarchies()
    paths = {id(h): h.at(rel) for h in found}
    if not any(os.path.isdir(p) for p in paths.values()):
        return None
    result = {"cpu_ns": 0, "memory": 0, "memory_limit": 0, "pids": 0, "blk_read": 0, "blk_write": 0}
    cpuacct = owner("cpuacct", found)
    unified = next((h for h in found if h.version == 2), None)
    if cpuacct is not None:
        result["cpu_ns"] = _int_file(f"{paths[id(cpuacct)]}/cpuacct.usage")
    elif unified is not None:  # v2 counts CPU time in every cgroup, cpu controller or not
        result["cpu_ns"] = _flat_file(f"{paths[id(unified)]}/cpu.stat").get("usage_usec", 0) * 1000
    memory = owner("memory", found)
    if memory is not None:
        path = paths[id(memory)]
        stat = _flat_file(f"{path}/memory.stat")
        if memory.version == 1:
            used, limit, inactive = (
                _int_file(f"{path}/memory.usage_in_bytes"),
                _int_file(f"{path}/memory.limit_in_bytes"),
                stat.get("total_inactive_file", 0),
            )
        else:
            used, inactive = _int_file(f"{path}/memory.current"), stat.get("inactive_file", 0)
            limit = _int_file(f"{path}/memory.max")  # "max" reads as 0
        result["memory"] = used - inactive if inactive < used else used
        result["memory_limit"] = limit if 0 < limit < (1 << 62) else 0
    pids = owner("pids", found)
    if pids is not None:
        result["pids"] = _int_file(f"{paths[id(pids)]}/pids.current")
    io = owner("blkio", found) or owner("io", found)
    if io is not None:
        name = "blkio.throttle.io_service_bytes_recursive" if io.version == 1 else "io.stat"
        try:
            result["blk_read"], result["blk_write"] = io_bytes(_read(f"{paths[id(io)]}/{name}"), io.version)
        except OSError:
            pass
    return result


def available_cpus() -> str:
    """The CPUs containers may be given (docker's `available:`), as a list like `0-3`."""
    cpuset = owner("cpuset")
    candidates = []
    if cpuset is not None:
        candidates.append(
            f"{cpuset.mount}/cpuset.effective_cpus" if cpuset.version == 1 else f"{cpuset.mount}/cpuset.cpus.effective"
        )
        candidates.append(f"{cpuset.mount}/cpuset.cpus")
    candidates.append("/sys/devices/system/cpu/online")
    for path in candidates:
        try:
            text = _read(path).strip()
        except OSError:
            continue
        if text:
            return text
    return f"0-{(os.cpu_count() or 1) - 1}"


# -- plumbing -----------------------------------------------------------------------------------


def _ensure_ancestors(hierarchy: Hierarchy, rel: str, wanted_v2: tuple[str, ...] = V2_WANTED) -> None:
    """Every cgroup above `rel` (for minirun's own containers, the `minirun` parent); on v2, with
    `wanted_v2` enabled for their children (others, hugetlb or rdma, only for a container that
    asks: each is a change to the hierarchy's root)."""
    names = [n for n in rel.strip("/").split("/") if n][:-1]
    if any(n in (".", "..") for n in names):
        raise MinirunError(f"cgroup: invalid path {rel!r}")
    parents = ["/".join(names[: i + 1]) for i in range(len(names))]
    for parent in parents:
        try:
            os.mkdir(f"{hierarchy.mount}/{parent}", 0o755)
            created = True
        except FileExistsError:
            created = False
        if hierarchy.version == 1 and created and "cpuset" in hierarchy.controllers:
            _fill_cpuset(f"{hierarchy.mount}/{parent}")
            # children copy the parent's cpus and mems when they are made (v1 leaves them empty,
            # and an empty cpuset takes no process)
            _write(f"{hierarchy.mount}/{parent}/cgroup.clone_children", "1")
    if hierarchy.version == 1:
        return
    # v2: a controller reaches a child only through every ancestor's subtree_control (runc enables
    # them the same way); checked on each start, as another start may be making the parent now
    wanted = [c for c in wanted_v2 if c in hierarchy.controllers]
    for directory in (hierarchy.mount, *(f"{hierarchy.mount}/{p}" for p in parents)):
        enabled = set(_read(f"{directory}/cgroup.subtree_control").split())
        missing = [c for c in wanted if c not in enabled]
        if missing:
            _write(f"{directory}/cgroup.subtree_control", " ".join("+" + c for c in missing))


def _fill_cpuset(path: str) -> None:
    """A v1 cpuset made before its parent was filled (two first starts at once) is empty: copy."""
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _read(f"{path}/{name}").strip():
            _write(f"{path}/{name}", _read(f"{parent}/{name}").strip() or "\n")


def members(path: str) -> list[int]:
    """The pids in a cgroup now (none if it is gone)."""
    try:
        return [int(pid) for pid in _read(f"{path}/cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def _kill_members(path: str) -> None:
    if os.path.exists(f"{path}/cgroup.kill"):
        try:
            _write(f"{path}/cgroup.kill", "1")
            return
        except OSError:
            pass
    for pid in members(path):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _error(action: str, exc: OSError) -> MinirunError:
    where = f" {exc.filename}" if exc.filename else ""
    return MinirunError(f"cgroup: {action}{where}: {exc.strerror or exc}")


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _int_file(path: str) -> int:
    try:
        text = _read(path).strip()
    except OSError:
        return 0
    return int(text) if text.lstrip("-").isdigit() else 0


def _flat_file(path: str) -> dict[str, int]:
    try:
        return flat_keyed(_read(path))
    except OSError:
        return {}


def kill_all(paths: list[str]) -> None:
    """SIGKILL every process in the container's cgroups: what outlives PID 1 when there is no
    PID namespace to take it along (--pid host), as runc kills it."""
    for path in paths:
        _kill_members(path)
