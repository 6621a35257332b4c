"""run's service-container flags (-P, --expose, --add-host, --dns*, --init, --ulimit, --shm-size,
--stop-*, --group-add, --sysctl, --cidfile, --pull, --platform, --pid/--ipc/--uts): parsing, docker's
refusals, and the pure texts and mounts they become, without root."""

from __future__ import annotations

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.containers import dnsfiles, runconfig
from minirun.containers.container import ContainerConfig
from minirun.containers.exposedports import exposed_ports, parse_expose, publish_all_bindings
from minirun.containers.network import hosts_text
from minirun.errors import MinirunError, UsageError
from minirun.frontend import runflags
from minirun.image.embedded import host_architecture
from minirun.runtime import kernelsettings, rootfs
from minirun.runtime.security import added_groups


def flags(*argv: str) -> runflags.RunFlags:
    return parse_run_args([*argv, "img"]).flags


def test_every_flag_parses_to_what_docker_records(tmp_path):
    got = flags(
        "-P",
        "--expose",
        "8000-8002/udp",
        "--add-host",
        "db:10.0.0.5",
        "--add-host",
        "v6=[::1]",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        " 9.9.9.9 ",
        "--dns-search",
        "example.com",
        "--dns-option",
        "ndots:2",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=0",
        "--ulimit",
        "nofile=-1",  # a later one of a name wins
        "--shm-size",
        "128m",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "-1",
        "--group-add",
        "audio",
        "--group-add",
        "1234",
        "--sysctl",
        "net.core.somaxconn=1024",
        "--sysctl",
        "kernel.shmmax=65536",
        "--sysctl",
        "fs.mqueue.msg_max=20",
        "--cidfile",
        str(tmp_path / "cid"),
        "--pull",
        "never",
        "--platform",
        f"linux/{host_architecture()}",
        "--pid",
        "host",
        "--uts",
        "host",
    )
    assert got.publish_all and got.expose == ["8000/udp", "8001/udp", "8002/udp"]
    assert got.extra_hosts == ["db:10.0.0.5", "v6:::1", "gw:host-gateway"]
    assert (got.dns, got.dns_search, got.dns_options) == (["9.9.9.9"], ["example.com"], ["ndots:2"])
    assert got.ulimits == [{"Name": "nofile", "Soft": -1, "Hard": -1}, {"Name": "core", "Soft": 0, "Hard": 0}]
    assert got.shm_size == 128 << 20 and got.stop_signal == "SIGUSR1" and got.stop_timeout == -1
    assert got.group_add == ["audio", "1234"]
    assert got.sysctls == {"net.core.somaxconn": "1024", "kernel.shmmax": "65536", "fs.mqueue.msg_max": "20"}
    assert (got.cidfile, got.pull, got.pid_mode, got.ipc_mode, got.uts_mode) == (
        str(tmp_path / "cid"),
        "never",
        "host",
        "",
        "host",
    )


def test_no_flag_changes_nothing():
    assert flags() == runflags.RunFlags()


@pytest.mark.parametrize(
    "argv,needle",
    [
        # only namespaced sysctls, as docker: any other would change the host's kernel
        (["--sysctl", "kernel.hostname=x"], "sysctl 'kernel.hostname=x' is not allowed"),
        (["--sysctl", "vm.overcommit_memory=1"], "is not allowed"),
        (["--sysctl", "kernel.core_pattern=|/x"], "is not allowed"),
        (["--sysctl", "net.core.somaxconn"], "is not allowed"),
        # a key is a path under /proc/sys: none may climb out of its family
        (["--sysctl", "net.core/../../kernel/core_pattern=|/x"], "is no sysctl name"),
        (["--sysctl", "net.../kernel.core_pattern=x"], "is no sysctl name"),
        (["--sysctl", "fs.mqueue..=x"], "is no sysctl name"),
        (["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"], "not allowed with --network host"),
        (["--sysctl", "net.ipv4.ip_forward=1", "--network", "container:db"], "not allowed with --network container:db"),
        (["--sysctl", "kernel.shmmax=1", "--ipc", "host"], "not allowed with --ipc host"),
        (["--sysctl", "fs.mqueue.msg_max=1", "--ipc", "host"], "not allowed with --ipc host"),
        (["--ulimit", "nofile"], "invalid ulimit argument: nofile"),
        (["--ulimit", "as=1"], "invalid ulimit type: as"),
        (["--ulimit", "nofile=10:5"], "soft limit must be less than or equal to hard limit: 10 > 5"),
        (["--ulimit", "nofile=-1:5"], "soft limit must be less than or equal to hard limit: -1 > 5"),
        (["--ulimit", "nofile=1:2:3"], "too many limit value arguments"),
        (["--ulimit", "nofile=x"], "invalid ulimit value 'x'"),
        (["--ulimit", "nofile=-2"], "invalid ulimit value '-2'"),
        (["--shm-size", "lots"], "invalid size: 'lots'"),
        (["--shm-size", ""], "invalid size: ''"),
        (["--stop-signal", "SIGNOPE"], "invalid signal: SIGNOPE"),
        (["--stop-timeout", "1.5"], "invalid --stop-timeout '1.5'"),
        (["--group-add", "a:b"], "invalid --group-add 'a:b'"),
        (["--group-add", ""], "invalid --group-add ''"),
        (["--add-host", "nohost"], "bad format for add-host: 'nohost'"),
        (["--add-host", ":1.2.3.4"], "bad format for add-host"),
        (["--add-host", "a b:1.2.3.4"], "bad format for add-host"),
        (["--add-host", "db:1.2.3"], "invalid IP address in add-host: '1.2.3'"),
        (["--dns", "dns.google"], "IP address is not correctly formatted: dns.google"),
        (["--dns-search=-bad.com"], "-bad.com is not a valid domain"),
        (["--dns-search", "123"], "123 is not a valid domain"),
        (["--dns-option", "ndots:1\nnameserver 6.6.6.6"], "invalid DNS option"),
        (["--expose", "0"], "invalid range format for --expose: 0"),
        (["--expose", "80-70"], "invalid range format for --expose: 80-70"),
        (["--expose", "80/sctp"], "invalid proto"),
        (["--pull", "sometimes"], "invalid pull option: 'sometimes'"),
        (["--platform", "windows/amd64"], "only linux containers run here"),
        (["--platform", "linux//"], "invalid platform"),
        (["--platform", "linux/s390x" if host_architecture() != "s390x" else "linux/amd64"], "cannot run on this"),
        (["--pid", "container:db"], "invalid --pid mode 'container:db'"),
        (["--ipc", "none"], "invalid --ipc mode 'none'"),
        (["--uts", "private"], "invalid --uts mode 'private'"),
        (["--uts", "host", "-h", "web"], "conflicting options: hostname and the UTS mode"),
        (["--network", "container:db", "--add-host", "a:1.2.3.4"], "custom host-to-IP mapping and the network mode"),
        (["--network", "container:db", "--dns", "1.1.1.1"], "conflicting options: dns and the network mode"),
        (["--network", "container:db", "-P"], "port publishing and the container type network mode"),
        (["--network", "container:db", "--expose", "80"], "port exposing and the container type network mode"),
    ],
)
def test_bad_flags_are_refused_with_docker_words(argv, needle):
    with pytest.raises(UsageError) as caught:
        parse_run_args([*argv, "img"])
    assert needle in caught.value.message


def test_an_existing_cidfile_is_refused(tmp_path):
    cid = tmp_path / "cid"
    cid.write_text("other")
    with pytest.raises(UsageError, match="container ID file found, make sure the other container isn't running"):
        flags("--cidfile", str(cid))
    assert cid.read_text() == "other"


def test_cidfile_is_created_then_holds_the_id_or_goes(tmp_path):
    path = str(tmp_path / "cid")
    runflags.write_cidfile(runflags.open_cidfile(path), "abc123")
    assert (tmp_path / "cid").read_text() == "abc123"
    with pytest.raises(UsageError, match="container ID file found"):
        runflags.open_cidfile(path)  # the race the early check cannot close: O_EXCL does
    other = str(tmp_path / "cid2")
    runflags.discard_cidfile(runflags.open_cidfile(other), other)
    assert not (tmp_path / "cid2").exists()
    assert runflags.open_cidfile("") is None


def test_init_needs_tini_on_the_host(monkeypatch, tmp_path):
    monkeypatch.setattr(runconfig, "INIT_BINARY", str(tmp_path / "tini-static"))
    with pytest.raises(UsageError, match="--init needs .*tini-static.*missing"):
        flags("--init")


HOST_RESOLV = b"# generated\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"


@pytest.mark.parametrize(
    "dns,search,options,expected",
    [
        ([], [], [], HOST_RESOLV.decode()),  # no flag: the host's file as it is
        (
            ["1.1.1.1"],
            [],
            [],
            "nameserver 1.1.1.1\nsearch corp.example\noptions edns0\n",
        ),
        (
            [],
            ["a.example", "b.example"],
            ["ndots:3"],
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch a.example b.example\noptions ndots:3\n",
        ),
        ([], ["."], [], "nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions edns0\n"),  # "." clears search
    ],
)
def test_resolv_conf_takes_each_part_from_the_flags_or_the_host(dns, search, options, expected):
    assert dnsfiles.resolv_conf(HOST_RESOLV, dns, search, options).decode() == expected


def test_extra_hosts_come_before_the_containers_own_line():
    extra = dnsfiles.extra_hosts_text(["db:10.0.0.5", "gw:host-gateway", "v6:::1"], "10.66.0.1")
    assert extra == "10.0.0.5\tdb\n10.66.0.1\tgw\n::1\tv6\n"
    text = hosts_text({"ip": "10.66.0.2", "hostname": "abc", "name": "web"}, [], extra)
    assert text.endswith("ff02::2\tip6-allrouters\n10.0.0.5\tdb\n10.66.0.1\tgw\n::1\tv6\n10.66.0.2\tabc web\n")


def test_exposed_ports_join_the_image_the_flags_and_p():
    image = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "junk": {}, "99999/tcp": {}}}
    ports = exposed_ports(image, parse_expose("443") + parse_expose("80"), [["", 8080, 8080, "tcp"]])
    assert ports == ["53/udp", "80/tcp", "443/tcp", "8080/tcp"]
    assert exposed_ports({}, [], []) == []
    # -P leaves what -p publishes to -p, and picks the host port of the rest at start (0)
    assert publish_all_bindings(ports, [["127.0.0.1", 8080, 8080, "tcp"]]) == [
        ["", 0, 53, "udp"],
        ["", 0, 80, "tcp"],
        ["", 0, 443, "tcp"],
    ]


def test_shm_is_sized_or_the_hosts_with_ipc_host():
    def shm(**spec):
        return next(m for m in rootfs.plan_mounts(rootfs.RootfsSpec(root="/r", **spec)) if m.target == "/dev/shm")

    assert shm().data == "mode=1777,size=65536k" and shm().fstype == "tmpfs"
    sized = shm(shm_size=16 << 20)
    assert sized.fstype == "tmpfs" and sized.data == f"mode=1777,size={16 << 20}"
    assert sized.flags & rootfs.MS_NOEXEC and sized.flags & rootfs.MS_NODEV and sized.flags & rootfs.MS_NOSUID
    host = shm(host_ipc=True)
    assert host.fstype is None and host.source == "/dev/shm"  # a bind: _bind_at makes it nosuid, nodev


def test_group_add_by_name_in_the_containers_group_file_or_by_number():
    group = "root:x:0:\naudio:x:29:\nstaff:x:50:alice\n"
    assert added_groups(["audio", "1234", "staff", "0"], group) == [29, 1234, 50, 0]
    with pytest.raises(MinirunError, match="unable to find group video"):
        added_groups(["video"], group)


def test_sysctl_keys_map_to_proc_sys_and_are_checked_again_when_written():
    assert kernelsettings.sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    # a record edited by hand meets the same walls in PID 1
    with pytest.raises(UsageError, match="is not allowed"):
        kernelsettings.write_sysctls({"kernel.core_pattern": "|/x"}, "bridge", "")
    with pytest.raises(UsageError, match="--network host"):
        kernelsettings.write_sysctls({"net.ipv4.ip_forward": "1"}, "host", "")


def _config(**fields) -> ContainerConfig:
    return ContainerConfig(id="c" * 64, name="n", image="i", image_ref="r", created="t", argv=["x"], env=[], **fields)


def test_inspect_shows_docker_names_and_defaults():
    plain = _config()
    assert runconfig.inspect_host_config(plain) == {
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "private",
        "PidMode": "",
        "UTSMode": "",
        "CgroupnsMode": "private",
        "PublishAllPorts": False,
        "ShmSize": 67108864,
        "Sysctls": None,
        "Init": None,
        "Ulimits": None,
        "OomScoreAdj": 0,
        "DeviceCgroupRules": None,
        "Links": None,
    }
    assert runconfig.inspect_config(plain) == {}
    given = _config(exposed_ports=["80/tcp"], stop_signal="SIGINT", stop_timeout=3, pid_mode="host", init=True)
    assert runconfig.inspect_config(given) == {"ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGINT", "StopTimeout": 3}
    assert runconfig.inspect_host_config(given)["PidMode"] == "host" and runconfig.inspect_host_config(given)["Init"]
    ruled = runconfig.inspect_host_config(_config(oom_score_adj=-20, device_cgroup_rules=["c 10:* r"]))
    assert (ruled["OomScoreAdj"], ruled["DeviceCgroupRules"]) == (-20, ["c 10:* r"])


def test_stop_uses_the_containers_signal_and_timeout():
    assert runconfig.stop_signal(_config()) == 15
    assert runconfig.stop_signal(_config(), {"StopSignal": "SIGQUIT"}) == 3  # an older record: its image's
    assert runconfig.stop_signal(_config(stop_signal="USR1"), {"StopSignal": "SIGQUIT"}) == 10
    assert runconfig.stop_timeout(_config(), None) == 10
    assert runconfig.stop_timeout(_config(stop_timeout=3), None) == 3
    assert runconfig.stop_timeout(_config(stop_timeout=3), 0) == 0  # stop -t wins
    assert runconfig.stop_timeout(_config(stop_timeout=-1), None) is None  # waits for good


def test_the_images_stopsignal_is_copied_into_the_container():
    fields = runflags.config_fields(runflags.RunFlags(), {"StopSignal": "SIGWINCH", "ExposedPorts": {"80": {}}}, [])
    assert fields["stop_signal"] == "SIGWINCH" and fields["exposed_ports"] == ["80/tcp"]
    assert (
        runflags.config_fields(runflags.RunFlags(stop_signal="9"), {"StopSignal": "SIGWINCH"}, [])["stop_signal"] == "9"
    )
    assert runflags.config_fields(runflags.RunFlags(), {"StopSignal": "SIGBOGUS"}, [])["stop_signal"] == ""


def test_platform_of_a_local_image():
    arch = host_architecture()
    runflags.check_platform({"os": "linux", "architecture": arch}, f"linux/{arch}", "img")
    runflags.check_platform({"os": "linux", "architecture": arch}, "", "img")
    with pytest.raises(UsageError, match="does not match the specified platform: wanted linux/.*, actual: linux/mips"):
        runflags.check_platform({"os": "linux", "architecture": "mips"}, f"linux/{arch}", "img")


def test_cgroupns_takes_host_and_private_only():
    def flags(*words):
        return parse_run_args([*words, "busybox"]).flags

    assert flags().cgroupns_mode == "private"
    assert flags("--cgroupns", "host").cgroupns_mode == "host"
    assert flags("--cgroupns", "private").cgroupns_mode == "private"
    with pytest.raises(UsageError, match="--cgroupns: invalid CGROUP mode"):
        flags("--cgroupns", "container:x")
    plan_host = _config(cgroupns_mode="host")
    assert runconfig.inspect_host_config(plan_host)["CgroupnsMode"] == "host"
