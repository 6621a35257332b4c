"""Every test gets its own store; the real /var/lib/minirun is unusable from tests. The session
has host-wide names of its own (minirun/hostwide.py): a run dir, a bridge prefix, an nft table and
a cgroup parent no other session uses, so two copies of the suite on one host do not meet; it
removes them at the end, so the host ends as it began. A session killed before its end leaves
them, with its processes and mounts: the next session to start sweeps them, once the record the
dead one kept in its run dir proves it dead (tests/sessions.py).

Under pytest-xdist (scripts/test.sh runs `-n 4`) the workers share the session's run dir, bridges and nft table, as the
stores of one host share /run/minirun (what the address book and the port lock are for), and as a
default bridge takes one of only three /16 subnets (minirun/net/networks.py), which two copies of
the suite would run out of with a bridge per worker; the controller removes them once every worker
is done. Each worker has a cgroup parent of its own: `system check` takes every cgroup under it for
its store's business, so a check in one worker must not see another's containers."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import pytest

from tests import sessions  # reads no name of minirun's: hostwide.py's are not fixed yet

# Before anything imports minirun: its host-wide names are read once, at import. An xdist worker
# inherits the controller's (its environment is the controller's, these set in it). The
# controller, as root, first sweeps what dead sessions left, then claims an id and writes its
# record, before any of its names is used; names given in the environment are not its to record.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... set before conftests load
_RECORDED: sessions.Record | None = None
_SWEPT: list[str] = []  # said in the terminal summary: pytest captures what this file prints
if not _WORKER and os.geteuid() == 0:
    _SWEPT = sessions.sweep_dead_sessions(spare_run_dir=os.environ.get("MINIRUN_RUN_DIR"))
    if not any(variable in os.environ for variable in sessions.VARIABLES):
        _RECORDED = sessions.claim_session(os.getpid())
        os.environ.update(_RECORDED.names.env)
for _variable, _value in sessions.Names.of_session(f"{os.getpid() % 0xFFFFF:05x}").env.items():
    os.environ.setdefault(_variable, _value)
if _WORKER and not os.environ["MINIRUN_CGROUP_PARENT"].endswith(_WORKER):
    os.environ["MINIRUN_CGROUP_PARENT"] += _WORKER

import minirun.store  # noqa: E402

FORBIDDEN_ROOT = "/dev/null/minirun-tests-must-not-touch-the-real-store"


_PEER_MODULES = {"test_load_save", "test_registry", "test_registry_client", "test_load_formats", "test_chaos"}
_SLOW_MODULES = {"test_chaos", "test_killed_clients", "test_full_disk"}
_SLOW_TESTS = {"test_many_run_d_rm_f_cycles_leave_nothing"}  # 200 cycles of `run -d` and `rm -f`: over a minute
# Under xdist the slow tests start first, the longest first, each followed by a quick one: with
# scripts/test.sh's `--maxschedchunk 2` every worker's first pair holds one of the long ones, so they
# run side by side from the start, not one after another at the end of a worker's queue.
_LONGEST_FIRST = [
    "test_many_run_d_rm_f_cycles_leave_nothing",
    "test_kill_9_anywhere_then_system_check_repairs_everything",
]


def pytest_collection_modifyitems(config, items) -> None:
    """The markers by where a test lives: root for integration and e2e, peers and slow by module
    (and the one slow test of a module of quick ones); under xdist, the slow tests first."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if ".integration." in item.module.__name__ or ".e2e." in item.module.__name__:
            item.add_marker(pytest.mark.root)
        if module in _PEER_MODULES:
            item.add_marker(pytest.mark.peers)
        if module in _SLOW_MODULES or item.originalname in _SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    if hasattr(config, "workerinput"):  # every worker orders alike: the controller checks that
        slow = [item for item in items if item.get_closest_marker("slow")]
        slow.sort(
            key=lambda item: (
                _LONGEST_FIRST.index(item.originalname) if item.originalname in _LONGEST_FIRST else len(_LONGEST_FIRST)
            )
        )
        quick = [item for item in items if not item.get_closest_marker("slow")]
        paired = [each for pair in zip(slow, quick) for each in pair]
        items[:] = paired + slow[len(quick) :] + quick[len(slow) :]


def _plain_cgroup_dirs_now() -> frozenset[str]:
    from tests.peers import plain_cgroup_dirs

    return plain_cgroup_dirs() if os.geteuid() == 0 else frozenset()


_PLAIN_CGROUP_DIRS = _plain_cgroup_dirs_now()  # the host's before this session (the controller's view)


@pytest.hookimpl(tryfirst=True)  # before xdist starts the workers (its sessionstart is trylast)
def pytest_sessionstart(session) -> None:
    """The record gets the dirs the session's tests mount under: pytest's basetemp (a worker's is
    below the controller's)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if _RECORDED is not None and factory is not None:
        replace(_RECORDED, tmp=[str(factory.getbasetemp())]).write()


def pytest_sessionfinish(session) -> None:
    """What the session made on the host goes, by its names, which are its alone: a worker's (or
    a serial run's) cgroup parent at its end; the bridges (the default one stays after a
    container, as docker0 does), the nft table, every worker's cgroup parent and the run dir with
    the session's record once every worker is done, in the controller (or the serial run)."""
    if os.geteuid() != 0:
        return
    from minirun import hostwide

    if hasattr(session.config, "workerinput"):
        # a child left here is a leak, but it is ours: an empty one goes (a busy one refuses)
        for mount in sessions.cgroup_mounts():
            sessions.remove_cgroup_tree(f"{mount}/{hostwide.CGROUP_PARENT}")
        return  # a worker: the others may still use the bridges, the table and the run dir
    from tests.peers import plain_cgroup_dirs, remove_plain_tree

    for plain in plain_cgroup_dirs() - _PLAIN_CGROUP_DIRS:  # runc's, under the peer tests' podman
        remove_plain_tree(plain)
    sessions.remove_names(
        sessions.Names(hostwide.RUN_DIR, hostwide.BRIDGE_PREFIX, hostwide.NFT_TABLE, hostwide.CGROUP_PARENT)
    )


def pytest_terminal_summary(terminalreporter) -> None:
    if _SWEPT:
        terminalreporter.write_sep("-", "swept at the start: what test sessions killed before their end left")
        for line in _SWEPT:
            terminalreporter.write_line(line)


def pytest_unconfigure(config) -> None:
    """A claimed run dir goes even when no session ran (`pytest --help` loads this file too)."""
    if _RECORDED is not None:
        sessions.remove_run_dir(_RECORDED.names.run_dir)


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


@pytest.fixture(scope="session", autouse=True)
def cli_forkserver(tmp_path_factory):
    """tests/forkserver.py says why; MINIRUN_TEST_FORKSERVER=0 starts a new interpreter per call."""
    from tests import forkserver

    if os.environ.get("MINIRUN_TEST_FORKSERVER", "1") == "0":
        yield
        return
    forkserver.SERVER = forkserver.ForkServer(str(tmp_path_factory.mktemp("forkserver") / "socket"))
    yield
    forkserver.SERVER.close()
    forkserver.SERVER = None


@pytest.fixture
def cli(isolated_store):
    """Run the CLI as a user types it, in a separate process, against the test's store."""
    from tests.forkserver import run_minirun

    def run(*args: str, input: bytes | None = None, root: str | None = None) -> Result:
        env = dict(os.environ, MINIRUN_ROOT=root or str(isolated_store))
        code, out, err = run_minirun(list(args), env, input, timeout=300)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    return run


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
