"""Every test gets its own store; the real /var/lib/minirun is unusable from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

import minirun.store

FORBIDDEN_ROOT = "/dev/null/minirun-tests-must-not-touch-the-real-store"


@pytest.fixture(scope="session", autouse=True)
def default_bridge_left_as_found():
    """Containers on the default network make the host bridge minirun0, which stays (as docker0
    does); a test session that made it removes it, so the host ends as it began."""
    existed = os.path.exists("/sys/class/net/minirun0")
    yield
    if not existed and os.geteuid() == 0 and os.path.exists("/sys/class/net/minirun0"):
        from minirun.runtime.bridge import delete_bridge

        delete_bridge("minirun0")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("MINIRUN_ROOT", str(root))
    # Should anything bypass MINIRUN_ROOT, the default is a path below a device: mkdir fails.
    monkeypatch.setattr(minirun.store, "DEFAULT_ROOT", FORBIDDEN_ROOT)
    return root


@pytest.fixture
def store(isolated_store):
    return minirun.store.Store(str(isolated_store))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(isolated_store):
    """Run the CLI as a user types it, in a separate process, against the test's store."""

    def run(*args: str, input: bytes | None = None, root: str | None = None) -> Result:
        env = dict(os.environ, MINIRUN_ROOT=root or str(isolated_store))
        proc = subprocess.run(
            [sys.executable, "-m", "minirun", *args], input=input, capture_output=True, env=env, timeout=300
        )
        return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    return run


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
