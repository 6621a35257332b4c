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
"""

from __future__ import annotations

import os
import shutil

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
