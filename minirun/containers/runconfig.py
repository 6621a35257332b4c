"""The run flags a container carries beyond its command, mounts and limits (--init, --ulimit,
--shm-size, --stop-signal, --stop-timeout, --group-add, --sysctl, --oom-score-adj, --pid, --ipc,
--uts, --add-host off a bridge): what a start makes of them (apply_to_plan), what `stop` makes of
them, and how inspect shows them and -P, --expose, --dns*, --device-cgroup-rule under docker's
HostConfig and Config names. The flags are parsed by frontend/runflags.py (--device-cgroup-rule
by runoptions.py); dnsfiles.py and exposedports.py hold the rest.
"""

from __future__ import annotations

import os

from minirun.errors import MinirunError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from minirun.containers.container import Container, ContainerConfig
    from minirun.runtime.launch import LaunchPlan
    from minirun.store import Store

# --init: Debian's tini-static (package tini), bound read-only where docker puts its docker-init
INIT_BINARY = "/usr/bin/tini-static"
INIT_PATH = "/sbin/docker-init"
DEFAULT_SHM_SIZE = 64 << 20  # docker's /dev/shm
DEFAULT_STOP_TIMEOUT = 10
PING_GROUP_RANGE = "net.ipv4.ping_group_range"
NAMESPACE_MODES = ("pid", "ipc", "uts")


def check_init_binary() -> None:
    if not os.path.isfile(INIT_BINARY):
        raise UsageError(
            f"--init needs {INIT_BINARY} (Debian's tini package, which scripts/setup.sh installs): it is missing"
        )


# -- a start ------------------------------------------------------------------------------------


def apply_to_plan(store: Store, container: Container, plan: LaunchPlan) -> None:
    """What PID 1 needs of these flags; called by plan.build_plan on every start."""
    config = container.config
    if config.init:
        plan.binds.append([INIT_BINARY, INIT_PATH, True])
        plan.init_path = INIT_PATH
    plan.ulimits = config.ulimits
    plan.shm_size = config.shm_size or DEFAULT_SHM_SIZE
    plan.group_add = config.group_add
    plan.sysctls = config.sysctls
    if config.network != "host" and not config.network.startswith("container:"):
        # docker's default (>= 20.10) in a network namespace of the container's own: ICMP echo
        # sockets for every group, so a ping that can use them needs no CAP_NET_RAW (dropped)
        plan.sysctls = {PING_GROUP_RANGE: "0 2147483647", **config.sysctls}
    if config.oom_score_adj:  # (0: PID 1 keeps the value it inherits, as minirun's other processes)
        plan.oom_score_adj = config.oom_score_adj
    plan.host_namespaces = [n for n in NAMESPACE_MODES if getattr(config, f"{n}_mode") == "host"]
    if config.cgroupns_mode == "host":
        # no namespace of its own: /sys/fs/cgroup holds its own cgroups bound read-only (as runc
        # binds them), /proc/self/cgroup shows the host's paths
        plan.host_namespaces.append("cgroup")
    if config.extra_hosts and config.network in ("none", "host"):
        # on a bridge network.prepare writes these lines with the container's own; here no one else does
        from minirun.containers.container import HOSTS_BASE
        from minirun.containers.dnsfiles import extra_hosts_text

        gateway = default_gateway(store) if any(h.endswith(":host-gateway") for h in config.extra_hosts) else ""
        with open(container.provided_file("hosts"), "w") as hosts:  # in place: the inode PID 1 will bind
            hosts.write(HOSTS_BASE + extra_hosts_text(config.extra_hosts, gateway))


def default_gateway(store: Store) -> str:
    """The host's address on the default bridge (made if need be): host-gateway off a bridge."""
    from minirun.net.networks import DEFAULT_NETWORK, Networks, ensure_bridge

    return ensure_bridge(Networks(store).find(DEFAULT_NETWORK), store.root)["gateway"]


# -- stop ---------------------------------------------------------------------------------------


def stop_signal(config: ContainerConfig, image_config: dict | None = None) -> int:
    """The signal `stop` sends: --stop-signal or the image's STOPSIGNAL (recorded at create; an
    older record has only its image's), else SIGTERM."""
    from minirun.containers.lifecycle import signal_number

    name = config.stop_signal or (image_config or {}).get("StopSignal")
    if not name:
        return 15
    try:
        return signal_number(name)
    except UsageError:
        raise MinirunError(f"container {config.id[:12]} has an invalid stop signal: {name!r}") from None


def stop_signal_of(containers, container) -> int:
    """stop_signal for a container on record: an older record has only its image's STOPSIGNAL."""
    image_config = None
    if not container.config.stop_signal:
        try:
            image_config = containers.store.images.get(container.config.image).config.get("config", {})
        except MinirunError:
            pass
    return stop_signal(container.config, image_config)


def stop_timeout(config: ContainerConfig, given: int | None) -> float | None:
    """`stop -t`, else --stop-timeout, else 10 seconds; a negative one waits for good (None)."""
    seconds = given if given is not None else config.stop_timeout
    if seconds is None:
        seconds = DEFAULT_STOP_TIMEOUT
    return None if seconds < 0 else float(seconds)


# -- inspect ------------------------------------------------------------------------------------


def inspect_host_config(config: ContainerConfig) -> dict:
    """docker's HostConfig fields of these flags, with docker's defaults."""
    return {
        "Dns": config.dns,
        "DnsOptions": config.dns_options,
        "DnsSearch": config.dns_search,
        "ExtraHosts": config.extra_hosts or None,
        "GroupAdd": config.group_add or None,
        "IpcMode": config.ipc_mode or "private",
        "PidMode": config.pid_mode,
        "UTSMode": config.uts_mode,
        "CgroupnsMode": config.cgroupns_mode or "private",
        "PublishAllPorts": config.publish_all,
        "ShmSize": config.shm_size or DEFAULT_SHM_SIZE,
        "Sysctls": config.sysctls or None,
        "Init": True if config.init else None,
        "Ulimits": config.ulimits or None,
        "OomScoreAdj": config.oom_score_adj,
        "DeviceCgroupRules": config.device_cgroup_rules or None,
        # legacy links as docker records them, /NAME:/LINKER/ALIAS (a user network's are its endpoint's)
        "Links": [f"/{n}:/{config.name}/{a}" for n, a in config.links] or None
        if config.network in ("bridge", "none")
        else None,
    }


def inspect_config(config: ContainerConfig) -> dict:
    """docker's Config fields of these flags; each left out when not set, as docker leaves them."""
    fields: dict = {}
    if config.exposed_ports:
        fields["ExposedPorts"] = {key: {} for key in config.exposed_ports}
    if config.stop_signal:
        fields["StopSignal"] = config.stop_signal
    if config.stop_timeout is not None:
        fields["StopTimeout"] = config.stop_timeout
    return fields
