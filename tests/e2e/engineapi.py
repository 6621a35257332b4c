"""The Engine API's test service: `minirun system service` on a test's own store and socket, and
the clients that drive it (the docker CLI 20.10 from .venv/docker, raw HTTP)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / ".venv" / "docker" / "docker"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


class Service:
    def __init__(self, path: str, process: subprocess.Popen, client_config: str) -> None:
        self.path, self.process = path, process
        # the docker CLI's config (docker login's credentials): the test's own
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{path}", DOCKER_CONFIG=client_config)

    def docker(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        assert DOCKER.is_file(), f"{DOCKER}: scripts/setup.sh --test puts Debian's docker client there"
        return subprocess.run(
            [str(DOCKER), *args], env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
        connection = _UnixHTTP(self.path)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def start_service(root: str, directory: Path, *extra: str, command: list[str] | None = None) -> Service:
    """`command`: how minirun is run (default `python -m minirun`)."""
    from minirun import hostwide

    os.makedirs(hostwide.RUN_DIR, exist_ok=True)
    path = os.path.join(hostwide.RUN_DIR, f"api-{uuid.uuid4().hex[:12]}.sock")
    process = subprocess.Popen(
        [*(command or [sys.executable, "-m", "minirun"]), "system", "service", *extra, f"unix://{path}"],
        env=dict(os.environ, MINIRUN_ROOT=root),
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "service.log", "wb"),
    )
    deadline = time.monotonic() + 30
    while not _listening(path):  # the path exists from bind(), a connect succeeds from listen()
        assert process.poll() is None, (directory / "service.log").read_text()
        assert time.monotonic() < deadline, "the service did not listen"
        time.sleep(0.02)
    return Service(path, process, str(directory / "docker-config"))


@pytest.fixture
def service(isolated_store, busybox, tmp_path):
    found = start_service(str(isolated_store), tmp_path, "--time", "0")
    yield found
    for container in found.docker("ps", "-aq").stdout.split():
        found.docker("rm", "-f", container)
    found.process.send_signal(signal.SIGTERM)
    assert found.process.wait(timeout=60) == 0, (tmp_path / "service.log").read_text()
    assert not os.path.exists(found.path)
    assert "Traceback" not in (tmp_path / "service.log").read_text(), (tmp_path / "service.log").read_text()
