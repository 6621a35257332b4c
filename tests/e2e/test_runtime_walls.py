"""The runtime's own walls, attacked from inside a container the way runc's advisories did: the
host's inodes a container is handed (device nodes, masks) and the host-side processes that show
up in its PID namespace (`exec`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from minirun.runtime import freezer
from tests.helpers import wait_until


def run(cli, *args: str):
    result = cli("run", "--rm", "--network", "none", *args)
    assert result.code == 0, result
    return result


# -- device nodes: the host's inodes, bound -------------------------------------------------------------


@pytest.fixture
def host_node(tmp_path) -> str:
    """A null device node of the test's own, as a host node a --device hands over."""
    node = tmp_path / "node"
    os.mknod(node, 0o20666, os.makedev(1, 3))
    os.chmod(node, 0o666)
    return str(node)


def test_the_container_cannot_chmod_or_chown_the_hosts_device_nodes(cli, busybox, host_node):
    """Each default node, each mask over a /proc file and each --device is the host's inode bound
    in: its mode and owner are the host's (chmod 000 /dev/null would break every host user)."""
    before = os.stat(host_node)
    # each chmod keeps the mode the node has (a no-op on a host where the wall is down), then one
    # that would change it, on the test's own node
    script = (
        "for f in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /proc/keys /dev/mine; do"
        "  chmod 666 $f 2>/dev/null && echo chmod $f; chown 0:0 $f 2>/dev/null && echo chown $f;"
        " done; chmod 600 /dev/mine 2>/dev/null && echo chmod 600; touch -c /dev/mine 2>/dev/null && echo touch;"
        " echo x > /dev/null && echo x > /dev/mine && head -c 3 /dev/zero | wc -c"
    )
    out = run(cli, "--device", f"{host_node}:/dev/mine", "busybox", "sh", "-c", script).out
    assert out == "3\n"  # every change refused; the devices still work
    after = os.stat(host_node)
    assert (after.st_mode, after.st_uid, after.st_ctime_ns) == (before.st_mode, before.st_uid, before.st_ctime_ns)


# -- exec: what the container sees of the host's side --------------------------------------------------


def test_execs_first_process_in_the_pid_namespace_has_the_containers_root(cli, busybox, isolated_store):
    """runc CVE-2019-5736's class: a process of ours that shows up in the container's PID
    namespace with the host's root (or cwd, or namespaces) hands them to a root there that may
    ptrace (--cap-add SYS_PTRACE passes the non-dumpable check): cat /proc/PID/root/etc/shadow.
    The container is frozen, so exec's first process stops where the kernel places it (born in
    the container's cgroup); every process then in the container's PID namespace must have PID
    1's root."""
    started = cli("run", "-d", "--network", "none", "busybox", "sleep", "300")
    assert started.code == 0, started
    cid = started.out.strip()
    pid1 = json.loads(cli("inspect", cid).out)[0]["State"]["Pid"]
    freezer.freeze(cid)
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    execing = subprocess.Popen([sys.executable, "-m", "minirun", "exec", cid, "true"], env=env)
    try:
        assert wait_until(lambda: _in_container(_descendants(execing.pid), cid), timeout=30)
        pid_ns, root = os.stat(f"/proc/{pid1}/ns/pid"), os.stat(f"/proc/{pid1}/root")
        for pid in _descendants(execing.pid):
            try:
                theirs = os.stat(f"/proc/{pid}/ns/pid")
                if (theirs.st_dev, theirs.st_ino) == (pid_ns.st_dev, pid_ns.st_ino):
                    mine = os.stat(f"/proc/{pid}/root")
                    assert (mine.st_dev, mine.st_ino) == (root.st_dev, root.st_ino), f"pid {pid}: the host's root"
            except FileNotFoundError:
                continue
    finally:
        freezer.thaw(cid)
        assert execing.wait(timeout=60) == 0
    assert cli("rm", "-f", cid).code == 0


def _descendants(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return children + [d for child in children for d in _descendants(child)]


def _in_container(pids: list[int], cid: str) -> bool:
    """Whether one of `pids` is in the container's cgroup (there, it is frozen)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if cid in f.read():
                    return True
        except OSError:
            continue
    return False


# -- the CLI's stdio: never a host inode in the container ---------------------------------------------


@pytest.mark.parametrize("verb", ["run", "exec", "runc"])
def test_the_clis_stdout_file_never_reaches_the_container(cli, busybox, isolated_store, tmp_path, verb):
    """`run ... >out` (or >/dev/null, or a terminal) handed the container the host's inode as its
    fd 1: its root chmod-ed it through /proc/self/fd/1 (a setuid root file of its own writing; a
    /dev/null no host user can open). It gets a pipe, as from docker's and podman's shims; through
    `run --runtime runc` too, whose PID 1 had the CLI's own fds."""
    if verb == "runc" and not shutil.which("runc"):
        pytest.skip("no runc")
    out = tmp_path / "out"
    out.write_text("the host's line\n")
    os.chmod(out, 0o644)
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    script = "chmod 4755 /proc/self/fd/1; chmod 4755 /proc/self/fd/2; echo mine; echo also >&2"
    if verb == "exec":
        assert cli("run", "-d", "--name", "target", "--network", "none", "busybox", "sleep", "300").code == 0
        argv = ["exec", "target", "sh", "-c", script]
    else:
        runtime = ["--runtime", "runc"] if verb == "runc" else []
        argv = ["run", "--rm", "--network", "none", *runtime, "busybox", "sh", "-c", script]
    with open(out, "a") as f:
        done = subprocess.run([sys.executable, "-m", "minirun", *argv], stdout=f, stderr=f, env=env, timeout=120)
    assert done.returncode == 0
    assert os.stat(out).st_mode & 0o7777 == 0o644
    assert out.read_text() == "the host's line\nmine\nalso\n"
    if verb == "exec":
        assert cli("rm", "-f", "target").code == 0


@pytest.mark.parametrize("verb", ["run", "start"])
def test_a_detached_containers_stdin_is_no_host_inode(cli, busybox, verb):
    """Without -i, the monitor handed PID 1 its own /dev/null as stdin: the host's inode on the
    host's devtmpfs mount, so `chmod 000 /proc/self/fd/0` in any `run -d` (or `start`) broke
    /dev/null for every host user. PID 1 takes the container's, bound read-only, as `run` does."""
    before = os.stat("/dev/null")
    script = "readlink /proc/self/fd/0; chmod 666 /proc/self/fd/0 2>&1; chown 0:0 /proc/self/fd/0 2>&1; cat"
    if verb == "run":
        started = cli("run", "-d", "--network", "none", "busybox", "sh", "-c", script)
    else:
        started = cli("create", "--network", "none", "busybox", "sh", "-c", script)
        assert started.code == 0 and cli("start", started.out.strip()).code == 0
    assert started.code == 0, started
    cid = started.out.strip()
    assert cli("wait", cid).out.strip() == "0"
    out = cli("logs", cid).out.splitlines()
    assert out[0] == "/dev/null" and all("Read-only file system" in line for line in out[1:]), out
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_uid, after.st_ctime_ns) == (before.st_mode, before.st_uid, before.st_ctime_ns)
    assert cli("rm", cid).code == 0


def test_a_build_runs_step_never_gets_the_clis_output_file(cli, busybox, tmp_path):
    """A RUN is a container too: a Dockerfile's `RUN chmod 4755 /proc/self/fd/1` must not reach
    the file or terminal the build writes to (the test's CLI writes to a memfd, a host inode).
    docker's RUN writes to pipes; so does ours now (stdiorelay.Relay, through a copier)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN for fd in 1 2; do readlink /proc/self/fd/$fd; done\n")
    built = cli("build", "--no-cache", "--progress", "plain", str(tmp_path))
    assert built.code == 0, built
    shown = [line for line in (built.out + built.err).splitlines() if line.startswith(("/", "pipe:", "anon"))]
    assert len(shown) == 2 and all(line.startswith("pipe:") for line in shown), built


# -- users: ids the image's own files give ----------------------------------------------------------


def test_a_passwd_uid_of_minus_one_never_leaves_the_process_root(cli, busybox, tmp_path):
    """An image's /etc/passwd may say `evil:x:4294967295:4294967295`: (uid_t)-1 is "leave it
    unchanged" to setresuid(2), so the process stayed uid 0 (owner of every root file) while
    the image, inspect and ps said otherwise. runc's setuid(2) fails on it: so must we, for the
    image's USER, -u by name or by number, a group's gid, and exec."""
    lines = [
        "evil:x:4294967295:4294967295::/:/bin/sh",
        "half:x:1000:4294967295::/:/bin/sh",
        "app:x:1001:1001::/:/bin/sh",
    ]
    script = " && ".join(f"echo '{line}' >> /etc/passwd" for line in lines)
    script += " && echo 'bad:x:4294967295:app' >> /etc/group"
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN {script}\nUSER evil\n")
    built = cli("build", "-q", "-t", "evil-ids", str(tmp_path))
    assert built.code == 0, built
    cases = [[], ["-u", "evil"], ["-u", "4294967295"], ["-u", "half"], ["-u", "app"], ["-u", "0", "--group-add", "bad"]]
    for args in cases:
        result = cli("run", "--rm", "--network", "none", *args, "evil-ids", "id")
        assert result.code == 125 and "uid=" not in result.out, (args, result)
        assert "uids and gids must be in range 0-2147483647" in result.err, (args, result)
    cid = cli("run", "-d", "--network", "none", "-u", "0", "evil-ids", "sleep", "60").out.strip()
    try:
        result = cli("exec", "-u", "evil", cid, "id")
        assert result.code != 0 and "uid=" not in result.out, result
    finally:
        cli("rm", "-f", cid)


def test_a_working_dir_with_dot_dots_is_made_in_the_container_as_docker_cleans_it(cli, busybox, tmp_path):
    """An image's WorkingDir (or -w) may climb: `/../../<host dir>/../x`. docker cleans it to
    `/<...>/x`, in the container; makedirs stumbled on the `..` and the container never ran."""
    host = tmp_path / "wd"
    workdir = "/../../" + str(host).lstrip("/") + "/../wd"
    result = cli("run", "--rm", "--network", "none", "-w", workdir, "busybox", "pwd")
    assert result.code == 0 and result.out == f"{host}\n", result
    assert not host.exists()


# -- the user database: what the image or the container put at /etc/passwd ---------------------------


def test_a_passwd_that_never_ends_is_refused_not_read_whole(cli, busybox, store):
    """/etc/passwd a link to /dev/zero (the container's own, or an image's): run and exec read
    it whole, PID 1 or the exec'd process filling memory until the OOM killer came (here the
    container's limit; without one, the host's). runc's reader stops at a 64 KiB line. A link
    to /dev/null reads as empty, as in docker."""
    swap = "rm /etc/passwd; ln -s /dev/zero /etc/passwd; touch /ready; exec sleep 300"
    assert cli("run", "-d", "--name", "zero", "-m", "64m", "--network", "none", "busybox", "sh", "-c", swap).code == 0
    assert wait_until(lambda: "A /ready" in cli("diff", "zero").out)
    refused = cli("exec", "zero", "true")
    message = "minirun: error: cannot resolve the container's user: /etc/passwd is over 1048576 bytes\n"
    assert (refused.code, refused.err) == (125, message)
    assert cli("commit", "zero", "zeropasswd").code == 0
    refused = cli("run", "--rm", "-m", "64m", "--network", "none", "zeropasswd", "true")
    assert (refused.code, refused.err) == (125, message)
    setup = "rm /etc/passwd; ln -s /dev/null /etc/passwd; touch /ready; exec sleep 300"
    assert cli("run", "-d", "--name", "null", "--network", "none", "busybox", "sh", "-c", setup).code == 0
    assert wait_until(lambda: "A /ready" in cli("diff", "null").out)
    assert cli("exec", "-u", "0", "null", "true").code == 0
