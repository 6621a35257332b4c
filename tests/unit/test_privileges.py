"""The pure half of the walls: capabilities and --security-opt (privileges.py), seccomp profiles
resolved as docker resolves them (seccompcompile.py), tmpfs options and volume targets (rootfs.py),
--device and the v1 device rules (devices.py). No root needed."""

from __future__ import annotations

import json
import os
import stat

import pytest

from minirun.errors import UsageError
from minirun.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
from minirun.runtime import devices, privileges, seccomp, seccompcompile
from minirun.runtime.rootfs import TMPFS_FLAGS, check_targets, tmpfs_mount

DOCKER = list(privileges.DEFAULT_CAPABILITIES)


# -- capabilities ------------------------------------------------------------------------------------


def test_capability_names_normalize_as_docker_records_them():
    assert privileges.normalize_capabilities(["net_admin", "CAP_SYS_TIME", "all", "NET_ADMIN"]) == [
        "CAP_NET_ADMIN",
        "CAP_SYS_TIME",
        "ALL",
    ]
    with pytest.raises(UsageError, match='unknown capability: "CAP_WIZARD"'):
        privileges.normalize_capabilities(["wizard"])


@pytest.mark.parametrize(
    "add,drop,privileged,expected",
    [
        ([], [], False, DOCKER),
        (["CAP_NET_ADMIN"], ["CAP_CHOWN"], False, [c for c in DOCKER if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN"]),
        (["CAP_CHOWN"], [], False, DOCKER),  # already there: not twice
        ([], ["ALL"], False, []),
        (["CAP_KILL"], ["ALL"], False, ["CAP_KILL"]),
        (["ALL"], ["CAP_SYS_ADMIN"], False, [c for c in privileges.CAPABILITIES if c != "CAP_SYS_ADMIN"]),
        ([], ["ALL"], True, list(privileges.CAPABILITIES)),  # privileged wins, as in docker
    ],
)
def test_container_capabilities_follow_dockers_rules(add, drop, privileged, expected):
    assert privileges.container_capabilities(add, drop, privileged, last_cap=40) == expected


def test_all_capabilities_stop_at_the_kernels_last():
    assert privileges.all_capabilities(37)[-1] == "CAP_AUDIT_READ"
    assert len(privileges.all_capabilities(40)) == 41


# -- --security-opt -------------------------------------------------------------------------------------


def test_security_opts_are_recorded_as_docker_records_them(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": []\n}\n')
    opts = privileges.parse_security_opts(
        ["no-new-privileges", "no-new-privileges:false", f"seccomp={profile}", "apparmor=unconfined", "label:disable"]
    )
    assert opts == [
        "no-new-privileges=true",
        "no-new-privileges=false",
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}',
        "apparmor=unconfined",
        "label=disable",
    ]
    assert privileges.no_new_privileges([]) is True  # minirun's default
    assert privileges.no_new_privileges(opts) is False  # the last one says
    assert privileges.parse_security_opts(["seccomp=unconfined"]) == ["seccomp=unconfined"]
    assert privileges.parse_security_opts(["seccomp=builtin"]) == ["seccomp=builtin"]  # docker's default profile
    assert not privileges.seccomp_unconfined(["seccomp=builtin"], False)


def test_an_engine_api_seccomp_value_is_the_profiles_json_never_a_path(tmp_path):
    """docker's CLI reads the file and sends its content; the server opens no path it is sent."""
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    sent = '{"defaultAction": "SCMP_ACT_ALLOW",\n "syscalls": []}'
    assert privileges.parse_security_opts([f"seccomp={sent}"], inline_profiles=True) == [
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}'
    ]
    assert privileges.parse_security_opts(["seccomp=unconfined", "seccomp=builtin"], inline_profiles=True) == [
        "seccomp=unconfined",
        "seccomp=builtin",
    ]
    for bad in (str(profile), "{", '{"defaultAction": "SCMP_ACT_NOPE"}', "[]"):
        with pytest.raises(UsageError, match=r"seccomp profile \(HostConfig.SecurityOpt\)"):
            privileges.parse_security_opts([f"seccomp={bad}"], inline_profiles=True)


def test_a_builtin_seccomp_names_the_default_profile():
    from minirun.runtime import seccomp

    with open(seccomp.DEFAULT_PROFILE) as f:
        default = f.read()
    assert seccomp.profile_text(["seccomp=builtin"]) == seccomp.profile_text([]) == default
    assert seccomp.profile_text(["seccomp={}"]) == "{}"
    assert privileges.seccomp_unconfined(["seccomp=unconfined"], False)
    assert privileges.seccomp_unconfined([], True) and not privileges.seccomp_unconfined([], False)


@pytest.mark.parametrize(
    "opt,message",
    [
        ("bogus", "invalid --security-opt"),
        ("seccomp", "invalid --security-opt"),
        ("no-new-privileges=yes", "takes true or false"),
        ("selinux=x", "invalid --security-opt"),
        ("seccomp=/nonexistent", "opening seccomp profile (/nonexistent) failed: no such file or directory"),
    ],
)
def test_bad_security_opts(opt, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        privileges.parse_security_opts([opt])


@pytest.mark.parametrize(
    "profile,message",
    [
        ("[]", "not a JSON object"),
        ('{"defaultAction": "SCMP_ACT_DANCE"}', "unknown defaultAction"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x"], "archMap": [{}]}', "either 'architectures'"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x"}', "listeners are not supported"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW"]}', "unknown flag"),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}',
            "names no syscall",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}',
            "both 'name' and 'names'",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
            ' "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]}',
            "bad argument condition",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
            ' "args": [{"index": "x", "value": 0, "op": "SCMP_CMP_EQ"}]}]}',
            "bad argument condition",
        ),
    ],
)
def test_profiles_docker_would_refuse_are_refused(tmp_path, profile, message):
    path = tmp_path / "p.json"
    path.write_text(profile)
    with pytest.raises(UsageError, match=message):
        seccompcompile.read_profile(str(path))


# -- the default profile and docker's resolution of a profile ------------------------------------------


def default_profile() -> dict:
    with open(seccomp.DEFAULT_PROFILE) as f:
        return json.load(f)


def allowed(resolved: dict) -> set[str]:
    return {
        name
        for action, _, names, args in resolved["rules"]
        if action == "SCMP_ACT_ALLOW" and not args
        for name in names
    }


def test_the_default_profile_denies_what_docker_denies():
    profile = default_profile()
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    plain = seccompcompile.resolve(profile, frozenset(DOCKER), "x86_64", "6.18.0")
    never = {
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "io_uring_enter",
        "userfaultfd",
        "kexec_load",
        "swapon",
        "open_by_handle_at",
        "bpf",
        "perf_event_open",
        "unshare",
        "mount",
        "setns",
        "umount2",
        "pivot_root",
        "fsopen",
        "move_mount",
        "clone3",
        "ptrace_with_no_kernel",
        "reboot",
        "init_module",
    }
    assert not never & allowed(plain)
    assert {"read", "write", "execve", "clone3"} - allowed(plain) == {"clone3"}
    # clone3 answers ENOSYS (libc then uses clone); clone itself only without namespace flags
    assert ("SCMP_ACT_ERRNO", 38, ["clone3"], []) in plain["rules"]
    [clone] = [r for r in plain["rules"] if r[2] == ["clone"]]
    assert clone[3] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    assert plain["arches"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def test_capability_conditional_rules_resolve_against_the_containers_capabilities():
    admin = seccompcompile.resolve(default_profile(), frozenset(DOCKER + ["CAP_SYS_ADMIN"]), "x86_64", "6.18.0")
    assert {"unshare", "mount", "setns", "clone", "clone3", "bpf", "perf_event_open"} <= allowed(admin)
    assert not any(r[2] == ["clone3"] and r[0] == "SCMP_ACT_ERRNO" for r in admin["rules"])
    assert "keyctl" not in allowed(admin)
    ptrace = seccompcompile.resolve(default_profile(), frozenset(DOCKER), "x86_64", "4.4.0")
    assert "ptrace" not in allowed(ptrace)  # before 4.8 ptrace could step around seccomp


def test_includes_and_excludes_by_arch_and_kernel():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["c"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}},
            {"names": ["d"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"name": "e", "action": "SCMP_ACT_TRACE"},
        ],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    }
    amd = seccompcompile.resolve(profile, frozenset(), "x86_64", "6.1.0-13-amd64")
    assert [r[2] for r in amd["rules"]] == [["d"], ["e"]]
    assert amd["rules"][1][:2] == ("SCMP_ACT_TRACE", 1) and amd["flags"] == 2
    arm = seccompcompile.resolve(profile, frozenset(), "aarch64", "5.4.0")
    assert [r[2] for r in arm["rules"]] == [["a"], ["b"], ["c"], ["d"], ["e"]]


def test_a_compiled_program_is_cached_per_profile_and_capabilities(tmp_path):
    text = json.dumps(default_profile())
    first = seccomp.program_for(str(tmp_path), text, DOCKER)
    assert len(first.code) % 8 == 0 and len(first.code) > 8 * 300
    [cached] = os.listdir(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / cached).st_mode) == 0o600
    again = seccomp.program_for(str(tmp_path), text, list(reversed(DOCKER)))
    assert (again.code, len(os.listdir(tmp_path))) == (first.code, 1)  # read back, not recompiled
    admin = seccomp.program_for(str(tmp_path), text, DOCKER + ["CAP_SYS_ADMIN"])
    assert admin.code != first.code and len(os.listdir(tmp_path)) == 2


# -- tmpfs, volume targets, devices ----------------------------------------------------------------------


def test_tmpfs_options():
    plain = tmpfs_mount("/t")
    assert (plain.target, plain.flags, plain.data) == ("/t", TMPFS_FLAGS, None)
    tuned = tmpfs_mount("/run/x/:size=64m,mode=1770,uid=1000,gid=1000,exec,dev,suid,ro,size=1g")
    assert tuned.target == "/run/x" and tuned.data == "mode=1770,uid=1000,gid=1000,size=1g"
    assert tuned.flags & (MS_NOEXEC | MS_NODEV | MS_NOSUID) == 0 and tuned.flags & MS_RDONLY
    assert tmpfs_mount("/t:size=50%,noexec").data == "size=50%"
    for bad in (
        "/t:size=",
        "/t:size=1x",
        "/t:mode=999",
        "/t:mode=",
        "/t:uid=-1",
        "/t:nr_inodes=5",
        "/t:bogus",
        "/t:ro=1",
        "/t:size=١",
    ):
        with pytest.raises(UsageError, match="invalid tmpfs option"):
            tmpfs_mount(bad)


@pytest.mark.parametrize(
    "targets,message",
    [
        (["/proc"], "inside /proc"),
        (["/proc/sys/kernel"], "inside /proc"),
        (["/sys"], "inside /sys"),
        (["/sys/fs/cgroup"], "inside /sys"),
        (["/dev"], "mounted by minirun itself"),
        (["/dev/pts"], "mounted by minirun"),
        (["/dev/mqueue/"], "mounted by minirun"),
        (["/data", "/data/"], "Duplicate mount point: /data"),
        (["relative"], "must be absolute"),
        (["/"], "can't be '/'"),
    ],
)
def test_targets_that_would_undo_a_wall_are_refused(targets, message):
    with pytest.raises(UsageError, match=message):
        check_targets(targets)


def test_targets_docker_allows_pass():
    check_targets(["/proc/cpuinfo", "/proc/meminfo", "/dev/fuse", "/etc/hosts", "/data", "/data2/x"])


def test_device_specifications():
    assert devices.parse_device("/dev/null") == ["/dev/null", "/dev/null", "rwm"]
    assert devices.parse_device("/dev/null:/dev/xnull") == ["/dev/null", "/dev/xnull", "rwm"]
    assert devices.parse_device("/dev/null:r") == ["/dev/null", "/dev/null", "r"]
    assert devices.parse_device("/dev/null:/dev/a/b:rw") == ["/dev/null", "/dev/a/b", "rw"]
    for bad, message in (
        ("/dev/null:/etc/x", "under /dev"),
        ("/etc/hostname", "not a device node"),
        ("/dev/nope", "no such file"),
        ("dev/null", "absolute"),
        ("/dev/null:/dev/x:y:z", "invalid device"),
    ):
        with pytest.raises(UsageError, match=message):
            devices.parse_device(bad)


def test_v1_lines_deny_everything_first():
    lines = devices.v1_lines([("c", 1, 3, "rwm"), ("b", -1, -1, "m"), ("c", 136, -1, "rw")])
    assert lines == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "b *:* m"),
        ("devices.allow", "c 136:* rw"),
    ]
    assert devices.v1_lines(list(devices.ALL_DEVICES)) == [("devices.deny", "a"), ("devices.allow", "a")]
    assert devices.rules_for([], True) == list(devices.ALL_DEVICES)
    assert devices.rules_for([["/dev/null", "/dev/n", "r"]], False)[-1] == ("c", 1, 3, "r")


def test_device_cgroup_rules_are_dockers_pattern_and_only_rules():
    assert devices.parse_cgroup_rule("c 10:229 rw") == ("c", 10, 229, "rw")
    assert devices.parse_cgroup_rule("b 8:* r") == ("b", 8, -1, "r")
    assert devices.parse_cgroup_rule("c *:* m") == ("c", -1, -1, "m")
    assert devices.parse_cgroup_rule("c 1:3 rrw") == ("c", 1, 3, "rw")  # as the kernel reads "rrw"
    assert devices.parse_cgroup_rule("c 1:3 mwr") == ("c", 1, 3, "rwm")
    # an "a" rule is every device, whatever else it says: runc's emulator and the v1 kernel read it so
    assert devices.parse_cgroup_rule("a 1:3 r") == devices.ALL_DEVICES[0]
    for bad in (
        "c 1:3",
        "c 1:3 rwx",
        "c 1:3 rwmr",
        "x 1:3 r",
        "c 1 r",
        "c a:3 r",
        "c 1:3 r\n",
        "c  1:3 r",
        "",
        "c 1:-1 r",
    ):
        with pytest.raises(ValueError):
            devices.parse_cgroup_rule(bad)
    with pytest.raises(ValueError):
        devices.parse_cgroup_rule(f"c {1 << 32}:1 r")
    rules = devices.rules_for([], False, ["c 10:229 r", "b 7:* rw"])
    assert rules == [*devices.DEFAULT_RULES, ("c", 10, 229, "r"), ("b", 7, -1, "rw")]
    assert devices.rules_for([], True, ["c 10:229 r"]) == list(devices.ALL_DEVICES)
    with pytest.raises(UsageError, match="invalid device cgroup rule format: 'c 10'"):
        devices.rules_for([], False, ["c 10"])
    devices.bpf_program([("c", (1 << 32) - 1, 1, "r")])  # a number past the BPF's signed imm still packs


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--device-cgroup-rule", "c 1:3"], 'invalid argument "c 1:3" for "--device-cgroup-rule" flag'),
        (["--oom-score-adj", "1001"], "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
        (["--oom-score-adj", "-1001"], "Invalid value -1001, range for oom score adj is [-1000, 1000]"),
        (["--oom-score-adj", "x"], 'invalid argument "x" for "--oom-score-adj" flag: strconv.ParseInt'),
    ],
)
def test_bad_oom_score_adj_and_device_cgroup_rules(argv, message):
    from minirun.cli.runargs import parse_run_args

    with pytest.raises(UsageError) as err:
        parse_run_args([*argv, "img"])
    assert message in err.value.message


def test_oom_score_adj_and_device_cgroup_rules_are_recorded():
    from minirun.cli.runargs import parse_run_args

    opts = parse_run_args(["--oom-score-adj", "-500", "--device-cgroup-rule", "c 10:* rw", "img"])
    assert (opts.flags.oom_score_adj, opts.device_cgroup_rules) == (-500, ["c 10:* rw"])
    opts = parse_run_args(["img"])
    assert (opts.flags.oom_score_adj, opts.device_cgroup_rules) == (0, [])
