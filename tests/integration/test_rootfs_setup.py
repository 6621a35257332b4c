"""The container's root on the real kernel: /proc, /dev, /sys, binds, masks, pivot_root, privileges.

Each container test forks a child that unshares mount, PID, UTS and IPC namespaces and makes /
rprivate; its child is PID 1 of the new PID namespace and runs setup_rootfs + apply_security,
then execs busybox `sh -c` with checks whose output comes back through a pipe. Everything dies
with the namespaces; the host's /proc/mounts is compared before and after every run.
The plan and resolve_in_root tests need no root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

from minirun import linux
from minirun.errors import MinirunError, UsageError
from minirun.runtime.overlay import mount_overlay
from minirun.runtime.rootfs import (
    DEVICES,
    MASKED_PATHS,
    READONLY_PATHS,
    SYSTEM_MOUNTS,
    Bind,
    RootfsSpec,
    masked_paths,
    plan_mounts,
    resolve_in_root,
    setup_rootfs,
)
from minirun.runtime.security import apply_security, read_user_db, resolve_user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
BUSYBOX = "/bin/busybox"
DEFAULT_CAPS = "00000000800405fb"  # docker's 14 capabilities less podman's three drops
LEAKED_FD = 42


# --- pure: the plan ---


def test_system_mounts_in_order() -> None:
    assert [(m.target, m.fstype) for m in SYSTEM_MOUNTS] == [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
        ("/sys/fs/cgroup", "tmpfs"),
    ]
    pts = next(m for m in SYSTEM_MOUNTS if m.fstype == "devpts")
    assert pts.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    sys_ = next(m for m in SYSTEM_MOUNTS if m.fstype == "sysfs")
    assert sys_.flags & linux.MS_RDONLY


def test_dockers_masked_and_readonly_paths() -> None:
    assert sorted(MASKED_PATHS) == sorted(
        [
            f"/proc/{p}"
            for p in (
                "acpi",
                "asound",
                "interrupts",
                "kcore",
                "keys",
                "latency_stats",
                "sched_debug",
                "scsi",
                "timer_list",
                "timer_stats",
            )
        ]
        + ["/sys/firmware", "/sys/devices/virtual/powercap"]
    )
    assert sorted(READONLY_PATHS) == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def test_user_mounts_follow_system_ones_parents_first() -> None:
    spec = RootfsSpec(
        "/r", binds=[Bind("/h/sub", "/data/sub/", readonly=True), Bind("/h/hosts", "/etc/hosts")], tmpfs=["/data"]
    )
    plan = plan_mounts(spec)
    assert plan[: len(SYSTEM_MOUNTS)] == list(SYSTEM_MOUNTS)
    user = plan[len(SYSTEM_MOUNTS) :]
    # by depth, stable: the tmpfs at /data must not hide the bind at /data/sub
    assert [(m.target, m.fstype) for m in user] == [("/data", "tmpfs"), ("/data/sub", None), ("/etc/hosts", None)]
    assert user[1].flags == linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY
    assert user[2].flags == linux.MS_BIND | linux.MS_REC


@pytest.mark.parametrize("target", ["relative/path", "/", "/..", ""])
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(UsageError):
        plan_mounts(RootfsSpec("/r", binds=[Bind("/h", target)]))


# --- resolve_in_root: no root needed ---


def test_resolve_in_root_keeps_links_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real/dir").mkdir(parents=True)
    os.symlink("/real", root / "abs")  # absolute: restarts at root
    os.symlink("../../../../../../../real", root / "up")  # `..` stops at root
    os.symlink(str(tmp_path / "outside"), root / "host")  # a host path: stays a root path
    os.symlink("dir/../../abs/dir", root / "real/chain")
    os.symlink("loop", root / "loop")
    r = str(root)
    assert resolve_in_root(r, "/abs/dir") == f"{r}/real/dir"
    assert resolve_in_root(r, "/up/dir/new/file") == f"{r}/real/dir/new/file"
    assert resolve_in_root(r, "/host/x") == f"{r}{tmp_path}/outside/x"
    assert resolve_in_root(r, "/real/chain") == f"{r}/real/dir"
    assert resolve_in_root(r, "/../../etc/passwd") == f"{r}/etc/passwd"
    assert resolve_in_root(r, "/missing/../real") == f"{r}/real"
    assert resolve_in_root(r, "/") == r
    with pytest.raises(MinirunError, match="too many levels of symbolic links"):
        resolve_in_root(r, "/loop/x")


# --- on the kernel ---


@lru_cache(maxsize=1)
def _applets() -> tuple[str, ...]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return tuple(a for a in out.split() if a and "/" not in a)


def build_rootfs(root: Path) -> None:
    """A tiny image: static busybox and its applets, the dirs and files an init layer provides."""
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "mnt", "root"):
        (root / d).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in _applets():
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:root\nwheel:x:10:root,app\napp:x:1000:\n")
    for name in ("hosts", "hostname", "resolv.conf"):
        (root / "etc" / name).write_text("")


@dataclass
class Container:
    """One run: the rootfs (how `root` becomes a mount point), the spec, the user, the checks."""

    tmp: Path
    checks: dict[str, str]
    root_kind: str = "tmpfs"  # tmpfs | bind (a dir on disk bound onto itself) | overlay | plain
    readonly: bool = False
    binds: list[Bind] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    volume_dirs: list[str] = field(default_factory=list)
    user: str | None = None
    prepare: Callable[[Path], None] | None = None  # edits the image before it is mounted

    @property
    def root(self) -> Path:
        return self.tmp / "rootfs"


def _host_mounts(*under: Path) -> list[str]:
    """The host's mounts at or below `under`: the only places this test's setup mounts (the
    rest of the host is another test's, which may mount its own meanwhile)."""
    tops = [str(path) for path in under]
    with open("/proc/mounts") as f:
        lines = f.read().splitlines()
    return [line for line in lines if any(f"{line.split()[1]}/".startswith(f"{top}/") for top in tops)]


def _script(checks: dict[str, str]) -> str:
    # one section per check: "@@ name rc" then its output (stdout and stderr)
    return "".join(
        f"out=$( ( {cmd} ) 2>&1 ); rc=$?; printf '@@ %s %s\\n%s\\n' '{name}' \"$rc\" \"$out\"\n"
        for name, cmd in checks.items()
    )


def _sections(text: str) -> dict[str, tuple[int, str]]:
    result: dict[str, tuple[int, str]] = {}
    name, rc, lines = None, 0, []
    for line in text.splitlines() + ["@@ end 0"]:
        if line.startswith("@@ "):
            if name is not None:
                result[name] = (rc, "\n".join(lines).strip("\n"))
            _, name, rc_text = line.split(" ", 2)
            rc, lines = int(rc_text), []
        else:
            lines.append(line)
    return result


def run(c: Container) -> tuple[int, str]:
    """Run the container; its exit code and everything it printed."""
    # here, not in the child: after unshare(CLONE_NEWPID) the first fork (subprocess's too)
    # becomes PID 1, and once it exits the namespace refuses every fork (ENOMEM)
    _applets()
    c.root.mkdir()
    if c.root_kind in ("bind", "plain", "overlay"):
        image = c.tmp / "lower" if c.root_kind == "overlay" else c.root
        image.mkdir(exist_ok=True)
        build_rootfs(image)
        if c.prepare:
            c.prepare(image)
    if c.root_kind == "overlay":
        (c.tmp / "upper").mkdir()
        (c.tmp / "work").mkdir()
    before = _host_mounts(c.tmp, c.root)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # never return into pytest
        try:
            os.close(rfd)
            os.dup2(wfd, 1)
            os.dup2(wfd, 2)
            os.close(wfd)
            os._exit(_outer(c))
        except BaseException:
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(98)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        out = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    assert _host_mounts(c.tmp, c.root) == before, "a mount leaked into the host"
    return os.waitstatus_to_exitcode(status), out


def _outer(c: Container) -> int:
    """In the first child: new namespaces, the root made a mount point, then fork PID 1."""
    # UTS and IPC too: a failed hostname check must not rename the host
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    if c.root_kind == "tmpfs":
        linux.mount("tmpfs", str(c.root), "tmpfs", 0, "mode=755")
        build_rootfs(c.root)
        if c.prepare:
            c.prepare(c.root)
    elif c.root_kind == "bind":
        linux.mount(str(c.root), str(c.root), None, linux.MS_BIND)
    elif c.root_kind == "overlay":
        mount_overlay(str(c.root), [str(c.tmp / "lower")], str(c.tmp / "upper"), str(c.tmp / "work"))
    pid = os.fork()
    if pid == 0:
        try:
            _pid1(c)
        except BaseException:
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _pid1(c: Container) -> None:
    assert os.getpid() == 1
    # a host directory fd, as runc CVE-2024-21626 leaked one: it must not reach the container
    os.dup2(os.open(str(c.tmp), os.O_RDONLY | os.O_DIRECTORY), LEAKED_FD, inheritable=True)
    spec = RootfsSpec(str(c.root), readonly=c.readonly, binds=c.binds, tmpfs=c.tmpfs, volume_dirs=c.volume_dirs)
    setup_rootfs(spec)
    assert os.getcwd() == "/"
    user = resolve_user(c.user, *read_user_db("/"))
    apply_security(user)
    linux.close_fds()
    os.execve("/bin/sh", ["sh", "-c", _script(c.checks)], {"PATH": "/bin"})


def _mountinfo(text: str) -> dict[str, tuple[str, set[str], str, str]]:
    """mount point -> (root within its fs, per-mount options, fstype, super options)."""
    mounts = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, (fstype, _source, superopts) = left.split(), right.split(" ", 2)
        mounts[fields[4]] = (fields[3], set(fields[5].split(",")), fstype, superopts)
    return mounts


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="minirun-test-"))
    try:
        yield d
    finally:
        shutil.rmtree(d)
    assert not d.exists()


def _status_lines(rc_out: tuple[int, str]) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in rc_out[1].splitlines())


STATUS = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status"
EXPECTED_DEV = [
    "core",
    "fd",
    "full",
    "mqueue",
    "null",
    "ptmx",
    "pts",
    "random",
    "shm",
    "stderr",
    "stdin",
    "stdout",
    "tty",
    "urandom",
    "zero",
]


@needs_root
def test_the_container_sees_only_its_own_world(tmp: Path) -> None:
    host = tmp / "host"
    (host / "data").mkdir(parents=True)
    (host / "hosts").write_text("10.0.0.1 from-the-host\n")
    (host / "conf").write_text("created target\n")
    (tmp / "host-secret").write_text("secret")
    c = Container(
        tmp,
        readonly=True,
        tmpfs=["/tmp"],
        binds=[
            Bind(str(host / "hosts"), "/etc/hosts", readonly=True),  # exists in the image
            Bind(str(host / "data"), "/data"),  # missing: created
            Bind(str(host / "conf"), "/etc/new/conf"),  # missing, in a missing dir
        ],
        checks={
            "pid": "grep ^Pid: /proc/1/status",
            "cmdline": "head -c 5 /proc/1/cmdline | tr '\\0' ' '",
            "host_pid": f"test -e /proc/{os.getpid()}/status",
            "dev": "ls /dev",
            "nodes": "stat -c '%n %A %t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty",
            "links": 'for l in fd stdin stdout stderr core ptmx; do echo "$l $(readlink /dev/$l)"; done',
            "ptmx": "stat -c '%A' /dev/pts/ptmx",
            "shm": "stat -c '%a' /dev/shm && touch /dev/shm/x",
            "null_works": "echo x > /dev/null && head -c 4 /dev/zero | wc -c",
            "kcore": "wc -c < /proc/kcore",
            "timer_list": "cat /proc/timer_list | wc -c",
            "firmware": "ls -A /sys/firmware",
            "cgroup": "ls -A /sys/fs/cgroup",
            "hostname_write": "echo evil > /proc/sys/kernel/hostname",
            "sysrq": "echo h > /proc/sysrq-trigger",
            "proc_sys_read": "cat /proc/sys/kernel/ostype",
            "mount": "mount -t tmpfs x /mnt",
            "caps": STATUS,
            "pid1_caps": STATUS.replace("self", "1"),
            "id": "id",
            "ls_root": "ls -A /",
            "host_secret": f"cat {tmp}/host-secret",
            "ro_root": "touch /newfile",
            "ro_etc": "echo x >> /etc/passwd",
            "tmpfs": "touch /tmp/ok && echo ok",
            "bind_file": "cat /etc/hosts",
            "bind_ro": "echo x >> /etc/hosts",
            "bind_created": "cat /etc/new/conf",
            "bind_dir": "echo from-container > /data/written && cat /data/written",
            "leaked_fd": f"test -e /proc/1/fd/{LEAKED_FD}",
            "mountinfo": "cat /proc/self/mountinfo",
        },
    )
    code, out = run(c)
    assert code == 0, out
    s = _sections(out)
    assert s["pid"] == (0, "Pid:\t1")
    assert s["cmdline"] == (0, "sh -c")
    assert s["host_pid"][0] != 0
    assert s["dev"] == (0, "\n".join(EXPECTED_DEV))
    assert s["nodes"] == (
        0,
        "\n".join(
            [
                "/dev/null crw-rw-rw- 1:3",
                "/dev/zero crw-rw-rw- 1:5",
                "/dev/full crw-rw-rw- 1:7",
                "/dev/random crw-rw-rw- 1:8",
                "/dev/urandom crw-rw-rw- 1:9",
                "/dev/tty crw-rw-rw- 5:0",
            ]
        ),
    )
    assert s["links"] == (
        0,
        "\n".join(
            [
                "fd /proc/self/fd",
                "stdin /proc/self/fd/0",
                "stdout /proc/self/fd/1",
                "stderr /proc/self/fd/2",
                "core /proc/kcore",
                "ptmx pts/ptmx",
            ]
        ),
    )
    assert s["ptmx"] == (0, "crw-rw-rw-")
    assert s["shm"] == (0, "1777")
    assert s["null_works"] == (0, "4")
    # masked where the kernel has it (CONFIG_PROC_KCORE), absent otherwise: never readable
    assert s["kcore"] == (0, "0") if os.path.exists("/proc/kcore") else s["kcore"][0] != 0
    assert s["timer_list"] == (0, "0")
    assert s["firmware"] == (0, "")
    assert s["cgroup"] == (0, "")
    assert s["hostname_write"][0] != 0 and "Read-only file system" in s["hostname_write"][1]
    assert s["sysrq"][0] != 0  # read-only, or absent without CONFIG_MAGIC_SYSRQ
    if os.path.exists("/proc/sysrq-trigger"):
        assert "Read-only file system" in s["sysrq"][1]
    assert s["proc_sys_read"] == (0, "Linux")
    assert s["mount"][0] != 0 and "denied" in s["mount"][1], s["mount"]
    caps = _status_lines(s["caps"])
    assert caps == {
        "CapInh": "0000000000000000",
        "CapPrm": DEFAULT_CAPS,
        "CapEff": DEFAULT_CAPS,
        "CapBnd": DEFAULT_CAPS,
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
    }
    assert _status_lines(s["pid1_caps"]) == caps
    assert s["id"] == (0, "uid=0(root) gid=0(root) groups=0(root),10(wheel)")
    assert s["ls_root"] == (0, "\n".join(["bin", "data", "dev", "etc", "mnt", "proc", "root", "sys", "tmp"]))
    assert s["host_secret"][0] != 0
    assert s["ro_root"][0] != 0 and "Read-only file system" in s["ro_root"][1]
    assert s["ro_etc"][0] != 0 and "Read-only file system" in s["ro_etc"][1]
    assert s["tmpfs"] == (0, "ok")
    assert s["bind_file"] == (0, "10.0.0.1 from-the-host")
    assert s["bind_ro"][0] != 0 and "Read-only file system" in s["bind_ro"][1]
    assert s["bind_created"] == (0, "created target")
    assert s["bind_dir"] == (0, "from-container")
    assert s["leaked_fd"][0] != 0

    rc, text = s["mountinfo"]
    assert rc == 0
    assert str(c.root) not in text  # neither the rootfs' host path nor the old root is left
    mounts = _mountinfo(text)
    masked = {p for p in masked_paths() if os.path.exists(p)}  # the same kernel as the host's
    readonly = {p for p in READONLY_PATHS if os.path.exists(p)}
    devices = {f"/dev/{name}" for name, _, _ in DEVICES}  # the host's nodes, bound onto a nodev /dev
    assert (
        set(mounts)
        == {
            "/",
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/data",
            "/etc/new/conf",
            "/tmp",
        }
        | masked
        | readonly
        | devices
    )
    assert "ro" in mounts["/"][1]
    assert {"ro", "nosuid", "nodev", "noexec"} <= mounts["/sys"][1]
    assert {"ro", "nosuid", "nodev", "noexec"} <= mounts["/proc/sys"][1]  # the bind kept proc's flags
    assert {"rw", "nosuid", "nodev", "noexec"} <= mounts["/proc"][1]
    assert mounts["/dev"][1] >= {"rw", "nosuid", "nodev"}
    assert "nodev" not in mounts["/dev/null"][1]
    assert mounts["/dev/pts"][2] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][3]
    assert {"nosuid", "nodev", "noexec"} <= mounts["/tmp"][1]  # docker's --tmpfs defaults
    assert "ro" in mounts["/etc/hosts"][1] and "rw" in mounts["/data"][1]
    assert mounts["/sys/fs/cgroup"][2] == "tmpfs" and "ro" in mounts["/sys/fs/cgroup"][1]

    # on the host: the rw bind took the write; the sources are otherwise untouched
    assert (host / "data/written").read_text() == "from-container\n"
    assert (host / "hosts").read_text() == "10.0.0.1 from-the-host\n"


@needs_root
def test_a_non_root_user_ends_with_no_capabilities(tmp: Path) -> None:
    c = Container(
        tmp,
        user="app",
        checks={
            "id": "id",
            "ids": "grep -E '^(Uid|Gid|Groups):' /proc/1/status",
            "caps": STATUS,
            "mount": "mount -t tmpfs x /mnt",
            "write_root_owned": "touch /etc/x",
        },
    )
    code, out = run(c)
    assert code == 0, out
    s = _sections(out)
    assert s["id"] == (0, "uid=1000(app) gid=1000(app) groups=10(wheel)")
    assert s["ids"] == (0, "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t10 ")
    assert _status_lines(s["caps"]) == {
        "CapInh": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapBnd": DEFAULT_CAPS,
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
    }
    assert s["mount"][0] != 0
    assert s["write_root_owned"][0] != 0 and "Permission denied" in s["write_root_owned"][1]


@needs_root
def test_bind_targets_through_symlinks_stay_in_the_root(tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (tmp / "src").write_text("through a link\n")

    def links(root: Path) -> None:
        os.symlink("../" * 12 + str(outside).lstrip("/"), root / "evil")  # climbs past /
        os.symlink(str(outside), root / "abs")  # a host path

    c = Container(
        tmp,
        root_kind="bind",
        prepare=links,
        binds=[
            Bind(str(tmp / "src"), "/evil/x"),
            Bind(str(tmp / "src"), "/abs/sub/y"),
        ],
        checks={
            "evil": "cat /evil/x",
            "abs": "cat /abs/sub/y",
            "write": "touch /newfile",
        },
    )
    code, out = run(c)
    assert code == 0, out
    s = _sections(out)
    assert s["evil"] == (0, "through a link")
    assert s["abs"] == (0, "through a link")
    assert s["write"] == (0, "")
    assert os.listdir(outside) == []  # nothing was created or mounted on the host's side
    inside = c.root / str(outside).lstrip("/")
    assert sorted(os.listdir(inside)) == ["sub", "x"]  # the mount points, in the image
    assert (c.root / "newfile").exists()  # a writable root takes writes


@needs_root
def test_an_overlay_root_gets_no_changes_from_setup(tmp: Path) -> None:
    """Existing mount points are only mounted on: the upper dir (what `diff` reads) stays empty
    but for a -v target the image lacks."""
    (tmp / "hosts").write_text("h\n")
    c = Container(
        tmp,
        root_kind="overlay",
        binds=[
            Bind(str(tmp / "hosts"), "/etc/hosts"),
            Bind(str(tmp / "hosts"), "/etc/hostname"),
            Bind(str(tmp / "hosts"), "/etc/resolv.conf"),
            Bind(str(tmp / "hosts"), "/opt/volume/file"),
        ],
        checks={"hosts": "cat /etc/hosts /etc/hostname /etc/resolv.conf"},
    )
    code, out = run(c)
    assert code == 0, out
    assert _sections(out)["hosts"] == (0, "h\nh\nh")
    upper = tmp / "upper"
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["opt", "opt/volume", "opt/volume/file"]


@needs_root
def test_volume_dirs_are_made_in_the_upper_inside_the_root(tmp: Path) -> None:
    """A build step's VOLUME paths: each missing one made 0755 whatever the umask, parents too,
    through links resolved in the root; what exists stays; what cannot be made, or lies in a
    kernel filesystem, is skipped without an error. Nothing lands on the host's side."""
    outside = tmp / "outside"
    outside.mkdir()

    def image(root: Path) -> None:
        os.symlink("/real", root / "link")
        os.symlink("../" * 12 + str(outside).lstrip("/"), root / "esc")  # climbs past /
        (root / "file").write_text("f\n")
        (root / "file").chmod(0o644)
        (root / "kept").mkdir()
        (root / "kept").chmod(0o700)
        os.symlink("loop", root / "loop")

    c = Container(
        tmp,
        root_kind="overlay",
        prepare=image,
        volume_dirs=[
            "/data",
            "/srv/a/b",
            "/link/x",
            "/esc",
            "/file",
            "/file/sub",
            "/kept",
            "/loop",
            "/proc/v",
            "/dev/v",
        ],
        checks={
            "made": "stat -c '%a %u %F %n' /data /srv/a/b /srv/a /real/x",
            "left": "stat -c '%a %F %n' /file /kept",
        },
    )
    umask = os.umask(0o077)  # PID 1's, inherited
    try:
        code, out = run(c)
    finally:
        os.umask(umask)
    assert code == 0, out
    s = _sections(out)
    made = "\n".join(f"755 0 directory {p}" for p in ("/data", "/srv/a/b", "/srv/a", "/real/x"))
    assert s["made"] == (0, made)
    assert s["left"] == (0, "644 regular file /file\n700 directory /kept")
    upper = tmp / "upper"
    inside = str(outside).lstrip("/")
    parts = [str(Path(*Path(inside).parts[: i + 1])) for i in range(len(Path(inside).parts))]
    expected = ["data", "real", "real/x", "srv", "srv/a", "srv/a/b", *parts]
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == sorted(expected)
    assert os.listdir(outside) == []


@needs_root
def test_a_proc_symlink_in_the_image_is_refused(tmp: Path) -> None:
    def proc_link(root: Path) -> None:
        (root / "proc").rmdir()
        os.symlink("tmp", root / "proc")

    code, out = run(Container(tmp, prepare=proc_link, checks={"never": "true"}))
    assert code == 99
    assert "MinirunError: /proc in the image is a symlink" in out


@needs_root
def test_the_root_must_be_a_mount_point(tmp: Path) -> None:
    code, out = run(Container(tmp, root_kind="plain", checks={"never": "true"}))
    assert code == 99
    assert (
        f"MinirunError: pivot_root `{tmp}/rootfs`: Device or resource busy (the new root must be a mount point" in out
    )


@needs_root
def test_a_missing_bind_source_is_an_error(tmp: Path) -> None:
    code, out = run(Container(tmp, binds=[Bind(str(tmp / "nope"), "/x")], checks={"never": "true"}))
    assert code == 99
    assert f"bind source path does not exist: {tmp}/nope" in out


@needs_root
@pytest.mark.parametrize("face", ["run", "oci"])
@pytest.mark.parametrize("target", ["/vol/a/b/f", "/vol/a/f"])
def test_a_mount_point_swapped_for_a_host_link_mid_setup_stays_in_the_root(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, target: str, face: str
) -> None:
    """runc CVE-2021-30465's race: a container sharing a volume (here /vol) with the one starting
    swaps a directory on the way to a nested mount point for a link to a host dir, between
    setup's look (resolve_in_root) and its mkdir. Setup ran as the host's root on the host's
    terms there: it made `b/f` in the host's dir (any dir, any name the -v target has). Every
    entry made and the mount itself must stay inside the root, for `run`'s mounts and for an
    OCI bundle's (minirun-oci), a read-only bind there, whose remount must find the new mount."""
    from minirun.runtime import rootfs
    from minirun.runtime.privatemounts import in_private_mounts

    root, outside, src = tmp / "root", tmp / "outside", tmp / "src"
    (root / "vol").mkdir(parents=True)
    outside.mkdir()
    (root / str(outside).lstrip("/")).mkdir(parents=True)  # where the link leads in the root
    src.write_text("bound\n")
    real = rootfs.resolve_in_root

    def racing(where: str, path: str) -> str:
        found = real(where, path)
        if path == target:  # the other container's move, just after the look
            shutil.rmtree(root / "vol/a", ignore_errors=True)
            os.symlink(str(outside), root / "vol/a")
        return found

    monkeypatch.setattr(rootfs, "resolve_in_root", racing)

    def setup() -> None:
        if face == "run":
            rootfs._mount(str(root), rootfs.Mount(target, None, str(src), linux.MS_BIND | linux.MS_REC))
        else:
            bind = rootfs.Mount(target, None, str(src), linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY)
            rootfs._oci_mounts(str(root), rootfs.RootfsSpec(str(root), mounts=[bind]))
        inside = root / str(outside).lstrip("/") / target.removeprefix("/vol/a/")
        assert inside.read_text() == "bound\n", "the bind is on the mount point made in the root"
        if face == "oci":
            assert os.statvfs(inside).f_flag & os.ST_RDONLY, "the remount found the bind"

    if target == "/vol/a/f":
        (root / "vol/a").mkdir()  # a dir there at the look: the swap replaces it
    in_private_mounts(setup, "setup")
    assert os.listdir(outside) == []  # nothing made (or mounted) on the host's side


@needs_root
def test_a_mask_is_the_hosts_null_device_never_what_the_roots_dev_null_leads_to(tmp: Path) -> None:
    """runc CVE-2025-31133: masks bind /dev/null over a file. An OCI bundle's /dev may be a bind of
    a dir a running container writes (then it holds no node of ours), and its `null` a link to a
    host file: bound over /proc/kcore, the host's file would be readable there. The mask is the
    host's own /dev/null, checked to be the null device; a masked path is found inside the root."""
    from minirun.runtime import rootfs
    from minirun.runtime.privatemounts import in_private_mounts

    root, secret = tmp / "root", tmp / "secret"
    (root / "dev").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "proc/kcore").write_text("")
    secret.write_text("the host's secret\n")
    os.symlink(str(secret), root / "dev/null")

    def setup() -> None:
        rootfs._mask_paths(str(root), ["/proc/kcore"])
        masked = root / "proc/kcore"
        assert masked.read_text() == "", "the mask reads as /dev/null"
        assert os.stat(masked).st_rdev == os.makedev(1, 3)

    in_private_mounts(setup, "setup")
