"""`minirun run --runtime`: the same options run in-process and through an OCI runtime (runc,
and minirun-oci, from the bundle minirun writes) give the container the same view of itself:
ids, capabilities, seccomp, no_new_privs, hostname, environment, working directory, rlimits,
mounts, sysctls and cgroup limits. What only the runtime decides is left out of the comparison,
said where: /dev's nodes are bound from the host in-process and made with mknod by runc (so are
the masks made of them), and runc mounts the name=systemd hierarchy where minirun mounts cgroup2."""

from __future__ import annotations

import os
import shutil

import pytest

from minirun.runtime import cgroups

PROBE = r"""
id; id -G; hostname; pwd; env | sort
grep -E '^(Cap|NoNewPrivs|Seccomp|Groups)' /proc/self/status
cat /proc/self/oom_score_adj; ulimit -a | sort
echo mounts; awk '{print $2}' /proc/self/mounts | sort
echo dev; ls /dev | sort
echo ro; touch /x 2>&1; grep -E ' /(scratch|hosttmp) ' /proc/self/mounts | cut -d' ' -f2-4
echo sysctl; cat /proc/sys/kernel/shm_rmid_forced
echo limits; cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1
cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares 2>&1
"""
# what each runtime decides on its own (the module's docstring)
_DEV_NODES = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom", "tty")}


def _comparable(out: str) -> list[str]:
    lines = []
    for line in out.splitlines():
        if line.startswith("HOSTNAME=") or line in _DEV_NODES or line == "core":
            continue
        if line.startswith("/sys/fs/cgroup/") and line.count("/") == 4:
            continue
        lines.append(line)
    return lines


@pytest.fixture(autouse=True)
def _root_and_runc(isolated_store):
    if os.geteuid() != 0 or not cgroups.hierarchies():
        pytest.skip("needs root and cgroups")
    yield


VARIANTS = {
    "root": [
        *("-e", "A=b", "-w", "/tmp/work", "--ulimit", "nofile=1024:2048"),
        *("--memory", "64m", "--pids-limit", "77", "--cap-add", "SYS_PTRACE", "--cap-drop", "CHOWN"),
        *("--cpus", "0.5", "--cpu-shares", "512"),
    ],
    "user": [
        *("-u", "nobody", "--group-add", "10", "--read-only", "--tmpfs", "/scratch", "-v", "/usr/share:/hosttmp:ro"),
        *("--sysctl", "kernel.shm_rmid_forced=1", "--security-opt", "no-new-privileges=false"),
    ],
}


@pytest.mark.parametrize("runtime", ["runc", "minirun-oci"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_container_sees_the_same_through_a_runtime(cli, busybox, runtime, variant):
    if runtime == "runc" and not shutil.which("runc"):
        pytest.skip("no runc")
    argv = ["run", "--rm", "--network", "none", "--hostname", "twin", *VARIANTS[variant]]
    inside = cli(*argv, "busybox", "sh", "-c", PROBE)
    through = cli(*argv, "--runtime", runtime, "busybox", "sh", "-c", PROBE)
    assert inside.code == through.code == 0, (inside, through)
    assert _comparable(through.out) == _comparable(inside.out)
    assert "Seccomp:\t2" in inside.out and "/etc/hosts" in inside.out
    assert cli("ps", "-a", "-q").out == ""  # --rm took both


# Root in the container tries to lift its own limits through /sys/fs/cgroup (v1 or v2 paths).
LIFT = r"""
for f in pids/pids.max pids.max; do [ -e /sys/fs/cgroup/$f ] && { echo max > /sys/fs/cgroup/$f; cat /sys/fs/cgroup/$f; }; done
for f in memory/memory.limit_in_bytes memory.max; do
  [ -e /sys/fs/cgroup/$f ] && { echo 1073741824 > /sys/fs/cgroup/$f; cat /sys/fs/cgroup/$f; }
done
where=/sys/fs/cgroup; [ -d $where/memory ] && where=$where/memory  # a cgroup dir: v1's memory, or v2's root
mkdir $where/escape 2>/dev/null && echo made a cgroup
true
"""


@pytest.mark.parametrize("runtime", ["runc", "minirun-oci"])
def test_the_cgroup_limits_stay_out_of_the_containers_reach(cli, busybox, runtime):
    """docker mounts /sys/fs/cgroup read-only: a runtime given the bundle must too, or root in
    the container raises its own memory and pids limits (the in-process path's wall)."""
    if runtime == "runc" and not shutil.which("runc"):
        pytest.skip("no runc")
    done = cli(
        "run", "--rm", "--runtime", runtime, "--memory", "64m", "--pids-limit", "20", "busybox", "sh", "-c", LIFT
    )
    assert done.code == 0, done
    assert done.out.split() == ["20", str(64 << 20)], done.out
    assert "made a cgroup" not in done.out and "Read-only file system" in done.err


def test_exit_code_stdin_and_the_record(cli, busybox):
    if not shutil.which("runc"):
        pytest.skip("no runc")
    done = cli("run", "--network", "none", "--name", "viarunc", "--runtime", "runc", "busybox", "sh", "-c", "exit 7")
    assert done.code == 7
    state = cli("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "viarunc")
    assert state.out.split() == ["exited", "7"]
    again = cli("start", "viarunc")  # minirun's monitor would start it in-process: refused
    assert again.code != 0 and "runs with --runtime runc: start it again with `run --runtime`" in again.err
    assert cli("rm", "viarunc").code == 0
    echoed = cli("run", "--rm", "-i", "--network", "none", "--runtime", "runc", "busybox", "cat", input=b"hello\n")
    assert (echoed.code, echoed.out) == (0, "hello\n")


def test_rm_after_the_run_was_killed_leaves_nothing_of_the_runtimes(cli, busybox, isolated_store):
    """The run deletes its runtime's container at its end; killed first, it cannot: rm -f must
    (runc's state under minirun's --root, and the cgroups runc made)."""
    import signal
    import subprocess

    from minirun import hostwide
    from tests.helpers import minirun_started, wait_until

    if not shutil.which("runc"):
        pytest.skip("no runc")
    run = minirun_started(isolated_store, "run", "--name", "killed", "--runtime", "runc", "busybox", "sleep", "3600")
    try:
        assert wait_until(lambda: cli("inspect", "-f", "{{.State.Status}}", "killed").out == "running\n")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    cid = cli("inspect", "-f", "{{.Id}}", "killed").out.strip()
    assert cli("rm", "-f", "killed").code == 0
    root = os.path.join(hostwide.RUN_DIR, "runtimes", "runc")
    listed = subprocess.run(["runc", "--root", root, "list", "-q"], capture_output=True, text=True)
    assert cid not in listed.stdout.split(), listed
    assert wait_until(lambda: not cgroups.existing_paths(cid)), cgroups.existing_paths(cid)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-d"], "--runtime with -d is not supported"),
        (["--restart", "always"], "--runtime with --restart is not supported"),
    ],
)
def test_what_only_the_in_process_path_does_is_refused(cli, busybox, args, words):
    if not shutil.which("runc"):
        pytest.skip("no runc")
    done = cli("run", "--runtime", "runc", *args, "busybox", "true")
    assert done.code == 125 and done.err.splitlines()[-1].startswith("minirun: error: " + words)
    assert cli("ps", "-a", "-q").out == ""


def test_a_bridge_network_through_runc_is_the_same(cli, busybox):
    """eth0 made by minirun in the network namespace runc made, while PID 1 waits for `start`."""
    if not shutil.which("runc"):
        pytest.skip("no runc")
    probe = "ip -4 -o addr show eth0 | awk '{print $4}'; ip route | awk '/default/{print $3}'"
    inside = cli("run", "--rm", "busybox", "sh", "-c", probe)
    through = cli(
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--cap-add",
        "NET_RAW",  # busybox's ping: a raw socket
        "busybox",
        "sh",
        "-c",
        probe + "; ping -c1 -W5 $(ip route | awk '/default/{print $3}') >/dev/null && echo reached",
    )
    assert inside.code == through.code == 0, (inside, through)
    address, gateway = inside.out.split()
    assert "/" in address
    assert through.out.split()[1:] == [gateway, "reached"]


def test_an_unknown_runtime_is_dockers_error(cli, busybox):
    done = cli("run", "--rm", "--runtime", "nosuchruntime", "busybox", "true")
    assert (done.code, done.err.strip()) == (125, "minirun: error: unknown or invalid runtime name: nosuchruntime")
    assert cli("ps", "-a", "-q").out == ""
