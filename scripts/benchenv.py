"""Host-wide names of a benchmark's own for minirun, and their removal at the end.

minirun shares a few names among every store on a host (minirun/hostwide.py): its run dir
(/run/minirun), the default bridge (minirun0) and the prefix of user networks' bridges, its nft
table (ip minirun) and the cgroup under which containers' cgroups live (<hierarchy>/minirun). A
benchmark using those would meet a real minirun user of the host, or another benchmark, and leave
them behind. `private_names(work)` gives a run names of its own, as tests/conftest.py does for a
test session: bridge prefix mb<5 hex>, nft table and cgroup parent minirunbench<5 hex> (the hex
from the pid), run dir <work>/minirun-run. It puts them in os.environ, so every minirun the
benchmark starts with an env built from os.environ (or none) and every minirun module it imports
uses them; `HostNames.cleanup()` removes exactly those names: the bridges by `ip link del`, the
table by `nft delete table`, the run dir, and the (empty) cgroup parents by rmdir, never rm -r.

Call it before anything imports minirun (its names are read once, at import).

Also here, from tests/peers.py: `own_blob_cache(argv)`, how a benchmark runs podman's and skopeo's
image-copying commands (import, load, save, build, commit, pull, push; skopeo copy) so that they
never write the host's /var/lib/containers/cache. Standard library only.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.peers import own_blob_cache, plain_cgroup_dirs, remove_plain_tree  # noqa: E402  (shared with the tests)
from tests.sessions import Names, remove_names  # noqa: E402  (reads no name of minirun's)

__all__ = ["HostNames", "minirun_command", "own_blob_cache", "private_names"]


@functools.cache  # the command and its bundle written once a run
def minirun_command() -> list[str]:
    """How a benchmark starts minirun: as users do, the `minirun` that scripts/setup.sh writes
    beside this interpreter (minirun/launcher.py: `python -S -P`), written now with the bundle
    of the modules as they are (codebundle.py: an edited module would be imported the slow way).
    `python -m minirun` would time site and runpy too, ~10 ms no user pays."""
    command = Path(sys.executable).parent / "minirun"
    subprocess.run([sys.executable, "-m", "minirun.launcher", str(command)], check=True)
    return [str(command)]


@dataclass(frozen=True)
class HostNames:
    tag: str  # 5 hex digits
    run_dir: str
    # plain dirs under /sys/fs/cgroup when the run began (tests/peers.py's plain_cgroup_dirs)
    plain_cgroup_dirs_before: frozenset[str] = frozenset()

    @property
    def names(self) -> Names:
        # mb<tag>: 7 characters, so a network's bridge mb<tag>-<7 hex> stays within 15
        return Names(self.run_dir, f"mb{self.tag}", f"minirunbench{self.tag}", f"minirunbench{self.tag}")

    @property
    def bridge_prefix(self) -> str:
        return self.names.bridge_prefix

    @property
    def nft_table(self) -> str:
        return self.names.nft_table

    @property
    def cgroup_parent(self) -> str:
        return self.names.cgroup_parent

    @property
    def env(self) -> dict[str, str]:
        """The variables alone (minirun/hostwide.py reads them)."""
        return self.names.env

    def in_use(self) -> list[str]:
        """What of these names the host already has (another run's: then these are not ours)."""
        return self.names.in_use()

    def cleanup(self) -> list[str]:
        """Remove this run's nft table, bridges (and any veth still plugged into them), cgroup
        parents (empty cgroups only, deepest first) and run dir, as a test session removes its own
        (tests/sessions.py). Returns what was found in use and removed, or could not be removed, as
        leftover notes; [] when nothing remained but the bridge, table, run dir and parents a run
        leaves by design."""
        notes = remove_names(self.names)
        # a peer's plain dirs on the host's cgroup tmpfs (tests/peers.py), new since the run began
        for plain in sorted(plain_cgroup_dirs() - self.plain_cgroup_dirs_before):
            notes += [f"a peer's plain dir: {left}" for left in remove_plain_tree(plain)]
        return notes


def private_names(work: str | os.PathLike[str]) -> HostNames:
    """Names of this run's own, with the run dir under `work` (the benchmark's temp dir), set in
    os.environ for every minirun to come. The tag is the pid's; should a name of it be taken (a
    crashed run of the same pid, say), a random one."""
    if "minirun.hostwide" in sys.modules:
        raise RuntimeError("minirun was imported before the benchmark's host-wide names were set")
    before = plain_cgroup_dirs()
    names = HostNames(f"{os.getpid() % 0xFFFFF:05x}", os.path.join(os.fspath(work), "minirun-run"), before)
    for _ in range(20):
        if not names.in_use():
            break
        names = HostNames(os.urandom(3).hex()[:5], names.run_dir, before)
    else:
        raise RuntimeError(f"no free host-wide names for minirun: {names.in_use()}")
    os.environ.update(names.env)
    return names
