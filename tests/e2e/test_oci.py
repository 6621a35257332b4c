"""`minirun-oci`, runc's command line, on bundles of the embedded busybox root, against the real
kernel: the create/start split, state, kill, delete, run's exit code, --console-socket, the
process settings of config.json, exec, pause, update; and a state beside runc's on the same
bundle. Each test has its own --root; every container goes with the test."""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from minirun import hostwide
from minirun.runtime import cgroups
from tests.helpers import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OCI = [sys.executable, "-m", "minirun.oci.main"]


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory):
    path = tmp_path_factory.mktemp("oci-busybox") / "rootfs.tar"
    with open(path, "wb") as out:
        subprocess.run([sys.executable, os.path.join(REPO, "images", "busybox", "rootfs.py")], stdout=out, check=True)
    return path


class Oci:
    """minirun-oci with a --root of the test's own."""

    def __init__(self, root: str) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # files, not pipes: a created container keeps the stdio it was given (as runc's does), so
        # a pipe would see no EOF before the container's end
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = subprocess.run(
                [*OCI, "--root", self.root, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=60
            ).returncode
            out.seek(0)
            err.seek(0)
            done = subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def state(self, container_id: str) -> dict:
        return json.loads(self("state", container_id).stdout)

    def status(self, container_id: str) -> str:
        return self.state(container_id)["status"]


@pytest.fixture
def oci(tmp_path):
    runtime = Oci(str(tmp_path / "oci-root"))
    yield runtime
    for name in os.listdir(runtime.root) if os.path.isdir(runtime.root) else []:
        runtime("delete", "--force", name, check=False)
    assert not os.listdir(runtime.root) if os.path.isdir(runtime.root) else True


@pytest.fixture
def bundle(tmp_path, busybox_tar, oci):
    """make(args, **process/linux changes) -> a bundle dir from `minirun-oci spec`."""

    def make(args: list[str], name: str = "bundle", edit=None) -> str:
        path = tmp_path / name
        (path / "rootfs").mkdir(parents=True)
        subprocess.run(["tar", "-x", "-f", str(busybox_tar), "-C", str(path / "rootfs")], check=True)
        subprocess.run([*OCI, "spec", "--bundle", str(path)], check=True)
        config = json.loads((path / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        if edit is not None:
            edit(config)
        (path / "config.json").write_text(json.dumps(config))
        return str(path)

    return make


def cgroup_dirs(container_id: str) -> list[str]:
    return [h.at(f"{hostwide.CGROUP_PARENT}/{container_id}") for h in cgroups.hierarchies()]


def cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def test_spec_writes_runcs_default_config(tmp_path):
    subprocess.run([*OCI, "spec", "--bundle", str(tmp_path)], check=True)
    ours = json.loads((tmp_path / "config.json").read_text())
    assert ours["root"] == {"path": "rootfs", "readonly": True}
    assert ours["process"]["terminal"] is True and ours["process"]["args"] == ["sh"]
    again = subprocess.run([*OCI, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr
    if shutil.which("runc"):
        runc_dir = tmp_path / "runc"
        runc_dir.mkdir()
        subprocess.run(["runc", "spec"], cwd=runc_dir, check=True)
        theirs = json.loads((runc_dir / "config.json").read_text())
        assert [m["destination"] for m in ours["mounts"]] == [m["destination"] for m in theirs["mounts"]]
        assert ours["linux"]["maskedPaths"] == theirs["linux"]["maskedPaths"]
        assert ours["linux"]["readonlyPaths"] == theirs["linux"]["readonlyPaths"]
        assert ours["process"]["capabilities"] == theirs["process"]["capabilities"]


def test_features_name_what_is_supported():
    features = json.loads(subprocess.run([*OCI, "features"], capture_output=True, check=True).stdout)
    assert "poststop" in features["hooks"] and "rbind" in features["mountOptions"]
    assert set(features["linux"]["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "cgroup"}


def test_create_start_kill_delete(oci, bundle, tmp_path):
    path = bundle(["sleep", "300"])
    pid_file = tmp_path / "pid"
    oci("create", "--bundle", path, "--pid-file", str(pid_file), "box")
    pid = int(pid_file.read_text())
    state = oci.state("box")
    assert state["status"] == "created" and state["pid"] == pid and state["id"] == "box"
    assert state["bundle"] == path and state["ociVersion"]
    assert b"sleep" not in cmdline(pid)  # set up, waiting before execve
    assert all(os.path.isdir(d) for d in cgroup_dirs("box"))
    oci("start", "box")
    assert oci.status("box") == "running"
    assert cmdline(pid) == b"sleep\x00300\x00"
    again = oci("start", "box", check=False)
    assert again.returncode == 1 and "running" in again.stderr
    refused = oci("delete", "box", check=False)
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    oci("kill", "box", "KILL")
    assert wait_until(lambda: oci.status("box") == "stopped")
    assert oci.state("box")["pid"] == 0
    oci("delete", "box")
    assert oci("state", "box", check=False).returncode == 1
    assert not any(os.path.isdir(d) for d in cgroup_dirs("box"))


def test_delete_force_kills_a_running_container(oci, bundle):
    oci("run", "-d", "--bundle", bundle(["sleep", "300"]), "forced")
    pid = oci.state("forced")["pid"]
    oci("delete", "--force", "forced")
    assert not os.path.exists(f"/proc/{pid}") or b"sleep" not in cmdline(pid)
    assert json.loads(oci("list", "--format", "json").stdout) == []


def test_run_gives_the_exit_code_and_output(oci, bundle):
    path = bundle(["sh", "-c", "echo out; echo err >&2; env | sort | tr '\\n' ' '; hostname; exit 7"])
    done = oci("run", "--bundle", path, "runner", check=False)
    assert done.returncode == 7, done.stderr
    # the env as config.json gives it: no HOSTNAME added (docker would)
    assert done.stdout.splitlines() == [
        "out",
        "HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PWD=/ SHLVL=1 TERM=xterm minirun",
    ]
    assert done.stderr == "err\n"
    assert not os.path.exists(os.path.join(oci.root, "runner"))


def test_list_shows_runcs_table_and_json(oci, bundle):
    oci("create", "--bundle", bundle(["true"]), "listed")
    table = oci("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == ["listed", str(oci.state("listed")["pid"]), "created"]
    assert [s["id"] for s in json.loads(oci("list", "--format", "json").stdout)] == ["listed"]
    assert oci("list", "-q").stdout == "listed\n"


def _kill_runtime_processes(root: str) -> None:
    """SIGKILL every process whose command line names this test's runtime root."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if root.encode() in cmdline(int(pid)):
                os.kill(int(pid), 9)
        except OSError:
            pass


def _create_with_console(oci, path: str, name: str, socket_path: str) -> int:
    """`create NAME --console-socket`: the pty master it sends."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)
    listener.settimeout(30)
    creating = subprocess.Popen(
        [*OCI, "--root", oci.root, "create", "--bundle", path, "--console-socket", socket_path, name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        conn, _ = listener.accept()
        conn.settimeout(30)
        fds = array.array("i")
        _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_LEN(fds.itemsize))
        conn.close()
        assert creating.wait(timeout=60) == 0, creating.stderr.read()
    except BaseException:
        _kill_runtime_processes(oci.root)  # a create stuck before its state was written
        raise
    finally:
        listener.close()
    fds.frombytes(ancdata[0][2])
    return fds[0]


def _read_until(master: int, end: bytes) -> bytes:
    output = b""
    deadline = time.monotonic() + 30
    while end not in output and time.monotonic() < deadline:
        output += os.read(master, 4096)
    return output


def test_console_socket_gets_the_pty_master(oci, bundle, tmp_path):
    def tty(config):
        config["process"]["terminal"] = True

    path = bundle(["sh", "-c", "tty; echo hello-through-the-pty; sleep 300"], edit=tty)
    master = _create_with_console(oci, path, "tty", str(tmp_path / "console.sock"))
    try:
        oci("start", "tty")
        output = _read_until(master, b"hello-through-the-pty")
        assert b"/dev/pts/0" in output and b"hello-through-the-pty" in output
    finally:
        os.close(master)
    # without a socket, create refuses a terminal (runc's words)
    refused = oci("create", "--bundle", path, "tty2", check=False)
    assert refused.returncode == 1 and "console socket" in refused.stderr


def test_the_console_is_the_pty_even_when_pts_is_a_dir_of_links(oci, bundle, tmp_path):
    """runc CVE-2025-52565: /dev/console is the pty bound over it. A bundle's /dev/pts may be a dir
    a running container writes; bound by name, /dev/pts/0 would be the link planted there (to a
    /proc/sys file, writable then; here a file of the root's). The pty comes from its ptmx
    (here a devpts the bundle mounts elsewhere, which the planted ptmx leads to)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.symlink("/dev/realpts/ptmx", shared / "ptmx")
    os.symlink("/decoy", shared / "0")

    def planted(config):
        config["process"]["terminal"] = True
        mounts = [m for m in config["mounts"] if m["destination"] != "/dev/pts"]
        mounts.append({"destination": "/dev/pts", "type": "bind", "source": str(shared), "options": ["rbind"]})
        mounts.append(
            {
                "destination": "/dev/realpts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            }
        )
        config["mounts"] = mounts

    path = bundle(["sh", "-c", "stat -c 'console:%F:%t' /dev/console; echo end-of-test; sleep 300"], edit=planted)
    (tmp_path / "bundle/rootfs/decoy").write_text("decoy\n")
    assert b"console:character special file:88" in _console_output(oci, path, "planted", tmp_path)


def test_a_fifo_at_dev_console_is_bound_over_not_opened(oci, bundle, tmp_path):
    """/dev/console is a mount point, opened O_PATH: a FIFO the root has there (its /dev not a
    filesystem of the container's own) must not stop `create` for good in open(2), waiting for a
    reader no one will be."""

    def own_dev_dir(config):
        config["process"]["terminal"] = True
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/dev"]

    path = bundle(["sh", "-c", "stat -c 'console:%F:%t' /dev/console; echo end-of-test; sleep 300"], edit=own_dev_dir)
    dev = tmp_path / "bundle/rootfs/dev"
    dev.mkdir(exist_ok=True)
    os.mkfifo(dev / "console")
    os.symlink("pts/ptmx", dev / "ptmx")
    assert b"console:character special file:88" in _console_output(oci, path, "fifo", tmp_path)


def _console_output(oci, path: str, name: str, tmp_path) -> bytes:
    """What the container NAME writes to its console up to "end-of-test", created and started."""
    master = _create_with_console(oci, path, name, str(tmp_path / "console.sock"))
    try:
        oci("start", name)
        return _read_until(master, b"end-of-test")
    finally:
        os.close(master)


def _settings(config):
    process = config["process"]
    process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 6]}
    process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    process["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    }
    process["env"] = ["PATH=/bin:/usr/bin", "A=b"]
    process["cwd"] = "/tmp"
    process["oomScoreAdj"] = 123
    config["hostname"] = "ocihost"
    config["linux"]["maskedPaths"] += ["/etc/group"]


def test_process_settings_of_config_json(oci, bundle):
    script = (
        "id; ulimit -n; ulimit -Hn; grep -E '^Cap(Eff|Prm|Inh|Bnd|Amb)' /proc/self/status; pwd; hostname;"
        "echo A=$A HOME=$HOME; cat /proc/self/oom_score_adj; wc -c < /etc/group; wc -c < /proc/keys; touch /x 2>/dev/null || echo ro-root;"
        "echo x 2>/dev/null > /proc/sys/kernel/domainname || echo ro-proc-sys; grep NoNewPrivs /proc/self/status"
    )
    done = oci("run", "--bundle", bundle(["sh", "-c", script], edit=_settings), "settings", check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1001 groups=5,6"
    assert lines[1:3] == ["123", "456"]
    caps = dict(line.split(":\t") for line in lines[3:8])
    kill, bind, chown = 1 << 5, 1 << 10, 1 << 0
    # not root: execve keeps the ambient set alone (the kernel's rule; runc's containers alike)
    assert int(caps["CapEff"], 16) == bind
    assert int(caps["CapPrm"], 16) == bind
    assert int(caps["CapInh"], 16) == bind
    assert int(caps["CapBnd"], 16) == kill | bind | chown
    assert int(caps["CapAmb"], 16) == bind
    assert lines[8:12] == ["/tmp", "ocihost", "A=b HOME=/", "123"]
    assert lines[12:14] == ["0", "0"]  # masked (/dev/null over the file): the bundle's, runc's default
    assert lines[14] == "ro-root"  # root.readonly (runc's spec default)
    assert lines[-2] == "ro-proc-sys"  # linux.readonlyPaths
    assert lines[-1].split() == ["NoNewPrivs:", "1"]


def test_unsupported_settings_are_refused_in_one_line(oci, bundle):
    def timens(config):
        config["linux"]["namespaces"].append({"type": "time"})

    done = oci("create", "--bundle", bundle(["true"], edit=timens), "timens", check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["minirun-oci: error: time namespaces are not supported by minirun-oci"]
    assert not os.path.exists(os.path.join(oci.root, "timens"))


def test_errors_go_to_the_log_in_runcs_json(oci, tmp_path):
    log = tmp_path / "log.json"
    done = oci("--log", str(log), "--log-format", "json", "state", "nosuch", check=False)
    assert done.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nosuch" in entry["msg"] and entry["time"]


def test_exec_inline_process_file_and_detached(oci, bundle, tmp_path):
    oci("run", "-d", "--bundle", bundle(["sleep", "300"]), "execbox")
    done = oci("exec", "--cwd", "/etc", "--env", "X=y", "execbox", "sh", "-c", "echo $X $(pwd); exit 4", check=False)
    assert (done.returncode, done.stdout) == (4, "y /etc\n"), done.stderr
    process = {
        "args": ["sh", "-c", "id; cat /proc/1/cmdline | tr '\\0' ' '"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "user": {"uid": 65534, "gid": 65534},
        "terminal": False,
    }
    (tmp_path / "process.json").write_text(json.dumps(process))
    done = oci("exec", "--process", str(tmp_path / "process.json"), "execbox")
    assert done.stdout.splitlines() == ["uid=65534(nobody) gid=65534(nobody)", "sleep 300 "]
    pid_file = tmp_path / "exec.pid"
    oci("exec", "-d", "--pid-file", str(pid_file), "execbox", "sleep", "200")
    pid = int(pid_file.read_text())
    assert cmdline(pid) == b"sleep\x00200\x00"
    assert pid in json.loads(oci("ps", "--format", "json", "execbox").stdout)


def test_pause_resume_update_and_stats(oci, bundle):
    oci("run", "-d", "--bundle", bundle(["sleep", "300"]), "limits")
    oci("pause", "limits")
    assert oci.status("limits") == "paused"
    oci("resume", "limits")
    assert oci.status("limits") == "running"
    oci("update", "--memory", "64m", "--pids-limit", "50", "limits")
    memory = cgroups.owner("memory")
    pids = cgroups.owner("pids")
    rel = f"{hostwide.CGROUP_PARENT}/limits"
    if memory is not None and memory.version == 1:
        assert open(f"{memory.at(rel)}/memory.limit_in_bytes").read().strip() == str(64 << 20)
    if pids is not None:
        assert open(f"{pids.at(rel)}/pids.max").read().strip() == "50"
    stats = json.loads(oci("events", "--stats", "limits").stdout)
    assert stats["type"] == "stats" and stats["data"]["pids"]["current"] == 1


def test_resources_and_cgroups_path_from_config(oci, bundle):
    rel = f"{hostwide.CGROUP_PARENT}/nested/pathed"

    def resources(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        config["linux"]["resources"]["pids"] = {"limit": 42}
        config["linux"]["resources"]["cpu"] = {"shares": 512, "quota": 20000, "period": 50000}

    oci("create", "--bundle", bundle(["true"], edit=resources), "pathed")
    try:
        pids, cpu = cgroups.owner("pids"), cgroups.owner("cpu")
        if pids is not None:
            assert open(f"{pids.at(rel)}/pids.max").read().strip() == "42"
        if cpu is not None and cpu.version == 1:
            assert open(f"{cpu.at(rel)}/cpu.cfs_quota_us").read().strip() == "20000"
            assert open(f"{cpu.at(rel)}/cpu.cfs_period_us").read().strip() == "50000"
            assert open(f"{cpu.at(rel)}/cpu.shares").read().strip() == "512"
    finally:
        oci("delete", "--force", "pathed")
        for hierarchy in cgroups.hierarchies():
            assert not os.path.exists(hierarchy.at(rel))
            os.rmdir(hierarchy.at(f"{hostwide.CGROUP_PARENT}/nested"))


def test_hooks_get_the_state_on_stdin(oci, bundle, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()

    def hooks(config):
        config["hooks"] = {
            kind: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{kind}"]}]
            for kind in ("prestart", "createRuntime", "poststart", "poststop")
        }

    oci("run", "--bundle", bundle(["true"], edit=hooks), "hooked")
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        state = json.loads((out / kind).read_text())
        assert state["id"] == "hooked" and state["ociVersion"], kind
    assert json.loads((out / "createRuntime").read_text())["status"] == "created"


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_state_matches_runcs_on_the_same_bundle(oci, bundle, tmp_path):
    path = bundle(["sleep", "300"])
    runc_root = str(tmp_path / "runc-root")

    def runc(*args: str) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as out:  # a file: runc's container keeps its stdio too
            code = subprocess.run(
                ["runc", "--root", runc_root, *args], stdout=out, stderr=out, timeout=60, stdin=subprocess.DEVNULL
            ).returncode
            out.seek(0)
            return subprocess.CompletedProcess(args, code, out.read().decode(), "")

    # runc's cgroup by its own name, under this session's parent: removed with the session's
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["linux"]["cgroupsPath"] = f"/{hostwide.CGROUP_PARENT}/runc-twin"
    runc_bundle = tmp_path / "runc-bundle"
    runc_bundle.mkdir()
    config["root"]["path"] = os.path.join(path, "rootfs")  # the same directory (runc takes no symlink)
    (runc_bundle / "config.json").write_text(json.dumps(config))
    try:
        assert runc("create", "--bundle", str(runc_bundle), "twin").returncode == 0
        oci("create", "--bundle", path, "twin")
        theirs = json.loads(runc("state", "twin").stdout)
        ours = oci.state("twin")
        assert set(ours) == set(theirs)
        assert ours["status"] == theirs["status"] == "created"
        assert runc("start", "twin").returncode == 0
        oci("start", "twin")
        assert json.loads(runc("state", "twin").stdout)["status"] == oci.status("twin") == "running"
        runc("kill", "twin", "KILL")
        oci("kill", "twin", "KILL")
        assert wait_until(lambda: json.loads(runc("state", "twin").stdout)["status"] == "stopped")
        assert wait_until(lambda: oci.status("twin") == "stopped")
    finally:
        runc("delete", "--force", "twin")
        shutil.rmtree(runc_root, ignore_errors=True)


def test_memory_settings_runc_takes(oci, bundle, tmp_path):
    """swappiness, disableOOMKiller and kernelTCP where the kernel has them (cgroup v1); kernel
    memory accepted and ignored, as runc >= 1.0, with a warning in --log."""
    rel = f"{hostwide.CGROUP_PARENT}/memsettings"

    def memory(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        config["linux"]["resources"]["memory"] = {
            "limit": 64 << 20,
            "kernel": 32 << 20,
            "kernelTCP": 16 << 20,
            "swappiness": 10,
            "disableOOMKiller": True,
        }

    log = tmp_path / "log.json"
    oci("--log", str(log), "--log-format", "json", "create", "--bundle", bundle(["true"], edit=memory), "memsettings")
    warnings = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(w["level"] == "warning" and "kernel memory" in w["msg"] for w in warnings)
    owner = cgroups.owner("memory")
    if owner is None:
        pytest.skip("no memory controller")
    path = owner.at(rel)
    if owner.version == 1:
        assert open(f"{path}/memory.swappiness").read().strip() == "10"
        assert "oom_kill_disable 1" in open(f"{path}/memory.oom_control").read()
        if os.path.exists(f"{path}/memory.kmem.tcp.limit_in_bytes"):
            assert open(f"{path}/memory.kmem.tcp.limit_in_bytes").read().strip() == str(16 << 20)
    else:  # no such files on v2: said, not failed
        assert any("cgroup v2 has no such setting" in w["msg"] for w in warnings)
    bad = bundle(["true"], name="bad", edit=lambda c: c["linux"]["resources"].update(memory={"swappiness": 101}))
    refused = oci("create", "--bundle", bad, "badswap", check=False)
    assert refused.returncode == 1 and "swappiness range is 0-100" in refused.stderr


def test_unknown_capability_is_ignored_with_a_warning(oci, bundle):
    """runc 1.1's rule: "ignoring unknown or unavailable capabilities", the container runs."""

    def caps(config):
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind] = ["CAP_KILL", "CAP_TEST"]

    done = oci("run", "--bundle", bundle(["sh", "-c", "grep CapBnd /proc/self/status"], edit=caps), "capx")
    assert int(done.stdout.split()[1], 16) == 1 << 5
    assert "ignoring unknown or unavailable capabilities: CAP_TEST" in done.stderr


def _ns(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def test_namespaces_not_listed_are_the_runtimes(oci, bundle):
    """No namespace listed: each is shared with the caller, the mount namespace too (the root is
    chrooted, its mounts made in ours and detached by delete, which runc leaves behind)."""

    def shared(config):
        config["linux"]["namespaces"] = []
        for key in ("maskedPaths", "readonlyPaths"):
            config["linux"].pop(key)
        config.pop("hostname")

    path = bundle(["sleep", "300"], edit=shared)
    rootfs = os.path.join(path, "rootfs")
    oci("create", "--bundle", path, "shared")
    pid = oci.state("shared")["pid"]
    for name in ("mnt", "pid", "net", "ipc", "uts", "cgroup"):
        assert _ns(pid, name) == _ns("self", name), name
    assert os.readlink(f"/proc/{pid}/root") == rootfs
    assert os.path.ismount(os.path.join(rootfs, "proc"))  # in our namespace, as the spec says
    oci("start", "shared")
    done = oci("exec", "shared", "sh", "-c", "cat /etc/hostname 2>/dev/null; ls /linuxrc")
    assert done.stdout.splitlines()[-1] == "/linuxrc"  # the container's root, not ours
    oci("delete", "--force", "shared")
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if rootfs in line]
    # runc's rule: masking /proc paths without a mount namespace would mask the host's
    masked = bundle(["true"], name="masked", edit=lambda c: (c["linux"].update(namespaces=[]), c.pop("hostname")))
    refused = oci("create", "--bundle", masked, "masked", check=False)
    assert refused.returncode == 1 and "without a private MNT namespace" in refused.stderr


@pytest.fixture
def holder():
    """holder(flags) -> the pid of a process in new namespaces (`unshare FLAGS --fork sleep`),
    killed at the end."""
    started = []

    def start(*flags: str) -> int:
        proc = subprocess.Popen(["unshare", *flags, "--fork", "sleep", "300"], start_new_session=True)
        started.append(proc)
        assert wait_until(lambda: _ns(proc.pid, "mnt") != _ns("self", "mnt") or "--mount" not in flags)
        return proc.pid

    yield start
    for proc in started:
        os.killpg(proc.pid, 9)
        proc.wait()


def _children_ns(pid: int) -> str:
    """`pid`'s pid_for_children, "" while it has none to show: between unshare(CLONE_NEWPID) and
    the fork of its first process the new namespace has no reaper, and the link reads ENOENT."""
    try:
        return _ns(pid, "pid_for_children")
    except FileNotFoundError:
        return ""


def test_namespaces_joined_by_path(oci, bundle, holder):
    """A mount namespace and a PID namespace joined by their paths: PID 1's namespaces are
    those, its root is the bundle's (chrooted: the others there keep theirs), and `state` gives
    its pid as we see it."""
    mnt_holder = holder("--mount")
    pid_holder = holder("--pid")
    deadline = time.monotonic() + 15
    while _children_ns(pid_holder) in ("", _ns("self", "pid")) and time.monotonic() < deadline:
        time.sleep(0.05)

    def joined(config):
        for entry in config["linux"]["namespaces"]:
            if entry["type"] == "mount":
                entry["path"] = f"/proc/{mnt_holder}/ns/mnt"
            elif entry["type"] == "pid":
                entry["path"] = f"/proc/{pid_holder}/ns/pid_for_children"

    oci("create", "--bundle", bundle(["sleep", "300"], edit=joined), "joined")
    pid = oci.state("joined")["pid"]
    assert _ns(pid, "mnt") == _ns(mnt_holder, "mnt")
    assert _ns(pid, "pid") == _ns(pid_holder, "pid_for_children")
    assert os.readlink(f"/proc/{mnt_holder}/root") == "/"  # the holder's root is untouched
    oci("start", "joined")
    assert cmdline(pid) == b"sleep\x00300\x00"
    done = oci("exec", "joined", "sh", "-c", "ls /linuxrc; tr '\\0' ' ' < /proc/1/cmdline")
    assert done.stdout.splitlines() == ["/linuxrc", "sleep 300 "]  # PID 1 there: the holder's sleep
    oci("delete", "--force", "joined")


def test_poststart_hook_sees_the_container_running(oci, bundle, tmp_path):
    out = tmp_path / "poststart"

    def hooks(config):
        config["hooks"] = {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}"]}]}

    oci("create", "--bundle", bundle(["true"], edit=hooks), "poststarted")
    pid = oci.state("poststarted")["pid"]
    oci("start", "poststarted")
    state = json.loads(out.read_text())
    assert (state["status"], state["pid"]) == ("running", pid)


@pytest.fixture
def open_dir():
    """A directory every user may pass through (0711): a user namespace's root, an unprivileged
    host uid, must reach its bundle (pytest's tmp dirs are 0700)."""
    path = tempfile.mkdtemp(prefix="minirun-oci-userns-", dir="/tmp")
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path)


HOST_ROOT = 100000  # the host uid and gid the container's root is mapped to


def test_user_namespace_maps_root_to_an_unprivileged_range(oci, busybox_tar, open_dir):
    path = os.path.join(open_dir, "bundle")
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(rootfs)
    subprocess.run(["tar", "-x", "-f", str(busybox_tar), "-C", rootfs], check=True)
    subprocess.run(["chown", "-R", f"{HOST_ROOT}:{HOST_ROOT}", rootfs], check=True)  # the rootfs as given
    subprocess.run([*OCI, "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"].update(terminal=False, args=["sh", "-c", "id -u; cat /proc/self/uid_map; touch /made; sleep 300"])
    config["root"]["readonly"] = False
    config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        config["linux"][key] = [{"containerID": 0, "hostID": HOST_ROOT, "size": 65536}]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    out = os.path.join(open_dir, "out")
    with open(out, "w") as stdout:
        code = subprocess.run(
            [*OCI, "--root", oci.root, "run", "-d", "--bundle", path, "mapped"], stdout=stdout
        ).returncode
    assert code == 0
    assert wait_until(lambda: os.path.exists(os.path.join(rootfs, "made")))
    with open(out) as f:
        lines = f.read().split()
    assert lines == ["0", "0", str(HOST_ROOT), "65536"]  # root inside; /proc/self/uid_map
    made = os.stat(os.path.join(rootfs, "made"))
    assert (made.st_uid, made.st_gid) == (HOST_ROOT, HOST_ROOT)  # owned by the mapped host ids
    pid = oci.state("mapped")["pid"]
    assert _ns(pid, "user") != _ns("self", "user")
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(HOST_ROOT)] * 4  # as the host sees PID 1
    userns = os.stat(f"/proc/{pid}/ns/user").st_ino
    for name in ("mnt", "net", "uts", "ipc", "pid", "cgroup"):  # each made inside it: its root's to run
        assert _owner(f"/proc/{pid}/ns/{name}") == userns, name
    done = oci("exec", "mapped", "sh", "-c", "id; cat /proc/self/uid_map; ls -n /made")
    assert done.stdout.split()[:2] == ["uid=0(root)", "gid=0(root)"]
    assert done.stdout.split()[2:5] == ["0", str(HOST_ROOT), "65536"]
    assert done.stdout.split()[7:9] == ["0", "0"]  # the file's owner, as the container sees it
    oci("delete", "--force", "mapped")


def _owner(namespace: str) -> int:
    """The inode of the user namespace owning `namespace` (ioctl NS_GET_USERNS)."""
    import fcntl

    fd = os.open(namespace, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, 0xB701)  # _IO(0xb7, 0x1)
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino
    finally:
        os.close(owner)


def test_user_namespace_rules(oci, bundle):
    """runc's: mappings need a user namespace, a new one needs mappings, and the root must be
    reachable by the mapped root (pytest's 0700 tmp dir is not)."""

    def maps_only(config):
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ROOT, "size": 1}]

    done = oci("create", "--bundle", bundle(["true"], edit=maps_only), "nouserns", check=False)
    assert done.returncode == 1 and "user namespace isn't enabled" in done.stderr

    def unmapped(config):
        config["linux"]["namespaces"].append({"type": "user"})

    done = oci("create", "--bundle", bundle(["true"], name="b2", edit=unmapped), "unmapped", check=False)
    assert done.returncode == 1 and "no uidMappings found" in done.stderr

    def mapped(config):
        unmapped(config)
        for key in ("uidMappings", "gidMappings"):
            config["linux"][key] = [{"containerID": 0, "hostID": HOST_ROOT, "size": 65536}]

    done = oci("create", "--bundle", bundle(["true"], name="b3", edit=mapped), "unreachable", check=False)
    assert done.returncode == 1
    assert f"the container's root (host uid {HOST_ROOT}) cannot reach it" in done.stderr


def test_container_hooks_run_inside_in_runcs_order(oci, bundle, tmp_path):
    """prestart and createRuntime in our namespaces, then createContainer in the container's
    (its mounts made, our tree still in reach: before pivot_root), then at `start`
    startContainer in the container, as its root, before the process."""
    log = tmp_path / "order"
    record = f"cat > {tmp_path}/$0.json; echo $0 >> {log}; readlink /proc/self/ns/mnt > {tmp_path}/$0.mnt"

    def hooks(config):
        config["root"]["readonly"] = False
        config["hooks"] = {
            kind: [{"path": "/bin/sh", "args": ["sh", "-c", record, kind]}]
            for kind in ("prestart", "createRuntime", "createContainer")
        }
        config["hooks"]["startContainer"] = [
            {
                "path": "/bin/sh",
                "args": [
                    "sh",
                    "-c",
                    "cat > /start.json; echo startContainer >> /order; grep ^Sig /proc/self/status > /sigs",
                ],
            }
        ]

    path = bundle(["sh", "-c", "echo process >> /order; sleep 300"], edit=hooks)
    oci("create", "--bundle", path, "hooked")
    pid = oci.state("hooked")["pid"]
    assert log.read_text().split() == ["prestart", "createRuntime", "createContainer"]
    assert (tmp_path / "createRuntime.mnt").read_text() == (tmp_path / "prestart.mnt").read_text()
    assert (tmp_path / "createContainer.mnt").read_text().strip() == _ns(pid, "mnt") != _ns("self", "mnt")
    inside = json.loads((tmp_path / "createContainer.json").read_text())
    assert (inside["id"], inside["pid"], inside["status"]) == ("hooked", pid, "creating")
    assert json.loads((tmp_path / "prestart.json").read_text())["status"] == "created"
    oci("start", "hooked")
    order = os.path.join(path, "rootfs", "order")
    assert wait_until(lambda: os.path.exists(order) and open(order).read().split() == ["startContainer", "process"])
    started = json.loads(open(os.path.join(path, "rootfs", "start.json")).read())
    assert (started["pid"], started["status"]) == (pid, "created")
    sigs = dict(line.split(":\t") for line in open(os.path.join(path, "rootfs", "sigs")).read().splitlines())
    assert int(sigs["SigBlk"], 16) == 0 and not int(sigs["SigIgn"], 16) & (1 << 12)  # as subprocess starts one


def test_a_failing_start_container_hook_fails_start(oci, bundle):
    def hooks(config):
        config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no-go >&2; exit 3"]}]}

    oci("create", "--bundle", bundle(["sleep", "300"], edit=hooks), "nogo")
    done = oci("start", "nogo", check=False)
    assert done.returncode == 1
    assert "startContainer hook /bin/sh: exit status 3: no-go" in done.stderr
    assert wait_until(lambda: oci.status("nogo") == "stopped")


def _disk() -> str:
    """major:minor of a whole disk the kernel throttles (not zram, loop or ram), or skip."""
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("zram", "loop", "ram", "nbd")):
            with open(f"/sys/block/{name}/dev") as f:
                return f.read().strip()
    pytest.skip("no disk to throttle")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_block_io_limits_land_in_the_kernels_files(oci, bundle):
    """runc 1.1's blkio/io files: the weight in CFQ's blkio.weight or, without it, BFQ's
    blkio.bfq.weight (v1), io.bfq.weight or io.weight (v2); throttles in blkio.throttle.* or io.max."""
    disk = _disk()
    major, minor = (int(n) for n in disk.split(":"))
    rel = f"{hostwide.CGROUP_PARENT}/blockio"
    io = cgroups.owner("blkio") or cgroups.owner("io")
    if io is None:
        pytest.skip("no block I/O controller")

    # without CFQ or BFQ (v1) there is no weight file: runc's write fails, naming BFQ's
    weighs = io.version == 2 or any(os.path.exists(f"{io.mount}/{n}") for n in ("blkio.weight", "blkio.bfq.weight"))
    if not weighs:

        def weigh(config):
            config["linux"]["cgroupsPath"] = f"/{hostwide.CGROUP_PARENT}/weighed"
            config["linux"]["resources"]["blockIO"] = {"weight": 500}

        refused = oci("create", "--bundle", bundle(["true"], name="weighed", edit=weigh), "weighed", check=False)
        assert refused.returncode != 0 and "blkio.bfq.weight: No such file or directory" in refused.stderr, refused
        assert not os.path.exists(io.at(f"{hostwide.CGROUP_PARENT}/weighed"))

    def block(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        device = {"major": major, "minor": minor}
        config["linux"]["resources"]["blockIO"] = {
            **({"weight": 500} if weighs else {}),
            "throttleReadBpsDevice": [{**device, "rate": 1048576}],
            "throttleWriteBpsDevice": [{**device, "rate": 2097152}],
            "throttleReadIOPSDevice": [{**device, "rate": 100}],
            "throttleWriteIOPSDevice": [{**device, "rate": 200}],
        }

    oci("create", "--bundle", bundle(["true"], edit=block), "blockio")
    path = io.at(rel)
    if io.version == 1:
        weight = "blkio.weight" if os.path.exists(f"{path}/blkio.weight") else "blkio.bfq.weight"
        assert not weighs or _read(f"{path}/{weight}").split()[-1] == "500"
        assert _read(f"{path}/blkio.throttle.read_bps_device").split() == [disk, "1048576"]
        assert _read(f"{path}/blkio.throttle.write_bps_device").split() == [disk, "2097152"]
        assert _read(f"{path}/blkio.throttle.read_iops_device").split() == [disk, "100"]
        assert _read(f"{path}/blkio.throttle.write_iops_device").split() == [disk, "200"]
    else:
        if os.path.exists(f"{path}/io.bfq.weight"):
            assert "default 500" in _read(f"{path}/io.bfq.weight")
        else:
            assert "default 4950" in _read(f"{path}/io.weight")
        line = next(x for x in _read(f"{path}/io.max").splitlines() if x.startswith(disk))
        assert line.split()[1:] == ["rbps=1048576", "wbps=2097152", "riops=100", "wiops=200"]
    # runc update's --blkio-weight, and -r with a throttle
    reweighed = oci("update", "--blkio-weight", "300", "blockio", check=False)
    assert (reweighed.returncode == 0) == weighs, reweighed
    if io.version == 1 and weighs:
        assert _read(f"{path}/{weight}").split()[-1] == "300"
    done = subprocess.run(
        [*OCI, "--root", oci.root, "update", "-r", "-", "blockio"],
        input=json.dumps({"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 4096}]}}),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    if io.version == 1:
        assert _read(f"{path}/blkio.throttle.read_bps_device").split() == [disk, "4096"]
    else:
        assert "rbps=4096" in _read(f"{path}/io.max")
    oci("delete", "--force", "blockio")


def test_a_device_the_kernel_has_not_is_runcs_error(oci, bundle):
    """runtime-tools' blkio test throttles 8:0; the kernel refuses a device it has not (ENODEV)."""
    if cgroups.owner("blkio") is None and cgroups.owner("io") is None:
        pytest.skip("no block I/O controller")
    if os.path.exists("/sys/dev/block/8:0"):
        pytest.skip("this host has 8:0")

    def block(config):
        config["linux"]["resources"]["blockIO"] = {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}

    done = oci("create", "--bundle", bundle(["true"], edit=block), "nodisk", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("minirun-oci: error: cgroup: write 8:0") and "no such block device" in done.stderr
    assert not os.path.exists(os.path.join(oci.root, "nodisk"))


@pytest.fixture
def hugetlb_enabled():
    """The hugetlb hierarchy's root as it was: a v2 root gets +hugetlb for a container that asks
    (runc's way); taken back at the end when it was not there before."""
    owner = cgroups.owner("hugetlb")
    if owner is None:
        pytest.skip("no hugetlb controller")
    control = f"{owner.mount}/cgroup.subtree_control"
    before = owner.version == 2 and "hugetlb" in _read(control).split()
    if owner.version == 2 and not before and os.environ.get("MINIRUN_TEST_HOSTWIDE") != "1":
        pytest.skip(
            "the cgroup2 root does not hand hugetlb down, and turning it on there is host-wide "
            "(MINIRUN_TEST_HOSTWIDE=1 allows it; it is turned off again after)"
        )
    yield owner
    if owner.version == 2 and not before:
        parent = f"{owner.mount}/{hostwide.CGROUP_PARENT}"
        for directory in (parent, owner.mount):
            try:
                with open(f"{directory}/cgroup.subtree_control", "w") as f:
                    f.write("-hugetlb")
            except OSError:
                pass  # another worker's container uses it now; that session's end takes it


def test_hugetlb_limits_per_page_size(oci, bundle, hugetlb_enabled):
    owner = hugetlb_enabled
    sizes = cgroups.hugepage_sizes()
    if not sizes:
        pytest.skip("no huge pages")
    rel = f"{hostwide.CGROUP_PARENT}/hugetlb"

    def pages(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        config["linux"]["resources"]["hugepageLimits"] = [
            {"pageSize": size, "limit": (i + 1) << 30} for i, size in enumerate(sizes)
        ]

    oci("create", "--bundle", bundle(["true"], edit=pages), "hugetlb")
    suffix = "limit_in_bytes" if owner.version == 1 else "max"
    for i, size in enumerate(sizes):
        assert _read(f"{owner.at(rel)}/hugetlb.{size}.{suffix}").strip() == str((i + 1) << 30)
    oci("delete", "--force", "hugetlb")

    def wrong(config):  # runtime-tools' testWrongHugetlb
        config["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "3MB", "limit": 100 * 3 << 20}]

    done = oci("create", "--bundle", bundle(["true"], name="wrong", edit=wrong), "wrongsize", check=False)
    assert done.returncode == 1
    assert f"no such huge page size here (the kernel's: {', '.join(sizes)})" in done.stderr


def test_network_classid_and_priorities(oci, bundle):
    """net_cls.classid and net_prio.ifpriomap where v1 has them; runc's error where a v1 host has
    not mounted them; ignored with a warning on a host with no v1 at all, as runc's fs2."""
    rel = f"{hostwide.CGROUP_PARENT}/netcls"

    def network(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        config["linux"]["resources"]["network"] = {"classID": 1048577, "priorities": [{"name": "lo", "priority": 10}]}

    path = bundle(["true"], edit=network)
    done = oci("create", "--bundle", path, "netcls", check=False)
    net_cls, net_prio = cgroups.owner("net_cls"), cgroups.owner("net_prio")
    if net_cls is not None and net_prio is not None:
        assert done.returncode == 0, done.stderr
        assert _read(f"{net_cls.at(rel)}/net_cls.classid").strip() == "1048577"
        assert "lo 10" in _read(f"{net_prio.at(rel)}/net_prio.ifpriomap").splitlines()
    elif any(h.version == 1 for h in cgroups.hierarchies()):
        assert done.returncode == 1
        assert "cannot set net_cls limit" in done.stderr and "container could not join or create cgroup" in done.stderr
        assert not any(os.path.exists(h.at(rel)) for h in cgroups.hierarchies())
    else:
        assert done.returncode == 0 and "cgroup v2 has no net_cls or net_prio, ignored" in done.stderr


def test_rdma_and_unified(oci, bundle):
    """rdma.max and linux.resources.unified: written where the kernel has them, else runc's errors."""

    def rdma(config):
        config["linux"]["resources"]["rdma"] = {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 10}}

    done = oci("create", "--bundle", bundle(["true"], name="rdma", edit=rdma), "rdma", check=False)
    if cgroups.owner("rdma") is None:
        assert done.returncode == 1 and "cannot set rdma limit" in done.stderr
    elif done.returncode == 1:  # no such device here: the kernel's word
        assert "rdma.max" in done.stderr
    rel = f"{hostwide.CGROUP_PARENT}/unified"
    unified = next((h for h in cgroups.hierarchies() if h.version == 2), None)

    def keys(config):
        config["linux"]["cgroupsPath"] = "/" + rel
        config["linux"]["resources"]["unified"] = {"pids.max": "33"}

    done = oci("create", "--bundle", bundle(["true"], name="unified", edit=keys), "unified", check=False)
    if unified is None:
        assert done.stderr.strip() == "minirun-oci: error: invalid configuration: cannot use unified on cgroup v1"
    elif "pids" not in unified.controllers:
        assert "unified resource 'pids.max' can't be set: controller 'pids' not available" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert _read(f"{unified.at(rel)}/pids.max").strip() == "33"
        oci("delete", "--force", "unified")

    def slash(config):
        config["linux"]["resources"]["unified"] = {"../pids.max": "1"}

    done = oci("create", "--bundle", bundle(["true"], name="slash", edit=slash), "slash", check=False)
    assert done.returncode == 1
    assert "must be a file name (no slashes)" in done.stderr or "cannot use unified on cgroup v1" in done.stderr


def test_no_cgroup_hierarchy_shows_a_cap_sys_admin_container_the_release_agent(oci, bundle):
    """runc joins name=systemd, which carries no controller; a bundle with CAP_SYS_ADMIN and a
    cgroup namespace that sat at that hierarchy's root mounted it with the host's release_agent
    (test_containment.py's attack, on minirun-oci's path)."""
    from tests.e2e.test_containment import HIERARCHIES

    with open("/proc/self/cgroup") as f:
        v1 = [line.split(":")[1] for line in f if not line.startswith("0::")]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy on this host")

    def admin(config):
        config["root"]["readonly"] = False  # for the mount points
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")
        if not any(n["type"] == "cgroup" for n in config["linux"]["namespaces"]):
            config["linux"]["namespaces"].append({"type": "cgroup"})

    done = oci("run", "--bundle", bundle(["sh", "-c", HIERARCHIES], edit=admin), "agent")
    assert sorted(done.stdout.splitlines()) == sorted(f"{names} own" for names in v1), done.stdout
