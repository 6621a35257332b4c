"""The create request's fields `run` has no option for (api/containerspec.py): each taken as
docker's Linux daemon takes it (applied, or ignored where docker ignores it), or refused with a
400 naming it; never dropped in silence. Docker's clients' defaults keep working."""

from __future__ import annotations

import pytest

from minirun.api import containerspec
from minirun.api.errors import ApiError
from minirun.cli.runargs import parse_run_args
from minirun.frontend.runoptions import run_options

MiB = 1 << 20


def _namespace(host: dict | None = None, version: str = "1.43", **config):
    return containerspec.namespace({"Image": "busybox", "HostConfig": host or {}, **config}, version=version)


def _opts(host: dict | None = None, version: str = "1.43", **config):
    return run_options(_namespace(host, version, **config), environ={})


# what docker's CLI (28, at API 1.43) sends for `docker create busybox`, beside the fields read
DOCKER_CLI_DEFAULTS = {
    "ContainerIDFile": "",
    "Links": None,
    "MemorySwappiness": -1,
    "CgroupParent": "",
    "CpuCount": 0,
    "CpuPercent": 0,
    "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0,
    "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "DeviceRequests": None,
    "KernelMemory": 0,
    "KernelMemoryTCP": 0,
    "UsernsMode": "",
    "CgroupnsMode": "",
    "Annotations": None,
    "DiskQuota": 0,
    "VolumeDriver": "",
    "Isolation": "",
    "ConsoleSize": [0, 0],
    "Cgroup": "",
    "DnsOptions": [],
}
DOCKER_CLI_CONFIG = {
    "Domainname": "",
    "AttachStdin": False,
    "AttachStdout": True,
    "AttachStderr": True,
    "StdinOnce": False,
    "Volumes": {},
    "OnBuild": None,
    "MacAddress": "",
    "ArgsEscaped": False,
    "Shell": None,
}


def test_the_clients_defaults_mean_no_option():
    plain = parse_run_args(["--pull", "never", "busybox"], environ={}, verb="create")
    assert _opts(DOCKER_CLI_DEFAULTS, **DOCKER_CLI_CONFIG) == plain
    # the other values docker's clients send for "unset", or that mean what minirun does anyway
    for host in (
        {"MemorySwappiness": None},
        {"CgroupnsMode": "private"},
        {"UsernsMode": "host"},
        {"Isolation": "default"},
        {"Isolation": "Default"},
        {"VolumeDriver": "local"},
        {"Links": []},
        {"DeviceRequests": []},
        {"Annotations": {}},
        {"ConsoleSize": None},
        {"CpuCount": 2},  # Windows only: docker's Linux daemon never reads it
        {"DiskQuota": 1 << 30},  # no daemon code of docker's reads it
        {"KernelMemory": 64 * MiB},  # API >= 1.42: docker drops it
    ):
        assert _opts(host) == plain, host
    assert _namespace({}).api_warnings == []


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
        ({"MemorySwappiness": "60"}, "HostConfig.MemorySwappiness"),
        ({"Links": "db:db"}, "HostConfig.Links"),
        ({"Links": ["db:db"], "NetworkMode": "host"}, "host type networking can't be used with links"),
        ({"Links": ["db:db"], "NetworkMode": "container:db"}, "container type network can't be used with links"),
        ({"DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]}, "HostConfig.DeviceRequests"),
        ({"CgroupParent": "/mine"}, "HostConfig.CgroupParent"),
        ({"CpuRealtimePeriod": 1_000_000}, "HostConfig.CpuRealtimePeriod"),
        ({"CpuRealtimeRuntime": 950_000}, "HostConfig.CpuRealtimeRuntime"),
        ({"IOMaximumIOps": 100}, "HostConfig.IOMaximumIOps: invalid option: QoS maximum IOPs"),
        ({"IOMaximumBandwidth": 1 << 20}, "HostConfig.IOMaximumBandwidth: invalid option: QoS maximum bandwidth"),
        ({"KernelMemoryTCP": 64 * MiB}, "HostConfig.KernelMemoryTCP"),
        ({"UsernsMode": "private"}, "HostConfig.UsernsMode"),
        ({"CgroupnsMode": "other"}, "invalid cgroup namespace mode: other"),
        ({"Annotations": {"io.kubernetes.cri.container-type": "sandbox"}}, "HostConfig.Annotations"),
        ({"VolumeDriver": "convoy"}, "HostConfig.VolumeDriver"),
        ({"Isolation": "hyperv"}, "invalid isolation (hyperv): linux only supports 'default'"),
        ({"Cgroup": "container:other"}, "HostConfig.Cgroup"),
        ({"ConsoleSize": [24]}, "HostConfig.ConsoleSize"),
        ({"ConsoleSize": [-1, 80]}, "HostConfig.ConsoleSize"),
        ({"CpuCount": "2"}, "HostConfig.CpuCount"),
    ],
)
def test_a_field_minirun_does_not_apply_is_a_400_naming_it(host, words):
    """Each of these was accepted and dropped: the container ran without what it asked for."""
    with pytest.raises(ApiError) as caught:
        _namespace(host)
    assert caught.value.status == 400 and words in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"Domainname": "example.com"}, "Domainname"),
        ({"MacAddress": "92:d0:c6:0a:29:33"}, "MacAddress"),
        ({"OnBuild": ["RUN true"]}, "OnBuild"),
        ({"Shell": ["/bin/bash", "-c"]}, "Shell"),
        ({"Volumes": {"data": {}}}, "Volumes"),
        ({"Volumes": {"/": {}}}, "Volumes"),
        ({"Volumes": ["/data"]}, "Volumes"),
    ],
)
def test_a_config_field_minirun_does_not_apply_is_a_400_naming_it(config, field):
    with pytest.raises(ApiError) as caught:
        _namespace({}, **config)
    assert caught.value.status == 400 and caught.value.message.startswith(field), caught.value.message


def test_older_api_versions_drop_what_docker_drops_for_them():
    """docker's router zeroes fields newer than the request's version: Annotations before 1.43,
    ConsoleSize before 1.42, KernelMemoryTCP before 1.40. KernelMemory before 1.42 goes to runc,
    which drops kernel memory limits: a warning says so."""
    plain = _opts({})
    assert _opts({"Annotations": {"a": "b"}}, version="1.42") == plain
    assert _opts({"ConsoleSize": [40, 120]}, version="1.41") == plain
    assert _opts({"KernelMemoryTCP": 64 * MiB}, version="1.39") == plain
    assert "KernelMemory discarded" in _namespace({"KernelMemory": 64 * MiB}, version="1.41").api_warnings[0]
    with pytest.raises(ApiError, match="Minimum kernel memory limit allowed is 6MB"):
        _namespace({"KernelMemory": MiB}, version="1.41")
    assert _namespace({"CpuPercent": 50}).api_warnings == ["linux does not support CPU percent. Percent discarded."]


def test_config_volumes_and_console_size_are_carried_to_the_container():
    """Config.Volumes is where docker's CLI puts `-v /data` (and compose every volume's target);
    ConsoleSize is the size docker's CLI measured of its terminal, for a -t container."""
    opts = _opts({"ConsoleSize": [40, 120]}, Volumes={"/data": {}, "/cache/": {}})
    assert opts.config_volumes == ["/data", "/cache/"] and opts.console_size == [40, 120]
    assert _opts({"ConsoleSize": [0, 0]}).console_size == []


def test_links_on_a_user_defined_network_are_its_endpoints():
    """docker's CLI sends --link on a user network as the network's EndpointsConfig Links (and
    HostConfig.Links, the same list); compose 1.x sends `links:` as HostConfig.Links: run's --link."""
    linked = _opts({"NetworkMode": "project_default", "Links": ["project_web_1:web"]})
    assert linked == parse_run_args(
        ["--network", "project_default", "--link", "project_web_1:web", "--pull", "never", "busybox"], environ={}
    )
    endpoint = _opts(
        {"NetworkMode": "mynet", "Links": ["db:database"]},
        NetworkingConfig={"EndpointsConfig": {"mynet": {"Links": ["db:database", "/cache"]}}},
    )
    assert endpoint.flags.links == [["db", "database"], ["cache", "cache"]]
    assert endpoint == parse_run_args(
        ["--network", "mynet", "--link", "db:database", "--link", "/cache", "--pull", "never", "busybox"], environ={}
    )
    # on the default bridge: docker's legacy links, as --link there
    legacy = _opts({"Links": ["db:database"]})
    assert legacy.flags.links == [["db", "database"]] and legacy.network == "bridge"


def test_memory_swappiness_and_cgroupns_mode_are_run_flags():
    assert _opts({"MemorySwappiness": 60}).resources["MemorySwappiness"] == 60
    assert _opts({"MemorySwappiness": 0}).resources["MemorySwappiness"] == 0
    assert "MemorySwappiness" not in _opts({"MemorySwappiness": -1}).resources
    assert _opts({"CgroupnsMode": "host"}).flags.cgroupns_mode == "host"
    assert _opts({"CgroupnsMode": ""}).flags.cgroupns_mode == "private"
    # API < 1.41 has no CgroupnsMode: an old client's field is not read
    assert _opts({"CgroupnsMode": "host"}, version="1.40").flags.cgroupns_mode == "private"
