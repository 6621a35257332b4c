"""The walls of a default container, each attacked from inside one (tests/probes/attack.c and
busybox), and each attack shown to work where the wall is taken down on purpose (seccomp=unconfined,
--privileged, a rw volume): a test here fails if its wall goes.

Every wall is docker's default: seccomp (docker's profile), capabilities, the devices policy,
volumes read-only and nodev all the way down, no volume over /proc, /sys or minirun's own mounts.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

from minirun.runtime import cgroups
from minirun.runtime.privileges import all_capabilities, capability_mask
from tests.helpers import build_probe, make_image, make_tar, member, wait_until

EPERM, EAGAIN, EACCES, EROFS, ENOSYS = 1, 11, 13, 30, 38
CAPS_DEFAULT = "00000000800405fb"  # docker's 14 capabilities less podman's three drops
# what docker's profile denies and a container's root could otherwise do: (probe, errno under it)
DENIED = {
    "unshare_user": EPERM,
    "clone_newuser": EPERM,
    "clone3_newuser": ENOSYS,
    "keyctl": EPERM,
    "add_key": EPERM,
    "io_uring_setup": EPERM,
    "userfaultfd": EPERM,
    "perf_event_open": EPERM,
    "personality": EPERM,
    "vmsplice": EPERM,  # docker allows it, podman does not (nor we): profiles/seccomp.json
}
# the same calls through the i386 entry (int $0x80), by attack.c's names
I386_PROBES = ("i386_unshare_user", "i386_clone_newuser", "i386_keyctl", "i386_personality", "i386_userfaultfd")


def every_capability() -> str:
    """CapEff of a container given all: the kernel's capabilities that this host's root holds
    (root here lacks CAP_SYS_RESOURCE, see PEERS.md)."""
    with open("/proc/self/status") as f:
        bounding = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    return f"{capability_mask(all_capabilities()) & bounding:016x}"


@pytest.fixture(scope="session")
def attack_dir(tmp_path_factory) -> str:
    return build_probe(tmp_path_factory.mktemp("probes"), "attack")


@pytest.fixture
def probe(attack_dir) -> list[str]:
    """run/exec arguments that put the probe at /probe/attack (a read-only volume)."""
    return ["-v", f"{attack_dir}:/probe:ro"]


def results(text: str) -> dict[str, int]:
    return {name: int(code) for name, code in (line.split() for line in text.splitlines() if line.strip())}


def run(cli, *args: str):
    result = cli("run", "--rm", "--network", "none", *args)
    assert result.code == 0, result
    return result


def status(cli, *args: str) -> dict[str, str]:
    out = run(cli, *args, "busybox", "cat", "/proc/self/status").out
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def inspect(cli, name: str) -> dict:
    result = cli("inspect", name)
    assert result.code == 0, result
    return json.loads(result.out)[0]


def refused(cli, *args: str) -> str:
    """A start that must be refused before anything is created: its one line."""
    result = cli("run", "--rm", "--network", "none", *args)
    assert result.code == 125 and result.out == "", result
    assert result.err.startswith("minirun: error: ") and result.err.count("\n") == 1, result.err
    assert cli("ps", "-aq").out == ""
    return result.err


# -- seccomp ----------------------------------------------------------------------------------------


def test_a_default_container_runs_under_dockers_seccomp_profile(cli, busybox, probe):
    fields = status(cli)
    assert (fields["Seccomp"], fields["Seccomp_filters"], fields["NoNewPrivs"]) == ("2", "1", "1")
    assert fields["CapEff"] == CAPS_DEFAULT
    got = results(run(cli, *probe, "busybox", "/probe/attack", "syscalls").out)
    assert {name: got[name] for name in DENIED} == DENIED
    # and with the wall down on purpose, every one of those works for the container's root
    control = results(
        run(cli, *probe, "--security-opt", "seccomp=unconfined", "busybox", "/probe/attack", "syscalls").out
    )
    assert {name: control[name] for name in DENIED} == {name: 0 for name in DENIED}
    assert status(cli, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"


def test_an_int_argument_with_high_bits_set_is_not_let_past_the_filter(cli, busybox, probe):
    """socket's family is an int to the kernel and 64 bits to libseccomp: socket(1 << 32 | 40)
    reads "family > 40", allowed, to the filter and AF_VSOCK, refused, to the kernel
    (seccompcompile.int_args_stub). With the filter down it gets past (0, or EAFNOSUPPORT on a machine
    without vsock)."""
    assert results(run(cli, *probe, "busybox", "/probe/attack", "syscalls").out)["socket_vsock_high"] == EPERM
    control = run(cli, *probe, "--security-opt", "seccomp=unconfined", "busybox", "/probe/attack", "syscalls")
    assert results(control.out)["socket_vsock_high"] != EPERM


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386 entry of an x86_64 kernel")
def test_the_i386_entry_meets_the_same_rules(cli, busybox, probe):
    """int $0x80 from a 64-bit process: i386's numbers, which the filter checks by arch with
    docker's rules as for x86_64 (its archMap names SCMP_ARCH_X86 under SCMP_ARCH_X86_64)."""
    denied = {name: EPERM for name in DENIED if f"i386_{name}" in I386_PROBES}
    control = results(
        run(cli, *probe, "--security-opt", "seccomp=unconfined", "busybox", "/probe/attack", "syscalls").out
    )
    if control["i386_unshare_user"] == 255:
        pytest.skip("no IA32 emulation in this kernel: int $0x80 is a SIGSEGV")
    assert {name: control[name] for name in I386_PROBES} == {name: 0 for name in I386_PROBES}
    got = results(run(cli, *probe, "busybox", "/probe/attack", "syscalls").out)
    assert {name: got[f"i386_{name}"] for name in denied} == denied


def test_a_syscall_newer_than_the_filter_gets_enosys_as_under_runc(cli, busybox, probe):
    """runc's ENOSYS stub (seccompcompile.enosys_stub): a syscall numbered above every one the filter
    names reads as one an older kernel lacks, so a program falls back; the profile's EPERM would
    fail it. Those docker's profile allows that this libseccomp may not know (statmount, listmount,
    lsm_*, mseal on x86_64: 457-462) are never EPERM, whichever libseccomp compiled the filter."""

    def errno_of(number: int) -> int:
        return results(run(cli, *probe, "busybox", "/probe/attack", "syscall", str(number)).out)["syscall"]

    assert errno_of(1023) == ENOSYS  # above every syscall of today's kernels
    assert errno_of(39) == 0  # getpid: the filter itself still runs after the stub
    if os.uname().machine == "x86_64":
        assert EPERM not in {errno_of(number) for number in range(457, 463)}


def test_namespaces_and_mounts_follow_cap_sys_admin_as_in_docker(cli, busybox, probe):
    """docker's capability-conditional rules: the filter is built for the container's capabilities."""
    plain = results(run(cli, *probe, "busybox", "/probe/attack", "syscalls").out)
    assert (plain["mount_tmpfs"], plain["unshare_mount"], plain["setns"]) == (EPERM, EPERM, EPERM)
    admin = results(run(cli, *probe, "--cap-add", "SYS_ADMIN", "busybox", "/probe/attack", "syscalls").out)
    assert (admin["mount_tmpfs"], admin["unshare_mount"], admin["unshare_user"]) == (0, 0, 0)
    assert admin["setns"] == 22  # past the filter: fd 0 is no namespace
    assert admin["keyctl"] == EPERM  # no capability opens the keyrings


def escalate(cli, probe, version: str, *run_args: str) -> tuple[str, dict[str, int]]:
    """A detached container with limits, whose root tries to lift them from a new user namespace."""
    started = cli("run", "-d", "--network", "none", *probe, *run_args, "busybox", "sleep", "300")
    assert started.code == 0, started
    cid = started.out.strip()
    try:
        if version == "v2":
            unified = next(h for h in cgroups.hierarchies() if h.version == 2)
            with open(f"{unified.path(cid)}/cgroup.max.descendants", "w") as f:
                f.write("5")  # a v2 limit every cgroup has, whatever its controllers
        attack = cli("exec", cid, "/probe/attack", "escalate", version)
        assert attack.code in (0, 1) and attack.err == "", attack  # 1: stopped at unshare
        if version == "v1":
            limits = (cgroup_text(cid, "pids", "pids.max"), cgroup_text(cid, "memory", "memory.limit_in_bytes"))
        else:
            limits = (open(f"{unified.path(cid)}/cgroup.max.descendants").read().strip(),)
        return " ".join(limits), results(attack.out)
    finally:
        assert cli("rm", "-f", cid).code == 0


def cgroup_text(cid: str, controller: str, name: str) -> str:
    with open(f"{cgroups.owner(controller).path(cid)}/{name}") as f:
        return f.read().strip()


def test_a_container_cannot_lift_its_own_v1_limits(cli, busybox, probe):
    if not (cgroups.owner("pids") and cgroups.owner("pids").version == 1 and cgroups.owner("memory").version == 1):
        pytest.skip("no cgroup v1 pids and memory hierarchies on this host")
    limits, steps = escalate(cli, probe, "v1", "--pids-limit", "20", "--memory", "64m")
    assert steps == {"unshare": EPERM} and limits == "20 67108864"
    # the attack itself, where the filter is taken away: the container's root lifts its pids limit
    limits, steps = escalate(
        cli, probe, "v1", "--pids-limit", "20", "--memory", "64m", "--security-opt", "seccomp=unconfined"
    )
    assert steps["mount"] == 0 and steps["pids.max"] == 0 and limits.split()[0] == "max", steps


def test_a_container_cannot_lift_its_own_v2_limits(cli, busybox, probe):
    if not any(h.version == 2 for h in cgroups.hierarchies()):
        pytest.skip("the container has no cgroup v2 hierarchy on this host")
    limits, steps = escalate(cli, probe, "v2")
    assert steps == {"unshare": EPERM} and limits == "5"
    limits, steps = escalate(cli, probe, "v2", "--security-opt", "seccomp=unconfined")
    assert steps["mount"] == 0 and steps["cgroup.max.descendants"] == 0 and limits == "max", steps


def test_ping_sockets_need_no_raw_socket_capability(cli, busybox):
    """docker's default ping_group_range in a network namespace of the container's own: ICMP echo
    sockets for any group, the way to ping without CAP_NET_RAW; the host's namespace keeps its own."""
    assert run(cli, "busybox", "cat", "/proc/sys/net/ipv4/ping_group_range").out.split() == ["0", "2147483647"]
    on_host = cli("run", "--rm", "--network", "host", "busybox", "cat", "/proc/sys/net/ipv4/ping_group_range")
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        assert on_host.out == f.read(), on_host


FORK_BOMB = 2100  # past podman's 2048, far below the host's pid_max


def test_a_fork_bomb_stops_at_podmans_pids_limit(cli, busybox, probe):
    """podman's default pids limit (2048): a container's fork bomb cannot take every PID of the
    host. The attack: fork 2100 processes that wait; with --pids-limit -1 (no limit) all start."""
    if cgroups.owner("pids") is None:
        pytest.skip("no pids controller on this host: podman sets no default either")
    bomb = cli("run", "--rm", "--network", "none", *probe, "busybox", "/probe/attack", "forks", str(FORK_BOMB))
    assert bomb.code == 0 and bomb.out.split()[:1] == ["forks"], bomb
    started, error = map(int, bomb.out.split()[1:3])
    assert error == EAGAIN and started < 2048, bomb  # PID 1 (the probe) counts too
    unlimited = cli(
        "run",
        "--rm",
        "--network",
        "none",
        "--pids-limit",
        "-1",
        *probe,
        "busybox",
        "/probe/attack",
        "forks",
        str(FORK_BOMB),
    )
    assert unlimited.out.split() == ["forks", str(FORK_BOMB), "0"], unlimited


def test_the_default_pids_limit_is_recorded_and_can_be_changed(cli, busybox):
    if cgroups.owner("pids") is None:
        pytest.skip("no pids controller on this host")
    assert cli("create", "--name", "pids-default", "busybox", "true").code == 0
    assert cli("create", "--name", "pids-none", "--pids-limit", "0", "busybox", "true").code == 0
    limits = cli("inspect", "-f", "{{.HostConfig.PidsLimit}}", "pids-default", "pids-none")
    assert limits.out.split() == ["2048", "0"], limits
    assert cli("rm", "pids-default", "pids-none").code == 0


# each v1 hierarchy of the container (id:controllers:path), mounted anew from inside its cgroup
# namespace: the mount's root is where PID 1 was when it unshared that namespace
HIERARCHIES = r"""
while IFS=: read -r id ctrls path; do
  [ "$id" = 0 ] && continue
  mkdir -p /tmp/h$id && mount -t cgroup -o "${ctrls:-none}" cgroup /tmp/h$id || continue
  [ -e /tmp/h$id/release_agent ] && echo "$ctrls release_agent" || echo "$ctrls own"
done < /proc/self/cgroup
"""


def test_no_cgroup_hierarchy_shows_a_cap_sys_admin_container_the_release_agent(cli, busybox):
    """A v1 hierarchy's root holds release_agent, a program the kernel runs as the host's root
    when a cgroup empties (CVE-2022-0492's way out). A container with CAP_SYS_ADMIN may mount
    any v1 hierarchy the kernel has; one it was never put in (name=systemd, which carries no
    controller) came up at its root, release_agent and all. Every one must show its own cgroup."""
    with open("/proc/self/cgroup") as f:
        v1 = [line.split(":")[1] for line in f if not line.startswith("0::")]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy on this host")
    out = run(cli, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", HIERARCHIES).out
    assert sorted(out.splitlines()) == sorted(f"{names} own" for names in v1), out


def test_podmans_own_profile_loads_and_shows_in_inspect(cli, busybox, probe):
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common's seccomp.json is not installed")
    got = results(run(cli, *probe, "--security-opt", f"seccomp={path}", "busybox", "/probe/attack", "syscalls").out)
    # podman's profile differs from docker's where it should: it lets user namespaces in, not userfaultfd
    assert (got["unshare_user"], got["userfaultfd"], got["keyctl"]) == (0, EPERM, 0)
    created = cli(
        "run",
        "--name",
        "pod",
        "--network",
        "none",
        "--security-opt",
        f"seccomp={path}",
        "--security-opt",
        "no-new-privileges=false",
        "busybox",
        "true",
    )
    assert created.code == 0, created
    opts = inspect(cli, "pod")["HostConfig"]["SecurityOpt"]
    with open(path) as f:
        assert [json.loads(o.split("=", 1)[1]) for o in opts if o.startswith("seccomp=")] == [json.load(f)]
    assert "no-new-privileges=false" in opts
    assert inspect_default(cli)["HostConfig"]["SecurityOpt"] is None


def inspect_default(cli) -> dict:
    assert cli("run", "--name", "plain", "--network", "none", "busybox", "true").code == 0
    return inspect(cli, "plain")


def test_no_new_privileges_false_keeps_the_filter(cli, busybox):
    fields = status(cli, "--security-opt", "no-new-privileges=false")
    assert (fields["NoNewPrivs"], fields["Seccomp"], fields["CapEff"]) == ("0", "2", CAPS_DEFAULT)
    fields = status(cli, "--security-opt", "no-new-privileges")
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cap-add", "WIZARD"], 'unknown capability: "CAP_WIZARD"'),
        (["--cap-drop", "net_raw,chown"], 'unknown capability: "CAP_NET_RAW,CHOWN"'),
        (["--security-opt", "seccomp=/nonexistent.json"], "opening seccomp profile (/nonexistent.json) failed"),
        (["--security-opt", "bogus"], "invalid --security-opt: 'bogus'"),
        (["--security-opt", "no-new-privileges=maybe"], "no-new-privileges takes true or false"),
        (["--device", "/etc/hostname"], "not a device node"),
        (["--device", "/dev/null:/etc/null"], "the container path must be under /dev"),
        (["--tmpfs", "/t:size=lots"], "invalid tmpfs option 'size=lots'"),
        (["--tmpfs", "/t:nr_inodes=5"], "invalid tmpfs option 'nr_inodes=5'"),
        (["--tmpfs", "/proc/x"], "inside /proc"),
        (["-v", "/tmp:/proc/sys"], "'/proc/sys' cannot be mounted because it is inside /proc"),
        (["-v", "/tmp:/sys/fs/cgroup/x"], "inside /sys"),
        (["-v", "/dev:/dev"], "/dev is mounted by minirun itself"),
        (["-v", "/tmp:/dev/shm"], "/dev/shm is mounted by minirun itself"),
        (["-v", "/tmp:/x", "--tmpfs", "/x"], "Duplicate mount point: /x"),
    ],
)
def test_bad_security_options_are_one_line_and_create_nothing(cli, busybox, args, message):
    assert message in refused(cli, *args, "busybox", "true")


def test_a_bad_profile_names_the_file(cli, busybox, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_DANCE"}]}')
    assert f"seccomp profile ({bad})" in refused(cli, "--security-opt", f"seccomp={bad}", "busybox", "true")
    bad.write_text("{not json")
    assert f"decoding seccomp profile ({bad}) failed" in refused(
        cli, "--security-opt", f"seccomp={bad}", "busybox", "true"
    )


# -- capabilities -----------------------------------------------------------------------------------


def test_cap_add_and_cap_drop_as_docker_spells_them(cli, busybox):
    every = every_capability()
    assert status(cli, "--cap-drop", "ALL")["CapEff"] == "0" * 16
    assert status(cli, "--cap-drop", "ALL")["CapBnd"] == "0" * 16
    assert status(cli, "--cap-drop", "all", "--cap-add", "cap_chown")["CapBnd"] == f"{1:016x}"
    assert status(cli, "--cap-add", "ALL")["CapEff"] == every
    assert status(cli, "--cap-add", "ALL", "--cap-drop", "SYS_ADMIN")["CapEff"] == f"{int(every, 16) & ~(1 << 21):016x}"
    assert status(cli, "--cap-add", "NET_ADMIN")["CapEff"] == f"{0x800405FB | 1 << 12:016x}"
    chown = cli(
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/x && chown 1 /tmp/x",
    )
    assert chown.code != 0 and "Operation not permitted" in chown.err
    record = cli(
        "run", "--name", "caps", "--network", "none", "--cap-add", "net_admin", "--cap-drop", "MKNOD", "busybox", "true"
    )
    assert record.code == 0, record
    host = inspect(cli, "caps")["HostConfig"]
    assert (host["CapAdd"], host["CapDrop"], host["Privileged"]) == (["CAP_NET_ADMIN"], ["CAP_MKNOD"], False)


def test_exec_privileged_gets_every_capability_and_keeps_the_filter(cli, busybox):
    started = cli("run", "-d", "--name", "ex", "--network", "none", "busybox", "sleep", "300")
    assert started.code == 0, started
    try:
        plain = cli("exec", "ex", "grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status").out.split()
        assert plain == ["CapEff:", CAPS_DEFAULT, "Seccomp:", "2"]
        raised = cli("exec", "--privileged", "ex", "grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status").out.split()
        assert raised == ["CapEff:", every_capability(), "Seccomp:", "2"]
    finally:
        assert cli("rm", "-f", "ex").code == 0


def test_execs_process_never_shows_up_in_the_container_with_more_than_the_container(cli, busybox, probe):
    """exec's stage 2 is born in the container's PID namespace; it used to arrive there with every
    capability of the host's root and no seccomp filter, for as long as its setup took. A root
    there with CAP_SYS_PTRACE (which passes the non-dumpable check) attached to it and could make
    it run any syscall: open_by_handle_at, finit_module, unshare a user namespace. The watcher
    needs no capability: any process may read another's status."""
    started = cli("run", "-d", "--network", "none", *probe, "busybox", "/probe/attack", "watch", "6")
    assert started.code == 0, started
    cid = started.out.strip()
    try:
        assert wait_until(lambda: cli("logs", cid).out.startswith("ready"), timeout=20)
        for _ in range(5):
            assert cli("exec", cid, "true").code == 0
        assert cli("wait", cid).out.strip() == "0"
        assert cli("logs", cid).out == "ready\n"
    finally:
        assert cli("rm", "-f", cid).code == 0


# -- --privileged and devices -------------------------------------------------------------------------

# /dev/kmsg (1:11) opened for writing: a node of the host's kernel that asks for no capability then
DEVICE_TEST = "mknod /dev/probe-kmsg c 1 11; /probe/attack open /dev/probe-kmsg w; /probe/attack open /dev/null w"


def test_privileged_takes_every_wall_down_as_docker_does(cli, busybox, probe):
    out = run(
        cli,
        "--privileged",
        *probe,
        "busybox",
        "sh",
        "-c",
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; cat /sys/fs/cgroup/devices/devices.list 2>/dev/null;"
        "grep -c ' /proc/kcore ' /proc/self/mountinfo; grep ' /sys ' /proc/self/mountinfo | cut -d' ' -f6;"
        "test -c /dev/kmsg && echo host-nodes",
    ).out.split("\n")
    assert out[0].split() == ["CapEff:", every_capability()]
    assert out[1].split() == ["Seccomp:", "0"]
    assert "0" in out and "host-nodes" in out  # /proc/kcore is not masked; the host's nodes are there
    assert any(line.startswith("rw,") for line in out)  # /sys read-write
    if cgroups.owner("devices") is not None:
        assert "a *:* rwm" in out


def test_a_device_node_made_inside_does_not_open(cli, busybox, probe):
    """No node is made by default (no CAP_MKNOD, as podman); with docker's CAP_MKNOD one is made,
    but opening it is refused, but for docker's default devices."""
    made = run(cli, "busybox", "sh", "-c", "mknod /tmp/kmsg c 1 11 2>&1; echo $?").out
    assert "Operation not permitted" in made and made.endswith("\n1\n"), made
    # /dev is nodev (the kernel says EACCES before the devices cgroup is asked); its own nodes are binds
    opened = run(cli, "--cap-add", "MKNOD", *probe, "busybox", "sh", "-c", DEVICE_TEST)
    assert opened.out.split("\n")[:2] == [f"open {EACCES}", "open 0"]
    # the attack where the walls are down on purpose: the host's kernel log opens
    assert run(cli, "--privileged", *probe, "busybox", "sh", "-c", DEVICE_TEST).out.split("\n")[:2] == [
        "open 0",
        "open 0",
    ]


def test_the_devices_cgroup_refuses_what_nodev_would_let_through(cli, busybox, probe):
    """With a tmpfs of its own (CAP_SYS_ADMIN lets it mount one without nodev) only the devices
    policy stands between the container's root and a node of the host's kernel."""
    script = (
        "mkdir /x && mount -t tmpfs none /x && mknod /x/kmsg c 1 11 && mknod /x/null c 1 3 && "
        "/probe/attack open /x/kmsg w && /probe/attack open /x/null w"
    )
    assert run(
        cli, "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD", *probe, "busybox", "sh", "-c", script
    ).out.split() == [
        "open",
        str(EPERM),
        "open",
        "0",
    ]
    assert run(cli, "--privileged", *probe, "busybox", "sh", "-c", script).out.split() == ["open", "0", "open", "0"]


# the container's root lifting its own devices policy: the v1 controller's rules (its cgroup is
# the root of a devices hierarchy it mounts; the `minirun` parent allows all, so the kernel takes
# an "a") and the v2 program (its cgroup2 cgroup, mounted likewise, is the target of a detach)
LIFT_POLICY = (
    "mkdir /x /d /u && mount -t tmpfs none /x && mknod /x/kmsg c 1 11 && "
    "{ mount -t cgroup -o devices cgroup /d && echo a > /d/devices.allow; } 2>/dev/null; "
    "{ mount -t cgroup2 none /u && /probe/attack detach /u; } 2>/dev/null; "
    "/probe/attack open /x/kmsg w"
)


def test_a_cap_sys_admin_container_cannot_lift_its_own_devices_policy(cli, busybox, probe):
    """CAP_SYS_ADMIN lets the container mount its cgroups (each shows its own cgroup at the root)
    and CAP_SYS_ADMIN is what the kernel asks of a devices.allow write or a program's detach:
    the policy must sit where the container cannot write it."""
    out = run(cli, "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD", *probe, "busybox", "sh", "-c", LIFT_POLICY).out
    assert out.splitlines()[-1] == f"open {EPERM}", out


def test_device_adds_a_node_and_its_rule(cli, busybox, probe):
    script = "/probe/attack open /dev/k w; echo x > /dev/mynull && echo wrote"
    out = run(
        cli,
        "--device",
        "/dev/kmsg:/dev/k:r",
        "--device",
        "/dev/null:/dev/mynull",
        *probe,
        "busybox",
        "sh",
        "-c",
        script,
    ).out
    assert out == f"open {EPERM}\nwrote\n"  # the rule grants what it says: reading, not writing
    assert (
        run(cli, "--device", "/dev/kmsg:/dev/k:w", *probe, "busybox", "/probe/attack", "open", "/dev/k", "w").out
        == "open 0\n"
    )
    assert (
        cli("run", "--name", "dev", "--network", "none", "--device", "/dev/kmsg:/dev/k:r", "busybox", "true").code == 0
    )
    assert inspect(cli, "dev")["HostConfig"]["Devices"] == [
        {"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/k", "CgroupPermissions": "r"}
    ]


# -- volumes and tmpfs --------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


@pytest.fixture
def volume_with_submount(tmp_path):
    """A host directory with a tmpfs mounted below it (not nodev), the test's own, unmounted after."""
    top = tmp_path / "vol"
    (top / "sub").mkdir(parents=True)
    (top / "file").write_text("top\n")
    assert _libc.mount(b"tmpfs", str(top / "sub").encode(), b"tmpfs", 0, b"size=1m") == 0, os.strerror(
        ctypes.get_errno()
    )
    (top / "sub" / "file").write_text("sub\n")
    yield top
    subprocess.run(["umount", "-l", str(top / "sub")], check=True)


def test_a_read_only_volume_is_read_only_all_the_way_down(cli, busybox, probe, volume_with_submount):
    top = volume_with_submount
    script = (
        "/probe/attack open /host/file w; /probe/attack open /host/sub/file w; grep ' /host/sub ' /proc/self/mountinfo"
    )
    out = run(cli, "-v", f"{top}:/host:ro", *probe, "busybox", "sh", "-c", script).out.split("\n")
    assert out[:2] == [f"open {EROFS}", f"open {EROFS}"]
    assert {"ro", "nosuid", "nodev"} <= set(out[2].split()[5].split(","))
    # read-write on purpose: the same open works, so the ro above is what refused it
    out = run(cli, "-v", f"{top}:/host", *probe, "busybox", "sh", "-c", script).out.split("\n")
    assert out[:2] == ["open 0", "open 0"]
    assert (top / "sub" / "file").read_text() == "sub\n"


def test_the_hosts_proc_under_a_read_only_root_volume_stays_read_only(cli, busybox, probe):
    """`-v /:/host:ro` used to leave /host/proc writable: /host/proc/sys/kernel/core_pattern opened
    for writing is a way to run any program as the host's root. (Opened for append, never written.)"""
    out = run(
        cli, "-v", "/:/host:ro", *probe, "busybox", "/probe/attack", "open", "/host/proc/sys/kernel/core_pattern", "w"
    ).out
    assert out == f"open {EROFS}\n"


def test_a_device_node_on_a_volumes_submount_does_not_open(cli, busybox, probe, volume_with_submount):
    """nodev on every submount: even --privileged (every device allowed by the cgroup) cannot
    open a node it makes on a volume's submount, where the host's tmpfs would have let it."""
    top = volume_with_submount
    script = "mknod /hd/sub/kmsg c 1 11 && /probe/attack open /hd/sub/kmsg w"
    assert run(cli, "--privileged", "-v", f"{top}:/hd", *probe, "busybox", "sh", "-c", script).out == f"open {EACCES}\n"
    assert (top / "sub" / "kmsg").exists()  # it was made, on the host's tmpfs: only nodev kept it shut


def test_tmpfs_options_are_honoured(cli, busybox, isolated_store):
    script = (
        "stat -c '%a %u %g' /t; df -k /t | tail -1 | awk '{print $2}'; "
        "printf '#!/bin/sh\\necho ran\\n' > /t/x && chmod +x /t/x && /t/x"
    )
    out = run(cli, "--tmpfs", "/t:size=1m,mode=700,uid=5,gid=6,exec", "busybox", "sh", "-c", script).out
    assert out == "700 5 6\n1024\nran\n"
    plain = cli("run", "--rm", "--network", "none", "--tmpfs", "/t", "busybox", "sh", "-c", script)
    assert plain.code != 0 and "Permission denied" in plain.err  # noexec by default, as in docker
    ro = cli("run", "--rm", "--network", "none", "--tmpfs", "/t:ro", "busybox", "touch", "/t/x")
    assert ro.code != 0 and "Read-only file system" in ro.err
    assert cli("run", "--name", "tm", "--network", "none", "--tmpfs", "/t:size=1m,exec", "busybox", "true").code == 0
    assert inspect(cli, "tm")["HostConfig"]["Tmpfs"] == {"/t": "size=1m,exec"}


def test_a_volume_over_hosts_replaces_miniruns_and_lxcfs_files_are_allowed(cli, busybox, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 mine\n")
    out = run(
        cli,
        "-v",
        f"{hosts}:/etc/hosts:ro",
        "-v",
        "/proc/meminfo:/proc/meminfo:ro",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; head -1 /proc/meminfo | cut -d: -f1",
    ).out
    assert out == "10.9.9.9 mine\nMemTotal\n"


@pytest.mark.parametrize(
    "link, flag, message",
    [
        ("/proc", "-v", "/data leads to /proc: '/proc' cannot be mounted because it is inside /proc"),
        ("/proc/sys", "--tmpfs", "/data leads to /proc/sys: '/proc/sys' cannot be mounted because it is inside /proc"),
        (
            "../../sys/kernel",
            "-v",
            "/data leads to /sys/kernel: '/sys/kernel' cannot be mounted because it is inside /sys",
        ),
        ("/dev/pts", "--tmpfs", "/data leads to /dev/pts: /dev/pts is mounted by minirun itself"),
        ("/", "-v", "/data leads to /: destination can't be '/'"),
    ],
)
def test_an_images_link_never_leads_a_volume_where_run_refuses_one(cli, busybox, tmp_path, link, flag, message):
    """An image's `/data -> /proc` turned `-v DIR:/data` into a volume over the container's /proc
    (a fake /proc/self/attr, CVE-2019-19921), `--tmpfs /data` over /proc/sys or /dev/pts: every
    target run refuses as written is refused where a link leads, one line, exit 125."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN mkdir /ok && ln -s {link} /data\n")
    assert cli("build", "-q", "-t", "linked", str(ctx)).code == 0
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "version").write_text("FAKE\n")
    mount = [flag, f"{tmp_path / 'vol'}:/data" if flag == "-v" else "/data"]
    refused = cli("run", "--rm", "--network", "none", *mount, "linked", "cat", "/proc/version")
    assert refused.code == 125 and refused.err == f"minirun: error: invalid mount config: {message}\n", refused
    assert "FAKE" not in refused.out


def test_an_images_link_to_a_plain_dir_still_takes_a_volume(cli, busybox, isolated_store, tmp_path):
    """...in a store whose own path goes through a link too (where a mount lands is asked of fds)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir /ok && ln -s /ok /data\n")
    assert cli("build", "-q", "-t", "linked", str(ctx)).code == 0
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "marker").write_text("mine\n")
    (tmp_path / "via").symlink_to(isolated_store.parent)
    root = str(tmp_path / "via" / isolated_store.name)
    for store in (None, root):
        args = ("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'vol'}:/data", "linked", "cat", "/ok/marker")
        done = cli(*args, root=store)
        assert (done.code, done.out) == (0, "mine\n"), done


# -- what never reaches a container: host fds, the monitor's state ---------------------------------------


def test_a_host_directory_fd_never_follows_pid1_into_its_namespaces(store, busybox, tmp_path):
    """PID 1 closes every fd it inherited right after the fork, before the cgroup, the namespaces
    or any file of the image. Here the image's /etc/passwd is a fifo, so PID 1 waits on it in the
    middle of its setup (after pivot_root) while the test looks at what it holds."""
    make_image(store, "fifo-passwd", [make_tar([member("etc/passwd", tarfile.FIFOTYPE)])], base=busybox)
    secret = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)  # inheritable, as a careless caller's
    env = dict(os.environ, MINIRUN_ROOT=str(store.root))
    cli = subprocess.Popen(
        [sys.executable, "-m", "minirun", "run", "--rm", "--network", "none", "fifo-passwd", "echo", "ran"],
        env=env,
        pass_fds=(secret,),
        stdout=subprocess.PIPE,
    )
    os.close(secret)
    try:
        assert wait_until(lambda: _pid1_of(cli.pid), timeout=20)
        pid1 = _pid1_of(cli.pid)
        fifo = f"/proc/{pid1}/root/etc/passwd"
        # a fifo there means PID 1 is in the image's root; a writer can open it once PID 1 reads it
        assert wait_until(lambda: _is_fifo(fifo), timeout=20)
        writers: list[int] = []
        assert wait_until(lambda: writers.append(_open_writer(fifo)) or writers[-1] is not None, timeout=20)
        writer = writers[-1]
        held = {int(fd): os.readlink(f"/proc/{pid1}/fd/{fd}") for fd in os.listdir(f"/proc/{pid1}/fd")}
        # stdio, the error pipe and (once its open returns) the fifo: nothing of the CLI's
        others = [target for fd, target in held.items() if fd > 2]
        assert sorted(held)[:3] == [0, 1, 2] and len(others) <= 2, held
        assert all(t.startswith("pipe:") or t == "/etc/passwd" for t in others), held
        os.write(writer, b"root:x:0:0:root:/root:/bin/sh\n")
        os.close(writer)
        assert cli.wait(timeout=20) == 0 and cli.stdout.read() == b"ran\n"
    finally:
        if cli.poll() is None:
            for pid in _children(cli.pid):  # a PID 1 stuck on the fifo would outlive its CLI
                os.kill(pid, 9)
            cli.kill()
            cli.wait()
        cli.stdout.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def _pid1_of(client: int) -> int:
    """The client's child that is PID 1 of a PID namespace of its own (its other child is the guard)."""
    for pid in _children(client):
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        except OSError:
            continue
        if nspid[-1:] == ["1"] and len(nspid) > 1:
            return pid
    return 0


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _open_writer(path: str) -> int | None:
    """The fifo's write end, once a reader holds it (ENXIO before: nobody reads it yet)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None


def test_the_monitors_command_line_carries_no_state(cli, busybox, isolated_store):
    started = cli("run", "-d", "--name", "mon", "-p", "127.0.0.1::80", "busybox", "sleep", "300")
    assert started.code == 0, started
    try:
        state = json.loads((isolated_store / "containers" / started.out.strip() / "state.json").read_text())
        assert state["Status"] == "running" and state["NetworkSettings"]["Ports"]
        with open(f"/proc/{state['MonitorPid']}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert not any(b"{" in arg or b"Status" in arg or b"Ports" in arg for arg in argv), argv
    finally:
        assert cli("rm", "-f", "mon").code == 0


def test_a_start_reads_the_compiled_filter_and_never_loads_libseccomp(cli, busybox, isolated_store):
    """Compiling a profile costs ~60 ms (most of it loading libseccomp): done once per profile and
    capability set, kept in the store; every later start only reads the program back."""
    shutil.rmtree(isolated_store / "seccomp")  # the busybox fixture's store has the default's compiled
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    argv = [sys.executable, "-X", "importtime", "-m", "minirun", "run", "--rm", "--network", "none", "busybox", "true"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == again.returncode == 0, (first.stderr[-500:], again.stderr[-500:])
    assert "pyseccomp" in first.stderr and "pyseccomp" not in again.stderr
    assert len(os.listdir(isolated_store / "seccomp")) == 1
