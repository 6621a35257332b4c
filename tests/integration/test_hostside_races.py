"""The host's side reading a running container's files: the container may swap any entry for a
symlink to a host path, or for a FIFO, between the host's stat and its open (CVE-2018-15664's
race). Each test swaps at exactly that moment, playing the container, and the walk must then
neither read the host's files nor block."""

from __future__ import annotations

import errno
import io
import os
import tarfile
import threading

import pytest

from minirun.containers import commit
from minirun.errors import MinirunError

SECRET = b"host secret, never in a layer\n"


def _swapping_at(monkeypatch, name: str, swap) -> None:
    """commit's walk, with `swap()` run once right after it has stat'ed the entry `name`."""
    walk = commit._entries

    def entries(root, oci_whiteouts):
        for info, source in walk(root, oci_whiteouts):
            if info.name == name:
                swap()
            yield info, source

    monkeypatch.setattr(commit, "_entries", entries)


def _names_and_data(data: bytes) -> dict[str, bytes]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            extracted = tar.extractfile(member) if member.isreg() else None
            found[member.name] = extracted.read() if extracted else b""
    return found


@pytest.fixture
def upper(tmp_path):
    top = tmp_path / "upper"
    (top / "d").mkdir(parents=True)
    (top / "d" / "mine").write_bytes(b"mine\n")
    (top / "x").write_bytes(b"0123456789\n")
    return top


def test_a_file_swapped_for_a_link_to_the_host_is_not_followed(upper, tmp_path, monkeypatch):
    (tmp_path / "secret").write_bytes(SECRET)

    def swap():
        os.unlink(upper / "x")
        os.symlink(tmp_path / "secret", upper / "x")

    _swapping_at(monkeypatch, "x", swap)
    out = io.BytesIO()
    with pytest.raises(MinirunError, match="x: changed while it was being read"):
        commit.layer_tar(str(upper), out)
    assert SECRET[:11] not in out.getvalue()


def test_a_dir_swapped_for_a_link_to_the_host_is_not_listed(upper, tmp_path, monkeypatch):
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "hostdir" / "secret").write_bytes(SECRET)

    def swap():
        os.rename(upper / "d", tmp_path / "d.away")
        os.symlink(tmp_path / "hostdir", upper / "d")

    _swapping_at(monkeypatch, "d", swap)
    out = io.BytesIO()
    commit.layer_tar(str(upper), out)
    # the walk holds the dir it stat'ed: what it lists is the container's, wherever it went
    assert _names_and_data(out.getvalue()) == {"d": b"", "d/mine": b"mine\n", "x": b"0123456789\n"}


def test_a_file_swapped_for_a_fifo_does_not_block_the_walk(upper, monkeypatch):
    fifo = upper / "x"
    done = threading.Event()

    def swap():
        os.unlink(fifo)
        os.mkfifo(fifo)
        threading.Thread(target=release, daemon=True).start()

    def release():
        # a walk blocked opening the fifo would hang the test: a writer lets it through (it then
        # reads nothing where a file was), and the error it ends with is not the one expected
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            done.wait(0.01)

    _swapping_at(monkeypatch, "x", swap)
    try:
        with pytest.raises(MinirunError, match="x: changed while it was being read"):
            commit.layer_tar(str(upper), io.BytesIO())
    finally:
        done.set()


def test_an_unchanged_upper_is_archived_as_it_is(upper):
    os.symlink("/etc/passwd", upper / "link")
    os.mkfifo(upper / "fifo")
    os.link(upper / "x", upper / "x2")
    out = io.BytesIO()
    commit.layer_tar(str(upper), out)
    found = _names_and_data(out.getvalue())
    assert found == {"d": b"", "d/mine": b"mine\n", "fifo": b"", "link": b"", "x": b"0123456789\n", "x2": b""}
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar}
    assert members["link"].issym() and members["link"].linkname == "/etc/passwd"
    assert members["fifo"].isfifo() and members["x2"].islnk() and members["x2"].linkname == "x"


class _Listed(list):
    """A directory's entries, read at once, usable as scandir's context manager."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        pass


def _scandir_swapping_d(upper, tmp_path, counts=lambda path: True, lstat_first=False):
    """os.scandir as the walk sees it while a container swaps `upper/d` for a link to the host's
    `tmp_path/hostdir`: right after the first listing that `counts`. `lstat_first`: the walk's
    lstat of each entry is done before the swap."""
    scandir = os.scandir
    calls = []

    def swapping_scandir(path):
        with scandir(path) as it:
            listed = _Listed(it)
        if lstat_first:
            for entry in listed:
                entry.stat(follow_symlinks=False)
        if counts(path):
            calls.append(path)
        if len(calls) == 1 and not upper.joinpath("d").is_symlink():
            os.rename(upper / "d", tmp_path / "d.away")
            os.symlink(tmp_path / "hostdir", upper / "d")
        return listed

    return swapping_scandir


def test_diff_never_lists_a_host_dir_swapped_in_for_a_dir(tmp_path, monkeypatch):
    from minirun.layer import changes

    upper, lower = tmp_path / "upper", tmp_path / "lower"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "mine").write_text("x")
    lower.mkdir()
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "hostdir" / "host-secret-name").write_text("x")
    # the upper's root listed (the lower's listings do not count): the container swaps d
    swapping = _scandir_swapping_d(upper, tmp_path, counts=lambda path: not str(path).startswith(str(lower)))
    monkeypatch.setattr(changes.os, "scandir", swapping)
    found = [str(c) for c in changes.changes(str(upper), [str(lower)])]
    assert not [c for c in found if "host-secret-name" in c], found
    assert "A /d" in found


def test_tree_size_never_counts_a_host_dir_swapped_in_for_a_dir(tmp_path, monkeypatch):
    from minirun.store import fsutil

    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "mine").write_text("x")
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "hostdir" / "big").write_bytes(b"h" * 100_000)
    # the top listed and lstat-ed: the container swaps d
    monkeypatch.setattr(fsutil.os, "scandir", _scandir_swapping_d(upper, tmp_path, lstat_first=True))
    assert fsutil.tree_size(str(upper)) < 100_000
