"""load and save against the real peers: archives podman and skopeo write load and run here (the
deleted file gone, the rewritten one at its last version), and what minirun saves podman loads and
runs and skopeo reads. podman runs with a private --root/--runroot in a temp dir, without cgroups,
so nothing of it outlives the tests; its copying verbs and skopeo run with a blob-info cache of
their own (tests/peers.py), so the host's /var/lib/containers/cache is never made or written."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from tests.forkserver import run_minirun
from tests.peers import PODMAN_ULIMITS, PrivatePodman, own_blob_cache

PODMAN_RUN = ["--rm", "--network", "none", *PODMAN_ULIMITS]
# A base file deleted, another rewritten twice, each in a layer of its own.
CONTAINERFILE = """FROM docker.io/library/busybox:latest
RUN rm /etc/group
RUN printf 'root:x:0:0:v1:/root:/bin/sh\\n' > /etc/passwd
RUN printf 'root:x:0:0:v2:/root:/bin/sh\\n' > /etc/passwd
CMD ["sh"]
"""
CHECK = "test -e /etc/group && echo group-still-there; cat /etc/passwd"
EXPECTED = "root:x:0:0:v2:/root:/bin/sh\n"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (shutil.which("podman") and shutil.which("skopeo")), reason="needs podman and skopeo"),
]


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr[-2000:]}"
    return proc


def _podman() -> PrivatePodman:
    # runc, not podman's default crun: crun refuses a hybrid host whose cgroup2 mount carries a
    # controller (hugetlb here), and mounting a v1 hierarchy for it would change the host (PEERS.md)
    return PrivatePodman("runc", "minirun-podman-")


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return sh(*own_blob_cache(["skopeo", *args]))


def minirun(root, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    code, out, err = run_minirun(list(args), dict(os.environ, MINIRUN_ROOT=str(root)), input, timeout=120)
    return subprocess.CompletedProcess(["minirun", *args], code, out, err)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The test image in every archive form: built by podman on busybox saved by minirun."""
    work = tmp_path_factory.mktemp("peers")
    podman = _podman()
    try:
        saved = minirun(work / "store", "save", "-o", str(work / "busybox.tar"), "busybox")
        assert saved.returncode == 0, saved.stderr
        podman("load", "-q", "-i", str(work / "busybox.tar"))
        (work / "ctx").mkdir()
        (work / "ctx" / "Containerfile").write_text(CONTAINERFILE)
        podman("build", "--isolation", "chroot", "-q", "-t", "localhost/wh:1", str(work / "ctx"))
        image_id = "sha256:" + podman("image", "inspect", "--format", "{{.Id}}", "localhost/wh:1").stdout.strip()
        found = {"docker-archive": work / "docker.tar", "oci-archive-gzip": work / "oci.tar"}
        podman("save", "-q", "--format", "docker-archive", "-o", str(found["docker-archive"]), "localhost/wh:1")
        podman("save", "-q", "--format", "oci-archive", "-o", str(found["oci-archive-gzip"]), "localhost/wh:1")
        # skopeo: gzip into an OCI archive, and zstd into an OCI layout dir, tarred as a user would
        found["skopeo-oci-archive-gzip"] = work / "skopeo-gzip.tar"
        skopeo(
            "copy",
            "-q",
            "--dest-compress",
            f"docker-archive:{found['docker-archive']}",
            f"oci-archive:{found['skopeo-oci-archive-gzip']}:localhost/wh:1",
        )
        skopeo(
            "copy",
            "-q",
            "--dest-compress",
            "--dest-compress-format",
            "zstd",
            f"docker-archive:{found['docker-archive']}",
            f"oci:{work / 'zstd-dir'}:1",
        )
        found["skopeo-oci-dir-zstd"] = work / "skopeo-zstd.tar"
        sh("tar", "-C", str(work / "zstd-dir"), "-cf", str(found["skopeo-oci-dir-zstd"]), ".")
        yield {"dir": work, "id": image_id, "files": found}
    finally:
        podman.remove()


LOADED_AS = {
    "docker-archive": ["Loaded image: localhost/wh:1"],
    "oci-archive-gzip": ["Loaded image: localhost/wh:1"],
    "skopeo-oci-archive-gzip": ["Loaded image: localhost/wh:1"],
    "skopeo-oci-dir-zstd": None,  # `oci:dir:1` names only a tag: the image loads untagged
}


@pytest.mark.parametrize("fmt", sorted(LOADED_AS))
def test_peer_archives_load_and_run(cli, archives, fmt):
    path = archives["files"][fmt]
    loaded = cli("load", "-i", str(path)) if fmt != "docker-archive" else cli("load", input=path.read_bytes())
    assert loaded.code == 0, loaded.err
    expected = LOADED_AS[fmt] or [f"Loaded image ID: {archives['id']}"]
    assert loaded.out.splitlines() == expected and loaded.err == ""
    image = "localhost/wh:1" if LOADED_AS[fmt] else archives["id"]
    ran = cli("run", "--rm", image, "sh", "-c", CHECK)
    assert (ran.code, ran.out) == (0, EXPECTED), ran.err
    assert json.loads(cli("inspect", image).out)[0]["Id"] == archives["id"]  # podman's id: the same config bytes


def test_minirun_save_loads_into_podman_and_runs(cli, archives, tmp_path):
    assert cli("load", "-i", str(archives["files"]["docker-archive"])).code == 0
    cli("tag", "localhost/wh:1", "wh:saved")
    out = tmp_path / "saved.tar"
    saved = cli("save", "-o", str(out), "localhost/wh:1", "wh:saved")
    assert saved.code == 0 and saved.out == "", saved.err
    inspected = json.loads(skopeo("inspect", f"docker-archive:{out}:localhost/wh:1").stdout)
    config = json.loads(cli("inspect", "localhost/wh:1").out)[0]
    assert inspected["Layers"] == config["RootFS"]["Layers"] and inspected["Os"] == "linux"
    podman = _podman()
    try:
        loaded = podman("load", "-i", str(out)).stdout
        assert "localhost/wh:1" in loaded and "wh:saved" in loaded  # podman puts short names under localhost/
        assert (
            "sha256:" + podman("image", "inspect", "--format", "{{.Id}}", "wh:saved").stdout.strip() == archives["id"]
        )
        ran = podman("run", *PODMAN_RUN, "localhost/wh:1", "sh", "-c", CHECK)
        assert ran.stdout == EXPECTED
    finally:
        podman.remove()


def test_save_then_load_into_another_store_keeps_the_id(cli, busybox, tmp_path):
    cli("run", "--name", "work", "busybox", "sh", "-c", "echo layered > /new; rm /etc/group")
    assert cli("commit", "work", "app:2").code == 0
    cli("tag", "app:2", "app:latest")
    env = dict(os.environ, MINIRUN_ROOT=str(tmp_path / "other"))
    save = subprocess.Popen(
        [sys.executable, "-m", "minirun", "save", "app"], stdout=subprocess.PIPE
    )  # the test's store
    load = subprocess.run(
        [sys.executable, "-m", "minirun", "load"], stdin=save.stdout, capture_output=True, env=env, timeout=120
    )
    save.stdout.close()
    assert save.wait(timeout=120) == 0 and load.returncode == 0, load.stderr
    assert sorted(load.stdout.decode().splitlines()) == ["Loaded image: app:2", "Loaded image: app:latest"]
    ids = {
        json.loads(cli("inspect", ref, root=str(tmp_path / "other")).out)[0]["Id"] for ref in ("app:2", "app:latest")
    }
    assert ids == {json.loads(cli("inspect", "app:2").out)[0]["Id"]}
    ran = cli(
        "run", "--rm", "app:2", "sh", "-c", "cat /new; test -e /etc/group || echo gone", root=str(tmp_path / "other")
    )
    assert ran.out == "layered\ngone\n"
    history = cli("history", "-q", "app:2", root=str(tmp_path / "other")).out.splitlines()
    assert len(history) == 2


def test_bad_input_is_one_line_and_exit_125(cli, busybox, store, tmp_path):
    good = tmp_path / "good.tar"
    assert cli("save", "-o", str(good), "busybox").code == 0
    assert oct(good.stat().st_mode & 0o777) == "0o600"  # as docker's CLI writes it
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "corrupted layer": data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1 :],
    }
    before = sorted(os.listdir(store.layers.dir))
    other = tmp_path / "fresh"
    for name, bad in cases.items():
        result = cli("load", input=bad, root=str(other))
        assert result.code == 125 and result.out == "", name
        assert result.err.startswith("minirun: error: ") and result.err.count("\n") == 1, (name, result.err)
        assert cli("images", "-q", root=str(other)).out == ""
    missing = cli("load", "-i", str(tmp_path / "nope.tar"))
    assert (missing.code, missing.err) == (
        125,
        f"minirun: error: open {tmp_path / 'nope.tar'}: no such file or directory\n",
    )
    no_dir = cli("save", "-o", str(tmp_path / "no" / "such" / "dir.tar"), "busybox")
    assert no_dir.code == 125 and no_dir.err.count("\n") == 1 and not (tmp_path / "no").exists()
    no_image = cli("save", "-o", str(tmp_path / "x.tar"), "nosuchimage:1")
    assert no_image.code == 125 and "No such image" in no_image.err and not (tmp_path / "x.tar").exists()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
    assert sorted(os.listdir(store.layers.dir)) == before


def test_progress_bars_only_on_a_terminal(cli, busybox, store, tmp_path):
    archive = tmp_path / "bb.tar"
    assert cli("save", "-o", str(archive), "busybox").code == 0

    def on_pty(*args: str, code: int = 0) -> str:
        master, slave = os.openpty()
        env = dict(os.environ, MINIRUN_ROOT=str(tmp_path / "pty-store"), COLUMNS="100")
        proc = subprocess.Popen(
            [sys.executable, "-m", "minirun", *args], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        output = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the pty
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        os.close(master)
        assert proc.wait(timeout=10) == code, output
        return output.decode(errors="replace").replace("\r\n", "\n")

    shown = on_pty("load", "-i", str(archive))
    assert "Loaded" in shown.replace("Loaded image", "") and "Loaded image: busybox:latest" in shown
    quiet = on_pty("load", "-q", "-i", str(archive))
    assert quiet == "Loaded image: busybox:latest\n"
    # docker's refusals: no archive from a terminal, no archive onto one
    assert on_pty("load", code=125) == "minirun: error: requested load from stdin, but stdin is empty\n"
    assert on_pty("save", "busybox", code=125) == (
        "minirun: error: cowardly refusing to save to a terminal. Use the -o flag or redirect\n"
    )
    piped = cli("load", "-i", str(archive), root=str(tmp_path / "pipe-store"))
    assert piped.out == "Loaded image: busybox:latest\n" and piped.err == ""
    with tarfile.open(archive) as tar:
        assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(tar.getnames())
