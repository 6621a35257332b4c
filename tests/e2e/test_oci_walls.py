"""Attacks on minirun-oci from where runc's advisories stood: an image whose /proc is its own
files, a container's PID 1 that chroots before the runtime's `exec`, a container that shares its
PID namespace with one being created (a pod's). Each checks the wall from the kernel's side."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

from minirun.runtime.privileges import DEFAULT_CAPABILITIES
from tests.e2e.test_oci import OCI, Oci, bundle, busybox_tar, oci  # noqa: F401  (fixtures)
from tests.helpers import wait_until

# docker's default capabilities, as containerd's and podman's bundles list them
DOCKER_CAPS = list(DEFAULT_CAPABILITIES)


def _caps(status: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")}


def _mask(names: list[str]) -> int:
    from minirun.runtime.privileges import capability_mask

    return capability_mask(names)


def test_a_fake_cap_last_cap_in_the_image_keeps_no_capability_bounded(oci: Oci, bundle) -> None:  # noqa: F811
    """The bounding set is dropped up to the kernel's last capability, which must come from the
    kernel: an image's /proc/sys/kernel/cap_last_cap saying 0 (its /proc its own files, procfs
    elsewhere) left every capability in the bounding set, for a setuid binary to take."""

    def edit(config):
        for mount in config["mounts"]:
            if mount["destination"] == "/proc":
                mount["destination"] = "/realproc"
        config["linux"]["maskedPaths"] = config["linux"]["readonlyPaths"] = []
        config["process"]["user"] = {"uid": 1000, "gid": 1000}
        config["process"]["noNewPrivileges"] = False

    path = bundle(["cat", "/realproc/self/status"], edit=edit)
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(os.path.join(rootfs, "realproc"))
    os.makedirs(os.path.join(rootfs, "proc/sys/kernel"))
    os.symlink("/realproc/self", os.path.join(rootfs, "proc/self"))  # the exec fifo's way
    with open(os.path.join(rootfs, "proc/sys/kernel/cap_last_cap"), "w") as f:
        f.write("0\n")
    done = oci("run", "--bundle", path, "fakecap")
    caps = _caps(done.stdout)
    assert caps["CapBnd"] == _mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]), done.stdout


def test_exec_enters_the_containers_root_not_where_pid1_chrooted(oci: Oci, bundle, tmp_path) -> None:  # noqa: F811
    """runc's exec joins the mount namespace and so its root. PID 1 (CAP_SYS_CHROOT, docker's
    default) chrooting into a tree of its own must not take the runtime's exec there: that tree
    had a /proc/sys/kernel/cap_last_cap of "0" and the exec'd process every capability."""
    script = (
        "mkdir -p /fake/proc/sys/kernel && cp -a /bin /fake/ && echo 0 > /fake/proc/sys/kernel/cap_last_cap"
        " && touch /ready && exec chroot /fake sleep 300"
    )

    def edit(config):
        config["root"]["readonly"] = False
        config["process"]["noNewPrivileges"] = False
        config["process"]["capabilities"] = {k: DOCKER_CAPS for k in ("bounding", "effective", "permitted")}

    path = bundle(["sh", "-c", script], edit=edit)
    with open(os.path.join(path, "rootfs/marker"), "w") as f:
        f.write("the container's root\n")
    oci("run", "-d", "--bundle", path, "chrooted")
    pid = oci.state("chrooted")["pid"]
    assert wait_until(lambda: os.readlink(f"/proc/{pid}/root").endswith("/fake"))
    assert oci("exec", "chrooted", "cat", "/marker").stdout == "the container's root\n"
    pid_file = tmp_path / "exec.pid"
    oci("exec", "-d", "--pid-file", str(pid_file), "chrooted", "sleep", "300")
    with open(f"/proc/{int(pid_file.read_text())}/status") as f:
        caps = _caps(f.read())
    assert caps["CapBnd"] == caps["CapEff"] == _mask(DOCKER_CAPS), caps


def test_a_pod_neighbour_cannot_reach_pid1_before_it_execs(oci: Oci, bundle) -> None:  # noqa: F811
    """A container joining another's PID namespace (a pod's) shows its PID 1 there while it
    waits for `start`: still the host's python, root with the same capabilities as its
    neighbour. Dumpable, its /proc/PID/exe (the host's interpreter: runc CVE-2019-5736's
    target), memory and environment were the neighbour's to open."""
    oci("run", "-d", "--bundle", bundle(["sleep", "300"], name="first"), "first")
    first = oci.state("first")["pid"]

    def edit(config):
        for namespace in config["linux"]["namespaces"]:
            if namespace["type"] == "pid":
                namespace["path"] = f"/proc/{first}/ns/pid"

    oci("create", "--bundle", bundle(["sleep", "300"], name="second", edit=edit), "second")
    with open(f"/proc/{oci.state('second')['pid']}/status") as f:
        there = next(line for line in f if line.startswith("NSpid:")).split()[-1]
    probe = " ; ".join(
        f"head -c 4 /proc/{there}/{name} >/dev/null 2>&1 && echo {name} open" for name in ("exe", "environ", "mem")
    )
    assert oci("exec", "first", "sh", "-c", f"{probe}; true").stdout == ""
    oci("start", "second")


def test_a_read_only_bind_stays_read_only_whatever_its_target_leads_to_after(oci: Oci, bundle, tmp_path) -> None:  # noqa: F811
    """runc CVE-2021-30465's race, made deterministic: the mount point is found through a link
    of the image's (/l -> p/q/..), and the volume mounted there has a `q` of its own (a link to
    /proc/sys). A lookup of /l after the mount ended at /proc, which was made read-only in the
    bind's stead, and the host dir stayed writable. (A container renaming the mount point away in
    a shared volume, a link to /proc in its place, won the same within some dozens of starts.)"""
    volume = tmp_path / "volume"
    volume.mkdir()
    os.symlink("/proc/sys", volume / "q")

    def edit(config):
        config["mounts"].append(
            {"destination": "/l", "type": "bind", "source": str(volume), "options": ["rbind", "ro"]}
        )

    path = bundle(["sh", "-c", "touch /p/written; grep -c ' /proc ro,' /proc/self/mountinfo; true"], edit=edit)
    os.makedirs(os.path.join(path, "rootfs/p/q"))
    os.symlink("p/q/..", os.path.join(path, "rootfs/l"))
    done = oci("run", "--bundle", path, "relooked")
    assert sorted(os.listdir(volume)) == ["q"], done.stderr
    assert done.stdout == "0\n"


# swaps `node` (once it exists) with `link`, as fast as Python goes: a container writing the volume
_SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
volume = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)
while libc.renameat2(volume, b"node", volume, b"link", 2) != 0:  # RENAME_EXCHANGE
    pass
"""


def test_a_device_node_in_a_shared_volume_never_changes_a_host_file(oci: Oci, bundle, tmp_path) -> None:  # noqa: F811
    """linux.devices nodes were made by path and chmod-ed by path after mknod: a container writing
    a volume under /dev that swapped the new node for a link to a host file (absolute: followed on
    the host's terms) had that file chmod-ed to the node's mode, /etc/shadow to 0666. Raced with
    the runtime, as in runc CVE-2021-30465; won within a few starts."""
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    volume = tmp_path / "volume"

    def edit(config):
        config["mounts"].append(
            {"destination": "/dev/vol", "type": "bind", "source": str(volume), "options": ["rbind"]}
        )
        node = {"path": "/dev/vol/node", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}
        config["linux"]["devices"] = [node]

    path = bundle(["true"], edit=edit)
    for attempt in range(30):
        shutil.rmtree(volume, ignore_errors=True)
        volume.mkdir()
        os.symlink(str(victim), volume / "link")
        swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(volume)])
        try:
            oci("run", "--bundle", path, f"node{attempt}", check=False)
        finally:
            swapper.kill()
            swapper.wait()
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600, attempt


def _exe_read_only(pid: int) -> bool:
    return bool(os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY)


def test_the_interpreter_a_container_can_see_is_read_only(oci: Oci, bundle) -> None:  # noqa: F811
    """runc CVE-2019-5736: PID 1 waiting for `start` and exec's stages are the host's python, and
    /proc/PID/exe of either is that binary. A container root with CAP_SYS_PTRACE (or a pod's
    neighbour) could hold it open and write it once no python ran: the runtime's next call ran
    the container's code as the host's root. Our processes run it through a read-only mount."""
    oci("create", "--bundle", bundle(["sleep", "300"]), "sealed")
    assert _exe_read_only(oci.state("sealed")["pid"])
    oci("start", "sealed")
    caller = subprocess.Popen([*OCI, "--root", oci.root, "exec", "sealed", "sleep", "5"], stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _exe_read_only(caller.pid), timeout=5)
    finally:
        caller.kill()
        caller.wait()


def test_a_net_sysctl_is_refused_in_the_hosts_network_namespace_joined_by_path(oci: Oci, bundle) -> None:  # noqa: F811
    """linux.sysctl's net.* keys are written from inside the container's network namespace: one
    joined by path may be the host's, whose settings are everyone's (runc refuses it). The value
    asked is the host's own, so even a write changes nothing here."""
    key = "net.ipv4.tcp_keepalive_probes"
    with open("/proc/sys/net/ipv4/tcp_keepalive_probes") as f:
        value = f.read().strip()
    holder = subprocess.Popen(["sleep", "60"])  # a process in the host's network namespace
    try:

        def edit(config):
            for namespace in config["linux"]["namespaces"]:
                if namespace["type"] == "network":
                    namespace["path"] = f"/proc/{holder.pid}/ns/net"
            config["linux"]["sysctl"] = {key: value}

        done = oci("run", "--bundle", bundle(["true"], edit=edit), "hostnet", check=False)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and "not allowed in host network namespace" in done.stderr, done.stderr
