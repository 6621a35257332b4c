"""docker-compose 1.29 (Debian's, on the system python3 and its docker-py) drives minirun through
the Engine API: a project's (internal) network, two services that find each other by name on it,
ps, logs, down. Each test has a service of its own (engineapi.py) and a project name of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from tests.e2e.engineapi import service  # noqa: F401  (a fixture)

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

PROJECT_FILE = """\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
  client:
    image: busybox
    depends_on: [web]
    command: ["sh", "-c", "until wget -q -O - http://web/; do sleep 0.2; done; exec sleep 300"]
    stop_grace_period: 1s
networks:
  default:
    internal: true  # a backend's: the two find each other, and nothing else (docker's --internal)
"""


@pytest.fixture
def compose(service, tmp_path):  # noqa: F811
    assert os.access(COMPOSE, os.X_OK), "scripts/setup.sh --test installs Debian's docker-compose"
    (tmp_path / "docker-compose.yml").write_text(PROJECT_FILE)
    env = dict(service.env, COMPOSE_PROJECT_NAME=f"t{uuid.uuid4().hex[:10]}")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [COMPOSE, "--no-ansi", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )

    run.project = env["COMPOSE_PROJECT_NAME"]  # type: ignore[attr-defined]
    yield run
    run("down", "--timeout", "1")  # a test that failed halfway leaves no network behind


def test_compose_up_ps_logs_down(compose, service):  # noqa: F811
    project = compose.project
    done = compose("up", "-d")
    assert done.returncode == 0, done.stderr
    assert f'Creating network "{project}_default"' in done.stderr
    deadline = time.monotonic() + 60
    while "hello-from-web" not in (logs := compose("logs", "--no-color", "client")).stdout:
        assert time.monotonic() < deadline, (logs.stdout, logs.stderr)
        time.sleep(0.2)
    assert "client_1  | hello-from-web" in logs.stdout
    lines = compose("ps").stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[2:]) == [f"{project}_client_1", f"{project}_web_1"]
    assert all(" Up " in line for line in lines[2:]), lines
    networks = service.docker(
        "network", "ls", "--format", "{{.Name}}", "--filter", f"label=com.docker.compose.project={project}"
    )
    assert networks.stdout == f"{project}_default\n"
    internal = service.docker("network", "inspect", "-f", "{{.Internal}}", f"{project}_default")
    assert internal.stdout == "true\n", internal.stderr
    again = compose("up", "-d")  # the same project again: nothing to recreate
    assert again.returncode == 0 and "up-to-date" in again.stderr, again.stderr
    done = compose("down")
    assert done.returncode == 0, done.stderr
    assert f"Removing network {project}_default" in done.stderr
    assert service.docker("ps", "-aq").stdout == ""
    assert project not in service.docker("network", "ls").stdout


LINKS_FILE = """\
version: "3.8"
services:
  db:
    image: busybox
    cap_add: [NET_RAW]  # busybox's ping: a raw socket
    command: ["sleep", "300"]
    stop_grace_period: 1s
  app:
    image: busybox
    cap_add: [NET_RAW]
    links: ["db:database"]
    command: ["sleep", "300"]
    stop_grace_period: 1s
"""


def test_compose_links_name_the_service_for_the_linker(compose, service, tmp_path):  # noqa: F811
    """compose sends `links:` as the project network's EndpointsConfig Links: the alias resolves
    in the linking service's containers (docker's embedded DNS answers it to them alone)."""
    (tmp_path / "docker-compose.yml").write_text(LINKS_FILE)
    done = compose("up", "-d")
    assert done.returncode == 0, done.stderr
    app = service.docker("ps", "-q", "--filter", f"name={compose.project}_app_1").stdout.split()
    db = service.docker("ps", "-q", "--filter", f"name={compose.project}_db_1").stdout.split()
    assert app and db
    assert service.docker("exec", app[0], "ping", "-c1", "database").returncode == 0
    assert service.docker("exec", db[0], "ping", "-c1", "database").returncode != 0
