"""The Engine API's pure parts: a create request as `run`'s options (api/containerspec.py),
docker's stream framing (api/streams.py), its filters query as the CLI's -f words."""

from __future__ import annotations

import pytest

from minirun.api import containerspec, streams
from minirun.api.errors import ApiError
from minirun.cli.runargs import parse_run_args, parser
from minirun.frontend.runoptions import run_options


def test_the_namespace_defaults_are_the_parsers():
    """A new `run` option is a new key here too, or the API's create would fail on it."""
    assert containerspec.NAMESPACE_DEFAULTS == vars(parser("create").parse_args(["img"])) | {"image": ""}


def _opts(config: dict, name: str = ""):
    return run_options(containerspec.namespace(config, name), environ={})


def test_a_docker_cli_request_means_what_the_same_flags_mean():
    config = {
        "Image": "busybox",
        "Cmd": ["echo", "hi"],
        "Env": ["A=1"],
        "WorkingDir": "/tmp",
        "User": "1000:1000",
        "Labels": {"tier": "front"},
        "Tty": False,
        "OpenStdin": True,
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {
            "Binds": ["/srv:/data:ro"],
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Memory": 64 << 20,
            "NanoCpus": 500_000_000,
            "CpuShares": 512,
            "PidsLimit": 100,
            "CapAdd": ["NET_ADMIN"],
            "CapDrop": ["MKNOD"],
            "Tmpfs": {"/run": "size=1m"},
            "NetworkMode": "default",
            "Init": True,
            "LogConfig": {"Type": "", "Config": {}},
            "IpcMode": "private",
        },
    }
    argv = [
        "--name", "web", "-e", "A=1", "-w", "/tmp", "-u", "1000:1000", "-l", "tier=front", "-i", "--expose", "80/tcp",
        "-v", "/srv:/data:ro", "-p", "127.0.0.1:8080:80/tcp", "--restart", "on-failure:3", "-m", "64m",
        "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "100", "--cap-add", "NET_ADMIN",
        "--cap-drop", "MKNOD", "--tmpfs", "/run:size=1m", "--init", "--pull", "never", "busybox", "echo", "hi",
    ]  # fmt: skip
    assert _opts(config, "/web") == parse_run_args(argv, environ={}, verb="create")


def test_security_memory_oom_and_device_rule_fields_mean_the_flags(tmp_path):
    """What docker's CLI sends for these flags: the seccomp file's content, not its path."""
    profile = tmp_path / "p.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": []\n}\n')
    config = {
        "Image": "busybox",
        "HostConfig": {
            "SecurityOpt": [f"seccomp={profile.read_text()}", "no-new-privileges"],
            "Memory": 64 << 20,
            "MemoryReservation": 16 << 20,
            "OomKillDisable": True,
            "OomScoreAdj": 500,
            "DeviceCgroupRules": ["c 10:229 r", "b 7:* rw"],
        },
    }
    argv = [
        "--security-opt", f"seccomp={profile}", "--security-opt", "no-new-privileges", "-m", "64m",
        "--memory-reservation", "16m", "--oom-kill-disable", "--oom-score-adj", "500",
        "--device-cgroup-rule", "c 10:229 r", "--device-cgroup-rule", "b 7:* rw", "--pull", "never", "busybox",
    ]  # fmt: skip
    assert _opts(config) == parse_run_args(argv, environ={}, verb="create")
    unset = {"Image": "busybox", "HostConfig": {"OomKillDisable": False, "OomScoreAdj": 0, "MemoryReservation": 0}}
    assert _opts(unset) == parse_run_args(["--pull", "never", "busybox"], environ={}, verb="create")


def test_entrypoint_words_become_runs_entrypoint_and_command():
    opts = _opts({"Image": "busybox", "Entrypoint": ["sh", "-c"], "Cmd": ["echo hi"]})
    assert (opts.entrypoint, opts.command) == ("sh", ["-c", "echo hi"])
    assert _opts({"Image": "busybox", "Entrypoint": []}).entrypoint == ""
    assert _opts({"Image": "busybox", "Entrypoint": None}).entrypoint is None


def test_mounts_are_mount_words():
    mount = {"Type": "tmpfs", "Target": "/cache", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}
    assert containerspec._mount_words(mount) == "type=tmpfs,target=/cache,tmpfs-size=1048576,tmpfs-mode=1777"
    bind = {"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True}
    assert containerspec._mount_words(bind) == "type=bind,source=/srv,target=/data,readonly"


def test_port_bindings_are_publish_words():
    assert containerspec._publish({"80/tcp": [{"HostIp": "", "HostPort": ""}], "53/udp": None}) == ["80/tcp", "53/udp"]
    assert containerspec._publish({"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}) == ["[::1]:8080:80/tcp"]


def test_what_minirun_cannot_do_is_refused_not_dropped():
    with pytest.raises(ApiError) as caught:
        containerspec.namespace({"Image": "busybox", "HostConfig": {"CpuRealtimeRuntime": 0, "Frobnicate": 1}})
    assert caught.value.status == 400 and "Frobnicate" in caught.value.message
    with pytest.raises(ApiError):
        containerspec.namespace({"Cmd": ["true"]})  # no image


def test_the_api_never_pulls_on_create():
    assert _opts({"Image": "busybox"}).flags.pull == "never"


def test_frames_round_trip():
    data = streams.frame(streams.STDOUT, b"out") + streams.frame(streams.STDERR, b"err\n") + b"\x01\x00"
    assert data[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x03"
    frames, rest = streams.unframe(data)
    assert frames == [(1, b"out"), (2, b"err\n")] and rest == b"\x01\x00"


class _Request:
    def __init__(self, query: dict) -> None:
        self.query = query


def test_filters_query_is_the_clis_words():
    from minirun.api.common import filters

    request = _Request({"filters": '{"status": ["running"], "label": {"a=b": true, "c": false}}'})
    assert filters(request) == ["status=running", "label=a=b"]  # type: ignore[arg-type]
    with pytest.raises(ApiError):
        filters(_Request({"filters": "[1]"}))  # type: ignore[arg-type]


def test_go_file_modes_are_gos_bits():
    import stat

    from minirun.containers.copy import go_file_mode

    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777  # ModeDir|ModeSticky
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666  # ModeDevice|ModeCharDevice
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755


def test_an_update_config_is_the_clis_update():
    from minirun.api.resources import update_changes

    # what the docker CLI sends for `update --memory 64m --restart on-failure:3`: zeros unchanged
    config = {"Memory": 64 << 20, "MemorySwap": 0, "NanoCpus": 0, "CpuShares": 0, "CpusetCpus": "", "CpuQuota": 0}
    config["RestartPolicy"] = {"Name": "on-failure", "MaximumRetryCount": 3}
    assert update_changes(config) == (
        {"Memory": 64 << 20},
        {"Name": "on-failure", "MaximumRetryCount": 3},
        [],
    )
    assert update_changes({"CpuQuota": 50_000, "CpuPeriod": 100_000})[0] == {"NanoCpus": 500_000_000}
    assert update_changes({"PidsLimit": -1, "RestartPolicy": {"Name": ""}})[:2] == ({"PidsLimit": -1}, None)
    assert update_changes({"BlkioWeight": 300})[2] == ["minirun does not apply BlkioWeight: it was ignored"]
    assert update_changes({"MemoryReservation": 16 << 20}) == ({"MemoryReservation": 16 << 20}, None, [])
    with pytest.raises(ApiError):
        update_changes({"Memory": "64m"})


def test_a_stats_document_is_what_docker_clients_compute_from():
    from types import SimpleNamespace

    from minirun.api.resources import document
    from minirun.containers.stats import Sample

    usage = {"cpu_ns": 3_000, "memory": 10 << 20, "memory_limit": 0, "pids": 2, "blk_read": 5, "blk_write": 7}
    before = SimpleNamespace(sample=Sample({**usage, "cpu_ns": 1_000}, 100_000, (0, 0)), read="T0", networks={})
    after = SimpleNamespace(sample=Sample(usage, 200_000, (0, 0)), read="T1", networks={"eth0": {"rx_bytes": 1}})
    container = SimpleNamespace(name="web", id="abc", config=SimpleNamespace(resources={"PidsLimit": 9}))
    found = document(container, after, before, 1 << 30, 2)
    assert found["cpu_stats"]["cpu_usage"]["total_usage"] == 3_000 and found["cpu_stats"]["system_cpu_usage"] == 200_000
    assert found["precpu_stats"]["cpu_usage"]["total_usage"] == 1_000 and found["cpu_stats"]["online_cpus"] == 2
    assert (
        found["memory_stats"]["usage"] == 10 << 20 and found["memory_stats"]["limit"] == 1 << 30
    )  # no limit: the host's
    assert found["pids_stats"] == {"current": 2, "limit": 9} and found["networks"] == {"eth0": {"rx_bytes": 1}}
    assert [e["value"] for e in found["blkio_stats"]["io_service_bytes_recursive"]] == [5, 7]
    assert (found["name"], found["read"], found["preread"]) == ("/web", "T1", "T0")
    stopped = document(container, None, None, 1 << 30, 2)
    assert stopped["memory_stats"] == {} and stopped["read"] == "0001-01-01T00:00:00Z"


def test_net_dev_lines_are_dockers_network_counters():
    from minirun.containers.stats import parse_net_interfaces

    lines = [
        "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0",
        "  eth0:    1500      12    1    2    0     0          0         0      700       9    3    4    0     0       0          0",
    ]
    assert parse_net_interfaces(lines) == {
        "eth0": {
            "rx_bytes": 1500, "rx_packets": 12, "rx_errors": 1, "rx_dropped": 2,
            "tx_bytes": 700, "tx_packets": 9, "tx_errors": 3, "tx_dropped": 4,
        }
    }  # fmt: skip
