"""The floor of a container start in Python, for scripts/bench_start.py: what any Python runtime
pays to run `true` in a fresh overlay, and nothing else minirun does.

    python -S -P scripts/startfloor.py LOWER DIR

It starts as minirun's `minirun` command does (`python -S -P`, minirun.linux's ctypes calls, no
site), makes DIR/upper and DIR/work, and forks one child as PID 1 of a new PID namespace, with
its own mount, UTS, IPC and network namespaces (runc's bundle from `runc spec` has these five).
The child makes `/` private, mounts the overlay of LOWER on DIR/root (created by the caller),
/proc and a tmpfs on /dev, pivots into it and execs /bin/true. The parent waits and removes upper
and work; the overlay went with the child's mount namespace.

Left out, so this is a floor and not a runtime: records, image lookup, the guard, logs, cgroups,
capabilities, seccomp, masked paths, /dev's nodes, /sys, the loopback. Exits with true's status,
or 127 and one line on stderr if the child failed before its exec.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minirun import linux  # noqa: E402  (after the path: scripts/ is not in the package)


def main(lower: str, base: str) -> int:
    upper, work, root = (os.path.join(base, name) for name in ("upper", "work", "root"))
    os.mkdir(upper)
    os.mkdir(work)
    linux.unshare(linux.CLONE_NEWPID)  # for the child only: it is PID 1 there
    pid = os.fork()
    if pid == 0:
        try:
            linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWNET)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            options = f"lowerdir={lower},upperdir={upper},workdir={work},index=off"
            linux.mount("overlay", root, "overlay", linux.MS_NODEV, options)
            linux.mount("proc", f"{root}/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            linux.mount("tmpfs", f"{root}/dev", "tmpfs", linux.MS_NOSUID, "mode=755")
            os.chdir(root)
            linux.pivot_root(".", ".")
            linux.umount2(".", linux.MNT_DETACH)
            os.chdir("/")
            os.execve("/bin/true", ["true"], {"PATH": "/bin"})
        except BaseException as exc:  # noqa: BLE001  (whatever it is, the child must not return)
            os.write(2, f"startfloor: {exc}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    for path in (upper, work):
        _remove_tree(path)
    return os.waitstatus_to_exitcode(status)


def _remove_tree(path: str) -> None:
    """rm -r without importing shutil (a start's floor has no use for it): `true` leaves at most
    overlay's work/work directory behind."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            os.unlink(entry.path)
    os.rmdir(path)


if __name__ == "__main__":
    code = main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    os._exit(code)  # as minirun's main(): no interpreter teardown
