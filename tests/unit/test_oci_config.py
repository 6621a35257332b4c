"""minirun-oci's reading of config.json (minirun/oci/config.py), without root: what runc takes
and ignores (kernel memory, unknown capabilities), what it refuses, and the namespaces a bundle
leaves out or joins by path."""

from __future__ import annotations

import json

import pytest

from minirun.oci import config
from minirun.runtime.cgroups import limit_writes


def test_memory_settings_as_docker_names_and_v1_files():
    memory = {"limit": 100, "kernel": 50, "kernelTCP": 30, "swappiness": 0, "disableOOMKiller": True}
    resources = config.limits({"memory": memory})
    assert resources == {"Memory": 100, "KernelMemoryTCP": 30, "MemorySwappiness": 0, "OomKillDisable": True}
    assert limit_writes(resources, 1) == [
        ("memory", "memory.limit_in_bytes", "100"),
        ("memory", "memory.swappiness", "0"),
        ("memory", "memory.oom_control", "1"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", "30"),
    ]
    assert limit_writes(resources, 2) == [("memory", "memory.max", "100")]
    assert config.limits({"memory": {"swappiness": -1}}) == {}  # runc's "leave it alone"
    with pytest.raises(config.ConfigError, match="swappiness range is 0-100"):
        config.limits({"memory": {"swappiness": 101}})


def test_ignored_memory_settings_are_named():
    memory = {"kernel": 1, "kernelTCP": 2, "swappiness": 3, "disableOOMKiller": True}
    v1 = config.ignored_settings({"memory": memory}, 1)
    assert len(v1) == 1 and "memory.kernel" in v1[0]
    v2 = config.ignored_settings({"memory": memory}, 2)
    assert [m.split(":")[0] for m in v2] == [
        f"linux.resources.memory.{name}" for name in ("kernel", "kernelTCP", "swappiness", "disableOOMKiller")
    ]
    assert config.ignored_settings({"memory": {"limit": 5}}, 2) == []


def test_unknown_and_unavailable_capabilities_are_left_out():
    caps = {"bounding": ["CAP_KILL", "CAP_TEST", "CAP_BPF"], "effective": ["CAP_TEST"]}
    sets, ignored = config.translate_capabilities(caps, last_cap=38)  # a kernel before CAP_BPF (39)
    assert sets["bounding"] == ["CAP_KILL"] and sets["effective"] == [] and sets["ambient"] == []
    assert ignored == ["CAP_TEST", "CAP_BPF"]


def _bundle(tmp_path, edit) -> config.Bundle:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["true"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
    }
    edit(spec)
    (tmp_path / "config.json").write_text(json.dumps(spec))
    return config.translate(config.load(str(tmp_path)), str(tmp_path), "box", "parent")


def test_namespaces_left_out_are_the_callers_and_paths_are_joined(tmp_path):
    plan = _bundle(tmp_path, lambda spec: None).plan
    assert sorted(plan.host_namespaces) == ["cgroup"] and plan.network == "none"
    plan = _bundle(tmp_path, lambda spec: spec["linux"].update(namespaces=[])).plan
    assert sorted(plan.host_namespaces) == ["cgroup", "ipc", "mount", "pid", "uts"] and plan.network == "host"

    def by_path(spec):
        spec["linux"]["namespaces"][4]["path"] = "/proc/7/ns/mnt"

    assert _bundle(tmp_path, by_path).plan.namespace_paths == {"mount": "/proc/7/ns/mnt"}

    def masked(spec):
        spec["linux"].update(namespaces=[], maskedPaths=["/proc/kcore"])

    with pytest.raises(config.ConfigError, match="without a private MNT namespace"):
        _bundle(tmp_path, masked)


def test_a_bundles_warnings_name_the_ignored_capabilities(tmp_path):
    def caps(spec):
        spec["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_NOPE"]}

    assert _bundle(tmp_path, caps).warnings == ["ignoring unknown or unavailable capabilities: CAP_NOPE"]


def test_oci_version_must_be_semver_1(tmp_path):
    for bad in ("invalid", "1.0", "2.0.0", None):
        with pytest.raises(config.ConfigError, match="SemVer"):
            _bundle(tmp_path, lambda spec, bad=bad: spec.update(ociVersion=bad))
    for good in ("1.0.2-dev", "1.1.0+dev", "1.2.0"):
        _bundle(tmp_path, lambda spec, good=good: spec.update(ociVersion=good))


@pytest.mark.parametrize("path", ["/dev/../etc/shadow", "/dev/..", "/etc/null", "dev/null"])
def test_a_device_node_outside_dev_is_refused(tmp_path, path):
    def device(spec):
        spec["linux"]["devices"] = [{"path": path, "type": "c", "major": 1, "minor": 3}]

    with pytest.raises(config.ConfigError, match="a path under /dev"):
        _bundle(tmp_path, device)


def test_device_rules_keep_the_bundles_order_before_runcs_defaults():
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    allowed = config.device_rules(rules, [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    assert allowed[:3] == [("c", 10, 229, "rwm"), ("b", 8, 20, "rw"), ("c", 1, 3, "rwm")]
    assert allowed.count(("c", 1, 3, "rwm")) == 1 and ("c", 136, -1, "rwm") in allowed
    assert allowed[-1] == ("c", 10, 229, "rwm")  # the linux.devices node's


def test_user_namespace_mappings(tmp_path):
    from minirun.runtime.userns import map_text

    def userns(spec):
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 10}]

    plan = _bundle(tmp_path, userns).plan
    assert plan.userns and plan.uid_mappings == [[0, 100000, 65536]] and plan.gid_mappings == [[0, 200000, 10]]
    assert map_text(plan.uid_mappings + [[70000, 5, 1]]) == "0 100000 65536\n70000 5 1\n"

    def joined(spec):
        userns(spec)
        spec["linux"]["namespaces"][-1]["path"] = "/proc/9/ns/user"

    plan = _bundle(tmp_path, joined).plan
    assert not plan.userns and plan.namespace_paths == {"user": "/proc/9/ns/user"} and plan.uid_mappings == []
    with pytest.raises(config.ConfigError, match="each needs containerID"):
        _bundle(tmp_path, lambda spec: (userns(spec), spec["linux"]["uidMappings"].append({"size": 1})))
    with pytest.raises(config.ConfigError, match="no gidMappings found"):
        _bundle(tmp_path, lambda spec: (userns(spec), spec["linux"].pop("gidMappings")))


# runtime-tools' linux_cgroups_blkio settings (validation/linux_cgroups_blkio), on device 8:0
BLOCK_IO = {
    "weight": 500,
    "leafWeight": 300,
    "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 102400}],
    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 102400}],
    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
}


def test_block_io_as_runcs_files_per_cgroup_version():
    resources = config.limits({"blockIO": BLOCK_IO})
    assert resources["BlkioWeight"] == 500 and resources["BlkioLeafWeight"] == 300
    assert resources["BlkioWeightDevice"] == [{"Major": 8, "Minor": 0, "Weight": 500, "LeafWeight": 300}]
    throttles = [
        ("blkio", "blkio.throttle.read_bps_device", "8:0 102400"),
        ("blkio", "blkio.throttle.write_bps_device", "8:0 102400"),
        ("blkio", "blkio.throttle.read_iops_device", "8:0 100"),
        ("blkio", "blkio.throttle.write_iops_device", "8:0 200"),
    ]
    assert limit_writes(resources, 1) == [
        ("blkio", "blkio.weight", "500"),  # CFQ's files
        ("blkio", "blkio.leaf_weight", "300"),
        ("blkio", "blkio.weight_device", "8:0 500"),
        ("blkio", "blkio.leaf_weight_device", "8:0 300"),
        *throttles,
    ]
    assert limit_writes(resources, 1, bfq=True)[:4] == [  # no blkio.weight (Linux >= 5.0): BFQ's
        ("blkio", "blkio.bfq.weight", "500"),
        ("blkio", "blkio.leaf_weight", "300"),
        ("blkio", "blkio.bfq.weight_device", "8:0 500"),
        ("blkio", "blkio.leaf_weight_device", "8:0 300"),
    ]
    io_max = [
        ("blkio", "io.max", "8:0 rbps=102400"),
        ("blkio", "io.max", "8:0 wbps=102400"),
        ("blkio", "io.max", "8:0 riops=100"),
        ("blkio", "io.max", "8:0 wiops=200"),
    ]
    # v2: no leaf weights; without BFQ the weight is scaled into io.weight and device weights go
    assert limit_writes(resources, 2) == [("blkio", "io.weight", "4950"), *io_max]
    assert limit_writes(resources, 2, bfq=True) == [
        ("blkio", "io.bfq.weight", "500"),
        ("blkio", "io.bfq.weight", "8:0 500"),
        *io_max,
    ]
    assert config.ignored_settings({"blockIO": BLOCK_IO}, 2, 2) == [
        "linux.resources.blockIO: cgroup v2 has no leaf weights, ignored"
    ]
    assert config.ignored_settings({"blockIO": BLOCK_IO}, 1, 1) == []


def test_io_weight_is_runcs_conversion():
    from minirun.runtime.cgroups import io_weight

    assert [io_weight(w) for w in (0, 10, 100, 500, 1000)] == [0, 1, 910, 4950, 10000]


def test_hugetlb_network_rdma_and_unified_files():
    resources = config.limits(
        {
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 30}, {"pageSize": "1GB", "limit": 0}],
            "network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 10}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 100}},
            "unified": {"memory.high": "50000000", "io.weight": 200},
        }
    )
    hugetlb_v1 = [
        ("hugetlb", "hugetlb.2MB.limit_in_bytes", str(1 << 30)),
        ("hugetlb", "hugetlb.1GB.limit_in_bytes", "0"),
    ]
    rdma = [("rdma", "rdma.max", "mlx5_1 hca_handle=3"), ("rdma", "rdma.max", "mlx4_0 hca_handle=2 hca_object=100")]
    assert limit_writes(resources, 1) == [
        *hugetlb_v1,
        ("net_cls", "net_cls.classid", "1048577"),
        ("net_prio", "net_prio.ifpriomap", "lo 10"),
        *rdma,
    ]
    assert limit_writes(resources, 2) == [
        ("hugetlb", "hugetlb.2MB.max", str(1 << 30)),
        ("hugetlb", "hugetlb.1GB.max", "0"),
        *rdma,
        ("unified", "memory.high", "50000000"),
        ("unified", "io.weight", "200"),
    ]
    network = {"network": {"classID": 1}}
    assert config.ignored_settings(network, 2, 2, any_v1=False) == [
        "linux.resources.network: cgroup v2 has no net_cls or net_prio, ignored"
    ]
    assert config.ignored_settings(network, 1, 1) == []


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "pageSize '2M' is not a size"),
        ({"blockIO": {"weight": -1}}, "blockIO.weight: -1 is not an unsigned integer"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": "8", "minor": 0, "rate": 1}]}}, "major: '8'"),
        ({"network": {"classID": "x"}}, "network.classID: 'x'"),
    ],
)
def test_bad_resources_are_refused_by_field(resources, words):
    with pytest.raises(config.ConfigError, match=words):
        config.limits(resources)
