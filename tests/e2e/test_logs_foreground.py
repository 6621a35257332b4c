"""`logs -f` ends when its container does, --rm or not."""

from __future__ import annotations

import os
import subprocess
import sys


def minirun(store, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, MINIRUN_ROOT=str(store))
    return subprocess.Popen([sys.executable, "-m", "minirun", *args], env=env, **kw)


def test_logs_follow_of_a_detached_rm_container_ends_with_it(busybox, isolated_store, tmp_path):
    """`logs -f` of a `run -d --rm` container followed for ever once the container was removed:
    the record gone, its last state (running) was taken as still true."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = "echo first; while [ ! -e /gate/go ]; do usleep 20000; done; echo second"
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    started = subprocess.run(
        [sys.executable, "-m", "minirun", "run", "-d", "--rm", "--name", "drm", "--network", "none"]
        + ["-v", f"{gate}:/gate", "busybox", "sh", "-c", script],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert started.returncode == 0, started
    follow = minirun(isolated_store, "logs", "-f", "drm", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert follow.stdout is not None and follow.stdout.readline() == b"first\n"
        (gate / "go").touch()
        out, err = follow.communicate(timeout=120)
        assert (follow.returncode, out, err) == (0, b"second\n", b"")
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
