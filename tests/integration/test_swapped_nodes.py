"""A node a running container swaps in for a regular file, between a host-side walk's stat and
its open (commit's upper walk, cp's archive): never opened to read. An open has the node's own
effects: a FIFO's blocked writer goes on, a device's driver runs (a watchdog starts, a tape
rewinds), and a container's upper is on the host's filesystem, not a nodev mount."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from minirun.errors import MinirunError


def _blocked_writer(fifo: Path) -> subprocess.Popen:
    """A writer blocked in its open of `fifo` until a reader opens it (as a container's would)."""
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"echo planted > {fifo}"])
    time.sleep(0.2)
    assert writer.poll() is None
    return writer


def _still_blocked(writer: subprocess.Popen) -> bool:
    time.sleep(0.3)
    blocked = writer.poll() is None
    writer.kill()
    writer.wait()
    return blocked


def test_commit_never_opens_a_fifo_swapped_in_for_a_file(tmp_path: Path) -> None:
    from minirun.containers.commit import _open_regular

    writer = _blocked_writer(tmp_path / "f")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(MinirunError, match="changed while it was being read"):
            _open_regular(dir_fd, "f", "f")
    finally:
        os.close(dir_fd)
    assert _still_blocked(writer)


def test_cp_never_opens_a_fifo_swapped_in_for_a_file(tmp_path: Path) -> None:
    from minirun.layer.treetar import Writer

    writer = _blocked_writer(tmp_path / "f")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with tarfile.open(fileobj=io.BytesIO(), mode="w|") as tar:
            with pytest.raises(MinirunError, match="changed while it was being copied"):
                Writer(tar)._add_file(dir_fd, "f", tarfile.TarInfo("f"))
    finally:
        os.close(dir_fd)
    assert _still_blocked(writer)


def test_a_regular_file_and_a_link_swapped_in(tmp_path: Path) -> None:
    from minirun.containers.commit import _open_regular

    (tmp_path / "file").write_text("content")
    (tmp_path / "link").symlink_to("/etc/passwd")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with _open_regular(dir_fd, "file", "file") as f:
            assert f.read() == b"content"
        with pytest.raises(MinirunError, match="changed"):
            _open_regular(dir_fd, "link", "link")
    finally:
        os.close(dir_fd)
