"""A LaunchPlan as an OCI bundle's config.json: what `minirun run --runtime` hands runc, crun or
minirun-oci, the same container the in-process path starts (oci/config.py reads a config.json
back into a LaunchPlan). The one owner of that translation. Pure: what needs the host (the
user's ids from the image's /etc/passwd, device numbers, the seccomp profile) comes in resolved.

What the in-process path makes itself and an OCI runtime makes on its own is left to the runtime:
/dev's default nodes and links, /dev/console with a terminal, the pty relay (--console-socket)."""

from __future__ import annotations

from typing import Any

from minirun import linux
from minirun.runtime import cgroups, rootfs
from minirun.runtime.launch import LaunchPlan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.runtime.seccompcompile import Resolved
    from minirun.runtime.security import User

OCI_VERSION = "1.0.2"
# linux.resources.blockIO's per-device keys, and the names (docker's) minirun's resources use
BLKIO_WEIGHTS = (("weight", "Weight"), ("leafWeight", "LeafWeight"))
BLKIO_THROTTLES = (
    ("throttleReadBpsDevice", "BlkioDeviceReadBps"),
    ("throttleWriteBpsDevice", "BlkioDeviceWriteBps"),
    ("throttleReadIOPSDevice", "BlkioDeviceReadIOps"),
    ("throttleWriteIOPSDevice", "BlkioDeviceWriteIOps"),
)
RLIM_INFINITY = 2**64 - 1
# mount(2) flags as runc's option words (libcontainer/specconv's mountPropagationMapping's kin)
_FLAG_WORDS = (
    (linux.MS_RDONLY, "ro"),
    (linux.MS_NOSUID, "nosuid"),
    (linux.MS_NODEV, "nodev"),
    (linux.MS_NOEXEC, "noexec"),
    (linux.MS_STRICTATIME, "strictatime"),
    (linux.MS_RELATIME, "relatime"),
    (linux.MS_NOATIME, "noatime"),
)
_SECCOMP_FLAGS = {1: "SECCOMP_FILTER_FLAG_TSYNC", 2: "SECCOMP_FILTER_FLAG_LOG", 4: "SECCOMP_FILTER_FLAG_SPEC_ALLOW"}


def config_json(
    plan: LaunchPlan,
    user: User,
    env: list[str],
    *,
    cgroups_path: str,
    resources: dict[str, Any],
    device_rules: list[tuple[str, int, int, str]],
    device_nodes: list[tuple[str, str, int, int]],
    seccomp: dict[str, Any] | None,
) -> dict[str, Any]:
    """config.json for `plan` (a minirun container's, mounted at plan.mountpoint): `user` as
    security.resolve_user found it in the image (setgroups takes its groups as they are), `env` the
    process's final environment, `resources` docker's HostConfig names (cgroups.limit_writes'),
    `device_rules` devices.rules_for's, `device_nodes` (path in the container, type, major,
    minor) for --device, `seccomp` an OCI linux.seccomp (seccomp_json) or None: unconfined."""
    args = list(plan.argv)
    if plan.init_path:
        args = [plan.init_path, *(["-s"] if "pid" in plan.host_namespaces else []), "--", *args]
    capabilities = list(plan.capabilities)
    # docker's rule (security.apply_security): root holds them, anyone else only the bounding set
    held = capabilities if user.uid == 0 else []
    process: dict[str, Any] = {
        "terminal": plan.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.groups)},
        "args": args,
        "env": env,
        "cwd": plan.workdir or "/",
        "capabilities": {
            "bounding": capabilities,
            "effective": held,
            "permitted": held,
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [_rlimit(u) for u in plan.ulimits],
        "noNewPrivileges": plan.no_new_privileges,
    }
    if plan.tty:
        process["consoleSize"] = {"height": plan.rows, "width": plan.cols}
    if plan.oom_score_adj is not None:
        process["oomScoreAdj"] = plan.oom_score_adj
    namespaces = [{"type": n} for n in ("pid", "ipc", "uts") if n not in plan.host_namespaces]
    namespaces += [{"type": "mount"}] + ([] if "cgroup" in plan.host_namespaces else [{"type": "cgroup"}])
    if plan.join_netns:
        namespaces.append({"type": "network", "path": plan.join_netns})
    elif plan.network != "host":
        namespaces.append({"type": "network"})
    linux_: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": linux_resources(resources, device_rules),
        "devices": [
            {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}
            for path, kind, major, minor in device_nodes
        ],
        "sysctl": dict(plan.sysctls),
    }
    if not plan.privileged:
        linux_["maskedPaths"] = rootfs.masked_paths()
        linux_["readonlyPaths"] = list(rootfs.READONLY_PATHS)
    if seccomp is not None:
        linux_["seccomp"] = seccomp
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": plan.mountpoint, "readonly": plan.readonly},
        "hostname": plan.hostname if "uts" not in plan.host_namespaces else "",
        "mounts": mounts_json(plan),
        "linux": linux_,
    }


def mounts_json(plan: LaunchPlan) -> list[dict[str, Any]]:
    """The plan's mounts (rootfs.plan_mounts: docker's system mounts, then binds and --tmpfs) as
    OCI mounts; /sys/fs/cgroup as runc's "cgroup" mount, which shows the container's own."""
    spec = rootfs.RootfsSpec(
        root=plan.mountpoint,
        readonly=plan.readonly,
        binds=[rootfs.Bind(source=s, target=t, readonly=bool(ro)) for s, t, ro in plan.binds],
        tmpfs=list(plan.tmpfs),
        privileged=plan.privileged,
        shm_size=plan.shm_size,
        host_ipc="ipc" in plan.host_namespaces,
    )
    out = []
    for m in rootfs.plan_mounts(spec):
        words = [word for flag, word in _FLAG_WORDS if m.flags & flag]
        if m.target == "/dev":  # the runtime mknods its nodes there (the in-process path binds the host's)
            words.remove("nodev")
        if m.target == "/sys/fs/cgroup":
            if not plan.privileged and "ro" not in words:  # read-only as in-process (mount_cgroups): its limits stay
                words.append("ro")
            out.append({"destination": m.target, "type": "cgroup", "source": "cgroup", "options": words})
        elif m.fstype is None:  # a bind: nosuid and nodev as the in-process path's _bind_at
            bind = ["rbind" if m.flags & linux.MS_REC else "bind", "rprivate", "nosuid", "nodev"]
            out.append({"destination": m.target, "type": "bind", "source": m.source, "options": bind + words})
        else:
            data = (m.data or "").split(",") if m.data else []
            out.append({"destination": m.target, "type": m.fstype, "source": m.source, "options": words + data})
    return out


def _rlimit(ulimit: dict[str, Any]) -> dict[str, Any]:
    def value(n: int) -> int:
        return RLIM_INFINITY if n < 0 else n

    return {"type": f"RLIMIT_{ulimit['Name'].upper()}", "soft": value(ulimit["Soft"]), "hard": value(ulimit["Hard"])}


def linux_resources(resources: dict[str, Any], device_rules: list[tuple[str, int, int, str]]) -> dict[str, Any]:
    """docker's HostConfig limits (and the OCI-only names cgroups.limit_writes takes) as
    linux.resources; oci/config.limits reads them back. Block devices must carry their numbers
    (cgroups.resolve_devices)."""
    out: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}]
        + [
            {
                "allow": True,
                "type": kind,
                "major": None if major < 0 else major,
                "minor": None if minor < 0 else minor,
                "access": access,
            }
            for kind, major, minor, access in device_rules
        ]
    }
    memory = {
        key: resources[name]
        for key, name in (
            ("limit", "Memory"),
            ("swap", "MemorySwap"),
            ("reservation", "MemoryReservation"),
            ("kernelTCP", "KernelMemoryTCP"),
            ("swappiness", "MemorySwappiness"),
        )
        if resources.get(name) is not None
        and resources.get(name) != 0
        or (name == "MemorySwappiness" and resources.get(name) == 0)
    }
    if resources.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if resources.get("CpuShares"):
        cpu["shares"] = resources["CpuShares"]
    if resources.get("NanoCpus"):
        cpu["quota"], cpu["period"] = cgroups.cfs_quota(resources["NanoCpus"]), cgroups.CFS_PERIOD_US
    if resources.get("CpuQuota"):
        cpu["quota"] = resources["CpuQuota"]
    if resources.get("CpuPeriod"):
        cpu["period"] = resources["CpuPeriod"]
    for key, name in (("cpus", "CpusetCpus"), ("mems", "CpusetMems")):
        if resources.get(name):
            cpu[key] = resources[name]
    if cpu:
        out["cpu"] = cpu
    pids = resources.get("PidsLimit")
    if pids is not None:
        out["pids"] = {"limit": pids if pids > 0 else -1}
    block = _block_io(resources)
    if block:
        out["blockIO"] = block
    if resources.get("HugepageLimits"):
        out["hugepageLimits"] = [{"pageSize": h["Pagesize"], "limit": h["Limit"]} for h in resources["HugepageLimits"]]
    network: dict[str, Any] = {}
    if resources.get("NetClsClassid"):
        network["classID"] = resources["NetClsClassid"]
    if resources.get("NetPrioIfpriomap"):
        network["priorities"] = [
            {"name": p["Interface"], "priority": p["Priority"]} for p in resources["NetPrioIfpriomap"]
        ]
    if network:
        out["network"] = network
    if resources.get("Rdma"):
        out["rdma"] = {
            device: {
                k: v
                for k, v in (("hcaHandles", lim.get("HcaHandles")), ("hcaObjects", lim.get("HcaObjects")))
                if v is not None
            }
            for device, lim in resources["Rdma"].items()
        }
    if resources.get("Unified"):
        out["unified"] = dict(resources["Unified"])
    return out


def _block_io(resources: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    if resources.get("BlkioWeight"):
        block["weight"] = resources["BlkioWeight"]
    if resources.get("BlkioLeafWeight"):
        block["leafWeight"] = resources["BlkioLeafWeight"]
    weights = []
    for device in resources.get("BlkioWeightDevice") or ():
        entry = {"major": device["Major"], "minor": device["Minor"]}
        entry.update({k: device[n] for k, n in BLKIO_WEIGHTS if device.get(n)})
        weights.append(entry)
    if weights:
        block["weightDevice"] = weights
    for key, name in BLKIO_THROTTLES:
        entries = resources.get(name) or ()
        if entries:
            block[key] = [{"major": d["Major"], "minor": d["Minor"], "rate": d["Rate"]} for d in entries]
    return block


def seccomp_json(resolved: Resolved) -> dict[str, Any]:
    """A resolved profile (seccompcompile.resolve: the rules for this container's capabilities and this
    machine) as linux.seccomp, which the OCI runtime compiles itself."""
    action, errno_ = resolved["default"]
    syscalls = []
    for rule_action, rule_errno, names, args in resolved["rules"]:
        rule: dict[str, Any] = {"names": names, "action": rule_action}
        if rule_errno and rule_action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
            rule["errnoRet"] = rule_errno
        if args:
            rule["args"] = args
        syscalls.append(rule)
    out: dict[str, Any] = {"defaultAction": action, "architectures": resolved["arches"], "syscalls": syscalls}
    if errno_ and action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        out["defaultErrnoRet"] = errno_
    flags = [name for bit, name in _SECCOMP_FLAGS.items() if resolved["flags"] & bit]
    if flags:
        out["flags"] = flags
    return out
