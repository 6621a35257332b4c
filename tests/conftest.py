"""Every test gets its own store; the real /var/lib/minirun is unusable from tests. The session
has host-wide names of its own (minirun/hostwide.py): a run dir, a bridge prefix, an nft table and a
cgroup parent no other session uses, so two copies of the suite on one host do not meet; it removes them at the
end, so the host ends as it began."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

# Before anything imports minirun: its host-wide names are read once, at import.
_SESSION = f"{os.getpid() % 0xFFFFF:05x}"
os.environ.setdefault("MINIRUN_RUN_DIR", f"/run/minirun-test-{_SESSION}")
os.environ.setdefault("MINIRUN_BRIDGE_PREFIX", f"mt{_SESSION}")
os.environ.setdefault("MINIRUN_NFT_TABLE", f"miniruntest{_SESSION}")
os.environ.setdefault("MINIRUN_CGROUP_PARENT", f"miniruntest{_SESSION}")

import minirun.store  # noqa: E402

FORBIDDEN_ROOT = "/dev/null/minirun-tests-must-not-touch-the-real-store"


_PEER_MODULES = {"test_load_save", "test_registry", "test_registry_client", "test_load_formats", "test_chaos"}
_SLOW_MODULES = {"test_chaos", "test_killed_clients", "test_full_disk"}


def pytest_collection_modifyitems(items) -> None:
    """The markers by where a test lives: root for integration and e2e, peers and slow by module."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if ".integration." in item.module.__name__ or ".e2e." in item.module.__name__:
            item.add_marker(pytest.mark.root)
        if module in _PEER_MODULES:
            item.add_marker(pytest.mark.peers)
        if module in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def session_host_names_removed():
    """The session's bridges (its default one stays after a container, as docker0 does), its nft
    table, its run dir and its (empty) cgroup parents go at the end, by their names, which are this
    session's alone."""
    yield
    if os.geteuid() != 0:
        return
    from minirun import hostwide
    from minirun.net.bridge import delete_bridge
    from minirun.runtime import cgroups

    for name in os.listdir("/sys/class/net"):
        if name == hostwide.DEFAULT_BRIDGE or name.startswith(hostwide.BRIDGE_PREFIX + "-"):
            delete_bridge(name)
    subprocess.run(["nft", "delete", "table", "ip", hostwide.NFT_TABLE], capture_output=True)
    shutil.rmtree(hostwide.RUN_DIR, ignore_errors=True)
    for hierarchy in cgroups.hierarchies():
        try:
            os.rmdir(f"{hierarchy.mount}/{hostwide.CGROUP_PARENT}")
        except FileNotFoundError:
            pass


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
