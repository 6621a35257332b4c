"""Building tar streams in tests: a member list in, tar bytes out."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable, Iterable

import pytest

from minirun import linux


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    mode: int = 0o644,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_700_000_000,
    pax: dict | None = None,
    devmajor: int = 0,
    devminor: int = 0,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    if pax:
        info.pax_headers = dict(pax)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
    return info, data


def make_tar(members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def d(name: str, mode: int = 0o755, **kw):
    return member(name, tarfile.DIRTYPE, mode=mode, **kw)


def f(name: str, data: bytes | str = b"", mode: int = 0o644, **kw):
    return member(name, tarfile.REGTYPE, data=data.encode() if isinstance(data, str) else data, mode=mode, **kw)


def sym(name: str, target: str, **kw):
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **kw)


def hard(name: str, target: str, **kw):
    return member(name, tarfile.LNKTYPE, linkname=target, **kw)


# Members a NUL byte gets into by a PAX record: a path, a link target, an xattr name.
NUL_NAMES = [
    f("p", b"x", pax={"path": "a\0b"}),
    sym("l", "t", pax={"linkpath": "x\0y"}),
    f("x", b"", pax={"SCHILY.xattr.user.a\0b": "v"}),
]


def make_image(store, name: str, layer_tars: list[bytes], config: dict | None = None, base=None):
    """Stack layer tars (bottom first) into an image in `store`, on top of `base`'s layers."""
    from minirun.store.reference import parse_reference
    from minirun.timestamps import rfc3339_now

    staged = [store.unpack_layer(io.BytesIO(tar)) for tar in layer_tars]
    diff_ids = (base.diff_ids if base else []) + [s.applied.diff_id for s in staged]
    history = (base.history if base else []) + [
        {"created": rfc3339_now(), "created_by": f"layer {i}"} for i in range(len(staged))
    ]
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": rfc3339_now(),
        "config": config if config is not None else (base.config.get("config", {}) if base else {}),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    return store.commit_image(staged, image_config, parse_reference(name))


def host_overlays() -> list[str]:
    with open("/proc/mounts") as f:
        return [line for line in f if line.split()[2] == "overlay"]


def in_mount_ns(fn: Callable[..., object], *args: object) -> object:
    """Run fn in a forked child with a private mount namespace; return its (picklable) result.
    Checked after: none of the overlays the child left mounted shows on the host. Only those: the
    host's own come and go meanwhile (another suite's, podman's) and are none of this test's."""
    before = host_overlays()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(rfd)
            left: list[str] = []
            try:
                linux.unshare(linux.CLONE_NEWNS)
                # without this, mounts below a shared / would propagate back to the host
                linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
                result: tuple[str, object] = ("ok", fn(*args))
                left = [line for line in host_overlays() if line not in before]  # ours: the copy is private
            except BaseException:
                result = ("error", traceback.format_exc())
            with os.fdopen(wfd, "wb") as out:
                pickle.dump((result, left), out)
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (kind, value), left = pickle.loads(data)
    leaked = [line for line in host_overlays() if line in left]
    assert not leaked, f"an overlay mount leaked into the host: {leaked}"
    if kind == "error":
        pytest.fail(f"in the child:\n{value}")
    return value


PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes")


# busybox's ping opens a raw socket: docker's CAP_NET_RAW, which the default set (podman's) drops
PING = ("--cap-add", "NET_RAW")


def build_probe(out_dir, name: str) -> str:
    """tests/probes/NAME.c built static into `out_dir` (a busybox container has no libc to
    link against); returns the dir, for a read-only volume at /probe."""
    subprocess.run(
        ["gcc", "-static", "-O1", "-o", os.path.join(out_dir, name), os.path.join(PROBES, f"{name}.c")],
        check=True,
        capture_output=True,
    )
    return str(out_dir)


def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False): for what a
    container's monitor or the kernel finishes after the CLI has returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def minirun_in(store, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`minirun ARGS` on `store`, to its end: code, stdout and stderr as text."""
    from tests.forkserver import run_minirun

    code, out, err = run_minirun(list(args), dict(os.environ, MINIRUN_ROOT=str(store)), timeout=timeout)
    return subprocess.CompletedProcess(
        ["minirun", *args], code, out.decode(errors="replace"), err.decode(errors="replace")
    )


def minirun_started(store, *args: str) -> subprocess.Popen:
    """`minirun ARGS` on `store`, started and left running (to be killed), its stdio /dev/null."""
    env = dict(os.environ, MINIRUN_ROOT=str(store))
    return subprocess.Popen(
        [sys.executable, "-m", "minirun", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def assert_sees_the_hosts_links(listed_inside: Callable[[], list[str]]) -> None:
    """`listed_inside()` lists /sys/class/net in a container on the host's network: the host's
    links. Other containers (another xdist worker's, another test session's) add and remove veths
    meanwhile, so every link there before and after must be seen, and no other link but a veth that
    came and went between the two listings (PREFIX_<hex>, hostwide.VETH_PREFIX, or vethHEX as an
    older minirun named them)."""
    import re

    before = set(os.listdir("/sys/class/net"))
    inside = listed_inside()
    after = set(os.listdir("/sys/class/net"))
    passing = {n for n in set(inside) - (before | after) if re.fullmatch(r"(veth|[a-zA-Z0-9]+_)[0-9a-f]{7}", n)}
    assert before & after <= set(inside) <= before | after | passing, (sorted(before), inside, sorted(after))


PTY_TIMEOUT = 20


def set_pty_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4))


def _take_terminal() -> None:
    """After setsid (start_new_session): the pty on fd 0 becomes the CLI's controlling terminal,
    so resizing it sends the CLI SIGWINCH, as a shell's foreground job gets."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyCli:
    """A minirun command with stdin, stdout and stderr on the slave of a pty the test holds the
    master of, as in a terminal. TERM is not passed on: the container's must come from -t."""

    def __init__(self, store, rows: int = 24, cols: int = 80) -> None:
        import termios

        self.master, self.slave = os.openpty()
        set_pty_size(self.slave, rows, cols)
        self.mode_before = termios.tcgetattr(self.slave)
        self.env = dict(os.environ, MINIRUN_ROOT=str(store))
        self.env.pop("TERM", None)
        self.proc: subprocess.Popen | None = None
        self.output = b""

    def spawn(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minirun", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=self.env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )

    def read_for(self, seconds: float) -> bool:
        """Add what arrives within `seconds` to `output`; False if nothing did."""
        import select

        if not select.select([self.master], [], [], seconds)[0]:
            return False
        self.output += os.read(self.master, 65536)
        return True

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=PTY_TIMEOUT)
        # the test still holds the slave: read what is left without waiting for an EOF
        while self.read_for(0.05):
            pass
        return code

    def raw(self) -> bool:
        import termios

        return termios.tcgetattr(self.slave)[3] & termios.ICANON == 0

    def restored(self) -> bool:
        import termios

        return termios.tcgetattr(self.slave) == self.mode_before

    def text(self) -> str:
        return self.output.decode().replace("\r", "")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)
