"""containerd 1.6 (Debian's, with its runc shim) running minirun-oci as its runc: an image saved
by minirun imported with `ctr image import`, then `ctr run --runc-binary minirun-oci` with exit
code and output, `ctr task exec`, `pause`/`resume`, `kill`, `delete`. containerd runs on a root,
state dir and socket of the test's own; its containers' cgroups go under this session's parent
(the namespace is its name), which the session removes. The shim keeps its sockets in the
host's /run/containerd, which this test removes again when it was not there before."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from minirun import hostwide
from minirun.runtime import cgroups
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(
    not (shutil.which("containerd") and shutil.which("ctr")), reason="containerd is not installed (setup.sh --test)"
)
IMAGE = "docker.io/library/busybox:latest"
RUN_DIR = "/run/containerd"


@pytest.fixture
def containerd(tmp_path):
    home = tempfile.mkdtemp(prefix="moci-ctd-", dir="/tmp")  # short: unix socket paths are at most 107 bytes
    config = os.path.join(home, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'version = 2\nroot = "{home}/root"\nstate = "{home}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",'
            ' "io.containerd.snapshotter.v1.aufs"]\n'
            f'[grpc]\n  address = "{home}/ctd.sock"\n[ttrpc]\n  address = "{home}/ctd.sock.ttrpc"\n'
        )
    had_run_dir = os.path.exists(RUN_DIR)
    log = open(os.path.join(home, "containerd.log"), "wb")  # noqa: SIM115  (closed below)
    daemon = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    ctr = ["ctr", "--address", f"{home}/ctd.sock", "-n", hostwide.CGROUP_PARENT]

    def up() -> bool:
        return subprocess.run([*ctr, "version"], capture_output=True).returncode == 0

    try:
        assert wait_until(up, timeout=30), open(os.path.join(home, "containerd.log")).read()
        yield ctr, home
    finally:
        tasks = subprocess.run([*ctr, "task", "ls", "-q"], capture_output=True, text=True).stdout.split()
        for task in tasks:
            subprocess.run([*ctr, "task", "kill", "-s", "KILL", task], capture_output=True)
            subprocess.run([*ctr, "task", "delete", "--force", task], capture_output=True)
        for name in subprocess.run([*ctr, "container", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run([*ctr, "container", "delete", name], capture_output=True)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", f"{home}/root"], capture_output=True)  # none, unless a test failed halfway
        shutil.rmtree(home, ignore_errors=True)
        if not had_run_dir:
            # empty dirs only, never a tree: another suite's containerd on this host may have its
            # shims' sockets there by now (the shim makes the dirs again when it needs them)
            for directory in (f"{RUN_DIR}/fifo", f"{RUN_DIR}/s", RUN_DIR):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass


@pytest.fixture
def imported(containerd, busybox, isolated_store, tmp_path):
    ctr, home = containerd
    archive = tmp_path / "busybox.tar"
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    subprocess.run([sys.executable, "-m", "minirun", "save", "-o", str(archive), "busybox"], env=env, check=True)
    done = subprocess.run([*ctr, "image", "import", str(archive)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    runtime = shutil.which("minirun-oci") or os.path.join(os.path.dirname(sys.executable), "minirun-oci")
    return ctr, ["--runc-binary", runtime, "--runc-root", f"{home}/runc"]


def _ctr(ctr: list[str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run(
            [*ctr, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout
        ).returncode
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())


def test_ctr_runs_execs_pauses_kills_and_deletes(imported):
    """One test, one containerd: the shims of two would share the host's /run/containerd, which
    the fixture removes at the end."""
    ctr, runtime = imported
    done = _ctr(ctr, "run", "--rm", *runtime, IMAGE, "once", "sh", "-c", "echo hello from containerd; exit 5")
    assert (done.returncode, done.stdout) == (5, "hello from containerd\n"), done.stderr
    assert _ctr(ctr, "container", "ls", "-q").stdout == ""

    started = _ctr(ctr, "run", "-d", *runtime, IMAGE, "svc", "sleep", "300")
    assert started.returncode == 0, started.stderr
    assert _ctr(ctr, "task", "ls").stdout.split()[3:6] == ["svc", _pid(ctr, "svc"), "RUNNING"]
    # the pause before the exit: ctr cancels its readers once the exit is in, which lost the
    # output still in its FIFO 1 time in CI (containerd#13931, "ctr: drain exec output before
    # cleanup", fixed after Debian's containerd)
    done = _ctr(ctr, "task", "exec", "--exec-id", "probe", "svc", "sh", "-c", "echo exec-ok; sleep 0.3; exit 3")
    assert (done.returncode, done.stdout) == (3, "exec-ok\n"), done.stderr
    assert _ctr(ctr, "task", "pause", "svc").returncode == 0
    assert "PAUSED" in _ctr(ctr, "task", "ls").stdout
    assert _ctr(ctr, "task", "resume", "svc").returncode == 0
    assert _ctr(ctr, "task", "kill", "-s", "KILL", "svc").returncode == 0
    assert wait_until(lambda: "STOPPED" in _ctr(ctr, "task", "ls").stdout)
    assert _ctr(ctr, "task", "delete", "svc").returncode == 0
    assert _ctr(ctr, "container", "delete", "svc").returncode == 0
    assert not any(os.path.exists(h.at(f"{hostwide.CGROUP_PARENT}/svc")) for h in cgroups.hierarchies())


def _pid(ctr: list[str], task: str) -> str:
    for line in _ctr(ctr, "task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == task:
            return fields[1]
    return ""
