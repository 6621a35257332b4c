"""A test session's host-wide names (tests/conftest.py), the record it keeps of itself, and the
removal of what a session made on the host: by the session itself at its end, or, for a session
killed before its end (SIGKILL, `timeout`, a cancelled CI job: no pytest_sessionfinish runs), by
the next session to start on the host, once the record proves its owner dead.

A session is its pytest controller's (under pytest-xdist, the process that starts the workers).
Its id is 5 hex digits and every name of it follows from the id alone (`Names.of_session`): the
run dir /run/minirun-test-ID, the bridges mtID0, mtID-* and mtID.*, the nft table ip
miniruntestID, and the cgroups miniruntestID (a serial run's) and miniruntestIDgwN (worker gwN's)
in every hierarchy.

The record, RUN_DIR/test-session.json: the id, the controller's pid and its start time (pids are
reused; minirun/procs.py), and the dirs its tests mount under (pytest's basetemp: the workers' are
below it). The run dir is made by mkdir, which claims the id (of two sessions only one makes it),
and the record is written in it at once, before minirun reads its names (hostwide.py), so before
any bridge, table or cgroup of the session can exist. A session is dead when its pid with that
start time no longer runs; only then is it swept:

1. its processes are killed: every one in its cgroups (containers' PID 1s and whatever they
   started), and every one whose environment at exec held its MINIRUN_RUN_DIR (the workers, their
   CLI fork servers and the CLIs they fork, containers' monitors and port proxies);
2. the mounts under its recorded dirs and its run dir go (lazily: a killed process may still be
   going);
3. its names go, as a live session's go at its end (`remove_names`): the nft table, the bridges
   with the ports still plugged into them, the cgroups deepest first, the run dir, its record last
   (a sweep cut short is done again by the next).

A run dir without a readable record is never swept: a session from before records (its names by
its pid alone, which may now be another's) or one in the instant between its mkdir and its
record. Nothing says whose it is or whether its owner lives, and its tmp dirs are unknown, so
its mounts could not be found. A sweeper holds a flock on the record while it works: two sweepers
of one dead session take turns, and the second, finding the record gone or replaced (its id
claimed again), leaves it.

Not swept, having no name of the session: the plain dirs runc makes under /sys/fs/cgroup for the
peer tests (tests/peers.py), and the temp dirs of podman's own storage (PrivatePodman) with their
mounts; pytest removes old basetemps itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from minirun.procs import is_alive, is_zombie, start_time

RUN_PARENT = "/run"
RECORD = "test-session.json"
VARIABLES = ("MINIRUN_RUN_DIR", "MINIRUN_BRIDGE_PREFIX", "MINIRUN_NFT_TABLE", "MINIRUN_CGROUP_PARENT")
_SESSION_ID = re.compile(r"[0-9a-f]{5}")
_RUN_DIR_NAME = re.compile(r"minirun-test-([0-9a-f]{5})")
_KILL_WITHIN = 10.0  # seconds: SIGKILL is prompt, but a process in D state dies when its I/O ends


@dataclass(frozen=True)
class Names:
    run_dir: str
    bridge_prefix: str  # the default bridge PREFIX0, user networks' PREFIX-<hex> and PREFIX.<hex>
    nft_table: str  # ip NAME
    cgroup_parent: str  # <hierarchy>/PARENT, and a worker's <hierarchy>/PARENTgwN

    @classmethod
    def of_session(cls, session: str) -> Names:
        if not _SESSION_ID.fullmatch(session):
            raise ValueError(f"not a test session id: {session!r}")
        return cls(
            f"{RUN_PARENT}/minirun-test-{session}", f"mt{session}", f"miniruntest{session}", f"miniruntest{session}"
        )

    @property
    def env(self) -> dict[str, str]:
        """The variables minirun/hostwide.py reads them from."""
        return dict(zip(VARIABLES, (self.run_dir, self.bridge_prefix, self.nft_table, self.cgroup_parent)))

    def in_use(self) -> list[str]:
        """What of these names the host has."""
        found = [f"link {b}" for b in bridges(self.bridge_prefix)]
        if _nft("list", "table", "ip", self.nft_table).returncode == 0:
            found.append(f"nft table ip {self.nft_table}")
        found += [f"cgroup {d}" for d in cgroup_parents(self.cgroup_parent)]
        if os.path.lexists(self.run_dir):
            found.append(f"run dir {self.run_dir}")
        return found


@dataclass(frozen=True)
class Record:
    session: str
    pid: int  # the controller's
    start: int  # its start time (/proc/PID/stat)
    tmp: list[str] = field(default_factory=list)  # dirs the session's tests mount under

    @property
    def names(self) -> Names:
        return Names.of_session(self.session)

    def write(self) -> None:
        """Atomically: a sweeper reads the whole record or none."""
        path = os.path.join(self.names.run_dir, RECORD)
        data = json.dumps({"session": self.session, "pid": self.pid, "start": self.start, "tmp": self.tmp})
        with open(f"{path}.{os.getpid()}.tmp", "w") as f:
            f.write(data)
        os.replace(f"{path}.{os.getpid()}.tmp", path)

    @classmethod
    def parse(cls, data: bytes, session: str) -> Record | None:
        """The record of `session`, or None if `data` is not one, whole and sound: a tmp dir it
        names must be absolute and below a top-level dir (a mangled "/" or "/tmp" would take
        every mount under it)."""
        try:
            raw = json.loads(data)
            record = cls(raw["session"], raw["pid"], raw["start"], raw["tmp"])
        except (ValueError, KeyError, TypeError):
            return None
        sound = (
            record.session == session
            and all(type(n) is int and n > 0 for n in (record.pid, record.start))
            and isinstance(record.tmp, list)
            and all(isinstance(d, str) and d.startswith("/") and os.path.normpath(d) == d for d in record.tmp)
            and all(d.count("/") >= 2 for d in record.tmp)
        )
        return record if sound else None


def claim_session(pid: int) -> Record:
    """A session id for the controller `pid`, its run dir made and its record written: the pid's
    own id as before, or, if that is taken (its run dir, or names of it, exist), a random one."""
    candidates = [f"{pid % 0xFFFFF:05x}", *(os.urandom(3).hex()[:5] for _ in range(20))]
    for session in candidates:
        names = Names.of_session(session)
        if names.in_use():
            continue
        try:
            os.mkdir(names.run_dir)
        except FileExistsError:  # another session took it since
            continue
        start = start_time(pid)
        if start is None:
            raise RuntimeError(f"process {pid} is not running")
        record = Record(session, pid, start)
        record.write()
        return record
    raise RuntimeError("no free test session id on this host")


def sweep_dead_sessions(spare_run_dir: str | None = None) -> list[str]:
    """Sweep every recorded session whose controller is dead (but the one whose run dir is
    `spare_run_dir`: the names this process was given). One line for each one swept."""
    try:
        entries = sorted(os.listdir(RUN_PARENT))
    except FileNotFoundError:
        return []
    swept = []
    for entry in entries:
        match = _RUN_DIR_NAME.fullmatch(entry)
        if match and os.path.join(RUN_PARENT, entry) != spare_run_dir:
            swept += _sweep_if_dead(match.group(1))
    return swept


def _sweep_if_dead(session: str) -> list[str]:
    names = Names.of_session(session)
    path = os.path.join(names.run_dir, RECORD)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # no record: whose it is, and whether they live, nobody knows
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another sweeper of it: wait for it to finish
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return []  # rewritten by its owner, or swept and its id claimed again
        except FileNotFoundError:
            return []  # swept meanwhile
        record = Record.parse(os.read(fd, 1 << 16), session)
        if record is None or is_alive(record.pid, record.start):
            return []
        notes = kill_processes(names)
        notes += unmount_under([*record.tmp, names.run_dir])
        notes += remove_names(names)
        return [f"swept test session {session}, its pytest (pid {record.pid}) gone" + "".join(f"; {n}" for n in notes)]
    finally:
        os.close(fd)


def kill_processes(names: Names) -> list[str]:
    """SIGKILL every process of the session's (see the module's docstring) but this one, until none
    is left. A frozen cgroup of it (a paused container) is thawed: a signal waits for the thaw."""
    marker = f"MINIRUN_RUN_DIR={names.run_dir}".encode()
    in_cgroups = _cgroup_parent_name(names.cgroup_parent)
    deadline = time.monotonic() + _KILL_WITHIN
    killed: set[int] = set()
    while True:
        found = [pid for pid in _pids() if pid != os.getpid() and _is_sessions(pid, marker, in_cgroups)]
        if not found:
            return [f"killed {len(killed)} processes"] if killed else []
        if time.monotonic() > deadline:
            return [f"processes {found} outlived SIGKILL"]
        for pid in found:
            if _kill_if_sessions(pid, marker, in_cgroups):
                killed.add(pid)
        for parent in cgroup_parents(names.cgroup_parent):
            _thaw(parent)
        time.sleep(0.05)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _is_sessions(pid: int, marker: bytes, in_cgroups: re.Pattern[str]) -> bool:
    """Whether `pid` is the session's: in a cgroup of it, or started with its run dir. Never a
    zombie: it is dead already, and stays in its cgroup until its parent reaps it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        with open(f"/proc/{pid}/cgroup") as f:
            cgroups = f.read()
    except OSError:  # gone
        return False
    if is_zombie(pid):
        return False
    # hierarchy-id:controllers:/path, the path from the root of our cgroup namespace
    tops = (line.split(":", 2)[2].split("/")[1] for line in cgroups.splitlines() if line.count(":") >= 2)
    return marker in environ.split(b"\0") or any(in_cgroups.fullmatch(top) for top in tops)


def _kill_if_sessions(pid: int, marker: bytes, in_cgroups: re.Pattern[str]) -> bool:
    """SIGKILL by a pidfd, taken before the process is checked again: the pid may have been
    reused since the scan, and then the check is of the process that the signal reaches."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not _is_sessions(pid, marker, in_cgroups):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _thaw(parent: str) -> None:
    for top, _, _ in os.walk(parent):  # parents first: a frozen parent keeps its children frozen
        for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            path = os.path.join(top, name)
            try:
                with open(path) as f:
                    if f.read().strip() == thawed:
                        continue
                with open(path, "w") as f:
                    f.write(thawed)
            except OSError:  # not the freezer's hierarchy, or gone
                pass


def unmount_under(dirs: list[str]) -> list[str]:
    """Detach every mount strictly below one of `dirs`, the last mounted first."""
    from minirun.errors import SyscallError
    from minirun.linux import MNT_DETACH, umount2

    below = tuple(d.rstrip("/") + "/" for d in dirs)
    points = [point for point, _ in _mountinfo() if point.startswith(below)]
    left = []
    for point in reversed(points):  # a mount stands on those listed before it
        try:
            umount2(point, MNT_DETACH)
        except SyscallError:  # detached with a mount it stood on
            if any(point == p for p, _ in _mountinfo()):
                left.append(point)
    notes = [f"unmounted {len(points) - len(left)} mounts"] if len(points) > len(left) else []
    return notes + [f"mount {point} stayed" for point in left]


def remove_names(names: Names) -> list[str]:
    """Remove the nft table, the bridges (with any port still plugged into them), the cgroups
    (empty ones only, deepest first) and the run dir (its record last) of `names`. Notes of what
    was found in use and removed, or could not be removed: [] when nothing remained but the
    bridge, table, run dir and cgroup parents a session leaves by design."""
    notes = []
    if _nft("list", "table", "ip", names.nft_table).returncode == 0:
        p = _nft("delete", "table", "ip", names.nft_table)
        if p.returncode != 0:
            notes.append(f"nft table ip {names.nft_table} ({p.stderr.strip()})")
    notes += remove_bridges(names.bridge_prefix)
    for parent in cgroup_parents(names.cgroup_parent):
        notes += remove_cgroup_tree(parent)
    notes += remove_run_dir(names.run_dir)
    return notes


def bridges(prefix: str) -> list[str]:
    """The bridges of `prefix` the host has: the default one and user networks'."""
    names = os.listdir("/sys/class/net")
    return sorted(n for n in names if n == f"{prefix}0" or n.startswith((f"{prefix}-", f"{prefix}.")))


def remove_bridges(prefix: str) -> list[str]:
    notes = []
    for bridge in bridges(prefix):
        brif = f"/sys/class/net/{bridge}/brif"
        for port in sorted(os.listdir(brif)) if os.path.isdir(brif) else []:
            notes.append(f"link {port} still plugged into {bridge} (removed)")
            subprocess.run(["ip", "link", "del", port], capture_output=True)
        p = subprocess.run(["ip", "link", "del", bridge], capture_output=True, text=True)
        if p.returncode != 0 and os.path.exists(f"/sys/class/net/{bridge}"):
            notes.append(f"bridge {bridge} (ip link del: {p.stderr.strip()})")
    return notes


def cgroup_mounts() -> list[str]:
    """Every cgroup hierarchy mounted here, not only minirun's (minirun.runtime.cgroups.hierarchies(),
    read from the same mountinfo, is a subset): runc, the OCI tests' twin, also makes a container's
    cgroup in name=systemd, which carries no controller minirun uses."""
    return [point for point, fstype in _mountinfo() if fstype in ("cgroup", "cgroup2")]


def cgroup_parents(parent: str) -> list[str]:
    """<mount>/PARENT and <mount>/PARENTgwN that exist, in every cgroup mount."""
    match = _cgroup_parent_name(parent)
    found = []
    for mount in cgroup_mounts():
        try:
            entries = os.listdir(mount)
        except OSError:
            continue
        found += [f"{mount}/{e}" for e in sorted(entries) if match.fullmatch(e) and os.path.isdir(f"{mount}/{e}")]
    return found


def _cgroup_parent_name(parent: str) -> re.Pattern[str]:
    return re.compile(re.escape(parent) + r"(gw[0-9]+)?")


def remove_cgroup_tree(path: str) -> list[str]:
    """rmdir `path` and the cgroups below it, deepest first: a cgroup goes only once it holds no
    process and no child, so a busy one stays (noted)."""
    notes = []
    for top, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            notes += _rmdir(os.path.join(top, name), "container cgroup")
    return notes + _rmdir(path, "cgroup parent")


def _rmdir(path: str, what: str) -> list[str]:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{what} {path} ({e.strerror})"]
    return [f"{what} {path} (removed)"] if what == "container cgroup" else []


def remove_run_dir(path: str) -> list[str]:
    """The run dir and what is in it, the record last: while it is there, a sweep cut short can be
    done again."""
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry != RECORD:
            target = os.path.join(path, entry)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                _unlink(target)
    _unlink(os.path.join(path, RECORD))
    try:
        os.rmdir(path)
    except OSError:
        return [f"run dir {path}"]
    return []


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _nft(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["nft", *args], capture_output=True, text=True)
    except FileNotFoundError:  # no nft: no table either
        return subprocess.CompletedProcess(["nft", *args], 127, "", "nft: not found")


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount here, in mount order."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, after = line.partition(" - ")
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields.split()[4])
            mounts.append((point, after.split(" ", 1)[0]))
    return mounts
