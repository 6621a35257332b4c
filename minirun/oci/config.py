"""An OCI bundle's config.json as the LaunchPlan minirun's own containers start from, plus what
the runtime keeps beside it (cgroup path, limits, device rules, hooks). Pure but for reading the
file, the bundle's paths and the seccomp compile: tests reach it without root.

What the runtime spec allows and minirun cannot do yet is refused, never ignored: ConfigError,
one line naming the field."""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from minirun import linux
from minirun.errors import MinirunError
from minirun.records import Record
from minirun.runtime.launch import LaunchPlan
from minirun.runtime.ocispec import BLKIO_THROTTLES, BLKIO_WEIGHTS
from minirun.runtime.privileges import CAPABILITIES

OCI_VERSION = "1.0.2"
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "cgroup", "user")
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
RLIM_INFINITY = 2**64 - 1

# runc's mount options (libcontainer/specconv): flag set, or flag cleared
_SET = {
    "bind": linux.MS_BIND,
    "rbind": linux.MS_BIND | linux.MS_REC,
    "dirsync": linux.MS_DIRSYNC,
    "mand": 64,  # MS_MANDLOCK
    "noatime": linux.MS_NOATIME,
    "nodev": linux.MS_NODEV,
    "nodiratime": linux.MS_NODIRATIME,
    "noexec": linux.MS_NOEXEC,
    "nosuid": linux.MS_NOSUID,
    "nosymfollow": linux.MS_NOSYMFOLLOW,
    "relatime": linux.MS_RELATIME,
    "remount": linux.MS_REMOUNT,
    "ro": linux.MS_RDONLY,
    "silent": linux.MS_SILENT,
    "strictatime": linux.MS_STRICTATIME,
    "sync": linux.MS_SYNCHRONOUS,
    "acl": 1 << 16,  # MS_POSIXACL
    "iversion": 1 << 23,
    "lazytime": 1 << 25,
    "defaults": 0,
}
_CLEAR = {
    "async": linux.MS_SYNCHRONOUS,
    "atime": linux.MS_NOATIME,
    "dev": linux.MS_NODEV,
    "diratime": linux.MS_NODIRATIME,
    "exec": linux.MS_NOEXEC,
    "loud": linux.MS_SILENT,
    "noacl": 1 << 16,
    "noiversion": 1 << 23,
    "nolazytime": 1 << 25,
    "nomand": 64,
    "norelatime": linux.MS_RELATIME,
    "nostrictatime": linux.MS_STRICTATIME,
    "rw": linux.MS_RDONLY,
    "suid": linux.MS_NOSUID,
    "symfollow": linux.MS_NOSYMFOLLOW,
}
PROPAGATION = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
_RECURSIVE = {
    "rro": linux.MOUNT_ATTR_RDONLY,
    "rnosuid": linux.MOUNT_ATTR_NOSUID,
    "rnodev": linux.MOUNT_ATTR_NODEV,
    "rnoexec": linux.MOUNT_ATTR_NOEXEC,
    "rnodiratime": linux.MOUNT_ATTR_NODIRATIME,
    "rnosymfollow": linux.MOUNT_ATTR_NOSYMFOLLOW,
}
_RLIMITS = {
    "RLIMIT_CPU": "cpu",
    "RLIMIT_FSIZE": "fsize",
    "RLIMIT_DATA": "data",
    "RLIMIT_STACK": "stack",
    "RLIMIT_CORE": "core",
    "RLIMIT_RSS": "rss",
    "RLIMIT_NPROC": "nproc",
    "RLIMIT_NOFILE": "nofile",
    "RLIMIT_MEMLOCK": "memlock",
    "RLIMIT_AS": "as",
    "RLIMIT_LOCKS": "locks",
    "RLIMIT_SIGPENDING": "sigpending",
    "RLIMIT_MSGQUEUE": "msgqueue",
    "RLIMIT_NICE": "nice",
    "RLIMIT_RTPRIO": "rtprio",
    "RLIMIT_RTTIME": "rttime",
}


# SemVer 2.0.0's grammar (semver.org), its numbers without leading zeros
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)


class ConfigError(MinirunError):
    """A config.json minirun-oci cannot run: bad, or asking for what is not supported yet."""


class Bundle(Record):
    """A bundle translated: the plan for PID 1 and what the runtime itself does around it."""

    plan: LaunchPlan
    cgroup: str  # cgroupsPath, below every hierarchy's root
    resources: dict[str, Any]  # docker's HostConfig names (cgroups.limit_writes)
    device_rules: list[tuple[str, int, int, str]]
    hooks: dict[str, list[dict[str, Any]]]
    annotations: dict[str, str]
    rootfs: str
    terminal: bool
    warnings: list[str]  # what the bundle asks and this runtime ignores, as runc does: logged


def load(bundle: str) -> dict[str, Any]:
    import json

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"JSON specification file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"reading {path}: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return config


def translate(config: dict[str, Any], bundle: str, container_id: str, cgroup_parent: str) -> Bundle:
    """The bundle's LaunchPlan and runtime settings; ConfigError for what cannot run."""
    bundle = os.path.abspath(bundle)
    version = config.get("ociVersion")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version) or not version.startswith("1."):
        # the spec's rule: SemVer 2.0.0; runc takes anything, runtime-tools' suite wants an error
        raise ConfigError(f"ociVersion {version!r}: a SemVer 1.x.y version is required")
    process = config.get("process")
    if not isinstance(process, dict):
        raise ConfigError("process property must not be empty")
    linux_ = config.get("linux") or {}
    root = config.get("root") or {}
    if not root.get("path"):
        raise ConfigError("root.path is empty")
    rootfs = os.path.realpath(os.path.join(bundle, root["path"]))
    if not os.path.isdir(rootfs):
        raise ConfigError(f"rootfs ({rootfs}) does not exist")
    _refuse(config, linux_, process)
    namespaces, paths = _namespaces(linux_.get("namespaces") or [])
    _refuse_host_sysctls(linux_.get("sysctl") or {}, paths)
    if config.get("hostname") and "uts" not in namespaces:
        raise ConfigError("unable to set hostname without a private UTS namespace")
    network = "none" if "network" in namespaces else "host"
    args = process.get("args") or []
    if not args:
        raise ConfigError("args must not be empty")
    cwd = process.get("cwd") or ""
    if not cwd.startswith("/"):
        raise ConfigError("cwd property must not be empty and must be an absolute path")
    user = process.get("user") or {}
    capability_sets, ignored_caps = translate_capabilities(process.get("capabilities") or {})
    plan = LaunchPlan(
        store_root="",
        lowers=[],
        upper="",
        work="",
        mountpoint=rootfs,
        argv=[str(a) for a in args],
        env=[str(e) for e in process.get("env") or []],
        workdir=cwd,
        user=f"{int(user.get('uid', 0))}:{int(user.get('gid', 0))}",
        hostname=str(config.get("hostname") or ""),
        network=network,
        readonly=bool(root.get("readonly")),
        interactive=True,  # stdio as the caller gave it (containerd's fifos), never /dev/null
        tty=bool(process.get("terminal")),
        join_netns=paths.pop("network", ""),
        host_namespaces=[n for n in ("pid", "ipc", "uts", "cgroup", "mount") if n not in namespaces],
        namespace_paths=paths,
        root_dir=rootfs,
        mounts=[mount_of(m, bundle) for m in config.get("mounts") or []],
        masked_paths=list(linux_.get("maskedPaths") or []),
        readonly_paths=list(linux_.get("readonlyPaths") or []),
        device_nodes=[_device_node(d) for d in linux_.get("devices") or []],
        capability_sets=capability_sets,
        no_new_privileges=bool(process.get("noNewPrivileges")),
        ulimits=[translate_rlimit(r) for r in process.get("rlimits") or []],
        group_add=[str(int(g)) for g in user.get("additionalGids") or []],
        sysctls={str(k): str(v) for k, v in (linux_.get("sysctl") or {}).items()},
        oom_score_adj=process.get("oomScoreAdj"),
        rootfs_propagation=_propagation(linux_.get("rootfsPropagation") or ""),
        exact_env=True,
        umask=user.get("umask"),
        userns="user" in namespaces and "user" not in paths,
        uid_mappings=_mappings(linux_, "uidMappings", "user" in namespaces),
        gid_mappings=_mappings(linux_, "gidMappings", "user" in namespaces),
    )
    size = process.get("consoleSize") or {}
    if size.get("height") and size.get("width"):
        plan.rows, plan.cols = int(size["height"]), int(size["width"])
    plan.capabilities = list((plan.capability_sets or {}).get("bounding") or [])
    if "mount" not in namespaces and (plan.masked_paths or plan.readonly_paths):
        # (runc's rule and words: the host's /proc and /sys would be the ones masked)
        raise ConfigError("unable to restrict sys entries without a private MNT namespace")
    resources = linux_.get("resources") or {}
    seccomp = linux_.get("seccomp")
    if seccomp:
        plan.seccomp = _seccomp(seccomp, plan.capabilities)
    cgroup = linux_.get("cgroupsPath") or f"/{cgroup_parent}/{container_id}"
    if ":" in cgroup and not cgroup.startswith("/"):
        raise ConfigError(f"cgroupsPath {cgroup!r}: systemd cgroup paths (slice:prefix:name) are not supported")
    if not cgroup.startswith("/"):
        cgroup = f"/{cgroup_parent}/{cgroup}"
    hooks = config.get("hooks") or {}
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise ConfigError(f"unknown hook kind {kind!r}")
        for hook in entries or []:
            if not str(hook.get("path", "")).startswith("/"):
                raise ConfigError(f"{kind} hook: path must be absolute")
    present = {kind for kind, entries in hooks.items() if entries}
    plan.hooks_point = bool(present & {"prestart", "createRuntime", "createContainer"})
    plan.container_hooks = {k: list(hooks[k]) for k in ("createContainer", "startContainer") if k in present}
    return Bundle(
        plan=plan,
        cgroup=cgroup,
        resources=limits(resources),
        device_rules=device_rules(resources.get("devices") or [], linux_.get("devices") or []),
        hooks={k: list(v or []) for k, v in hooks.items()},
        annotations={str(k): str(v) for k, v in (config.get("annotations") or {}).items()},
        rootfs=rootfs,
        terminal=plan.tty,
        warnings=[f"ignoring unknown or unavailable capabilities: {', '.join(ignored_caps)}"] if ignored_caps else [],
    )


def _refuse(config: dict[str, Any], linux_: dict[str, Any], process: dict[str, Any]) -> None:
    """What the spec has that minirun-oci does not do yet: refused by name, never ignored."""
    unsupported = [
        ("process.apparmorProfile", process.get("apparmorProfile"), "this host has no AppArmor"),
        ("process.selinuxLabel", process.get("selinuxLabel"), "this host has no SELinux"),
        ("linux.mountLabel", linux_.get("mountLabel"), "this host has no SELinux"),
        ("process.ioPriority", process.get("ioPriority"), ""),
        ("process.scheduler", process.get("scheduler"), ""),
        ("linux.personality", linux_.get("personality"), ""),
        ("linux.intelRdt", linux_.get("intelRdt"), ""),
        ("domainname", config.get("domainname"), ""),
    ]
    for name, value, why in unsupported:
        if value:
            raise ConfigError(f"{name} is not supported by minirun-oci" + (f" ({why})" if why else ""))


def _namespaces(entries: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
    seen: set[str] = set()
    paths: dict[str, str] = {}
    for entry in entries:
        kind = entry.get("type", "")
        if kind == "time":
            raise ConfigError("time namespaces are not supported by minirun-oci")
        if kind not in NAMESPACES:
            raise ConfigError(f"namespace type {kind!r} is unknown")
        if kind in seen:
            raise ConfigError(f"duplicated namespace {kind!r}")
        seen.add(kind)
        if entry.get("path"):
            paths[kind] = str(entry["path"])
    return seen, paths


def _refuse_host_sysctls(sysctls: dict[str, Any], paths: dict[str, str]) -> None:
    """A namespaced sysctl acts on the namespace PID 1 is in: one joined by path may be the
    host's own, where net.* (or an IPC key) would change the host for everyone (runc refuses
    net.* in the host's network namespace; the IPC keys here too)."""
    for key in sysctls:
        kind, mine = ("network", "net") if str(key).startswith("net.") else ("ipc", "ipc")
        path = paths.get(kind)
        if not path:
            continue
        try:
            theirs, ours = os.stat(path), os.stat(f"/proc/self/ns/{mine}")
        except OSError:
            continue  # joining it fails later, with its own message
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            raise ConfigError(f"sysctl {key!r} not allowed in host {kind} namespace")


def _mappings(linux_: dict[str, Any], key: str, userns: bool) -> list[list[int]]:
    """linux.uidMappings or gidMappings as [inside, outside, count] (runc's rules: a new user
    namespace needs both; none without one; a joined one takes the maps it has)."""
    entries = linux_.get(key) or []
    if entries and not userns:
        raise ConfigError("user namespace mappings specified, but user namespace isn't enabled in the config")
    namespaces = linux_.get("namespaces") or []
    joined = any(n.get("type") == "user" and n.get("path") for n in namespaces)
    if userns and not joined and not entries:
        raise ConfigError(f"user namespaces enabled, but no {key} found")
    found = []
    for entry in entries:
        try:
            inside, outside, count = (int(entry[k]) for k in ("containerID", "hostID", "size"))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"linux.{key}: each needs containerID, hostID and size") from None
        if min(inside, outside) < 0 or count <= 0:
            raise ConfigError(f"linux.{key}: {entry} is no mapping")
        found.append([inside, outside, count])
    return [] if joined else found


def mount_of(entry: dict[str, Any], bundle: str) -> Any:
    """One config.json mount as a rootfs.Mount: flags, propagation, recursive attributes, and
    the options the kernel takes as data. Pure."""
    from minirun.runtime.rootfs import Mount

    target = entry.get("destination") or ""
    if not target.startswith("/"):
        raise ConfigError(f"mount destination {target!r} is not absolute")
    fstype = entry.get("type") or ""
    source = entry.get("source") or ""
    flags = propagation = recursive = 0
    data = []
    for option in entry.get("options") or []:
        if option in _SET:
            flags |= _SET[option]
        elif option in _CLEAR:
            flags &= ~_CLEAR[option]
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        elif option in _RECURSIVE:
            recursive |= _RECURSIVE[option]
        elif option in ("tmpcopyup", "idmap", "ridmap") or (option.startswith("r") and option[1:] in _CLEAR):
            raise ConfigError(f"mount {target}: option {option!r} is not supported by minirun-oci")
        else:
            data.append(option)
    bind = fstype == "bind" or flags & linux.MS_BIND
    if bind:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        return Mount(target, None, source, flags, None, propagation, recursive)
    if fstype == "cgroup":
        return Mount(target, "cgroup", "cgroup", flags, None, propagation, recursive)
    if not fstype:
        raise ConfigError(f"mount {target}: no type")
    return Mount(target, fstype, source or fstype, flags, ",".join(data) or None, propagation, recursive)


def mount_option_names() -> list[str]:
    return sorted([*_SET, *_CLEAR, *PROPAGATION, *_RECURSIVE])


def _propagation(name: str) -> int:
    if not name:
        return 0
    if name not in PROPAGATION:
        raise ConfigError(f"rootfsPropagation {name!r} is unknown")
    return PROPAGATION[name]


def translate_capabilities(caps: dict[str, Any], last_cap: int | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """The five sets, and the names left out of them: unknown ones and those the kernel does not
    have (above `last_cap`, by default /proc/sys/kernel/cap_last_cap's), which runc 1.1 ignores
    with a warning ("ignoring unknown or unavailable capabilities")."""
    if last_cap is None:
        last_cap = kernel_last_cap()
    sets, ignored = {}, []
    for kind in CAP_SETS:
        names = [str(n) for n in caps.get(kind) or []]
        ignored += [n for n in names if CAPABILITIES.get(n, last_cap + 1) > last_cap and n not in ignored]
        sets[kind] = [n for n in names if CAPABILITIES.get(n, last_cap + 1) <= last_cap]
    return sets, ignored


def kernel_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return max(CAPABILITIES.values())


def translate_rlimit(entry: dict[str, Any]) -> dict[str, Any]:
    kind = entry.get("type", "")
    if kind not in _RLIMITS:
        raise ConfigError(f"rlimit type {kind!r} is unknown")

    def value(n: Any) -> int:
        n = int(n)
        return -1 if n >= 2**63 else n

    return {"Name": _RLIMITS[kind], "Soft": value(entry.get("soft", 0)), "Hard": value(entry.get("hard", 0))}


def _device_node(entry: dict[str, Any]) -> list[Any]:
    path = entry.get("path") or ""
    kind = entry.get("type") or ""
    if path:  # "/dev/../etc/x" is no path under /dev
        path = posixpath.normpath(path)
    if not path.startswith("/dev/") or kind not in ("c", "b", "u", "p"):
        raise ConfigError(f"device {path!r} of type {kind!r}: a path under /dev and a type c, b, u or p")
    mode = entry.get("fileMode")
    return [
        path,
        kind,
        int(entry.get("major", 0)),
        int(entry.get("minor", 0)),
        0o666 if mode is None else int(mode),
        int(entry.get("uid", 0)),
        int(entry.get("gid", 0)),
    ]


def device_rules(rules: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> list[tuple[str, int, int, str]]:
    """linux.resources.devices as devices.Rule allow rules after a deny of everything (the only
    shape minirun's devices policy takes, and the shape every engine writes): rules before the
    last deny-all are moot; runc's default nodes and each linux.devices node are allowed too."""
    from minirun.runtime import devices

    def number(n: Any) -> int:
        return -1 if n is None else int(n)

    last_deny = max(
        (i for i, r in enumerate(rules) if not r.get("allow") and r.get("type", "a") == "a" and r.get("major") is None),
        default=-1,
    )
    if last_deny < 0:
        if any(not r.get("allow") for r in rules):
            raise ConfigError("device rules that deny some devices of an allowed all are not supported by minirun-oci")
        return list(devices.ALL_DEVICES)
    # the bundle's own rules first, in its order, then runc's defaults (allow rules commute: the
    # order shows only in v1's devices.list, which runtime-tools reads back in the bundle's order)
    allowed: list[tuple[str, int, int, str]] = []
    for rule in rules[last_deny + 1 :]:
        if not rule.get("allow"):
            raise ConfigError(
                "a device rule denying some devices after allowing others is not supported by minirun-oci"
            )
        kind = rule.get("type") or "a"
        access = rule.get("access") or "rwm"
        allowed.append((kind, number(rule.get("major")), number(rule.get("minor")), access))
    allowed += [rule for rule in devices.DEFAULT_RULES if rule not in allowed]
    for node in nodes:
        kind = "c" if node.get("type") == "u" else node.get("type", "c")
        if kind in ("c", "b"):
            allowed.append((kind, int(node.get("major", 0)), int(node.get("minor", 0)), "rwm"))
    return allowed


def limits(resources: dict[str, Any]) -> dict[str, Any]:
    """linux.resources as docker's HostConfig names (what cgroups.limit_writes takes)."""
    memory, cpu, pids = resources.get("memory") or {}, resources.get("cpu") or {}, resources.get("pids") or {}
    swappiness = memory.get("swappiness")
    if swappiness is not None and int(swappiness) != -1 and not 0 <= int(swappiness) <= 100:
        raise ConfigError(f"invalid value:{swappiness}. valid memory swappiness range is 0-100")
    for name in ("realtimeRuntime", "realtimePeriod", "idle"):
        if cpu.get(name):
            raise ConfigError(f"linux.resources.cpu.{name} is not supported by minirun-oci")
    out: dict[str, Any] = {}
    pairs = (
        ("Memory", memory.get("limit")),
        ("MemorySwap", memory.get("swap")),
        ("MemoryReservation", memory.get("reservation")),
        ("CpuShares", cpu.get("shares")),
        ("CpuQuota", cpu.get("quota")),
        ("CpuPeriod", cpu.get("period")),
        ("CpusetCpus", cpu.get("cpus")),
        ("CpusetMems", cpu.get("mems")),
        ("PidsLimit", pids.get("limit")),
        ("KernelMemoryTCP", memory.get("kernelTCP")),
    )
    for key, value in pairs:
        if value not in (None, "", 0):
            out[key] = value
    if swappiness is not None and int(swappiness) != -1:  # 0 is a value: the kernel's "avoid swap"
        out["MemorySwappiness"] = int(swappiness)
    if memory.get("disableOOMKiller"):
        out["OomKillDisable"] = True
    out.update(_other_limits(resources))
    return out


def _other_limits(resources: dict[str, Any]) -> dict[str, Any]:
    """blockIO, hugepageLimits, network, rdma and unified as runc's configs.Resources names them
    (docker's where docker has the field: BlkioWeight, BlkioDeviceReadBps...)."""
    out: dict[str, Any] = {}
    block = resources.get("blockIO") or {}
    for key, name in (("weight", "BlkioWeight"), ("leafWeight", "BlkioLeafWeight")):
        if block.get(key):
            out[name] = _uint(block[key], f"blockIO.{key}")
    weights = []
    for entry in block.get("weightDevice") or []:
        device = _block_device(entry, "blockIO.weightDevice")
        for key, name in BLKIO_WEIGHTS:
            if entry.get(key):
                device[name] = _uint(entry[key], f"blockIO.weightDevice.{key}")
        weights.append(device)
    if weights:
        out["BlkioWeightDevice"] = weights
    for key, name in BLKIO_THROTTLES:
        entries = block.get(key) or []
        if entries:
            out[name] = [
                {**_block_device(e, f"blockIO.{key}"), "Rate": _uint(e.get("rate", 0), f"blockIO.{key}.rate")}
                for e in entries
            ]
    pages = []
    for entry in resources.get("hugepageLimits") or []:
        size = entry.get("pageSize")
        if not isinstance(size, str) or not re.fullmatch(r"[0-9]+[KMGTP]?B", size):
            raise ConfigError(f"linux.resources.hugepageLimits: pageSize {size!r} is not a size like 2MB")
        pages.append({"Pagesize": size, "Limit": _uint(entry.get("limit", 0), "hugepageLimits.limit")})
    if pages:
        out["HugepageLimits"] = pages
    network = resources.get("network") or {}
    if network.get("classID") is not None:
        out["NetClsClassid"] = _uint(network["classID"], "network.classID")
    priorities = [
        {"Interface": str(p.get("name", "")), "Priority": _uint(p.get("priority", 0), "network.priorities.priority")}
        for p in network.get("priorities") or []
    ]
    if priorities:
        out["NetPrioIfpriomap"] = priorities
    rdma = {}
    for device, limit in (resources.get("rdma") or {}).items():
        rdma[str(device)] = {
            "HcaHandles": None if limit.get("hcaHandles") is None else _uint(limit["hcaHandles"], "rdma.hcaHandles"),
            "HcaObjects": None if limit.get("hcaObjects") is None else _uint(limit["hcaObjects"], "rdma.hcaObjects"),
        }
    if rdma:
        out["Rdma"] = rdma
    unified = resources.get("unified") or {}
    if unified:
        out["Unified"] = {str(k): str(v) for k, v in unified.items()}
    return out


def _uint(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"linux.resources.{name}: {value!r} is not an unsigned integer")
    return value


def _block_device(entry: dict[str, Any], name: str) -> dict[str, Any]:
    return {"Major": _int(entry.get("major"), f"{name}.major"), "Minor": _int(entry.get("minor"), f"{name}.minor")}


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"linux.resources.{name}: {value!r} is not an integer")
    return value


def ignored_settings(
    resources: dict[str, Any], memory_version: int | None, io_version: int | None = None, any_v1: bool = True
) -> list[str]:
    """What linux.resources asks that this host's kernel has no file for: a warning each, the
    setting ignored, as runc ignores them (runc >= 1.0 drops kernel memory limits, which Linux
    deprecated in 5.4 and stopped enforcing; cgroup v2 has no swappiness, no OOM-killer switch and
    no TCP memory limit per cgroup, no leaf weights; a host with no v1 hierarchy has no net_cls
    or net_prio). `io_version`: the block I/O controller's; `any_v1`: the host has v1. Pure."""
    memory = resources.get("memory") or {}
    found = []
    block = resources.get("blockIO") or {}
    leaf = block.get("leafWeight") or any(d.get("leafWeight") for d in block.get("weightDevice") or [])
    if io_version == 2 and leaf:
        found.append("linux.resources.blockIO: cgroup v2 has no leaf weights, ignored")
    network = resources.get("network") or {}
    if not any_v1 and (network.get("classID") is not None or network.get("priorities")):
        found.append("linux.resources.network: cgroup v2 has no net_cls or net_prio, ignored")
    if memory.get("kernel"):
        found.append("linux.resources.memory.kernel: kernel memory limits are ignored (Linux no longer enforces them)")
    if memory_version == 2:
        swappiness = memory.get("swappiness")
        v2_missing = (
            ("kernelTCP", bool(memory.get("kernelTCP"))),
            ("swappiness", swappiness is not None and int(swappiness) != -1),
            ("disableOOMKiller", bool(memory.get("disableOOMKiller"))),
        )
        found += [
            f"linux.resources.memory.{name}: cgroup v2 has no such setting, ignored" for name, on in v2_missing if on
        ]
    return found


def _seccomp(profile: dict[str, Any], capabilities: list[str]) -> Any:
    from minirun.runtime import seccomp, seccompcompile

    profile = dict(profile)
    seccompcompile.check_profile(profile, "linux.seccomp")
    uname = os.uname()
    resolved = seccompcompile.resolve(profile, frozenset(capabilities), uname.machine, uname.release)
    return seccomp.Program(seccompcompile.compile_program(resolved), resolved["flags"])
