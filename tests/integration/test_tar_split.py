"""A stored layer gives back its exact tar (tarsplit.py): byte for byte what came in, whichever way
it came in (regular file, bounded slice of a bigger file, pipe, gzip), whoever wrote it (Python's
tarfile, GNU tar with long names, PAX and sparse files, odd record padding), and a layer whose
files changed refuses to pass as the original."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from minirun.errors import MinirunError
from tests.helpers import d, f, hard, make_tar, sym
from tests.integration.test_layer_apply_paths import fed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layers keep owners and devices: needs root")

FEEDS = ["file", "bytesio", "pipe", "gzip"]


def _sample() -> bytes:
    return make_tar(
        [
            d("etc"),
            f("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            f("etc/empty"),
            f("big", os.urandom(300_000), mode=0o755),
            hard("big-link", "big"),
            sym("etc/link", "passwd"),
            d("gone"),
            f("gone/.wh..wh..opq"),
            f(".wh.removed"),
            f("unicode-é", "x" * 513),
            f("long/" + "n" * 150, "deep", pax={"comment": "kept"}),
        ]
    )


def _gnu_tar(tmp_path: Path, *args: str) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    (src / ("long-" + "a" * 200)).write_text("long name")
    (src / "dir").mkdir()
    (src / "dir" / "file").write_bytes(os.urandom(10_000))
    os.link(src / "dir" / "file", src / "hardlink")
    os.symlink("dir/file", src / "symlink")
    with open(src / "sparse", "wb") as sparse:
        sparse.truncate(4 << 20)
        sparse.seek(1 << 20)
        sparse.write(b"data in a hole")
    return subprocess.run(["tar", "-C", str(src), *args, "-cf", "-", "."], check=True, capture_output=True).stdout


def _round_trip(store, data: bytes, how: str, tmp_path: Path) -> str:
    with fed(data, how, tmp_path) as stream:
        staged = store.unpack_layer(stream)
    diff_id = staged.applied.diff_id
    store.commit_image([staged], {"rootfs": {"type": "layers", "diff_ids": [diff_id]}}, None)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.layers.tar_size(diff_id) == len(data)
    with store.layers.open_tar(diff_id) as tar:
        assert tar.read() == data
    return diff_id


@pytest.mark.parametrize("how", FEEDS)
def test_python_tar_comes_back_exactly(store, how, tmp_path):
    _round_trip(store, _sample(), how, tmp_path)


@pytest.mark.parametrize("how", ["file", "pipe"])
@pytest.mark.parametrize(
    "flags",
    [
        ["--format=gnu"],
        ["--format=pax"],
        ["--format=gnu", "--sparse"],
        ["--format=pax", "--sparse"],
        ["--format=gnu", "--blocking-factor=7"],
    ],
)
def test_gnu_tar_comes_back_exactly(store, how, flags, tmp_path):
    """GNU long names, PAX records, sparse members (left to tarfile) and a record size that pads
    the end with extra zero blocks: all of it is part of the digest."""
    _round_trip(store, _gnu_tar(tmp_path, *flags), how, tmp_path)


def test_layer_inside_a_bigger_file(store, tmp_path):
    """`length` bounds a layer that is a member of an outer archive: the bytes after it are not
    part of it, neither for the digest nor for the tree."""
    data = _sample()
    outer = tmp_path / "outer"
    outer.write_bytes(b"H" * 1536 + data + make_tar([f("not-in-the-layer", "x")]))
    with open(outer, "rb") as stream:
        stream.seek(1536)
        staged = store.unpack_layer(stream, length=len(data))
        assert stream.tell() == 1536 + len(data)
    assert staged.applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert not os.path.exists(os.path.join(staged.diff_dir, "not-in-the-layer"))
    store.commit_image([staged], {"rootfs": {"type": "layers", "diff_ids": [staged.applied.diff_id]}}, None)
    with store.layers.open_tar(staged.applied.diff_id) as tar:
        assert tar.read() == data


def test_truncated_slice_is_refused(store, tmp_path):
    data = _sample()
    outer = tmp_path / "outer"
    outer.write_bytes(data[:5000])
    with open(outer, "rb") as stream, pytest.raises(MinirunError):
        store.unpack_layer(stream, length=len(data))
    assert store.layers.all_ids() == []


def test_changed_file_is_not_passed_off_as_the_layer(store, tmp_path):
    diff_id = _round_trip(store, _sample(), "file", tmp_path)
    victim = os.path.join(store.layers.diff_dir(diff_id), "etc", "passwd")
    with open(victim, "r+b") as changed:
        changed.write(b"R")  # same size, other bytes
    with store.layers.open_tar(diff_id) as tar, pytest.raises(MinirunError, match="cannot be exported"):
        tar.read()


def test_missing_file_is_one_clear_error(store, tmp_path):
    diff_id = _round_trip(store, _sample(), "bytesio", tmp_path)
    os.unlink(os.path.join(store.layers.diff_dir(diff_id), "etc", "passwd"))
    with store.layers.open_tar(diff_id) as tar, pytest.raises(MinirunError, match="etc/passwd"):
        tar.read()


def test_layer_without_a_record(store, tmp_path):
    diff_id = _round_trip(store, _sample(), "bytesio", tmp_path)
    os.unlink(os.path.join(store.layers.layer_dir(diff_id), "tar-split"))
    with pytest.raises(MinirunError, match="no record of its tar"):
        store.layers.open_tar(diff_id)


@pytest.mark.parametrize("damage", ["none", "cut", "flipped"])
def test_a_record_in_the_older_zlib_form_still_exports(store, tmp_path, damage):
    """Records are zstd streams now; a store's older ones are zlib streams of the same records,
    read as they are (and one damaged either way is one clear error)."""
    import zlib

    import zstandard

    data = _sample()
    diff_id = _round_trip(store, data, "file", tmp_path)
    split = Path(store.layers.layer_dir(diff_id)) / "tar-split"
    records = zstandard.ZstdDecompressor().decompressobj().decompress(split.read_bytes())
    older = zlib.compress(records, 1)
    if damage == "cut":
        older = older[: len(older) // 2]
    elif damage == "flipped":
        older = older[:40] + bytes([older[40] ^ 0xFF]) + older[41:]
    split.write_bytes(older)
    with store.layers.open_tar(diff_id) as tar:
        if damage == "none":
            assert tar.read() == data
        else:
            with pytest.raises(MinirunError, match="cannot be exported"):
                tar.read()


def test_a_damaged_zstd_record_is_one_clear_error(store, tmp_path):
    diff_id = _round_trip(store, _sample(), "file", tmp_path)
    split = Path(store.layers.layer_dir(diff_id)) / "tar-split"
    data = split.read_bytes()
    split.write_bytes(data[:20] + bytes([data[20] ^ 0xFF]) + data[21:])
    with store.layers.open_tar(diff_id) as tar, pytest.raises(MinirunError, match="its tar record is damaged"):
        tar.read()


def test_concurrent_unpacks_keep_exact_modes(store, tmp_path):
    """Layers applied from threads at once: umask 0 holds until the last one is done."""
    from concurrent.futures import ThreadPoolExecutor

    saved = os.umask(0o022)
    try:
        tars = [make_tar([d(f"d{i}", mode=0o777), f(f"d{i}/x", os.urandom(50_000), mode=0o666)]) for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            staged = list(pool.map(lambda t: store.unpack_layer(io.BytesIO(gzip.compress(t, 1))), tars))
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(saved)
    for layer in staged:
        name = os.listdir(layer.diff_dir)[0]
        assert os.stat(os.path.join(layer.diff_dir, name)).st_mode & 0o777 == 0o777
        assert os.stat(os.path.join(layer.diff_dir, name, "x")).st_mode & 0o777 == 0o666
        store.layers.discard(layer)


def test_committed_container_layer_has_its_tar(store, tmp_path):
    """Layers made here (import via a pipe, commit, build) come out exactly too."""
    data = _sample()
    staged = store.unpack_written(lambda out: out.write(data), "test layer")
    store.commit_image([staged], {"rootfs": {"type": "layers", "diff_ids": [staged.applied.diff_id]}}, None)
    with store.layers.open_tar(staged.applied.diff_id) as tar:
        assert tar.read() == data


def test_a_file_rewritten_while_it_is_applied_never_passes_for_its_digest(store, tmp_path):
    """Every byte is read once: the digest is of the bytes applied, so whatever a writer does to
    the archive meanwhile, the stored layer's files rebuild exactly the tar of its diff_id."""
    import threading

    members = [f(f"many/{i}", str(i)) for i in range(3000)] + [f("payload", b"A" * 4096)]
    data = make_tar(members)
    at = data.index(b"A" * 4096)
    path = tmp_path / "racy.tar"
    path.write_bytes(data)
    stop = threading.Event()

    def rewrite() -> None:
        with open(path, "r+b", buffering=0) as racy:
            flip = 0
            while not stop.is_set():
                os.pwrite(racy.fileno(), (b"AB"[flip % 2 : flip % 2 + 1]) * 4096, at)
                flip += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        with open(path, "rb") as stream:
            staged = store.unpack_layer(stream)
    finally:
        stop.set()
        writer.join()
    diff_id = staged.applied.diff_id
    store.commit_image([staged], {"rootfs": {"type": "layers", "diff_ids": [diff_id]}}, None)
    with store.layers.open_tar(diff_id) as tar:
        rebuilt = tar.read()
    assert "sha256:" + hashlib.sha256(rebuilt).hexdigest() == diff_id
    payload = open(os.path.join(store.layers.diff_dir(diff_id), "payload"), "rb").read()
    assert payload in (b"A" * 4096, b"B" * 4096)


def _huge_header_after_a_global_one() -> bytes:
    """A PAX global header (the header reader leaves the rest to tarfile), then an extended
    header that claims 1 GiB: tarfile alone would read all of it into memory."""
    import tarfile

    glob = tarfile.TarInfo("pax_global_header")
    glob.type = tarfile.XGLTYPE
    records = b"11 a=bcdef\n"
    glob.size = len(records)
    huge = tarfile.TarInfo("x")
    huge.type = tarfile.XHDTYPE
    huge.size = 1 << 30
    return (
        glob.tobuf(format=tarfile.USTAR_FORMAT)
        + records.ljust(512, b"\0")
        + huge.tobuf(format=tarfile.USTAR_FORMAT)
        + b"%d path=" % (1 << 30)
    )


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_a_header_claiming_gigabytes_is_refused_without_reading_it(store, how, tmp_path):
    import resource
    import threading

    head = _huge_header_after_a_global_one()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if how == "file":
        path = tmp_path / "huge.tar"
        with open(path, "wb") as sparse:
            sparse.write(head)
            sparse.truncate(len(head) + (1 << 30) + 1024)  # a hole: no disk, but every byte is there
        with open(path, "rb") as stream, pytest.raises(MinirunError, match="refusing"):
            store.unpack_layer(stream)
    else:
        r, w = os.pipe()

        def feed() -> None:
            with os.fdopen(w, "wb") as sink:
                try:
                    sink.write(head)
                    for _ in range(1 << 10):
                        sink.write(bytes(1 << 20))
                except BrokenPipeError:
                    pass

        writer = threading.Thread(target=feed)
        writer.start()
        with os.fdopen(r, "rb") as stream, pytest.raises(MinirunError, match="refusing"):
            store.unpack_layer(stream)
        writer.join()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024
    assert store.layers.all_ids() == []
