"""The Engine API never does more than the request asks: a filter it cannot apply is a 400, not
a filter dropped (a prune that takes everything), and a malformed body is a 400, not a 500."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.e2e.engineapi import _UnixHTTP, service  # noqa: F401  (service: a fixture)


def _post_raw(service, path: str, data: bytes, content_type: str) -> tuple[int, bytes]:  # noqa: F811
    connection = _UnixHTTP(service.path)
    try:
        connection.request("POST", path, body=data, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _create(service, name: str, labels: dict) -> str:  # noqa: F811
    status, _, body = service.request("POST", f"/containers/create?name={name}", {"Image": "busybox", "Labels": labels})
    assert status == 201, body
    return json.loads(body)["Id"]


def _names(service) -> set[str]:  # noqa: F811
    status, _, body = service.request("GET", "/containers/json?all=1")
    assert status == 200, body
    return {c["Names"][0].lstrip("/") for c in json.loads(body)}


def _prune(service, filters: str) -> tuple[int, dict]:  # noqa: F811
    status, _, body = service.request("POST", "/v1.41/containers/prune?filters=" + urllib.parse.quote(filters))
    return status, json.loads(body)


def test_container_prune_takes_only_what_its_filters_let_go(service):  # noqa: F811
    _create(service, "plain", {})
    gone = _create(service, "scratch", {"purpose": "scratch"})
    _create(service, "kept", {"purpose": "keep"})
    for bad in ("notjson", json.dumps({"labels": ["purpose"]}), json.dumps({"until": ["soon"]})):
        status, answer = _prune(service, bad)
        assert status == 400, answer
    assert _names(service) == {"plain", "scratch", "kept"}  # a filter not understood takes nothing
    status, answer = _prune(service, json.dumps({"until": ["2001-01-01T00:00:00Z"]}))
    assert (status, answer["ContainersDeleted"]) == (200, None)  # all of them are newer
    status, answer = _prune(service, json.dumps({"label": ["purpose=scratch"]}))
    assert (status, answer["ContainersDeleted"]) == (200, [gone])
    status, answer = _prune(service, json.dumps({"label!": ["purpose"]}))
    assert status == 200 and _names(service) == {"kept"}


@pytest.mark.parametrize(
    "config",
    [
        {"WorkingDir": ["/a"]},
        {"Hostname": 5},
        {"User": {"a": 1}},
        {"Labels": {"a": {"b": 1}}},
        {"Healthcheck": {"Test": ["CMD", "true"], "Interval": "abc"}},
        {"HostConfig": {"NanoCpus": "abc"}},
        {"HostConfig": {"NetworkMode": 5}},
        {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x", "BindOptions": "x"}]}},
        {"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Mode": "777"}}]}},
    ],
)
def test_a_malformed_create_is_a_400(service, config):  # noqa: F811
    status, _, body = service.request("POST", "/containers/create", {"Image": "busybox", **config})
    assert status == 400, body
    assert _names(service) == set()


def test_a_mounts_target_with_commas_stays_one_field(service):  # noqa: F811
    """Mounts go to `--mount`'s CSV words: a comma in a value must not add words, which made a
    volume asked for at "/x,type=bind,source=/" a bind of the host's root."""
    mount = {"Type": "volume", "Source": "vol1", "Target": "/x,type=bind,source=/"}
    status, _, body = service.request(
        "POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Mounts": [mount]}}
    )
    if status == 201:
        status, _, body = service.request("GET", f"/containers/{json.loads(body)['Id']}/json")
        mounts = json.loads(body)["Mounts"]
        assert [(m["Type"], m.get("Name"), m["Destination"]) for m in mounts] == [
            ("volume", "vol1", "/x,type=bind,source=")  # docker's clean path: no trailing slash
        ], mounts
    else:
        assert status == 400, body


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/networks/create", {"Name": "n1", "IPAM": "x"}),
        ("/networks/create", {"Name": "n2", "IPAM": {"Config": "x"}}),
        ("/networks/create", {"Name": "n3", "IPAM": {"Config": ["x"]}}),
        ("/networks/create", {"Name": "n4", "Internal": "false"}),  # made an internal network: docker's 400
    ],
)
def test_a_malformed_network_is_a_400(service, path, document):  # noqa: F811
    status, _, body = service.request("POST", path, document)
    assert status == 400, body


def test_a_malformed_exec_is_a_400(service):  # noqa: F811
    status, _, body = service.request(
        "POST", "/containers/create?name=idle", {"Image": "busybox", "Cmd": ["sleep", "300"]}
    )
    assert status == 201, body
    assert service.request("POST", "/containers/idle/start")[0] == 204
    for config in ({"User": 5}, {"WorkingDir": ["/"]}):
        status, _, body = service.request("POST", "/containers/idle/exec", {"Cmd": ["id"], **config})
        assert status == 400, body


def test_cpu_quota_and_block_io_limits_are_applied_not_dropped(service):  # noqa: F811
    """What the CLI's --device-read-bps & co. and a CPU quota apply, the API's fields apply too:
    they were taken and dropped, the container ran without the limits it asked for."""
    limits = {
        "CpuQuota": 20000,
        "CpuPeriod": 100000,
        "BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1048576}],
        "BlkioDeviceWriteIOps": [{"Path": "/dev/null", "Rate": 10}],
    }
    status, _, body = service.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": limits})
    assert status == 201, body
    status, _, body = service.request("GET", f"/containers/{json.loads(body)['Id']}/json")
    host = json.loads(body)["HostConfig"]
    assert host["NanoCpus"] == 200_000_000
    assert host["BlkioDeviceReadBps"] == [{"Path": "/dev/null", "Rate": 1048576}]
    assert host["BlkioDeviceWriteIOps"] == [{"Path": "/dev/null", "Rate": 10}]
    for refused in ({"CpusetMems": "0"}, {"CpuQuota": 20000, "NanoCpus": 10**9}, {"CpuQuota": 10}):
        status, _, body = service.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": refused})
        assert status == 400, (refused, body)


def test_network_disabled_leaves_the_container_its_loopback_alone(service):  # noqa: F811
    """docker-py's network_disabled=True: only `lo`, as --network none; it was ignored, and the
    container was on the bridge with a route out."""
    config = {"Image": "busybox", "Cmd": ["cat", "/proc/net/dev"], "NetworkDisabled": True}
    status, _, body = service.request("POST", "/containers/create?name=offline", config)
    assert status == 201, body
    assert service.request("POST", "/containers/offline/start")[0] == 204
    status, _, body = service.request("POST", "/containers/offline/wait")
    assert (status, json.loads(body)["StatusCode"]) == (200, 0), body
    status, _, logs = service.request("GET", "/containers/offline/logs?stdout=1")
    assert b" lo:" in logs and b"eth" not in logs, logs
    status, _, body = service.request("POST", "/containers/create", {**config, "HostConfig": {"NetworkMode": "host"}})
    assert status == 400, body


def test_a_runtime_asked_for_is_used_or_refused_never_dropped(service):  # noqa: F811
    """HostConfig.Runtime (a sandbox such as runsc) was ignored: the container ran under
    minirun's own runtime instead of the one asked for."""
    config = {"Image": "busybox", "HostConfig": {"Runtime": "no-such-sandbox-runtime"}}
    status, _, body = service.request("POST", "/containers/create", config)
    assert status == 400 and "no-such-sandbox-runtime" in json.loads(body)["message"], body
    status, _, body = service.request(
        "POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Runtime": "runc"}}
    )
    assert status == 201, body  # docker's default: minirun's own


def test_masked_paths_beyond_the_defaults_are_refused_not_left_open(service):  # noqa: F811
    for field, path in (("MaskedPaths", "/proc/cpuinfo"), ("ReadonlyPaths", "/proc/self/attr")):
        config = {"Image": "busybox", "HostConfig": {field: [path]}}
        status, _, body = service.request("POST", "/containers/create", config)
        assert status == 400 and path in json.loads(body)["message"], body
    config = {"Image": "busybox", "HostConfig": {"MaskedPaths": ["/proc/kcore"], "ReadonlyPaths": ["/proc/sys"]}}
    status, _, body = service.request("POST", "/containers/create", config)
    assert status == 201, body  # within docker's: the defaults stay


def test_a_build_asked_for_limits_is_refused_not_run_without_them(service):  # noqa: F811
    """/build's memory, cpuquota & co. were dropped: the RUNs ran with no limit at all."""
    from tests.helpers import f, make_tar

    context = make_tar([f("Dockerfile", b"FROM busybox\nRUN true\n")])
    for query in ("memory=8388608", "cpuquota=10000", "cpusetcpus=0", 'ulimits=[{"Name":"nproc","Soft":1,"Hard":1}]'):
        status, body = _post_raw(service, f"/build?{query}", context, "application/x-tar")
        assert status == 400 and "limits are not supported" in json.loads(body)["message"], (query, body)
    # what docker's CLI sends when no limit is asked for
    defaults = "memory=0&memswap=0&cpushares=0&cpuperiod=0&cpuquota=0&shmsize=0&cpusetcpus=&ulimits=null"
    status, body = _post_raw(service, f"/build?{defaults}", context, "application/x-tar")
    assert status == 200 and b"Successfully built" in body, body


def test_a_tmpfs_path_with_a_colon_adds_no_options(service):  # noqa: F811
    config = {"Image": "busybox", "HostConfig": {"Tmpfs": {"/x:exec,suid": ""}}}
    status, _, body = service.request("POST", "/containers/create", config)
    assert status == 400, body


@pytest.mark.parametrize(
    "mount",
    [
        # dropped, the bind showed the submounts under its source that the client asked hidden
        {"Type": "bind", "Source": "/tmp", "Target": "/x", "BindOptions": {"NonRecursive": True}},
        # dropped, the whole volume was mounted where one directory of it was asked for
        {"Type": "volume", "Source": "vol1", "Target": "/x", "VolumeOptions": {"Subpath": "sub"}},
        {"Type": "volume", "Source": "vol1", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "plugin"}}},
        {"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Options": [["exec"]]}},
    ],
)
def test_a_mounts_option_not_served_is_refused_not_dropped(service, mount):  # noqa: F811
    status, _, body = service.request(
        "POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Mounts": [mount]}}
    )
    assert status == 400, body
    assert _names(service) == set()


def test_a_runtime_path_sent_is_refused(service, tmp_path):  # noqa: F811
    """`run --runtime PATH` is the local user's; HostConfig.Runtime "/path" was taken, for the
    service to execute a host file the client named (docker takes only the runtimes its daemon knows)."""
    runtime = tmp_path / "runtime"
    runtime.write_text("#!/bin/sh\nexit 1\n")
    runtime.chmod(0o755)
    config = {"Image": "busybox", "HostConfig": {"Runtime": str(runtime)}}
    status, _, body = service.request("POST", "/containers/create", config)
    assert status == 400 and str(runtime) in json.loads(body)["message"], body
    assert _names(service) == set()
