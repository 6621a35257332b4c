"""Overlay mounts on the real kernel, as root.

Every mount happens in a forked child that first unshares its mount namespace and makes /
recursively private: the mounts die with the child, so nothing reaches the host even when a test
fails half way. After each child the host's /proc/mounts is checked for a leaked overlay.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minirun import linux
from minirun.errors import MinirunError, SyscallError
from minirun.runtime.overlay import MAX_LOWERS, mount_overlay
from tests.helpers import in_mount_ns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")

APIS = ["new", "classic"]


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="minirun-test-"))
    try:
        yield d
    finally:
        shutil.rmtree(d)
    assert not d.exists()


def _dirs(root: Path, *names: str) -> list[Path]:
    paths = [root / n for n in names]
    for p in paths:
        p.mkdir(parents=True)
    return paths


def _overlays_here() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line for line in f if line.split()[2] == "overlay"]


def _mounted(target: Path) -> bool:
    return any(line.split()[1] == str(target) for line in _overlays_here())


@pytest.mark.parametrize("api", APIS)
def test_top_layer_overrides_a_file(tmp: Path, api: str) -> None:
    top, base, upper, work, merged = _dirs(tmp, "top", "base", "upper", "work", "merged")
    (base / "f").write_text("from base")
    (top / "f").write_text("from top")
    (base / "only_base").write_text("b")

    def child() -> tuple[str, list[str], bool]:
        used = mount_overlay(str(merged), [str(top), str(base)], str(upper), str(work), api=api)
        assert used == api
        return (merged / "f").read_text(), sorted(os.listdir(merged)), _mounted(merged)

    assert in_mount_ns(child) == ("from top", ["f", "only_base"], True)


@pytest.mark.parametrize("api", APIS)
def test_whiteout_in_a_higher_layer_hides_a_file(tmp: Path, api: str) -> None:
    top, base, upper, work, merged = _dirs(tmp, "top", "base", "upper", "work", "merged")
    (base / "gone").write_text("deleted in top")
    (base / "kept").write_text("k")
    os.mknod(top / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def child() -> list[str]:
        mount_overlay(str(merged), [str(top), str(base)], str(upper), str(work), api=api)
        assert not (merged / "gone").exists()
        return sorted(os.listdir(merged))

    assert in_mount_ns(child) == ["kept"]


@pytest.mark.parametrize("api", APIS)
def test_opaque_dir_hides_everything_below(tmp: Path, api: str) -> None:
    top, base, upper, work, merged = _dirs(tmp, "top", "base", "upper", "work", "merged")
    (base / "d").mkdir()
    (base / "d" / "a").write_text("a")
    (base / "d" / "b").write_text("b")
    (top / "d").mkdir()
    (top / "d" / "c").write_text("c")
    os.setxattr(top / "d", "trusted.overlay.opaque", b"y")

    def child() -> list[str]:
        mount_overlay(str(merged), [str(top), str(base)], str(upper), str(work), api=api)
        return sorted(os.listdir(merged / "d"))

    assert in_mount_ns(child) == ["c"]


@pytest.mark.parametrize("api", APIS)
def test_writes_land_in_upper_only(tmp: Path, api: str) -> None:
    lower, upper, work, merged = _dirs(tmp, "lower", "upper", "work", "merged")
    (lower / "changed").write_text("old")
    (lower / "removed").write_text("r")

    def child() -> None:
        mount_overlay(str(merged), [str(lower)], str(upper), str(work), api=api)
        (merged / "new").write_text("n")
        (merged / "changed").write_text("new")
        (merged / "removed").unlink()

    in_mount_ns(child)
    assert sorted(os.listdir(lower)) == ["changed", "removed"]
    assert (lower / "changed").read_text() == "old"
    assert (upper / "new").read_text() == "n"
    assert (upper / "changed").read_text() == "new"
    st = os.lstat(upper / "removed")  # the kernel's own whiteout: a 0/0 char device
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _store(root: Path, n: int) -> list[str]:
    """n layers laid out as the store keeps them: layers/<hex>/diff and l/<26-char id> links.

    Every layer adds its own file and rewrites `who`, so the merged view proves the order.
    Returns the short links, topmost first.
    """
    (root / "l").mkdir()
    links = []
    for i in range(n):
        diff = root / "layers" / f"{i:064x}" / "diff"
        diff.mkdir(parents=True)
        (diff / f"layer{i:03d}").write_text("")
        (diff / "who").write_text(str(i))
        short = f"l/{i:026d}"
        os.symlink(f"../layers/{i:064x}/diff", root / short)
        links.append(short)
    return links[::-1]


@pytest.mark.parametrize(
    "n, api, paths",
    [
        (130, "classic", "short"),  # relative l/<id>: 130 x 29 bytes fit in one page
        (130, "new", "short"),
        (500, "new", "short"),
        (500, "new", "long"),  # absolute layers/<64 hex>/diff: ~45 KB of paths, no page limit
    ],
)
def test_many_layers_mount(tmp: Path, n: int, api: str, paths: str) -> None:
    links = _store(tmp, n)
    lowers = links if paths == "short" else [str((tmp / link).resolve()) for link in links]
    _dirs(tmp, "containers/c/upper", "containers/c/work", "containers/c/merged")

    def child() -> tuple[int, str, float]:
        os.chdir(tmp)  # relative links resolve from the store root, with either API
        t = time.perf_counter()
        mount_overlay("containers/c/merged", lowers, "containers/c/upper", "containers/c/work", api=api)
        elapsed = time.perf_counter() - t
        merged = tmp / "containers/c/merged"
        return len(os.listdir(merged)), (merged / "who").read_text(), elapsed

    count, who, _elapsed = in_mount_ns(child)
    assert count == n + 1
    assert who == str(n - 1)  # the topmost layer wins


def test_500_short_links_do_not_fit_mount2(tmp: Path) -> None:
    links = _store(tmp, MAX_LOWERS)
    with pytest.raises(MinirunError, match="new mount API"):
        mount_overlay(str(tmp / "m"), links, "u", "w", api="classic")


@pytest.mark.parametrize("api", APIS)
def test_501_layers_are_a_clear_error(tmp: Path, api: str) -> None:
    lowers = [str(tmp)] * (MAX_LOWERS + 1)  # refused before the kernel sees them
    with pytest.raises(MinirunError, match="501 layers; overlayfs stacks at most 500"):
        mount_overlay(str(tmp), lowers, str(tmp), str(tmp), api=api)


def test_the_kernel_limit_is_500(tmp: Path) -> None:
    """MAX_LOWERS mirrors the kernel's OVL_MAX_STACK: its 501st "lowerdir+" fails."""
    (lower,) = _dirs(tmp, "lower")

    def child() -> tuple[str, str]:
        fd = linux.fsopen("overlay")
        try:
            for _ in range(MAX_LOWERS):
                linux.fsconfig_set_string(fd, "lowerdir+", str(lower))
            with pytest.raises(SyscallError) as info:
                linux.fsconfig_set_string(fd, "lowerdir+", str(lower))
        finally:
            os.close(fd)
        return info.value.call, str(info.value)

    call, message = in_mount_ns(child)
    assert call == "fsconfig"
    assert "too many lower directories" in message  # read back from the fs context's log


@pytest.mark.parametrize("api", APIS)
def test_zero_layers_is_a_clear_error(tmp: Path, api: str) -> None:
    with pytest.raises(MinirunError, match="at least one lower"):
        mount_overlay(str(tmp), [], str(tmp), str(tmp), api=api)


def test_an_option_string_of_exactly_one_page_mounts(tmp: Path) -> None:
    """4095 bytes + NUL is accepted by the kernel, so our limit is not stricter than its."""
    lower, upper, work, merged = _dirs(tmp, "lower", "upper", "work", "merged")
    (lower / "f").write_text("")
    from minirun.runtime.overlay import overlay_options

    base = len(overlay_options([str(lower)], str(upper), str(work)))
    padded_upper = str(upper) + "/" * (4095 - base)
    assert len(overlay_options([str(lower)], padded_upper, str(work))) == 4095

    def child() -> list[str]:
        mount_overlay(str(merged), [str(lower)], padded_upper, str(work), api="classic")
        return os.listdir(merged)

    assert in_mount_ns(child) == ["f"]


def test_auto_prefers_the_new_api_where_the_kernel_has_it(tmp: Path) -> None:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert linux.has_new_mount_api() == ((major, minor) >= (6, 8))
    lower, upper, work, merged = _dirs(tmp, "lower", "upper", "work", "merged")

    def child() -> str:
        return mount_overlay(str(merged), [str(lower)], str(upper), str(work))

    assert in_mount_ns(child) == ("new" if linux.has_new_mount_api() else "classic")


@pytest.mark.parametrize("api, call", [("new", "fsconfig"), ("classic", "mount")])
def test_a_missing_layer_names_the_call_and_the_path(tmp: Path, api: str, call: str) -> None:
    upper, work, merged = _dirs(tmp, "upper", "work", "merged")
    missing = str(tmp / "no-such-layer")

    def child() -> tuple[str, int, str]:
        with pytest.raises(SyscallError) as info:
            mount_overlay(str(merged), [missing], str(upper), str(work), api=api)
        assert not _mounted(merged)
        return info.value.call, info.value.errno, str(info.value)

    got_call, err, message = in_mount_ns(child)
    assert (got_call, err) == (call, errno.ENOENT)
    if api == "new":  # fsconfig fails on the layer itself
        assert message == f"fsconfig `lowerdir+={missing}`: No such file or directory"
    else:  # the kernel blames the target; mount_overlay finds the missing layer
        assert message == f"mount `{missing}`: No such file or directory"


def test_syscall_error_message_names_call_and_path(tmp: Path) -> None:
    target = str(tmp / "absent" / "target")

    def child() -> tuple[str, str | None, int, str]:
        with pytest.raises(SyscallError) as info:
            linux.mount("tmpfs", target, "tmpfs", 0, None)
        e = info.value
        return e.call, e.path, e.errno, e.message

    assert in_mount_ns(child) == ("mount", target, errno.ENOENT, f"mount `{target}`: No such file or directory")


def test_nul_in_a_path_is_refused_not_truncated() -> None:
    # C would read "/tm" and act on another path than the one asked for
    with pytest.raises(ValueError, match="NUL"):
        linux.umount2("/tm\0p")
