"""Running podman and skopeo (the peers) without writing the host's /var/lib/containers.

Every image copy of containers/image (skopeo copy; podman import, load, save, build, commit, pull,
push) opens its blob-info cache, and for root that is /var/lib/containers/cache: neither skopeo
1.9 nor podman 4.3 has an option or a containers.conf / registries.conf setting for its place
(containers/image takes it from SystemContext.BlobInfoCacheDir, which neither CLI sets; podman's
--root does not move it), so any such copy would create or update
/var/lib/containers/cache/blob-info-cache-v1.boltdb on the host.

`own_blob_cache(argv)` runs such a command in a mount namespace of its own in which
/var/lib/containers is an empty tmpfs: the cache is made there and goes when the command exits.
If the host has no /var/lib/containers (nothing to mount on, and creating it would change the
host), /var/lib is read-only in that namespace instead: containers/image cannot make the cache
directory and keeps a memory-only cache, as it does wherever it cannot write.
The mounts are the namespace's alone (private propagation); those made before it are seen as they
are, so the command finds its own --root and --runroot as always.

Only the copying commands need it: podman's other verbs (run, create, exec, diff, images, ps, rm,
rmi) never open the cache, and they stay in the host's namespace, where their containers' mounts
must be seen by the next podman command. Standard library only (the benchmarks use it too).

`PrivatePodman` is podman on storage, a runtime root and cgroups of its own, for the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

# `sh -c SCRIPT sh ARGV...`: mount, then exec the peer's command in the new namespace
_SCRIPT = """
if [ -d /var/lib/containers ]; then
    mount -t tmpfs -o mode=0700,size=64m minirun-peer-cache /var/lib/containers || exit 125
else
    { mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib; } || exit 125
fi
exec "$@"
"""

# the verbs of podman that copy an image (and so open the blob-info cache)
PODMAN_COPYING_VERBS = frozenset({"import", "load", "save", "build", "commit", "pull", "push"})


def own_blob_cache(argv: list[str]) -> list[str]:
    """`argv` to run in a mount namespace where the host's /var/lib/containers cannot be written
    (see the module's docstring). Needs root, like the peers' tests and benchmarks themselves."""
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "--mount", "--propagation", "private", "--", "sh", "-c", _SCRIPT, "sh", *argv]


def plain_cgroup_dirs() -> frozenset[str]:
    """Dirs right under /sys/fs/cgroup that are no mount. runc under podman makes one on a hybrid
    host for a controller it expects as a v1 hierarchy but finds only in cgroup2 (hugetlb on these
    VMs): plain dirs on the host's tmpfs for its containers' cgroup paths, with a `tasks` file
    conmon writes. Whoever ran the peer removes them (remove_plain_tree)."""
    root = "/sys/fs/cgroup"
    with open("/proc/self/mountinfo") as f:
        points = {line.split()[4] for line in f}
    try:
        names = os.listdir(root)
    except OSError:
        return frozenset()
    return frozenset(p for n in names if os.path.isdir(p := f"{root}/{n}") and p not in points)


def remove_plain_tree(path: str) -> list[str]:
    """Remove `path`, a plain dir of plain_cgroup_dirs or one below it, with what is in it; what
    stayed (as notes)."""
    left = []
    for top, dirs, files in os.walk(path, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(top, name))
            except OSError as e:
                left.append(f"{os.path.join(top, name)} ({e.strerror})")
        for name in dirs:
            try:
                os.rmdir(os.path.join(top, name))
            except OSError as e:
                left.append(f"{os.path.join(top, name)} ({e.strerror})")
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        left.append(f"{path} ({e.strerror})")
    return left


CONMON_PARENT = "libpod_parent"  # podman's cgroupfs parent: conmon's own cgroup, libpod_parent/conmon


def remove_conmon_cgroups() -> None:
    """podman (cgroupfs) puts every conmon in <hierarchy>/libpod_parent/conmon, whatever
    --cgroup-parent its containers get, and leaves the dirs. Removed when empty: another podman on
    the host with a conmon running keeps them (rmdir fails), and podman makes them again as needed."""
    import errno
    import time

    root = "/sys/fs/cgroup"
    try:
        hierarchies = [os.path.join(root, name) for name in os.listdir(root)]
    except OSError:
        return
    deadline = time.monotonic() + 5  # `podman rm` returns before its conmons are gone
    for hierarchy in hierarchies:
        for path in (f"{hierarchy}/{CONMON_PARENT}/conmon", f"{hierarchy}/{CONMON_PARENT}"):
            while True:
                try:
                    os.rmdir(path)
                except OSError as exc:
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                break


# podman's defaults for nofile and nproc are above this host's hard limits (a runtime may lower a
# limit, never raise one past them)
PODMAN_ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


class PrivatePodman:
    """podman on storage of its own in a temp dir under /tmp (podman refuses a runroot of more
    than 50 characters), with the OCI runtime `runtime` given a --root there too (podman passes it
    none, so runc would write the host's /run/runc), and its containers' cgroups under a parent
    named after the dir. `run_options` go into every `run`. remove() takes all of it away."""

    def __init__(self, runtime: str, prefix: str, run_options: tuple[str, ...] = ()) -> None:
        self.base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.runtime_root = os.path.join(self.base, "runtime-root")
        script = os.path.join(self.base, "runtime")
        with open(script, "w") as f:
            f.write(f'#!/bin/sh\nexec {runtime} --root "{self.runtime_root}" "$@"\n')
        os.chmod(script, 0o755)
        self.cmd = [
            *("podman", "--root", f"{self.base}/root", "--runroot", f"{self.base}/run", "--tmpdir", f"{self.base}/tmp"),
            *("--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"),
            *("--runtime", script),
        ]
        self.cgroup_parent = f"/{os.path.basename(self.base)}"
        self.run_options = run_options

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if args[:1] == ("run",):
            args = ("run", "--cgroup-parent", self.cgroup_parent, *self.run_options, *args[1:])
        command = [*self.cmd, *args]
        if args[0] in PODMAN_COPYING_VERBS:
            command = own_blob_cache(command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if check:
            assert done.returncode == 0, f"{' '.join(args)}: {done.stderr[-2000:]}"
        return done

    def cgroup_dirs(self) -> list[str]:
        """Every dir under this podman's cgroup parent, in every cgroup mount (name=systemd's too)."""
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split(" - ")[-1].startswith(("cgroup ", "cgroup2 "))]
        return [top for mount in mounts for top, _, _ in os.walk(mount + self.cgroup_parent)]

    def remove(self) -> None:
        subprocess.run([*self.cmd, "rm", "--all", "--force"], capture_output=True, timeout=120)
        remove_conmon_cgroups()
        for path in sorted(self.cgroup_dirs(), key=len, reverse=True):
            os.rmdir(path)
        for plain in plain_cgroup_dirs():  # runc's, for a controller it finds only in cgroup2
            remove_plain_tree(plain + self.cgroup_parent)
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(self.base + "/")]
        for mount in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
