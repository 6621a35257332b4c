"""podman 4.3 running its containers with minirun-oci (`--runtime`): run with exit code and
output, run -d, exec, logs, stop, rm, on podman's own store (busybox saved by minirun, loaded
by podman), and nothing left behind.

podman runs on storage of its own in a temp dir (--root, --runroot, --tmpdir), with cgroupfs and
file events, its containers' cgroups under a parent of the test's own. minirun-oci keeps its
state under that temp dir too: podman passes --runtime-flag only on the calls it makes itself,
not on those of the cleanup its conmon starts at a container's exit, and no environment to the
runtime; so the runtime podman is given is a two-line script that execs minirun-oci with
`--root`. (Without it, minirun-oci would use /run/minirun-oci, as runc uses /run/runc.)"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.helpers import minirun_in, wait_until
from tests.peers import PODMAN_ULIMITS, PrivatePodman

pytestmark = pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed")
IMAGE = "docker.io/library/busybox:latest"
MINIRUN_OCI = os.path.realpath(os.path.join(os.path.dirname(sys.executable), "minirun-oci"))


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    work = tmp_path_factory.mktemp("podman-oci")
    runner = PrivatePodman(MINIRUN_OCI, "moci-podman-", ("--network", "none", *PODMAN_ULIMITS))
    try:
        saved = minirun_in(work / "store", "save", "-o", str(work / "busybox.tar"), "busybox")
        assert saved.returncode == 0, saved.stderr
        runner("load", "-q", "-i", str(work / "busybox.tar"))
        yield runner
        runner("rm", "--all", "--force")
        # nothing of the containers is left: no state of minirun-oci's, no mount, no cgroup but
        # conmon's (podman's own, under the same parent)
        assert os.listdir(runner.runtime_root) == []
        with open("/proc/self/mountinfo") as f:
            assert not [line for line in f if f"{runner.base}/root/overlay/" in line and "merged" in line]
        assert not [d for d in runner.cgroup_dirs() if "libpod-" in d]
    finally:
        runner.remove()


def test_podman_run_gives_the_exit_code_and_output(podman):
    done = podman("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; id -u; exit 3", check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["out", "0"] and "err" in done.stderr
    assert os.listdir(podman.runtime_root) == []  # --rm: deleted from minirun-oci's state too


def test_podman_run_d_exec_logs_stop_rm(podman):
    script = 'echo started; trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done'
    cid = podman("run", "-d", "--name", "served", IMAGE, "sh", "-c", script).stdout.strip()
    state = os.path.join(podman.runtime_root, cid, "state.json")
    assert os.path.isfile(state)  # minirun-oci's container
    pid = json.loads(podman("inspect", "served").stdout)[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sh", b"-c"]
    done = podman("exec", "served", "sh", "-c", "echo in-exec; tr '\\0' ' ' < /proc/1/cmdline")
    assert done.stdout.splitlines() == ["in-exec", f"sh -c {script} "]
    assert wait_until(lambda: "started" in podman("logs", "served").stdout)
    podman("stop", "-t", "10", "served")  # SIGTERM: the trap answers
    assert podman("logs", "served").stdout.split() == ["started", "bye"]
    assert podman("inspect", "--format", "{{.State.ExitCode}}", "served").stdout.strip() == "0"
    podman("rm", "served")
    assert not os.path.exists(os.path.dirname(state))
    assert podman("ps", "-a", "-q").stdout.strip() == ""
