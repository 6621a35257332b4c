"""Hostile archives and output paths, through the CLI: a small archive must not make `load` take
gigabytes (its peak memory is measured), an error is one line whatever names the archive holds,
and `save -o` replaces only a regular file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

from tests.helpers import f, make_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

MAX_PEAK_MB = 200  # python and minirun take ~35 MB here; each case took 300 MB to 1.5 GB before its fix
CLAIM = 256 << 20  # what the crafted headers claim: tarfile held 3x this in memory


# Measures from a small process of its own: a child started by pytest itself would report pytest's
# peak too (exec records the peak of the memory it replaces, and subprocess uses vfork).
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(root, *args: str) -> tuple[int, str, str, int]:
    """Run the CLI: (exit code, stdout, stderr, peak RSS in MB of it and the children it reaped)."""
    env = dict(os.environ, MINIRUN_ROOT=str(root))
    peak = os.path.join(str(root) + "-peak")
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, peak, sys.executable, "-m", "minirun", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=300,
    )
    with open(peak) as kb:
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode(errors="replace"), int(kb.read()) // 1024


def one_line_error(code: int, err: str) -> str:
    assert code == 125, err
    assert err.startswith("minirun: error: ") and err.count("\n") == 1, err
    return err


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def claiming_header(kind: bytes, path, before: bytes = b"") -> None:
    """A tar whose first (extended) header claims CLAIM bytes; sparse on disk."""
    info = tarfile.TarInfo("x")
    info.type, info.size = kind, CLAIM
    with open(path, "wb") as out:
        out.write(before + info.tobuf(format=tarfile.GNU_FORMAT) + b"%d path=" % CLAIM)
        out.truncate(len(before) + 512 + CLAIM + 1536)


def global_header() -> bytes:
    """A PAX global header (as git archive writes): minirun's header reader leaves the rest to tarfile."""
    record = b"17 comment=hello\n"
    info = tarfile.TarInfo("pax_global_header")
    info.type, info.size = tarfile.XGLTYPE, len(record)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512)


def outer_tar(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


LAYER = make_tar([f("hello", "hi\n")])


def docker_archive(path, config: bytes, entries: int, tags: bool = True) -> None:
    """A docker-save archive whose manifest.json has `entries` entries, all naming one config."""
    manifest = [
        {"Config": "config.json", "RepoTags": [f"app:{n}"] if tags else None, "Layers": ["layer.tar"]}
        for n in range(entries)
    ]
    outer_tar(path, {"config.json": config, "layer.tar": LAYER, "manifest.json": json.dumps(manifest).encode()})


def big_config(size: int) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(LAYER)]},
        "config": {"Labels": {"padding": ""}},
    }
    base = len(json.dumps(doc))
    doc["config"]["Labels"]["padding"] = "p" * (size - base)
    return json.dumps(doc).encode()


# -- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, message",
    [
        ("pax header", f"refusing PAX header of {CLAIM} bytes"),
        ("gnu long name", f"refusing GNU long name of {CLAIM} bytes"),
        ("pax header, gzipped", f"refusing PAX header of {CLAIM} bytes"),
        ("after a global header", f"refusing a tar member header of {CLAIM} bytes"),
    ],
)
def test_an_extended_header_claiming_gigabytes_is_refused_in_little_memory(tmp_path, case, message):
    archive = tmp_path / "bomb.tar"
    if case == "gnu long name":
        claiming_header(tarfile.GNUTYPE_LONGNAME, archive)
    elif case == "after a global header":
        claiming_header(tarfile.XHDTYPE, archive, before=global_header())
    else:
        claiming_header(tarfile.XHDTYPE, archive)
    if case.endswith("gzipped"):  # the repro: ~256 KB that spools to 256 MiB
        with open(archive, "rb") as data, gzip.open(tmp_path / "bomb.tar.gz", "wb", compresslevel=1) as out:
            shutil.copyfileobj(data, out, 1 << 20)
        archive.unlink()
        archive = tmp_path / "bomb.tar.gz"
    code, out, err, peak = measured(tmp_path / "store", "load", "-i", str(archive))
    assert peak < MAX_PEAK_MB, f"{case}: {peak} MB"
    assert message in one_line_error(code, err) and out == ""


def test_a_global_header_alone_still_loads(tmp_path):
    """The tarfile fallback of the index reads archives with members minirun's reader leaves to it."""
    cfg = big_config(1000)
    plain = tmp_path / "plain.tar"
    docker_archive(plain, cfg, 1)
    (tmp_path / "global.tar").write_bytes(global_header() + plain.read_bytes())
    code, out, err, _ = measured(tmp_path / "store", "load", "-i", str(tmp_path / "global.tar"))
    assert (code, out, err) == (0, "Loaded image: app:0\n", "")


def test_many_entries_naming_one_config_read_it_once(tmp_path):
    archive = tmp_path / "shared.tar"
    cfg = big_config(6 << 20)  # within the 8 MiB a config may have
    docker_archive(archive, cfg, 100)
    code, out, err, peak = measured(tmp_path / "store", "load", "-i", str(archive))
    assert peak < MAX_PEAK_MB, f"{peak} MB"  # 100 copies read and parsed took 1.2 GB
    assert code == 0, err
    assert out.splitlines() == [f"Loaded image: app:{n}" for n in range(100)]


@pytest.mark.parametrize(
    "case, message",
    [
        ("config of 30 MiB", "config.json is too large (31457280 bytes, at most 8388608)"),
        ("manifest.json of 60 MiB", "docker archive: manifest.json is too large (62914560 bytes, at most 4194304)"),
    ],
)
def test_oversized_documents_are_refused_before_they_are_read(tmp_path, case, message):
    archive = tmp_path / "big.tar"
    if case.startswith("config"):
        docker_archive(archive, big_config(30 << 20), 20, tags=False)
    else:  # [{},{},...]: json takes ~25 times its size in objects
        body = b"[" + b"{}," * ((60 << 20) // 3 - 2) + b"{}]"
        outer_tar(archive, {"manifest.json": body + b" " * ((60 << 20) - len(body))})
    code, out, err, peak = measured(tmp_path / "store", "load", "-i", str(archive))
    assert peak < MAX_PEAK_MB, f"{case}: {peak} MB"
    assert message in one_line_error(code, err)


# -- one line -----------------------------------------------------------------------------------


def test_a_name_with_a_newline_cannot_forge_a_second_line(tmp_path):
    archive = tmp_path / "forged.tar"
    manifest = [{"Config": "config.json", "RepoTags": ["x:1\nLoaded image: y:1\x1b[2K"], "Layers": ["layer.tar"]}]
    outer_tar(
        archive, {"config.json": big_config(1000), "layer.tar": LAYER, "manifest.json": json.dumps(manifest).encode()}
    )
    code, out, err, _ = measured(tmp_path / "store", "load", "-i", str(archive))
    line = one_line_error(code, err)
    assert "\x1b" not in line and r"x:1\nLoaded image: y:1\x1b[2K" in line and out == ""


# -- save -o ------------------------------------------------------------------------------------


def test_save_replaces_only_a_regular_file(cli, busybox, tmp_path):
    fifo, link, device, directory = tmp_path / "fifo", tmp_path / "link", tmp_path / "null", tmp_path / "dir"
    os.mkfifo(fifo)
    (tmp_path / "target").write_bytes(b"kept")
    link.symlink_to(tmp_path / "target")
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    directory.mkdir()
    refused = {
        fifo: "cannot write to a named pipe (FIFO)",
        link: "cannot write to a symbolic link directly",
        device: "cannot write to a character device file",
        directory: "cannot write to a directory",
    }
    for path, message in refused.items():
        result = cli("save", "-o", str(path), "busybox")
        assert result.err == f"minirun: error: failed to save image: {message}: {path}\n" and result.code == 125
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.lstat(device).st_mode)
    assert os.readlink(link) == str(tmp_path / "target") and (tmp_path / "target").read_bytes() == b"kept"
    assert os.listdir(directory) == []
    assert sorted(os.listdir(tmp_path)) == ["dir", "fifo", "link", "null", "store", "target"]  # no temp file left
    regular = tmp_path / "target"
    assert cli("save", "-o", str(regular), "busybox").code == 0
    assert tarfile.is_tarfile(regular) and stat.S_IMODE(regular.stat().st_mode) == 0o600
    not_a_dir = cli("save", "-o", str(regular / "x.tar"), "busybox")
    assert (
        not_a_dir.err == f"minirun: error: failed to save image: invalid output path: '{regular}' is not a directory\n"
    )
