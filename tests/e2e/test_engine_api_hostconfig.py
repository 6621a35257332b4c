"""HostConfig fields the Engine API took and dropped, or misread: SecurityOpt's seccomp profile
(docker's CLI sends the file's JSON, not its path), MemoryReservation, OomKillDisable,
OomScoreAdj and DeviceCgroupRules. Each is applied as `minirun run`'s flag applies it, read back
from the kernel, shown by inspect; a value minirun cannot take is a 400 naming the field."""

from __future__ import annotations

import json

import pytest

from minirun.api import streams
from minirun.runtime import cgroups
from tests.e2e.engineapi import service  # noqa: F401  (service: a fixture)

MiB = 1 << 20
# a profile that allows everything but mkdir: docker's CLI reads it and sends its content
NO_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
}
MKDIR = "mkdir /made && echo made"
# a node of /dev/fuse's numbers on a tmpfs that takes nodes (the root and /dev are nodev)
OPEN_NODE = "mknod /n/fuse c 10 229; (: < /n/fuse && echo read-ok); (: > /n/fuse && echo write-ok); true"


def _create(service, config: dict, name: str = "") -> tuple[int, dict]:  # noqa: F811
    status, _, body = service.request("POST", f"/containers/create?name={name}", {"Image": "busybox", **config})
    return status, json.loads(body)


def _names(service) -> list[str]:  # noqa: F811
    status, _, body = service.request("GET", "/containers/json?all=1")
    return [c["Names"][0] for c in json.loads(body)]


def _inspect(service, name: str) -> dict:  # noqa: F811
    status, _, body = service.request("GET", f"/containers/{name}/json")
    assert status == 200, body
    return json.loads(body)


def test_a_seccomp_profile_from_the_docker_cli_is_applied(service, tmp_path):  # noqa: F811
    """`docker run --security-opt seccomp=p.json` sends p.json's content: it was opened as a
    path on the server, which failed (or, for a value that was a path, read the server's file)."""
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps(NO_MKDIR, indent=2))
    confined = service.docker(
        "run", "--rm", "--network", "none", "--security-opt", f"seccomp={profile}", "busybox", "sh", "-c", MKDIR
    )
    assert confined.returncode == 1 and "Operation not permitted" in confined.stderr, confined
    free = service.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c", MKDIR)
    assert (free.returncode, free.stdout) == (0, "made\n"), free
    created = service.docker("create", "--name", "kept", "--security-opt", f"seccomp={profile}", "busybox")
    assert created.returncode == 0, created
    (opt,) = _inspect(service, "kept")["HostConfig"]["SecurityOpt"]
    assert opt.startswith("seccomp={") and json.loads(opt.removeprefix("seccomp=")) == NO_MKDIR


def test_seccomp_names_and_bad_profiles_over_the_api(service, tmp_path):  # noqa: F811
    """docker's daemon takes `unconfined`, `builtin` (its default profile) or a profile's JSON;
    a path is no profile: the server never opens it."""
    for value in ("unconfined", "builtin", json.dumps(NO_MKDIR)):
        status, answer = _create(service, {"HostConfig": {"SecurityOpt": [f"seccomp={value}"]}})
        assert status == 201, (value, answer)
    status, answer = _create(
        service, {"Cmd": ["sh", "-c", MKDIR], "HostConfig": {"SecurityOpt": ["seccomp=builtin"]}}, "builtin"
    )
    assert service.request("POST", "/containers/builtin/start")[0] == 204
    status, _, body = service.request("POST", "/containers/builtin/wait")
    assert json.loads(body)["StatusCode"] == 0, body  # docker's default profile allows mkdir
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps(NO_MKDIR))
    count = len(_names(service))
    for bad in (str(profile), "{not json", json.dumps({"defaultAction": "SCMP_ACT_NOPE"})):
        status, answer = _create(service, {"HostConfig": {"SecurityOpt": [f"seccomp={bad}"]}})
        assert status == 400 and "HostConfig.SecurityOpt" in answer["message"], (bad, answer)
    assert len(_names(service)) == count


def test_memory_reservation_oom_fields_and_device_rules_reach_the_kernel(service):  # noqa: F811
    host = {
        "Memory": 64 * MiB,
        "MemoryReservation": 16 * MiB,
        "OomKillDisable": True,
        "OomScoreAdj": 300,
        "DeviceCgroupRules": ["c 10:229 r"],
    }
    status, answer = _create(service, {"Cmd": ["sleep", "300"], "HostConfig": host}, "limited")
    assert status == 201, answer
    assert service.request("POST", "/containers/limited/start")[0] == 204
    found = _inspect(service, "limited")
    container_id, pid = found["Id"], found["State"]["Pid"]
    assert {key: found["HostConfig"][key] for key in host} == host
    with open(f"/proc/{pid}/oom_score_adj") as f:
        assert f.read().strip() == "300"
    memory, devices = cgroups.owner("memory"), cgroups.owner("devices")
    if memory is not None and memory.version == 1:
        with open(f"{memory.path(container_id)}/memory.soft_limit_in_bytes") as f:
            assert int(f.read()) == 16 * MiB
        with open(f"{memory.path(container_id)}/memory.oom_control") as f:
            assert "oom_kill_disable 1" in f.read()
    elif memory is not None:
        with open(f"{memory.path(container_id)}/memory.low") as f:
            assert int(f.read()) == 16 * MiB
    if devices is not None:  # (v2: the eBPF program, tried by the next test)
        with open(f"{devices.path(container_id)}/devices.list") as f:
            assert "c 10:229 r" in f.read().splitlines()
    status, answer = _create(service, {"Cmd": ["true"]}, "plain")
    plain = _inspect(service, "plain")["HostConfig"]
    assert (plain["MemoryReservation"], plain["OomKillDisable"], plain["OomScoreAdj"]) == (0, False, 0)
    assert plain["DeviceCgroupRules"] is None


def test_a_device_cgroup_rule_allows_what_it_names_and_no_more(service):  # noqa: F811
    """docker's --device-cgroup-rule: the cgroup lets the container open nodes of those numbers
    with that access; it makes no node (the container makes its own, given docker's CAP_MKNOD)."""
    base = ["run", "--rm", "--network", "none", "--cap-add", "MKNOD", "--tmpfs", "/n:dev"]
    without = service.docker(*base, "busybox", "sh", "-c", OPEN_NODE)
    assert "read-ok" not in without.stdout and "Operation not permitted" in without.stderr, without
    read_only = service.docker(*base, "--device-cgroup-rule", "c 10:229 r", "busybox", "sh", "-c", OPEN_NODE)
    assert read_only.stdout == "read-ok\n", read_only
    assert "Operation not permitted" in read_only.stderr, read_only
    service.docker("create", "--name", "ruled", "--device-cgroup-rule", "c 10:* rw", "busybox")
    assert _inspect(service, "ruled")["HostConfig"]["DeviceCgroupRules"] == ["c 10:* rw"]


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ({"MemoryReservation": 1 * MiB}, "Minimum memory reservation allowed is 6MB"),
        ({"Memory": 16 * MiB, "MemoryReservation": 32 * MiB}, "memory reservation"),
        ({"MemoryReservation": -1}, "HostConfig.MemoryReservation"),
        ({"MemoryReservation": "16m"}, "HostConfig.MemoryReservation"),
        ({"OomKillDisable": "yes"}, "HostConfig.OomKillDisable"),
        ({"OomScoreAdj": 1001}, "range for oom score adj is [-1000, 1000]"),
        ({"OomScoreAdj": "high"}, "HostConfig.OomScoreAdj"),
        ({"DeviceCgroupRules": ["c 10:229"]}, "HostConfig.DeviceCgroupRules"),
        ({"DeviceCgroupRules": ["x *:* rwm"]}, "HostConfig.DeviceCgroupRules"),
        ({"DeviceCgroupRules": ["c 10:229 rwm\n"]}, "HostConfig.DeviceCgroupRules"),
        ({"DeviceCgroupRules": "c 10:229 rwm"}, "HostConfig.DeviceCgroupRules"),
    ],
)
def test_bad_memory_oom_and_device_rule_values_are_a_400(service, host, words):  # noqa: F811
    status, answer = _create(service, {"HostConfig": host})
    assert status == 400 and words in answer["message"], answer
    assert _names(service) == []


def _run_to_end(service, name: str, config: dict, version: str = "v1.43") -> tuple[dict, str]:  # noqa: F811
    """Create (at API `version`), start and wait for a container: the create answer, its logs."""
    status, _, body = service.request(
        "POST", f"/{version}/containers/create?name={name}", {"Image": "busybox", **config}
    )
    assert status == 201, body
    assert service.request("POST", f"/containers/{name}/start")[0] == 204
    status, _, waited = service.request("POST", f"/containers/{name}/wait")
    assert json.loads(waited)["StatusCode"] == 0, waited
    _, _, logs = service.request("GET", f"/containers/{name}/logs?stdout=1&stderr=1")
    if not config.get("Tty"):  # docker's frames, one per write
        logs = b"".join(data for _, data in streams.unframe(logs)[0])
    return json.loads(body), logs.decode(errors="replace")


def test_config_volumes_are_anonymous_volumes(service, tmp_path):  # noqa: F811
    """`docker run -v /data` sends /data in Config.Volumes, not HostConfig.Binds: it was dropped,
    and the container wrote into its own upper dir where it asked for a volume. A target a bind
    covers (compose sends every volume's target there too) is the bind's."""
    shown = "grep -c ' /data ' /proc/mounts; grep ' /srv ' /proc/mounts | grep -c ' ro,'"
    (tmp_path / "srv").mkdir()
    ran = service.docker(
        "run", "--name", "vol", "-v", "/data", "-v", f"{tmp_path / 'srv'}:/srv:ro", "busybox", "sh", "-c", shown
    )
    assert (ran.returncode, ran.stdout.split()) == (0, ["1", "1"]), ran
    (mount,) = [m for m in _inspect(service, "vol")["Mounts"] if m["Destination"] == "/data"]
    assert mount["Type"] == "volume" and mount["Name"] in service.docker("volume", "ls", "-q").stdout.split()
    config = {"Cmd": ["sh", "-c", shown], "Volumes": {"/data": {}, "/srv": {}}}
    _, logs = _run_to_end(service, "compose-like", {**config, "HostConfig": {"Binds": [f"{tmp_path / 'srv'}:/srv:ro"]}})
    assert logs.split() == ["1", "1"], logs
    assert [m["Type"] for m in _inspect(service, "compose-like")["Mounts"] if m["Destination"] == "/srv"] == ["bind"]
    status, answer = _create(service, {"Volumes": {"data": {}}})
    assert status == 400 and answer["message"].startswith("Volumes"), answer


def test_console_size_is_a_tty_containers_first_size(service):  # noqa: F811
    """docker's CLI (23+) sends its terminal's size as HostConfig.ConsoleSize: the container's
    terminal had 24x80 instead until a client resized it (and for ever with none attached)."""
    size = {"Tty": True, "Cmd": ["stty", "size"], "HostConfig": {"ConsoleSize": [33, 101]}}
    answer, logs = _run_to_end(service, "sized", size)
    assert (answer["Warnings"], logs.strip()) == ([], "33 101"), logs
    assert _inspect(service, "sized")["HostConfig"]["ConsoleSize"] == [33, 101]
    assert service.request("POST", "/containers/sized/start")[0] == 204  # every start, as docker's
    service.request("POST", "/containers/sized/wait")
    _, _, logs_again = service.request("GET", "/containers/sized/logs?stdout=1")
    assert logs_again.decode().split() == ["33", "101", "33", "101"], logs_again
    _, logs = _run_to_end(service, "default-size", {**size, "HostConfig": {"ConsoleSize": [0, 0]}})
    assert logs.strip() == "24 80", logs
    _, logs = _run_to_end(service, "old-client", size, version="v1.41")  # docker ignored it before 1.42
    assert logs.strip() == "24 80", logs


def test_docker_cli_flags_minirun_does_not_apply_are_refused(service):  # noqa: F811
    """Each was accepted and dropped: the container ran without the limit, link or parent asked."""
    count = len(_names(service))
    for flags, field in (
        (["--link", "other:db"], "could not get container for other: No such container: other"),
        (["--cgroup-parent", "mine"], "HostConfig.CgroupParent"),
        (["--cpu-rt-runtime", "950000"], "HostConfig.CpuRealtimeRuntime"),
        (["--domainname", "example.com"], "Domainname"),
        (["--isolation", "hyperv"], "HostConfig.Isolation"),
        (["--gpus", "all"], "HostConfig.DeviceRequests"),
    ):
        ran = service.docker("create", *flags, "busybox", "true")
        assert ran.returncode != 0 and field in ran.stderr, (flags, ran)
    assert len(_names(service)) == count
    # served now: --memory-swappiness (cgroup v1) and --cgroupns, as run's flags
    made = service.docker("create", "--memory-swappiness", "10", "--cgroupns", "host", "busybox", "true")
    assert made.returncode == 0, made
    shown = service.docker(
        "inspect", "-f", "{{.HostConfig.MemorySwappiness}} {{.HostConfig.CgroupnsMode}}", made.stdout.strip()
    )
    assert shown.stdout.split()[1] == "host", shown
    assert service.docker("rm", made.stdout.strip()).returncode == 0
    # docker's Linux daemon drops CpuPercent with a warning (its CLI refuses the flag on linux)
    status, answer = _create(service, {"HostConfig": {"CpuPercent": 50}})
    assert (status, answer["Warnings"]) == (201, ["linux does not support CPU percent. Percent discarded."]), answer
