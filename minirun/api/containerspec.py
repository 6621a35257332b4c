"""A create request's JSON (docker's Config with its HostConfig) as the namespace `run`'s parser
makes (cli/runargs.py): the same option words, so frontend/runoptions.run_options checks it with
the CLI's rules and the container is made as `minirun create` makes it. Pure.

docker's clients send every field, zero when unset: only what is given counts. A field minirun
has no option for is refused when set (400), never dropped in silence, but for those docker's
Linux daemon itself ignores (_IGNORED_CONFIG, _IGNORED_HOST, _unserved_host: each says where)."""

from __future__ import annotations

import shlex
from typing import Any

from minirun.api.errors import ApiError
from minirun.api.versions import API_VERSION
from minirun.containers.links import CONTAINER_LINKS, HOST_LINKS

# `run`'s options, unset: the attributes cli/runargs.py's parser gives for `create IMAGE`
# (tests/unit/test_engine_api.py checks they are the same)
NAMESPACE_DEFAULTS: dict[str, Any] = {
    "rm": False,
    "name": "",
    "label": [],
    "label_file": [],
    "env": [],
    "env_file": [],
    "workdir": "",
    "user": "",
    "hostname": "",
    "volume": [],
    "mount": [],
    "volumes_from": [],
    "tmpfs": [],
    "read_only": False,
    "entrypoint": None,
    "interactive": False,
    "tty": False,
    "memory": None,
    "memory_swap": None,
    "memory_reservation": None,
    "memory_swappiness": None,
    "oom_kill_disable": False,
    "cpus": None,
    "cpu_shares": None,
    "cpuset_cpus": None,
    "pids_limit": None,
    "blkio_weight": None,
    "blkio_weight_device": None,
    "device_read_bps": None,
    "device_write_bps": None,
    "device_read_iops": None,
    "device_write_iops": None,
    "cap_add": [],
    "cap_drop": [],
    "privileged": False,
    "security_opt": [],
    "device": [],
    "device_cgroup_rule": [],
    "log_driver": None,
    "log_opt": [],
    "network": [],  # HostConfig.NetworkMode sets it (and more EndpointsConfig entries)
    "publish": [],
    "publish_all": False,
    "expose": [],
    "add_host": [],
    "network_alias": [],
    "link": [],
    "dns": [],
    "dns_search": [],
    "dns_option": [],
    "init": False,
    "ulimit": [],
    "shm_size": None,
    "stop_signal": None,
    "stop_timeout": None,
    "group_add": [],
    "sysctl": [],
    "oom_score_adj": None,
    "cidfile": "",
    "pull": "missing",
    "platform": "",
    "pid": "",
    "ipc": "",
    "uts": "",
    "cgroupns": "",
    "runtime": "",
    "restart": "no",
    "health_cmd": "",
    "health_interval": None,
    "health_timeout": None,
    "health_retries": 0,
    "health_start_period": None,
    "health_start_interval": None,
    "no_healthcheck": False,
    "image": "",
    "command": [],
}

# Config and HostConfig fields a client may send and docker's Linux daemon itself never acts on:
# dropped here as there. The rest is read (_CONFIG_READ, _HOST_READ) or refused when set.
_IGNORED_CONFIG = {
    # the daemon never reads a container's: the attach request's own query says which streams go
    # (moby daemon/ reads Config.Attach* only to compare build cache entries)
    "AttachStdin", "AttachStdout", "AttachStderr",
    "ArgsEscaped",  # "(Windows specific)": moby api/types/container/config.go
    "Platform",  # no field of docker's Config: the platform is the `platform` query's
}  # fmt: skip
_IGNORED_HOST = {
    "ContainerIDFile",  # the client's: docker's CLI writes the file, the daemon only keeps the name
    # "CPU count (Windows only)" in docker's CLI: moby's Linux daemon never reads Resources.CPUCount
    # (daemon_windows.go does); CpuPercent: daemon_unix.go discards it with a warning (_unserved_host)
    "CpuCount", "CpuPercent",
    "DiskQuota",  # no moby daemon code reads Resources.DiskQuota (a disk limit is StorageOpt's size)
    # KernelMemory: API >= 1.42 drops it (moby's postContainersCreate); older ones see _unserved_host
    "KernelMemory",
}  # fmt: skip


class Namespace:
    """What argparse gives: the options as attributes."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def namespace(config: dict, name: str = "", platform: str = "", version: str = API_VERSION) -> Namespace:
    """The create request's body and its `name` query as `run`'s parsed options; `version`: the
    API version the request was made in (docker drops some fields for older ones). Beyond the
    parser's attributes: `api_warnings`, the create answer's Warnings, and what only a request
    gives (`config_volumes`, `console_size`, `inline_profiles`)."""
    if not isinstance(config, dict):
        raise ApiError(400, "config must be an object")
    host = config.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise ApiError(400, "HostConfig must be an object")
    values: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v) for k, v in NAMESPACE_DEFAULTS.items()}
    # the API never pulls on create: docker answers 404 and its client pulls (/images/create)
    values.update(name=name.lstrip("/"), platform=platform, pull="never")
    image = config.get("Image")
    if not isinstance(image, str) or not image:
        raise ApiError(400, "config.Image must be given")
    values["image"] = image
    values.update(api_warnings=[], config_volumes=[], console_size=[])
    _process(config, values)
    _unserved_config(config)
    values["config_volumes"] = _config_volumes(config)
    _host(host, values)
    _unserved_host(host, _version(version), values)
    _networking(config, values)
    if config.get("NetworkDisabled"):
        _network_disabled(values)
    return Namespace(**values)


def _network_disabled(values: dict) -> None:
    """Config.NetworkDisabled (docker-py's network_disabled): no network but the container's own
    loopback, as --network none; dropped, the container was on the bridge. Another network named
    with it is a conflict, not a choice between the two."""
    if values["network"] not in ("bridge", "none"):
        raise ApiError(400, f"conflicting options: NetworkDisabled and network {values['network']!r}")
    if values["publish"] or values["publish_all"]:
        raise ApiError(400, "conflicting options: NetworkDisabled and published ports")
    values["network"], values["network_alias"] = "none", []


def _words(value: Any, field: str) -> list[str]:
    """A command field: docker takes a list of strings, or one string (split as a shell would)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ApiError(400, f"{field} must be a list of strings")


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ApiError(400, f"{field} must be a list of strings")


def _mapping(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ApiError(400, f"{field} must be an object")


def _string_map(value: Any, field: str) -> dict[str, str]:
    """docker's map[string]string (Labels, Sysctls, LogConfig.Config, Tmpfs)."""
    found = _mapping(value, field)
    if not all(isinstance(v, str) for v in found.values()):
        raise ApiError(400, f"{field} must be an object of strings")
    return found


def _string(value: Any, field: str) -> str:
    """A string field; null and "" are unset."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ApiError(400, f"{field} must be a string")


def _integer(value: Any, field: str) -> int:
    """An integer field (a count, bytes, nanoseconds); null is 0."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ApiError(400, f"{field} must be an integer")


def _process(config: dict, values: dict) -> None:
    cmd = _words(config.get("Cmd"), "Cmd")
    entrypoint = config.get("Entrypoint")
    if entrypoint is not None:
        # `run` takes one word for --entrypoint and the rest as the command: the same argv
        words = _words(entrypoint, "Entrypoint")
        values["entrypoint"] = words[0] if words else ""
        cmd = words[1:] + cmd
    values["command"] = cmd
    values["env"] = _strings(config.get("Env"), "Env")
    values["workdir"] = _string(config.get("WorkingDir"), "WorkingDir")
    values["user"] = _string(config.get("User"), "User")
    values["hostname"] = _string(config.get("Hostname"), "Hostname")
    values["tty"] = bool(config.get("Tty"))
    values["interactive"] = bool(config.get("OpenStdin"))
    values["label"] = [f"{k}={v}" for k, v in _string_map(config.get("Labels"), "Labels").items()]
    values["expose"] = list(_mapping(config.get("ExposedPorts"), "ExposedPorts"))
    if config.get("StopSignal"):
        values["stop_signal"] = str(config["StopSignal"])
    if config.get("StopTimeout") is not None:
        values["stop_timeout"] = str(config["StopTimeout"])
    _healthcheck(_mapping(config.get("Healthcheck"), "Healthcheck"), values)
    unknown = sorted(k for k, v in config.items() if v and k not in _CONFIG_READ and k not in _IGNORED_CONFIG)
    if unknown:
        raise ApiError(400, f"unsupported field(s) in the container's config: {', '.join(unknown)}")


_CONFIG_READ = {
    "Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Hostname", "Tty", "OpenStdin", "Labels",
    "ExposedPorts", "StopSignal", "StopTimeout", "Healthcheck", "NetworkDisabled", "HostConfig",
    "NetworkingConfig", "StdinOnce", "Volumes", "Domainname", "MacAddress", "OnBuild", "Shell",
}  # fmt: skip


def _healthcheck(check: dict, values: dict) -> None:
    test = check.get("Test") or []
    if test[:1] == ["NONE"]:
        values["no_healthcheck"] = True
        return
    if test[:1] == ["CMD-SHELL"] and len(test) == 2:
        values["health_cmd"] = test[1]
    elif test[:1] == ["CMD"]:
        values["health_cmd"] = shlex.join(test[1:])
    elif test:
        raise ApiError(400, f"invalid Healthcheck.Test: {test!r}")
    for field, option in (
        ("Interval", "health_interval"),
        ("Timeout", "health_timeout"),
        ("StartPeriod", "health_start_period"),
        ("StartInterval", "health_start_interval"),
    ):
        if duration := _integer(check.get(field), f"Healthcheck.{field}"):
            values[option] = f"{duration}ns"  # the API's durations are nanoseconds
    if retries := _integer(check.get("Retries"), "Healthcheck.Retries"):
        values["health_retries"] = retries


def _host(host: dict, values: dict) -> None:
    values["volume"] = _strings(host.get("Binds"), "HostConfig.Binds")
    values["mount"] = [_mount_words(m) for m in host.get("Mounts") or []]
    values["tmpfs"] = [f"{path}:{options}" if options else path for path, options in _tmpfs(host).items()]
    values["volumes_from"] = _strings(host.get("VolumesFrom"), "HostConfig.VolumesFrom")
    values["publish"] = _publish(_mapping(host.get("PortBindings"), "HostConfig.PortBindings"))
    values["publish_all"] = bool(host.get("PublishAllPorts"))
    policy = _mapping(host.get("RestartPolicy"), "HostConfig.RestartPolicy")
    if policy.get("Name") not in (None, "", "no"):
        count = policy.get("MaximumRetryCount") or 0
        values["restart"] = f"{policy['Name']}:{count}" if count else str(policy["Name"])
    for field, option in (("Memory", "memory"), ("MemorySwap", "memory_swap"), ("CpuShares", "cpu_shares")):
        if host.get(field):
            values[option] = str(host[field])
    if nano_cpus := _integer(host.get("NanoCpus"), "HostConfig.NanoCpus"):
        values["cpus"] = f"{nano_cpus}/1000000000"
    _cpu_quota(host, values)
    _system_paths(host)
    # docker's default runtime is runc, which minirun's own stands for; any other (a sandbox such
    # as runsc) is `run --runtime`'s, never dropped for a weaker one
    runtime = _string(host.get("Runtime"), "HostConfig.Runtime")
    if "/" in runtime:  # `run --runtime PATH` is the local user's; the service never runs a path it is sent
        raise ApiError(400, f"unknown or invalid runtime name: {runtime}")
    values["runtime"] = "" if runtime == "runc" else runtime
    _block_io(host, values)
    if host.get("CpusetCpus"):
        values["cpuset_cpus"] = str(host["CpusetCpus"])
    if host.get("PidsLimit"):  # 0 and null: unset; -1: unlimited
        values["pids_limit"] = str(host["PidsLimit"])
    values["cap_add"] = _strings(host.get("CapAdd"), "HostConfig.CapAdd")
    values["cap_drop"] = _strings(host.get("CapDrop"), "HostConfig.CapDrop")
    values["security_opt"] = _strings(host.get("SecurityOpt"), "HostConfig.SecurityOpt")
    # a seccomp= value is the profile's JSON (docker's CLI reads the file and sends its content),
    # or docker's names unconfined and builtin: never a path for the server to open
    values["inline_profiles"] = True
    _memory_and_oom(host, values)
    values["privileged"] = bool(host.get("Privileged"))
    values["read_only"] = bool(host.get("ReadonlyRootfs"))
    values["init"] = bool(host.get("Init"))
    values["rm"] = bool(host.get("AutoRemove"))
    network = _string(host.get("NetworkMode"), "HostConfig.NetworkMode") or "default"
    values["network"] = "bridge" if network == "default" else network
    values["dns"] = _strings(host.get("Dns"), "HostConfig.Dns")
    values["dns_search"] = _strings(host.get("DnsSearch"), "HostConfig.DnsSearch")
    values["dns_option"] = _strings(host.get("DnsOptions"), "HostConfig.DnsOptions")
    values["add_host"] = _strings(host.get("ExtraHosts"), "HostConfig.ExtraHosts")
    values["group_add"] = _strings(host.get("GroupAdd"), "HostConfig.GroupAdd")
    values["sysctl"] = [f"{k}={v}" for k, v in _string_map(host.get("Sysctls"), "HostConfig.Sysctls").items()]
    values["ulimit"] = [_ulimit(u) for u in host.get("Ulimits") or []]
    if host.get("ShmSize"):
        values["shm_size"] = str(host["ShmSize"])
    values["device"] = [_device(d) for d in host.get("Devices") or []]
    values["device_cgroup_rule"] = _device_cgroup_rules(host)
    log = _mapping(host.get("LogConfig"), "HostConfig.LogConfig")
    if log.get("Type"):
        values["log_driver"] = log["Type"]
        values["log_opt"] = [f"{k}={v}" for k, v in _mapping(log.get("Config"), "LogConfig.Config").items()]
    for field, option in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts")):
        mode = host.get(field) or ""
        if option == "ipc" and mode in ("private", "shareable", ""):
            mode = ""  # docker's clients send its default, "private" or "shareable"
        values[option] = mode
    unknown = sorted(k for k, v in host.items() if v and k not in _HOST_READ and k not in _IGNORED_HOST)
    if unknown:
        raise ApiError(400, f"unsupported HostConfig field(s): {', '.join(unknown)}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _config_volumes(config: dict) -> list[str]:
    """Config.Volumes {"/data": {}}: docker's CLI puts a -v without a source here (docker-py and
    compose every volume's target): anonymous volumes, made as for the image's VOLUMEs, where no
    bind, mount, tmpfs or --volumes-from is (moby daemon/create_unix.go)."""
    paths = list(_mapping(config.get("Volumes"), "Volumes"))
    for path in paths:
        if not path.startswith("/") or path.rstrip("/") == "":
            raise ApiError(400, f"Volumes: invalid volume destination {path!r}: an absolute path other than /")
    return paths


def _unserved_config(config: dict) -> None:
    """Config fields `run` has no option for: set, they are a 400 naming them, never dropped."""
    refused = {
        "Domainname": "a NIS domain name (docker's --domainname)",
        "MacAddress": "a MAC address (docker's --mac-address)",
        "OnBuild": "ONBUILD triggers",
        "Shell": "a container's Shell (a build's SHELL)",
    }
    for field, what in refused.items():
        if config.get(field):
            raise ApiError(400, f"{field}: {what} is not supported by minirun")


# HostConfig fields _unserved_host reads apart from _host's run options: taken as docker takes
# them (Links, CgroupnsMode, ConsoleSize), or refused when set; docker's own defaults taken (its
# clients send every field, zero when unset)
_UNSERVED_HOST = {
    "Links", "DeviceRequests", "CgroupParent", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "IOMaximumIOps", "IOMaximumBandwidth", "KernelMemoryTCP", "UsernsMode", "CgroupnsMode", "Annotations",
    "VolumeDriver", "Isolation", "ConsoleSize", "Cgroup",
}  # fmt: skip


def _refuse(field: str, what: str) -> ApiError:
    return ApiError(400, f"HostConfig.{field}: {what} is not supported by minirun")


def _unserved_host(host: dict, version: tuple[int, ...], values: dict) -> None:
    """What docker does with the HostConfig fields `run` has no option for (moby's daemon/ and
    its API router): taken as docker takes them where minirun does the same, ignored where
    docker's Linux daemon ignores them, refused with a 400 naming the field when set otherwise."""
    swappiness = host.get("MemorySwappiness")
    if swappiness is not None and _integer(swappiness, "HostConfig.MemorySwappiness") != -1:
        if not 0 <= swappiness <= 100:  # (-1: docker's CLI's unset)
            raise ApiError(
                400, f"HostConfig.MemorySwappiness: Invalid value: {swappiness}, valid memory swappiness range is 0-100"
            )
        values["memory_swappiness"] = str(swappiness)  # --memory-swappiness's: v1's, warned about on v2
    _links(host, values)
    requests = host.get("DeviceRequests")
    if requests is not None and not isinstance(requests, list):
        raise ApiError(400, "HostConfig.DeviceRequests must be a list")
    if requests:
        raise _refuse("DeviceRequests", "a device request (docker's --gpus, CDI devices)")
    if _string(host.get("CgroupParent"), "HostConfig.CgroupParent"):
        raise _refuse("CgroupParent", "a parent cgroup (docker's --cgroup-parent)")
    for field in ("CpuRealtimePeriod", "CpuRealtimeRuntime"):
        if _integer(host.get(field), f"HostConfig.{field}"):
            raise _refuse(field, "a real-time CPU period or runtime (docker's --cpu-rt-period, --cpu-rt-runtime)")
    # docker's Linux daemon refuses them (moby daemon/internal/runconfig/hostconfig_unix.go validateQoS)
    if _integer(host.get("IOMaximumBandwidth"), "HostConfig.IOMaximumBandwidth"):
        raise ApiError(
            400,
            "HostConfig.IOMaximumBandwidth: invalid option: QoS maximum bandwidth configuration is not supported on linux",
        )
    if _integer(host.get("IOMaximumIOps"), "HostConfig.IOMaximumIOps"):
        raise ApiError(
            400, "HostConfig.IOMaximumIOps: invalid option: QoS maximum IOPs configuration is not supported on linux"
        )
    if _integer(host.get("CpuPercent"), "HostConfig.CpuPercent") > 0:  # moby daemon_unix.go: dropped, said so
        values["api_warnings"].append("linux does not support CPU percent. Percent discarded.")
    _integer(host.get("CpuCount"), "HostConfig.CpuCount")
    _integer(host.get("DiskQuota"), "HostConfig.DiskQuota")
    _kernel_memory(host, version, values)
    userns = _string(host.get("UsernsMode"), "HostConfig.UsernsMode")
    if userns not in ("", "host"):  # minirun makes no user namespace: the host's is what "host" asks
        raise ApiError(400, f"HostConfig.UsernsMode: invalid user namespace mode {userns!r}: only host is served")
    cgroupns = _string(host.get("CgroupnsMode"), "HostConfig.CgroupnsMode")
    if cgroupns not in ("", "private", "host"):  # moby's validateHostConfig, its words
        raise ApiError(400, f"invalid cgroup namespace mode: {cgroupns}")
    if version >= (1, 41):  # added in 1.41: older clients' field is not read (moby's postContainersCreate)
        values["cgroupns"] = cgroupns
    annotations = _string_map(host.get("Annotations"), "HostConfig.Annotations")
    if annotations and version >= (1, 43):  # older versions: dropped (moby's postContainersCreate)
        raise _refuse("Annotations", "an OCI annotation (docker's --annotation)")
    driver = _string(host.get("VolumeDriver"), "HostConfig.VolumeDriver")
    if driver not in ("", "local"):
        raise ApiError(
            400, f'HostConfig.VolumeDriver: error looking up volume plugin {driver}: plugin "{driver}" not found'
        )
    isolation = _string(host.get("Isolation"), "HostConfig.Isolation")
    if isolation.lower() not in ("", "default"):  # moby runconfig/hostconfig_unix.go validateIsolation
        raise ApiError(400, f"HostConfig.Isolation: invalid isolation ({isolation}): linux only supports 'default'")
    if _string(host.get("Cgroup"), "HostConfig.Cgroup"):
        raise _refuse("Cgroup", "another container's cgroup (docker's Cgroup container:ID)")
    values["console_size"] = _console_size(host.get("ConsoleSize"), version)


def _links(host: dict, values: dict) -> None:
    """HostConfig.Links: docker's legacy links (the other's address in /etc/hosts, its ports in
    the environment) on the default bridge, as --link. On a user-defined network docker's daemon
    reads that network's EndpointsConfig Links instead (moby daemon_unix.go registerLinks), which
    its CLI sends with the same list; compose 1.x sends them only here and in a `network connect`
    it skips for a container already on the network (minirun shows the short-id alias from
    create): taken as that network's links, so `links:` works as under docker."""
    links = _strings(host.get("Links"), "HostConfig.Links")
    if not links:
        return
    network = _string(host.get("NetworkMode"), "HostConfig.NetworkMode")
    if network == "host":  # docker's checks, its words (runconfig/hostconfig_unix.go)
        raise ApiError(400, HOST_LINKS)
    if network.startswith("container:"):
        raise ApiError(400, CONTAINER_LINKS)
    values["link"] = links


def _kernel_memory(host: dict, version: tuple[int, ...], values: dict) -> None:
    """KernelMemory: docker drops it from API 1.42 on; before, it checks it and hands it to runc,
    which since 1.0 drops kernel memory limits (Linux stopped enforcing them): a warning here.
    KernelMemoryTCP (API 1.40 on; dropped before): the TCP buffer limit docker applies, refused."""
    kernel = _integer(host.get("KernelMemory"), "HostConfig.KernelMemory")
    if kernel > 0 and version < (1, 42):
        if kernel < 6 * 1024 * 1024:
            raise ApiError(400, "Minimum kernel memory limit allowed is 6MB")
        values["api_warnings"].append("Kernel memory limits are not enforced by Linux: KernelMemory discarded.")
    if _integer(host.get("KernelMemoryTCP"), "HostConfig.KernelMemoryTCP") and version >= (1, 40):
        raise _refuse("KernelMemoryTCP", "a kernel TCP buffer limit")


def _console_size(value: Any, version: tuple[int, ...]) -> list[int]:
    """ConsoleSize [height, width]: the first size of a -t container's terminal (docker's CLI
    sends its own terminal's); [0, 0]: unset. Before API 1.42 docker's Linux daemon ignored it."""
    if value is None or version < (1, 42):
        return []
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65535 for n in value)
    ):
        raise ApiError(400, "HostConfig.ConsoleSize must be [height, width], two integers from 0 to 65535")
    return list(value) if any(value) else []


_HOST_READ = {
    "Binds", "Mounts", "Tmpfs", "VolumesFrom", "PortBindings", "PublishAllPorts", "RestartPolicy", "Memory",
    "MemorySwap", "CpuShares", "NanoCpus", "CpusetCpus", "PidsLimit", "CapAdd", "CapDrop", "SecurityOpt",
    "Privileged", "ReadonlyRootfs", "Init", "AutoRemove", "NetworkMode", "Dns", "DnsSearch", "DnsOptions",
    "ExtraHosts", "GroupAdd", "Sysctls", "Ulimits", "ShmSize", "Devices", "LogConfig", "PidMode", "IpcMode",
    "UTSMode", "Runtime", "MaskedPaths", "ReadonlyPaths", "CpuQuota", "CpuPeriod", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "MemoryReservation", "OomKillDisable",
    "OomScoreAdj", "DeviceCgroupRules", "MemorySwappiness", *_UNSERVED_HOST,
}  # fmt: skip


def _memory_and_oom(host: dict, values: dict) -> None:
    """MemoryReservation, OomKillDisable and OomScoreAdj as --memory-reservation,
    --oom-kill-disable and --oom-score-adj: checked and applied by the same code, never dropped."""
    reservation = _integer(host.get("MemoryReservation"), "HostConfig.MemoryReservation")
    if reservation < 0:
        raise ApiError(400, f"HostConfig.MemoryReservation: invalid value {reservation}: it must not be negative")
    if reservation:
        values["memory_reservation"] = str(reservation)
    disable = host.get("OomKillDisable")
    if disable is not None and not isinstance(disable, bool):
        raise ApiError(400, "HostConfig.OomKillDisable must be a boolean")
    values["oom_kill_disable"] = bool(disable)
    if adj := _integer(host.get("OomScoreAdj"), "HostConfig.OomScoreAdj"):
        values["oom_score_adj"] = str(adj)


def _device_cgroup_rules(host: dict) -> list[str]:
    """DeviceCgroupRules as --device-cgroup-rule words, each checked here in the daemon's words."""
    from minirun.runtime.devices import parse_cgroup_rule

    rules = _strings(host.get("DeviceCgroupRules"), "HostConfig.DeviceCgroupRules")
    for rule in rules:
        try:
            parse_cgroup_rule(rule)
        except ValueError:
            raise ApiError(400, f"HostConfig.DeviceCgroupRules: invalid device cgroup rule format: '{rule}'") from None
    return rules


def _system_paths(host: dict) -> None:
    """MaskedPaths, ReadonlyPaths: every container gets docker's defaults. A list within them is
    taken (those paths stay masked, as more is never less safe); a path beyond them would be left
    open where the client asked for it hidden: refused."""
    from minirun.runtime.rootfs import READONLY_PATHS, masked_paths

    for field, defaults in (("MaskedPaths", masked_paths()), ("ReadonlyPaths", READONLY_PATHS)):
        extra = sorted(set(_strings(host.get(field), f"HostConfig.{field}")) - set(defaults))
        if extra:
            raise ApiError(400, f"HostConfig.{field}: only docker's default paths are served, not {', '.join(extra)}")


def _cpu_quota(host: dict, values: dict) -> None:
    """CpuQuota (with CpuPeriod, default 100 ms) as the share of a CPU --cpus gives: the same
    cfs quota per period. Dropped, it left the container without the CPU limit it asked for."""
    quota = _integer(host.get("CpuQuota"), "HostConfig.CpuQuota")
    period = _integer(host.get("CpuPeriod"), "HostConfig.CpuPeriod")
    if period and not 1000 <= period <= 1_000_000:
        raise ApiError(
            400, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second (i.e. 1000000)"
        )
    if quota <= 0:  # 0 unset, -1 unlimited: no quota
        return
    if quota < 1000:
        raise ApiError(400, "CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if values["cpus"] is not None:
        raise ApiError(400, "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    values["cpus"] = f"{quota * 1_000_000_000 // (period or 100_000)}/1000000000"


def _block_io(host: dict, values: dict) -> None:
    """docker's block I/O fields as the CLI's --blkio-weight, --blkio-weight-device and
    --device-{read,write}-{bps,iops} words: the limits `run` applies, never dropped."""
    if weight := _integer(host.get("BlkioWeight"), "HostConfig.BlkioWeight"):
        values["blkio_weight"] = str(weight)
    for field, option, key in (
        ("BlkioWeightDevice", "blkio_weight_device", "Weight"),
        ("BlkioDeviceReadBps", "device_read_bps", "Rate"),
        ("BlkioDeviceWriteBps", "device_write_bps", "Rate"),
        ("BlkioDeviceReadIOps", "device_read_iops", "Rate"),
        ("BlkioDeviceWriteIOps", "device_write_iops", "Rate"),
    ):
        entries = host.get(field) or []
        if not isinstance(entries, list):
            raise ApiError(400, f"HostConfig.{field} must be a list")
        words = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Path"), str):
                raise ApiError(400, f"HostConfig.{field} entries need a Path")
            words.append(f"{entry['Path']}:{_integer(entry.get(key), f'HostConfig.{field}.{key}')}")
        if words:
            values[option] = words


def _tmpfs(host: dict) -> dict:
    """Tmpfs {path: options}, as --tmpfs PATH:OPTIONS words: a ":" in the path would add options
    (a path of "/x:exec,suid" asked for a tmpfs there, with docker's noexec,nosuid)."""
    found = _string_map(host.get("Tmpfs"), "HostConfig.Tmpfs")
    for path in found:
        if ":" in path:
            raise ApiError(400, f"HostConfig.Tmpfs: invalid path {path!r}")
    return found


# Mounts fields read here, by object; a field set beyond them is refused, never dropped (a
# BindOptions.NonRecursive or VolumeOptions.Subpath dropped showed more of the host or the volume
# than was asked for). The rest docker's Linux daemon ignores (Consistency: macOS's), or minirun
# does already: its read-only binds are recursive (ReadOnlyForceRecursive); a missing bind source
# is an error, never made (CreateMountpoint, which compose sends).
_MOUNT_FIELDS: dict[str, set[str]] = {
    "Mounts": {"Type", "Source", "Target", "ReadOnly", "BindOptions", "VolumeOptions", "TmpfsOptions", "Consistency"},
    "BindOptions": {"Propagation", "NonRecursive", "CreateMountpoint", "ReadOnlyForceRecursive"},
    "VolumeOptions": {"NoCopy", "Labels", "DriverConfig"},
    "DriverConfig": {"Name", "Options"},
    "TmpfsOptions": {"SizeBytes", "Mode"},
}


def _check_mount_fields(found: dict, kind: str) -> None:
    unknown = sorted(
        k for k, v in found.items() if v not in (None, False, "", 0, [], {}) and k not in _MOUNT_FIELDS[kind]
    )
    if unknown:
        raise ApiError(400, f"HostConfig.Mounts: unsupported {kind} field(s): {', '.join(unknown)}")


def _mount_words(mount: Any) -> str:
    """A Mounts entry as `--mount`'s comma-separated words."""
    if not isinstance(mount, dict):
        raise ApiError(400, "HostConfig.Mounts entries must be objects")
    _check_mount_fields(mount, "Mounts")
    words = [f"type={mount.get('Type') or 'volume'}"]
    if mount.get("Source"):
        words.append(f"source={mount['Source']}")
    if not mount.get("Target"):
        raise ApiError(400, "HostConfig.Mounts: Target must be given")
    words.append(f"target={mount['Target']}")
    if mount.get("ReadOnly"):
        words.append("readonly")
    bind = _mapping(mount.get("BindOptions"), "Mounts.BindOptions")
    _check_mount_fields(bind, "BindOptions")
    if bind.get("Propagation"):
        words.append(f"bind-propagation={bind['Propagation']}")
    if bind.get("NonRecursive"):  # `--mount`'s bind-nonrecursive: refused there, as here
        words.append("bind-nonrecursive")
    volume = _mapping(mount.get("VolumeOptions"), "Mounts.VolumeOptions")
    _check_mount_fields(volume, "VolumeOptions")
    if volume.get("NoCopy"):
        words.append("volume-nocopy")
    for key, value in _string_map(volume.get("Labels"), "Mounts.VolumeOptions.Labels").items():
        words.append(f"volume-label={key}={value}")
    driver = _mapping(volume.get("DriverConfig"), "Mounts.VolumeOptions.DriverConfig")
    _check_mount_fields(driver, "DriverConfig")
    if name := _string(driver.get("Name"), "Mounts.VolumeOptions.DriverConfig.Name"):
        words.append(f"volume-driver={name}")  # a plugin's: refused as `--mount` refuses it
    for key, value in _string_map(driver.get("Options"), "Mounts.VolumeOptions.DriverConfig.Options").items():
        words.append(f"volume-opt={key}={value}")
    tmpfs = _mapping(mount.get("TmpfsOptions"), "Mounts.TmpfsOptions")
    _check_mount_fields(tmpfs, "TmpfsOptions")
    if size := _integer(tmpfs.get("SizeBytes"), "Mounts.TmpfsOptions.SizeBytes"):
        words.append(f"tmpfs-size={size}")
    if mode := _integer(tmpfs.get("Mode"), "Mounts.TmpfsOptions.Mode"):
        words.append(f"tmpfs-mode={mode:o}")
    return _csv(words)


def _csv(words: list[str]) -> str:
    """`--mount`'s CSV line (mountspec.parse_mount reads it with csv): a value with a comma or a
    quote is quoted, so a Target of "/x,type=bind,source=/" stays one field, never three."""
    import csv
    import io

    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(words)
    return line.getvalue()


def _publish(bindings: dict) -> list[str]:
    """PortBindings {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]} as -p words."""
    words = []
    for port, hosts in bindings.items():
        for binding in hosts or [{}]:
            ip, host_port = (binding or {}).get("HostIp") or "", (binding or {}).get("HostPort") or ""
            if ip and ":" in ip:
                ip = f"[{ip}]"
            words.append(f"{ip}:{host_port}:{port}" if ip else (f"{host_port}:{port}" if host_port else port))
    return words


def _ulimit(ulimit: Any) -> str:
    if not isinstance(ulimit, dict) or not ulimit.get("Name"):
        raise ApiError(400, "HostConfig.Ulimits entries need a Name")
    return f"{ulimit['Name']}={ulimit.get('Soft', 0)}:{ulimit.get('Hard', 0)}"


def _device(device: Any) -> str:
    if not isinstance(device, dict) or not device.get("PathOnHost"):
        raise ApiError(400, "HostConfig.Devices entries need a PathOnHost")
    inside = device.get("PathInContainer") or device["PathOnHost"]
    return f"{device['PathOnHost']}:{inside}:{device.get('CgroupPermissions') or 'rwm'}"


def _networking(config: dict, values: dict) -> None:
    """NetworkingConfig: the network NetworkMode names, with its endpoint's Aliases (compose
    names a service's containers so on the project's network), then any other endpoint's."""
    endpoints = _mapping((config.get("NetworkingConfig") or {}).get("EndpointsConfig"), "EndpointsConfig")
    others = [name for name in endpoints if name not in (values["network"], "default", "bridge")]
    if others and values["network"] == "bridge":
        values["network"] = others[0]
        others = others[1:]
    for name in others:  # docker >= 25 sends every --network here
        extra = _mapping(endpoints.get(name), f"EndpointsConfig.{name}")
        if extra.get("Aliases") or (extra.get("IPAMConfig") or {}).get("IPv4Address"):
            raise ApiError(400, f"EndpointsConfig.{name}: aliases and addresses on a second network need a connect")
    for name in others:  # docker: names the container alone resolves, on that network
        if _strings(
            _mapping(endpoints.get(name), f"EndpointsConfig.{name}").get("Links"), f"EndpointsConfig.{name}.Links"
        ):
            raise ApiError(400, f"EndpointsConfig.{name}: links on a second network need a connect")
    endpoint = _mapping(endpoints.get(values["network"]), f"EndpointsConfig.{values['network']}")
    values["network_alias"] = _strings(endpoint.get("Aliases"), "Aliases")
    # docker's CLI sends --link on a user network, and compose `links:`, as this endpoint's Links
    if endpoint_links := _strings(endpoint.get("Links"), f"EndpointsConfig.{values['network']}.Links"):
        values["link"] = list(dict.fromkeys([*values["link"], *endpoint_links]))
    if others:
        values["network"] = [values["network"], *others]
