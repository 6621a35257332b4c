"""A helper process for the benchmarks: where crun refuses this host, it runs in a mount namespace without cgroup2.

On a hybrid cgroup layout whose cgroup2 mount (/sys/fs/cgroup/unified) carries a controller
(hugetlb on these VMs), crun refuses to run, even with --cgroup-manager=disabled ("cgroups in
hybrid mode not supported, drop all controllers from cgroupv2"). It runs where that mount is not
there. `NamespaceHelper(tools, tmp)` forks one process from the benchmark that
  - unshares its mount namespace and makes every mount in it private, so nothing it mounts or
    unmounts reaches the host, and nothing the host mounts reaches it;
  - unmounts /sys/fs/cgroup/unified in that namespace only (the host keeps it: `close` checks);
  - then serves the benchmark's calls on its copies of `tools` (prepare, record, cleanup), which
    time their commands themselves, as every other row is timed: fork+exec+wait seen from a Python
    process. The unshare and the umount happen once, before any timing, and are in no figure.
`helper.adopt(key)` gives the object to put in the benchmark's list of tools: its methods run in
the helper, and its figures (`times`, `extra`, `left`) come back with each reply. Calls and replies
go over two pipes, pickled (both ends are this same program, forked).

What a container started there lacks: a cgroup2 cgroup (the hugetlb controller's here). It gets
the same v1 cgroups that runc's get. Running runc in the helper too, as a control, shows what the
helper's conditions change for runc (the benchmarks print both). Should the benchmark die, the
helper sees its request pipe close, cleans up every tool itself and exits.
Standard library only. Run as root.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import re
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

UNIFIED = Path("/sys/fs/cgroup/unified")
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# what a tool's method may change that the benchmark reads back: its figures and its leftovers
SYNCED = ("times", "extra", "left")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unified_mounted() -> bool:
    """Whether this process's mount namespace has the cgroup2 hierarchy of a hybrid layout."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(UNIFIED) for line in f)


def enter_namespace_without_unified() -> None:
    """Unshare the mount namespace, make it all private, unmount cgroup2 in it (nowhere else)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    if _libc.umount2(str(UNIFIED).encode(), 0) != 0:
        _check(_libc.umount2(str(UNIFIED).encode(), MNT_DETACH), f"umount {UNIFIED}")
    if unified_mounted():
        raise OSError(f"{UNIFIED} is still mounted in the helper's namespace")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this process's namespace, deepest last."""
    top = str(path).rstrip("/")
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == top or point.startswith(top + "/"):
                points.append(point)
    return points


def _state(tool: Any) -> dict[str, Any]:
    return {name: getattr(tool, name) for name in SYNCED if hasattr(tool, name)}


class NamespaceHelper:
    """The forked helper; `tools` maps a key to each tool object it is to run."""

    def __init__(self, tools: dict[str, Any], tmp: Path) -> None:
        self.tools = tools
        self.tmp = tmp
        self.failed: str | None = None  # why no further call can be made
        self.host_had_unified = unified_mounted()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would print what is buffered a second time
        self.pid = os.fork()
        if self.pid == 0:
            os.close(to_child_w)
            os.close(from_child_r)
            code = 1
            try:
                self._serve(os.fdopen(to_child_r, "rb"), os.fdopen(from_child_w, "wb"))
                code = 0
            finally:
                os._exit(code)
        os.close(to_child_r)
        os.close(from_child_w)
        self.requests = os.fdopen(to_child_w, "wb")
        self.replies = os.fdopen(from_child_r, "rb")
        try:
            _, reason = pickle.load(self.replies)  # ("ready", None or why not)
        except EOFError:
            reason = "the helper exited before it was ready"
        self.failed = reason
        if self.failed is None and not unified_mounted():
            self.failed = f"{UNIFIED} is gone from the benchmark's own namespace: the helper changed the host"

    # -- the benchmark's side

    def adopt(self, key: str) -> InHelper:
        """The stand-in for tools[key] in the benchmark's list of tools."""
        return InHelper(self, key, self.tools[key])

    def call(self, key: str, method: str, args: tuple[Any, ...]) -> tuple[str, Any, dict[str, Any]]:
        if self.failed:
            raise OSError(f"the helper in its own mount namespace: {self.failed}")
        try:
            pickle.dump(("call", key, method, args), self.requests)
            self.requests.flush()
            reply: tuple[str, Any, dict[str, Any]] = pickle.load(self.replies)
        except (EOFError, BrokenPipeError):
            self.failed = "it exited"
            raise OSError("the helper in its own mount namespace exited") from None
        except BaseException:  # interrupted mid-call: its reply may still come, so stop talking
            self.failed = "interrupted"
            raise
        return reply

    def close(self) -> list[str]:
        """End the helper (it cleans up what was not yet cleaned up, and unmounts what it left under
        tmp) and wait for it. Returns leftovers: what it found still mounted in its namespace, and
        the host's cgroup2 mount should it be gone from the benchmark's namespace."""
        left: list[str] = []
        try:
            if self.failed != "interrupted":
                pickle.dump(("close",), self.requests)
            self.requests.close()
        except OSError:
            pass
        try:
            while True:  # past any reply to an interrupted call, up to the final report
                message = pickle.load(self.replies)
                if message[0] == "final":
                    left += message[1]
                    break
        except (EOFError, OSError, pickle.UnpicklingError):
            left.append("the helper's final report (it exited without one)")
        self.replies.close()
        _, status = os.waitpid(self.pid, 0)
        if status != 0:
            left.append(f"the helper's exit (wait status {status})")
        if self.host_had_unified and not unified_mounted():
            left.append(f"{UNIFIED} is no longer mounted on the host")
        return left

    # -- the helper's side

    def _serve(self, requests: Any, replies: Any) -> None:
        # The benchmark handles the signals and then closes the pipe; a handler (not SIG_IGN, which
        # the commands would inherit) keeps this process alive until then.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        try:
            enter_namespace_without_unified()
            reason = None
        except OSError as e:
            reason = str(e)
        pickle.dump(("ready", reason), replies)
        replies.flush()
        cleaned: set[str] = set() if reason is None else set(self.tools)
        while True:
            try:
                message = pickle.load(requests)
            except EOFError:  # the benchmark died or was interrupted mid-call
                break
            if message[0] == "close":
                break
            _, key, method, args = message
            tool = self.tools[key]
            try:
                reply: tuple[str, Any, dict[str, Any]] = ("ok", getattr(tool, method)(*args), _state(tool))
            except Exception as e:
                reply = ("raise", e, _state(tool))
            if method == "cleanup":
                cleaned.add(key)
            try:
                data = pickle.dumps(reply)
            except Exception as e:  # an exception that does not pickle comes back as an OSError
                data = pickle.dumps(("raise", OSError(f"{reply[1]!r} (unpicklable: {e})"), _state(tool)))
            try:
                replies.write(data)
                replies.flush()
            except OSError:  # the benchmark is gone: clean up all the same
                break
        for key in self.tools.keys() - cleaned:
            try:
                self.tools[key].cleanup()
            except Exception:
                pass
        left = []
        for point in reversed(mounts_under(self.tmp)) if reason is None else []:
            left.append(f"mount {point} (in the helper's namespace)")
            if _libc.umount2(point.encode(), 0) != 0:
                _libc.umount2(point.encode(), MNT_DETACH)
        try:
            pickle.dump(("final", left), replies)
            replies.flush()
        except OSError:
            pass


class InHelper:
    """Stands in for a tool in the benchmark's list: prepare, record and cleanup run on the helper's
    copy of it; its label, command and other set-up attributes are this side's copy."""

    def __init__(self, helper: NamespaceHelper, key: str, tool: Any) -> None:
        self.__dict__.update(vars(tool))
        self.helper = helper
        self.key = key
        self.times: list[float] = []
        self.extra: list[float] = []
        self.failures: list[str] = []
        self.left: list[str] = []
        self.skipped: str | None = None

    def _call(self, method: str, *args: Any) -> Any:
        kind, value, state = self.helper.call(self.key, method, args)
        self.__dict__.update(state)
        if kind == "raise":
            raise value
        return value

    def prepare(self) -> None:
        self._call("prepare")

    def record(self, i: int) -> None:
        self._call("record", i)

    def cleanup(self) -> None:
        if self.helper.failed is None:
            self._call("cleanup")

    def leftovers(self) -> list[str]:
        return self.left


def runtime_pairs(
    minirun: Any, oci: dict[tuple[str, bool], Any], versus: Any, floors: dict[bool, Any], suffix: str = ""
) -> list[tuple[str, list[float], list[float]]]:
    """The pairs worth a same-round ratio, for print_pairs: minirun (its `times`) against each OCI
    runtime's figure `versus(tool)` -> (label, times), crun against runc where both ran in the same
    place, runc in the helper against runc here (the control: what the helper's conditions change),
    and the floor in the helper against the floor here. `oci`: (name, in the helper) -> tool;
    `floors`: in the helper -> the floor's tool; `suffix` names what the runtimes' own pairs time."""
    peers = [t for (name, in_helper), t in oci.items() if not (name == "runc" and in_helper)]  # not the control
    pairs = [(f"minirun ÷ {label}", minirun.times, times) for label, times in map(versus, peers)] if minirun else []
    for in_helper, where in ((False, "here"), (True, "both in the helper")):
        if ("crun", in_helper) in oci and ("runc", in_helper) in oci:
            pairs.append((f"crun ÷ runc, {where}{suffix}", oci["crun", in_helper].times, oci["runc", in_helper].times))
    if ("runc", True) in oci and ("runc", False) in oci:
        pairs.append((f"runc in the helper ÷ runc here{suffix}", oci["runc", True].times, oci["runc", False].times))
    if len(floors) == 2:
        pairs.append((f"{floors[False].label}: in the helper ÷ here", floors[True].times, floors[False].times))
    return pairs


def print_pairs(pairs: list[tuple[str, list[float], list[float]]], runs: int) -> None:
    """Print, for each (label, a, b), the median of the same-round ratios a[i] / b[i]: the figure a
    pair-by-pair comparison gives. Pairs whose two tools did not both time every round are left out
    (a failed run would shift the rounds)."""
    rows = [
        (label, statistics.median(x / y for x, y in zip(a, b))) for label, a, b in pairs if len(a) == len(b) == runs > 0
    ]
    if not rows:
        return
    w = max(len(label) for label, _ in rows) + 2
    print("  pairs       : median of the same-round ratios")
    for label, ratio in rows:
        print(f"    {label:<{w}}{ratio:6.2f}×")
