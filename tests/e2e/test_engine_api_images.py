"""The Engine API's image jobs with real clients: build (the classic builder, DOCKER_BUILDKIT=0),
save and load, pull and push against a local registry (docker-registry), login; docker-py's
images.build and images.pull."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from tests.e2e.engineapi import service  # noqa: F401  (a fixture)
from tests.helpers import wait_until
from tests.registryserver import PASSWORD, USER, auth_registry, minirun_config, registry  # noqa: F401

DOCKERFILE = """\
FROM busybox AS base
ARG WHO=nobody
COPY hello.txt /hello.txt
RUN echo built by $WHO > /who && cat /who
CMD ["cat", "/hello.txt", "/who"]
FROM base AS other
RUN false
"""


@pytest.fixture(autouse=True)
def _isolated_credentials(minirun_config):  # noqa: F811  (no test reads or writes ~/.minirun)
    return minirun_config


@pytest.fixture
def context(tmp_path):
    directory = tmp_path / "context"
    directory.mkdir()
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "hello.txt").write_text("hello from the context\n")
    return directory


def test_docker_build_streams_the_classic_builders_steps(service, context):  # noqa: F811
    service.env["DOCKER_BUILDKIT"] = "0"
    done = service.docker(
        "build", "-t", "built:1", "--target", "base", "--build-arg", "WHO=api", "--label", "made=here", str(context)
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (
        "Step 1/6 : FROM busybox AS base" in lines and "Step 4/6 : RUN echo built by $WHO > /who && cat /who" in lines
    )
    assert "built by api" in lines and lines[-1] == "Successfully tagged built:1"
    assert service.docker("run", "--rm", "built:1").stdout == "hello from the context\nbuilt by api\n"
    label = service.docker("image", "inspect", "-f", '{{index .Config.Labels "made"}}', "built:1").stdout
    assert label == "here\n"
    again = service.docker("build", "-q", "-t", "built:1", "--target", "base", "--build-arg", "WHO=api", str(context))
    assert again.returncode == 0 and again.stdout.startswith("sha256:"), again.stderr
    assert service.docker("image", "inspect", "-f", "{{.Id}}", "built:1").stdout == again.stdout
    failed = service.docker("build", "-t", "broken", str(context))  # the last stage's RUN false
    assert failed.returncode == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in failed.stderr + failed.stdout


@pytest.mark.timeout(60)  # without streaming it would wait on the RUN's 70-minute sleep
def test_a_runs_output_streams_while_it_runs(service):  # noqa: F811
    """The RUN prints, then sleeps until the test, having read that line from the stream, kills
    its sleep: a server that sent the output only when the step ended would never get there."""
    import docker

    client = docker.APIClient(base_url=f"unix://{service.path}", version="auto")
    dockerfile = io.BytesIO(b"FROM busybox\nRUN echo ready-to-be-woken; sleep 4242; echo woken\n")
    seen = []
    try:
        for chunk in client.build(fileobj=dockerfile, tag="woken:1", decode=True):
            seen.append(chunk.get("stream", ""))
            if chunk.get("stream", "").startswith("ready-to-be-woken"):  # the shell starts its sleep next
                assert wait_until(lambda: _kill_sleep("4242") == 1)
    finally:  # failed or not, no step container sleeps on past the test (and its session's cgroups)
        _kill_sleep("4242")
    text = "".join(seen)
    assert "ready-to-be-woken\n" in text and "woken\n" in text.split("ready-to-be-woken")[1]
    assert text.endswith("Successfully tagged woken:1\n"), text


@pytest.mark.timeout(60)
def test_a_build_whose_client_left_stops_even_a_silent_run(service):  # noqa: F811
    """docker cancels a build when its client goes. A RUN that writes nothing gives the service
    no failed write to notice it by: the service must look, and stop the job, and the step."""
    from tests.e2e.engineapi import _UnixHTTP

    def sleeping() -> int:
        return _count_sleeps("4244")

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        text = b"FROM busybox\nRUN sleep 4244\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    connection = _UnixHTTP(service.path)
    try:
        connection.request(
            "POST", "/build?t=silent:1", body=context.getvalue(), headers={"Content-Type": "application/x-tar"}
        )
        response = connection.getresponse()
        assert response.status == 200
        assert wait_until(lambda: sleeping() == 1)
    finally:
        connection.close()  # the client leaves mid-RUN
    try:
        assert wait_until(lambda: sleeping() == 0)
    finally:
        _kill_sleep("4244")


def _count_sleeps(seconds: str) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                count += f.read().split(b"\0")[:2] == [b"sleep", seconds.encode()]
        except FileNotFoundError:
            pass
    return count


def _kill_sleep(seconds: str) -> int:
    """SIGKILL every `sleep SECONDS` on the host (the number is this test's own); how many."""
    import os
    import signal

    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
        except (FileNotFoundError, ProcessLookupError):
            pass
    return killed


def test_docker_save_then_load(service, tmp_path):  # noqa: F811
    assert service.docker("tag", "busybox", "saved:1").returncode == 0
    archive = tmp_path / "saved.tar"
    done = service.docker("save", "-o", str(archive), "saved:1")
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    assert service.docker("rmi", "saved:1").returncode == 0
    done = service.docker("load", "-i", str(archive))
    assert (done.returncode, done.stdout) == (0, "Loaded image: saved:1\n"), done.stderr
    missing = service.docker("save", "-o", str(tmp_path / "none.tar"), "nosuch:1")
    assert missing.returncode == 1 and "nosuch" in missing.stderr


def test_docker_push_pull_against_a_registry(service, registry):  # noqa: F811
    name = f"{registry.host}/api/busybox:1"
    assert service.docker("tag", "busybox", name).returncode == 0
    done = service.docker("push", name)
    assert done.returncode == 0, done.stderr
    assert "The push refers to repository" in done.stdout and "1: digest: sha256:" in done.stdout
    assert service.docker("rmi", name).returncode == 0
    done = service.docker("pull", name)
    assert done.returncode == 0, done.stderr
    assert "Pull complete" in done.stdout or "Already exists" in done.stdout
    assert done.stdout.splitlines()[-1] == name
    assert service.docker("run", "--rm", name, "echo", "pulled").stdout == "pulled\n"
    missing = service.docker("pull", f"{registry.host}/api/nothing:1")
    assert missing.returncode == 1 and "Error response from daemon: manifest" in missing.stderr


def test_docker_login_then_push_and_pull_with_credentials(service, auth_registry):  # noqa: F811
    name = f"{auth_registry.host}/private/busybox:1"
    assert service.docker("tag", "busybox", name).returncode == 0
    denied = service.docker("push", name)
    assert denied.returncode == 1
    wrong = service.docker("login", "-u", USER, "--password-stdin", auth_registry.host, input="nope\n")
    assert wrong.returncode == 1
    done = service.docker("login", "-u", USER, "--password-stdin", auth_registry.host, input=PASSWORD + "\n")
    assert done.returncode == 0 and "Login Succeeded" in done.stdout, done.stderr
    done = service.docker("push", name)  # the CLI sends the credentials: X-Registry-Auth
    assert done.returncode == 0, done.stderr
    assert service.docker("rmi", name).returncode == 0
    assert service.docker("pull", name).returncode == 0


def test_docker_py_builds_and_pulls(service, context, registry):  # noqa: F811
    import docker

    client = docker.DockerClient(base_url=f"unix://{service.path}", version="auto")
    image, logs = client.images.build(path=str(context), tag="py:1", target="base", buildargs={"WHO": "py"})
    assert "py:1" in image.tags
    assert any("built by py" in chunk.get("stream", "") for chunk in logs)
    assert client.containers.run("py:1", remove=True) == b"hello from the context\nbuilt by py\n"
    with pytest.raises(docker.errors.BuildError, match="non-zero code"):
        client.images.build(path=str(context), tag="broken")
    dockerfile = io.BytesIO(b"FROM busybox\nRUN echo from a file object > /f\n")
    image, _ = client.images.build(fileobj=dockerfile, tag="py:2")
    assert client.containers.run("py:2", ["cat", "/f"], remove=True) == b"from a file object\n"
    name = f"{registry.host}/py/busybox"
    image.tag(name, "2")
    for line in client.images.push(name, "2", stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(f"{name}:2")
    pulled = client.images.pull(name, tag="2")
    assert f"{name}:2" in pulled.tags and pulled.id == image.id
    kept = client.images.prune(filters={"dangling": False, "label": ["no.such.label"]})
    assert kept["ImagesDeleted"] is None and client.images.get(f"{name}:2").id == image.id
    removed = client.images.prune(filters={"dangling": False})
    assert isinstance(removed["ImagesDeleted"], list | None)
    status = service.request("GET", "/images/search?term=busybox")[0]
    assert status == 501
    assert json.loads(service.request("GET", "/images/json")[2]) is not None
