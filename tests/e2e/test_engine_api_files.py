"""The Engine API's container files and resources, driven by real clients (the docker CLI 20.10
through DOCKER_HOST, and docker-py): cp both ways (archive HEAD/GET/PUT), export, stats, update,
and attach's logs=1."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time

from tests.e2e.engineapi import DOCKER, service  # noqa: F401  (service: a fixture)
from tests.helpers import wait_until


def _client(service):
    import docker

    return docker.DockerClient(base_url=f"unix://{service.path}", version="auto")


def test_docker_cp_both_ways_running_and_stopped(service, tmp_path):
    assert service.docker("run", "-d", "--name", "box", "busybox", "sleep", "300").returncode == 0
    (tmp_path / "file.txt").write_text("a file\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "deep").write_text("deep\n")
    os.symlink("sub/deep", tree / "link")

    assert service.docker("cp", str(tmp_path / "file.txt"), "box:/tmp/").returncode == 0
    done = service.docker("cp", str(tree), "box:/tmp/copied")  # a new name: the dir's contents
    assert done.returncode == 0, done.stderr
    done = service.docker(
        "exec", "box", "sh", "-c", "cat /tmp/file.txt /tmp/copied/sub/deep; readlink /tmp/copied/link"
    )
    assert done.stdout == "a file\ndeep\nsub/deep\n", done.stderr
    assert service.docker("cp", str(tree), "box:/tmp/copied").returncode == 0  # an existing dir: into it
    assert service.docker("exec", "box", "cat", "/tmp/copied/tree/sub/deep").stdout == "deep\n"

    out = tmp_path / "out"
    assert service.docker("cp", "box:/tmp/copied/sub", str(out)).returncode == 0
    assert (out / "deep").read_text() == "deep\n"
    assert service.docker("cp", "box:/tmp/copied/.", str(tmp_path / "contents")).returncode == 0
    assert sorted(os.listdir(tmp_path / "contents")) == ["link", "sub", "tree"]
    assert service.docker("cp", "box:/etc/passwd", str(tmp_path / "passwd")).returncode == 0
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0")

    missing = service.docker("cp", "box:/nope", str(tmp_path / "x"))
    assert missing.returncode != 0 and "No such container:path: box:/nope" in missing.stderr
    refused = service.docker("cp", str(tmp_path / "file.txt"), "box:/etc/passwd/x")
    assert refused.returncode != 0 and not (tmp_path / "x").exists()

    # a stopped container: its union, from its layers
    assert service.docker("create", "--name", "st", "busybox", "cat", "/made/file.txt").returncode == 0
    assert service.docker("exec", "box", "true").returncode == 0
    done = service.docker("cp", str(tmp_path / "file.txt"), "st:/made")  # a new name for a file
    assert done.returncode == 0, done.stderr
    assert service.docker("cp", "st:/made", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back").read_text() == "a file\n"
    service.docker("rm", "st")
    assert service.docker("create", "--name", "st", "busybox", "cat", "/tmp/file.txt").returncode == 0
    assert service.docker("cp", str(tmp_path / "file.txt"), "st:/tmp/").returncode == 0
    done = service.docker("start", "-a", "st")
    assert (done.returncode, done.stdout) == (0, "a file\n"), done.stderr

    assert service.docker("create", "--read-only", "--name", "ro", "busybox", "true").returncode == 0
    refused = service.docker("cp", str(tmp_path / "file.txt"), "ro:/tmp/")
    assert refused.returncode != 0 and "container rootfs is marked read-only" in refused.stderr
    import docker

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    try:
        _client(service).api.put_archive("ro", "/tmp", data.getvalue())
        raise AssertionError("a read-only root was extracted into")
    except docker.errors.APIError as exc:
        assert exc.response.status_code == 403, exc  # docker's status for it: Forbidden


def test_docker_cp_a_gives_the_files_to_the_containers_user(service, tmp_path):
    # dockerd keeps the archive's owners, and with copyUIDGID (`cp -a`) makes them the user's
    (tmp_path / "owned").write_text("x")
    os.chown(tmp_path / "owned", 1234, 99)
    assert service.docker("run", "-d", "--name", "nob", "-u", "nobody", "busybox", "sleep", "300").returncode == 0
    assert service.docker("cp", str(tmp_path / "owned"), "nob:/tmp/kept").returncode == 0
    done = service.docker("cp", "-a", str(tmp_path / "owned"), "nob:/tmp/given")
    assert done.returncode == 0, done.stderr
    owners = service.docker("exec", "nob", "stat", "-c", "%u:%g", "/tmp/kept", "/tmp/given").stdout
    assert owners == "1234:99\n65534:65534\n"
    # The container's files are read on the host's side: a sparse giant must not fill its memory,
    # a FIFO must not hang it. No exec after the giant (it refuses it too, as runc's reader does)
    # nor after the FIFO (it would wait on it, as runc's): the container swaps in the FIFO itself
    # once a plain cp (which reads no passwd) gives it the word.
    swap = "while [ ! -e /tmp/go ]; do sleep 0.1; done; mv /tmp/fifo /etc/passwd"
    giant = "rm /etc/passwd && dd if=/dev/zero of=/etc/passwd bs=1 count=0 seek=1G && mkfifo /tmp/fifo"
    assert (
        service.docker("exec", "-u", "0", "nob", "sh", "-c", f"{giant} && ({swap}) >/dev/null 2>&1 &").returncode == 0
    )

    def refusal() -> str:
        refused = service.docker("cp", "-a", str(tmp_path / "owned"), "nob:/tmp/")
        assert refused.returncode != 0, refused.stderr
        return refused.stderr

    assert "/etc/passwd is over" in refusal()
    assert service.docker("cp", str(tmp_path / "owned"), "nob:/tmp/go").returncode == 0
    assert wait_until(lambda: "/etc/passwd is not a regular file" in refusal())


def test_the_archive_stat_header_is_dockers(service):
    import base64

    assert (
        service.docker("run", "-d", "--name", "box", "busybox", "sh", "-c", "ln -s /etc /e; exec sleep 300").returncode
        == 0
    )
    assert wait_until(lambda: service.docker("exec", "box", "test", "-L", "/e").returncode == 0)
    status, headers, body = service.request("HEAD", "/v1.41/containers/box/archive?path=/etc/passwd")
    assert (status, body) == (200, b"")
    stat = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
    assert stat["name"] == "passwd" and stat["mode"] == 0o644 and stat["size"] > 0 and stat["linkTarget"] == ""
    stat = json.loads(
        base64.b64decode(service.request("HEAD", "/containers/box/archive?path=/e")[1]["X-Docker-Container-Path-Stat"])
    )
    assert (stat["name"], stat["mode"] & ~0o777, stat["linkTarget"]) == ("e", 1 << 27, "/etc")  # Go's ModeSymlink
    stat = json.loads(
        base64.b64decode(service.request("HEAD", "/containers/box/archive?path=/e/")[1]["X-Docker-Container-Path-Stat"])
    )
    assert stat["mode"] & (1 << 31) and stat["name"] == "e"  # Go's ModeDir: a trailing / follows the link
    assert service.request("HEAD", "/containers/box/archive?path=/nope")[0] == 404
    assert service.request("HEAD", "/containers/nobox/archive?path=/")[0] == 404
    assert service.request("GET", "/containers/box/archive")[0] == 400


def test_docker_py_put_and_get_archive(service):
    client = _client(service)
    container = client.containers.run("busybox", ["sleep", "300"], detach=True, name="py")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in [("hello.txt", b"hello\n"), ("dir/inner", b"inner\n")]:
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(text), 1234, 99, 0o640
            tar.addfile(info, io.BytesIO(text))
    assert container.put_archive("/tmp", data.getvalue()) is True
    done = container.exec_run(["sh", "-c", "cat /tmp/hello.txt /tmp/dir/inner; stat -c '%u:%g %a' /tmp/hello.txt"])
    assert done.output == b"hello\ninner\n1234:99 640\n"  # the archive's owners kept, as dockerd keeps them
    stream, stat = container.get_archive("/tmp/dir")
    assert stat["name"] == "dir" and stat["mode"] & (1 << 31)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/inner"]
        assert tar.extractfile("dir/inner").read() == b"inner\n"
    import docker

    try:
        container.put_archive("/no/such/dir", data.getvalue())
        raise AssertionError("a missing directory was extracted into")
    except docker.errors.NotFound:
        pass
    try:
        container.put_archive("/tmp/hello.txt", data.getvalue())
        raise AssertionError("a file was extracted into")
    except docker.errors.APIError as exc:
        assert exc.status_code == 400


def test_docker_cp_stays_inside_a_hostile_containers_root(service, tmp_path):
    """Links in the container to the host's paths: cp and the archive API read and write the
    container's files, never the host's (containers/copy.py's rules, through the API)."""
    secret = tmp_path / "secret" / "shadow"
    secret.parent.mkdir()
    secret.write_text("HOST SECRET")
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "payload").write_text("payload")
    links = f"ln -s / /out; ln -s ../../../../../.. /up; ln -s {secret} /link; ln -s {target} /tgt; touch /ready"
    assert (
        service.docker("run", "-d", "--name", "hostile", "busybox", "sh", "-c", f"{links}; exec sleep 300").returncode
        == 0
    )
    assert wait_until(lambda: service.docker("exec", "hostile", "test", "-e", "/ready").returncode == 0)
    got = tmp_path / "got"
    for path in (f"/out{secret}", f"/up{secret}", "/link/"):
        done = service.docker("cp", f"hostile:{path}", str(got))
        assert done.returncode != 0 and not got.exists(), (path, done.stdout, done.stderr)
        assert service.request("GET", f"/containers/hostile/archive?path={path}")[0] == 404
    done = service.docker("cp", "-L", "hostile:/link", str(got))
    assert done.returncode != 0 and not got.exists()
    for path in (f"/out{target}", f"/up{target}", "/tgt"):
        service.docker("cp", str(tmp_path / "payload"), f"hostile:{path}/")
    assert os.listdir(target) == [] and secret.read_text() == "HOST SECRET"


def test_docker_export_is_the_containers_filesystem(service, tmp_path):
    assert (
        service.docker("run", "--name", "ex", "busybox", "sh", "-c", "echo made > /made; rm /etc/group").returncode == 0
    )
    archive = tmp_path / "ex.tar"
    done = subprocess.run(
        f"{DOCKER} export ex > {archive}", shell=True, env=service.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    names = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert {"made", "bin/busybox", "etc/passwd"} <= set(names) and "etc/group" not in names
    assert service.request("GET", "/containers/nothere/export")[0] == 404


def test_docker_stats_and_update(service):
    assert service.docker("run", "-d", "--name", "busy", "busybox", "sh", "-c", "while :; do :; done").returncode == 0
    done = service.docker("stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", "busy")
    assert done.returncode == 0, done.stderr
    name, cpu, memory, pids = done.stdout.strip().split("|")
    assert (name, pids) == ("busy", "1")
    assert float(cpu.rstrip("%")) > 5, done.stdout  # a busy loop: a good share of a CPU
    used, limit = memory.split(" / ")
    assert used != "0B" and limit != "0B"

    done = service.docker(
        "update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50", "--restart", "on-failure:3", "busy"
    )
    assert (done.returncode, done.stdout) == (0, "busy\n"), done.stderr
    shown = service.docker(
        "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}", "busy"
    ).stdout
    assert shown == f"{64 << 20} 50 on-failure\n"
    done = service.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", "busy")
    assert done.stdout.strip().endswith("/ 64MiB"), done.stdout
    done = service.docker("update", "--memory", "1m", "busy")
    assert done.returncode != 0 and "Minimum memory limit allowed is 6MB" in done.stderr
    assert service.docker("update", "--cpus", "0.5", "busy").returncode == 0

    client = _client(service)
    readings = client.containers.get("busy").stats(stream=True, decode=True)
    first, second = next(readings), next(readings)
    readings.close()
    assert first["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and first["pids_stats"]["current"] == 1
    assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
    assert second["cpu_stats"]["cpu_usage"]["total_usage"] > first["cpu_stats"]["cpu_usage"]["total_usage"]
    assert second["memory_stats"]["limit"] == 64 << 20 and "eth0" in second["networks"]
    one = client.containers.get("busy").stats(stream=False, one_shot=True)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and one["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    service.docker("rm", "-f", "busy")


def _hijack(service, path: str) -> tuple[socket.socket, bytes]:
    """A hijacked attach on a socket of our own, past its `101 UPGRADED`, and what came after
    its headers. (docker-py reads the raw socket past http.client's buffer,
    which may hold the first frames already: its issue 2466, the same with dockerd.)"""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(service.path)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
    seen = b""
    while b"\r\n\r\n" not in seen:
        seen += sock.recv(4096)
    head, _, early = seen.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, early


def _read_until(hijacked: tuple[socket.socket, bytes], wanted: bytes | None) -> bytes:
    """What the hijacked socket sends until `wanted` is in it, or (None) until its end."""
    (sock, seen), deadline = hijacked, time.monotonic() + 30
    while (wanted is None or wanted not in seen) and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        seen += chunk
    sock.close()
    return seen


def _frame(stream: int, data: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def test_attach_with_logs_replays_the_log_then_streams(service):
    client = _client(service)
    done = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], detach=True, name="done")
    assert done.wait()["StatusCode"] == 0
    both = _hijack(service, "/v1.41/containers/done/attach?stdout=1&stderr=1&logs=1")
    assert _read_until(both, None) == _frame(1, b"out\n") + _frame(2, b"err\n")  # logs=1 alone: the log, the end
    out = _hijack(service, "/containers/done/attach?stdout=1&logs=1&stream=0")
    assert _read_until(out, None) == _frame(1, b"out\n")

    script = "echo first; read line; echo then $line; exec sleep 300"
    live = client.containers.run("busybox", ["sh", "-c", script], detach=True, name="live", stdin_open=True)
    assert wait_until(lambda: live.logs() == b"first\n")
    hijacked = _hijack(service, f"/v1.41/containers/{live.id}/attach?stdin=1&stdout=1&logs=1&stream=1")
    hijacked[0].sendall(b"more\n")
    seen = _read_until(hijacked, b"then more\n")
    assert seen == _frame(1, b"first\n") + _frame(1, b"then more\n"), seen
    live.remove(force=True)


def test_the_containers_list_names_the_image_id_as_inspect_does(service):  # noqa: F811
    """ImageID in /containers/json is `sha256:<hex>`, the id inspect gives (it was prefixed
    twice: `sha256:sha256:<hex>`, which docker's clients cannot look up)."""
    assert service.docker("create", "--name", "listed", "busybox", "true").returncode == 0
    status, _, body = service.request("GET", "/containers/json?all=1")
    assert status == 200, body
    (listed,) = [c for c in json.loads(body) if c["Names"] == ["/listed"]]
    status, _, body = service.request("GET", "/containers/listed/json")
    assert status == 200, body
    image = json.loads(body)["Image"]
    assert image.startswith("sha256:") and image.count("sha256:") == 1
    assert listed["ImageID"] == image
