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

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.peers import own_blob_cache, plain_cgroup_dirs, remove_plain_tree  # noqa: E402  (shared with the tests)

__all__ = ["HostNames", "minirun_command", "own_blob_cache", "private_names"]


def minirun_command() -> list[str]:
    """How a benchmark starts minirun: as users do, the `minirun` that scripts/setup.sh writes
    beside this interpreter (minirun/launcher.py: `python -S -P`), written now if it is missing
    or pip's. `python -m minirun` would time site and runpy too, ~10 ms no user pays."""
    command = Path(sys.executable).parent / "minirun"
    if not command.is_file() or "minirun.launcher" not in command.read_text(errors="replace"):
        subprocess.run([sys.executable, "-m", "minirun.launcher", str(command)], check=True)
    return [str(command)]


@dataclass(frozen=True)
class HostNames:
    tag: str  # 5 hex digits
    run_dir: str
    # plain dirs under /sys/fs/cgroup when the run began (tests/peers.py's plain_cgroup_dirs)
    plain_cgroup_dirs_before: frozenset[str] = frozenset()

    @property
    def bridge_prefix(self) -> str:
        return f"mb{self.tag}"  # 7 characters: a network's bridge mb<tag>-<7 hex> stays within 15

    @property
    def nft_table(self) -> str:
        return f"minirunbench{self.tag}"

    @property
    def cgroup_parent(self) -> str:
        return f"minirunbench{self.tag}"

    @property
    def env(self) -> dict[str, str]:
        """The variables alone (minirun/hostwide.py reads them)."""
        return {
            "MINIRUN_RUN_DIR": self.run_dir,
            "MINIRUN_BRIDGE_PREFIX": self.bridge_prefix,
            "MINIRUN_NFT_TABLE": self.nft_table,
            "MINIRUN_CGROUP_PARENT": self.cgroup_parent,
        }

    def bridges(self) -> list[str]:
        """Our bridges that exist: the default one (PREFIX0) and user networks' (PREFIX-<hex>, and
        PREFIX.<hex> for internal ones)."""
        names = os.listdir("/sys/class/net")
        user = (f"{self.bridge_prefix}-", f"{self.bridge_prefix}.")
        return sorted(n for n in names if n == f"{self.bridge_prefix}0" or n.startswith(user))

    def in_use(self) -> list[str]:
        """What of these names the host already has (another run's: then these are not ours)."""
        found = [f"link {b}" for b in self.bridges()]
        if _nft("list", "table", "ip", self.nft_table).returncode == 0:
            found.append(f"nft table ip {self.nft_table}")
        found += [f"cgroup {d}" for d in _cgroup_parents(self.cgroup_parent) if os.path.isdir(d)]
        if os.path.lexists(self.run_dir):
            found.append(f"run dir {self.run_dir}")
        return found

    def cleanup(self) -> list[str]:
        """Remove this run's bridges (and any veth still plugged into them), its nft table, its
        run dir and its cgroup parents (empty cgroups only, deepest first). Returns what was found
        in use and removed, or could not be removed, as leftover notes; [] when nothing remained
        but the bridge, table, run dir and parents a run leaves by design."""
        notes: list[str] = []
        for bridge in self.bridges():
            brif = Path("/sys/class/net", bridge, "brif")
            for port in sorted(os.listdir(brif)) if brif.is_dir() else []:
                notes.append(f"link {port} still plugged into {bridge} (removed)")
                subprocess.run(["ip", "link", "del", port], capture_output=True)
            p = subprocess.run(["ip", "link", "del", bridge], capture_output=True, text=True)
            if p.returncode != 0 and os.path.exists(f"/sys/class/net/{bridge}"):
                notes.append(f"bridge {bridge} (ip link del: {p.stderr.strip()})")
        if _nft("list", "table", "ip", self.nft_table).returncode == 0:
            p = _nft("delete", "table", "ip", self.nft_table)
            if p.returncode != 0:
                notes.append(f"nft table ip {self.nft_table} ({p.stderr.strip()})")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if os.path.lexists(self.run_dir):
            notes.append(f"run dir {self.run_dir}")
        for parent in _cgroup_parents(self.cgroup_parent):
            for top, dirs, _ in os.walk(parent, topdown=False):
                for name in dirs:
                    notes += _rmdir(os.path.join(top, name), "container cgroup")
            if os.path.isdir(parent):
                notes += _rmdir(parent, "cgroup parent")
        # a peer's plain dirs on the host's cgroup tmpfs (tests/peers.py), new since the run began
        for plain in sorted(plain_cgroup_dirs() - self.plain_cgroup_dirs_before):
            notes += [f"a peer's plain dir: {left}" for left in remove_plain_tree(plain)]
        return notes


def _nft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], capture_output=True, text=True)


def _rmdir(path: str, what: str) -> list[str]:
    try:
        os.rmdir(path)  # a cgroup goes only once it holds no process and no child
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{what} {path} ({e.strerror})"]
    return [f"{what} {path} (removed)"] if what == "container cgroup" else []


def _cgroup_parents(parent: str) -> list[str]:
    """<mount>/<parent> in every cgroup hierarchy mounted here: where minirun makes container
    cgroups (minirun.runtime.cgroups.hierarchies(), read from the same mountinfo, is a subset).
    Not minirun's own function: importing minirun would fix its names before they are set."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, after = line.partition(" - ")
            if after.split(" ", 1)[0] in ("cgroup", "cgroup2"):
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields.split()[4])
                points.append(f"{point}/{parent}")
    return points


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
