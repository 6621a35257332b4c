"""`minirun system service`: the Docker Engine API, driven by real clients only: Debian's docker
CLI 20.10 (taken out of its package by scripts/setup.sh --test into .venv/docker) through
DOCKER_HOST, and docker-py. Each test has a service of its own on its store, stopped at its end,
its socket gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.engineapi import DOCKER, service, start_service  # noqa: F401  (service: a fixture)
from tests.helpers import wait_until


def test_ping_heads_without_a_body_and_the_socket_is_roots_alone(service):
    status, headers, body = service.request("HEAD", "/_ping")
    assert status == 200 and body == b""
    assert headers["Api-Version"] == "1.43" and headers["Ostype"] == "linux" and headers["Builder-Version"] == "1"
    assert service.request("GET", "/v1.41/_ping")[2] == b"OK"
    assert os.stat(service.path).st_mode & 0o777 == 0o600


def test_docker_version_negotiates_down(service):
    done = service.docker(
        "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1.41", "1.43", "1.24"]


def test_docker_run_rm_prints_the_output_and_exits_with_the_code(service):
    done = service.docker("run", "--rm", "busybox", "echo", "hi")
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    done = service.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert service.docker("ps", "-aq").stdout == ""  # --rm: gone


def test_docker_run_with_stdin(service):
    done = service.docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done", input="hello\n")
    assert (done.returncode, done.stdout) == (0, "HELLO\ndone\n"), done.stderr


def test_docker_run_d_ps_logs_exec_stop_rm(service):
    done = service.docker(
        "run", "-d", "--name", "web", "-l", "tier=front", "-e", "WHO=api",
        "busybox", "sh", "-c", "echo started $WHO; echo warn >&2; exec sleep 300",
    )  # fmt: skip
    assert done.returncode == 0 and len(done.stdout.strip()) == 64, done.stderr
    done = service.docker("ps", "--format", '{{.Names}}|{{.Image}}|{{.Label "tier"}}|{{.State}}')
    assert done.stdout == "web|busybox|front|running\n", done.stderr
    assert service.docker("ps", "-q", "--filter", "label=tier=front").stdout.strip() == done_id(service, "web")[:12]
    assert service.docker("ps", "-q", "--filter", "status=exited").stdout == ""
    deadline = time.monotonic() + 30
    while "started api" not in (logs := service.docker("logs", "web")).stdout:
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert (logs.stdout, logs.stderr) == ("started api\n", "warn\n")
    done = service.docker("exec", "web", "sh", "-c", "echo in $WHO; echo e >&2; exit 4")
    assert (done.returncode, done.stdout, done.stderr) == (4, "in api\n", "e\n")
    assert service.docker("exec", "-i", "web", "cat", input="piped\n").stdout == "piped\n"
    assert service.docker("exec", "web", "touch", "/tmp/made").returncode == 0
    assert service.docker("diff", "web").stdout == "C /tmp\nA /tmp/made\n"
    assert "sleep 300" in service.docker("top", "web").stdout
    done = service.docker("stop", "-t", "1", "web")
    assert (done.returncode, done.stdout) == (0, "web\n"), done.stderr
    state = service.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.Name}}", "web").stdout
    assert state == "exited 137 /web\n"  # PID 1 has no SIGTERM handler: killed after -t 1
    assert service.docker("rm", "-f", "web").returncode == 0
    assert service.docker("ps", "-aq").stdout == ""


def done_id(service, name: str) -> str:
    return service.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()


def test_docker_images_inspect_history_tag_rmi(service):
    done = service.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert done.stdout == "busybox:latest\n", done.stderr
    assert service.docker("tag", "busybox", "mine:1").returncode == 0
    tags = json.loads(service.docker("image", "inspect", "-f", "{{json .RepoTags}}", "busybox").stdout)
    assert sorted(tags) == ["busybox:latest", "mine:1"]
    assert service.docker("history", "-q", "mine:1").returncode == 0
    done = service.docker("rmi", "mine:1")
    assert (done.returncode, done.stdout) == (0, "Untagged: mine:1\n"), done.stderr


def test_errors_are_dockers(service):
    done = service.docker("logs", "nope")
    assert done.returncode == 1 and "No such container: nope" in done.stderr
    status, headers, body = service.request("GET", "/v1.41/containers/nope/json")
    assert status == 404 and json.loads(body) == {"message": "No such container: nope"}
    status, _, body = service.request("GET", "/v9.99/containers/json")
    assert status == 400 and "too new" in json.loads(body)["message"]
    status, _, body = service.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Foo": 1}})
    assert status == 400 and "Foo" in json.loads(body)["message"]
    assert service.docker("run", "-d", "--name", "twice", "busybox", "sleep", "300").returncode == 0
    done = service.docker("run", "-d", "--name", "twice", "busybox", "true")
    assert done.returncode == 125 and "already in use" in done.stderr


def test_docker_py_runs_execs_and_reads_logs(service):
    import docker

    client = docker.DockerClient(base_url=f"unix://{service.path}", version="auto")
    assert client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True) == b"out\n"
    container = client.containers.run("busybox", ["sh", "-c", "echo one; exec sleep 300"], detach=True, name="py")
    result = container.exec_run(["sh", "-c", "echo hi; exit 2"])
    assert (result.exit_code, result.output) == (2, b"hi\n")
    assert container.exec_run("echo tty", tty=True).output == b"tty\r\n"
    assert next(iter(container.logs(stream=True, follow=True))) == b"one\n"
    assert container.logs() == b"one\n"
    container.reload()
    assert container.status == "running" and container.labels == {}
    container.stop(timeout=1)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 137
    container.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("py")


def test_the_service_exits_when_idle_and_takes_its_socket(isolated_store, busybox, tmp_path):
    found = start_service(str(isolated_store), tmp_path, "--time", "1")
    assert found.request("GET", "/_ping")[0] == 200
    assert found.process.wait(timeout=30) == 0
    assert not os.path.exists(found.path)


def test_docker_network_create_ls_inspect_rm_prune(service):
    done = service.docker("network", "create", "--label", "team=a", "--subnet", "10.67.201.0/24", "apinet")
    assert done.returncode == 0 and len(done.stdout.strip()) == 64, done.stderr
    network_id = done.stdout.strip()
    done = service.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}", "--filter", "label=team=a")
    assert done.stdout == "apinet bridge\n", done.stderr
    assert service.docker("network", "ls", "-q", "--filter", "name=^apinet$").stdout.strip() == network_id[:12]
    names = service.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"bridge", "host", "none", "apinet"} <= set(names)
    assert service.docker("network", "create", "apinet").returncode == 1  # a duplicate: 409
    done = service.docker("run", "-d", "--name", "onnet", "--network", "apinet", "--network-alias", "svc",
                          "busybox", "sleep", "300")  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(service.docker("network", "inspect", "apinet").stdout)[0]
    assert document["Id"] == network_id and document["Labels"] == {"team": "a"}
    assert document["IPAM"]["Config"] == [{"Subnet": "10.67.201.0/24", "Gateway": "10.67.201.1"}]
    assert [c["Name"] for c in document["Containers"].values()] == ["onnet"]
    aliases = json.loads(service.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "onnet").stdout)
    assert aliases["apinet"]["Aliases"][0] == "svc" and aliases["apinet"]["IPAddress"].startswith("10.67.201.")
    done = service.docker("network", "rm", "apinet")
    assert done.returncode == 1 and "active endpoints" in done.stderr
    assert service.docker("rm", "-f", "onnet").returncode == 0
    assert service.docker("network", "rm", "apinet").stdout == "apinet\n"
    done = service.docker("network", "inspect", "apinet")
    assert done.returncode == 1 and "No such network: apinet" in done.stderr
    assert service.docker("network", "create", "--internal", "spare").returncode == 0
    assert service.docker("network", "inspect", "-f", "{{.Internal}}", "spare").stdout == "true\n"
    done = service.docker("network", "prune", "-f")
    assert (done.returncode, done.stdout) == (0, "Deleted Networks:\nspare\n\n"), done.stderr
    status, _, body = service.request("POST", "/networks/bridge/connect", {"Container": "x"})
    assert status == 404 and json.loads(body)["message"] == "No such container: x"


def test_docker_volume_create_ls_inspect_rm_prune(service):
    done = service.docker("volume", "create", "--label", "team=a", "data")
    assert (done.returncode, done.stdout) == (0, "data\n"), done.stderr
    assert service.docker("volume", "ls", "-q", "--filter", "label=team=a").stdout == "data\n"
    document = json.loads(service.docker("volume", "inspect", "data").stdout)[0]
    assert (document["Name"], document["Driver"], document["Labels"]) == ("data", "local", {"team": "a"})
    done = service.docker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert done.returncode == 0, done.stderr
    assert Path(document["Mountpoint"], "f").read_text() == "kept\n"
    assert service.docker("run", "-d", "--name", "user", "-v", "data:/data", "busybox", "sleep", "300").returncode == 0
    done = service.docker("volume", "rm", "data")
    assert done.returncode == 1 and "volume is in use" in done.stderr
    assert service.docker("rm", "-f", "user").returncode == 0
    assert service.docker("volume", "rm", "data").stdout == "data\n"
    assert service.docker("volume", "inspect", "data").returncode == 1
    anonymous = service.docker("volume", "create").stdout.strip()
    assert service.docker("volume", "create", "named").returncode == 0
    status, _, body = service.request("POST", "/v1.43/volumes/prune")  # since 1.42: the anonymous ones
    assert (status, json.loads(body)["VolumesDeleted"]) == (200, [anonymous])
    assert service.docker("volume", "create", "--label", "keep=1", "kept").returncode == 0
    done = service.docker("volume", "prune", "-f", "--filter", "label!=keep")  # 1.41: every unused one
    assert done.returncode == 0 and done.stdout.startswith("Deleted Volumes:\nnamed\n"), done.stderr
    assert service.docker("volume", "ls", "-q").stdout == "kept\n"


def test_docker_ps_lists_published_ports(service):
    done = service.docker("run", "-d", "--name", "pub", "-p", "127.0.0.1::80", "busybox", "sleep", "300")
    assert done.returncode == 0, done.stderr
    port = service.docker("port", "pub", "80").stdout.strip()
    assert port.startswith("127.0.0.1:")
    done = service.docker("ps", "--format", "{{.Ports}}")
    assert done.stdout == f"{port}->80/tcp\n", done.stderr


def test_docker_events_since_until_with_filters_and_streamed(service):
    since = f"{time.time():.3f}"
    assert service.docker("run", "--rm", "--name", "ev", "-l", "kind=probe", "busybox", "true").returncode == 0
    until = f"{time.time() + 0.001:.3f}"
    done = service.docker(
        "events", "--since", since, "--until", until, "--filter", "type=container", "--filter", "label=kind=probe",
        "--format", "{{.Action}} {{.Actor.Attributes.name}}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    actions = [line.split()[0] for line in done.stdout.splitlines()]
    assert actions[:2] == ["create", "attach"] or actions[0] == "create", actions
    assert {"start", "die", "destroy"} <= set(actions) and all(
        line.endswith(" ev") for line in done.stdout.splitlines()
    )
    since = f"{time.time():.3f}"
    watcher = subprocess.Popen(
        [
            str(DOCKER),
            "events",
            "--since",
            since,
            "--filter",
            "type=network",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
        env=service.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.docker("network", "create", "first").returncode == 0
        assert watcher.stdout.readline() == "create first\n"
        # the watcher is following now: the next one comes as it happens
        assert service.docker("network", "rm", "first").returncode == 0
        assert watcher.stdout.readline() == "destroy first\n"
    finally:
        watcher.kill()
        watcher.wait()


def test_docker_system_df(service):
    assert service.docker("run", "-d", "--name", "dfc", "-v", "dfvol:/data", "busybox", "sleep", "300").returncode == 0
    done = service.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == ["Images 1 1", "Containers 1 1", "Local Volumes 1 1"]
    verbose = service.docker("system", "df", "-v")
    assert "dfvol" in verbose.stdout and "dfc" in verbose.stdout


def test_the_installed_command_serves_what_forks_in_workers(isolated_store, busybox, tmp_path):
    """Through `minirun` as scripts/setup.sh writes it (launcher.py), not `python -m minirun`: a
    create runs in a spawned worker, which runs the parent's __main__ file again; without the
    script's __name__ guard every worker ran the CLI and died."""
    command = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "minirun"
    service = start_service(str(isolated_store), tmp_path, "--time", "0", command=[str(command)])
    try:
        done = service.docker("run", "--rm", "busybox", "echo", "hi")
        assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    finally:
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=60) == 0, (tmp_path / "service.log").read_text()


def test_docker_logs_follow_and_attach_end_with_the_container(service):
    """`docker logs -f` prints the history, then what comes, and returns when the container ends;
    `docker attach` shows the running container's output from then on and exits with its code."""
    started = service.docker(
        "run", "-d", "--name", "talker", "busybox", "sh", "-c",
        "echo first; until [ -e /tmp/go ]; do echo tick; sleep 0.1; done; echo last; exit 7",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    pipes = {"env": service.env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    follow = subprocess.Popen([str(DOCKER), "logs", "-f", "talker"], **pipes)
    attach = subprocess.Popen([str(DOCKER), "attach", "--no-stdin", "talker"], **pipes)
    assert follow.stdout is not None and attach.stdout is not None
    assert follow.stdout.readline() == "first\n"
    assert attach.stdout.readline() == "tick\n"  # attached: the live output flows
    assert service.docker("exec", "talker", "touch", "/tmp/go").returncode == 0
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0 and out.endswith("tick\nlast\n"), (out, err)
    out, err = attach.communicate(timeout=60)
    assert attach.returncode == 7 and out.endswith("last\n"), (out, err)


def test_docker_py_diff(service):
    import docker

    client = docker.DockerClient(base_url=f"unix://{service.path}", version="auto")
    container = client.containers.run(
        "busybox", ["sh", "-c", "mkdir /made && touch /made/f && rm /etc/group"], detach=True
    )
    assert container.wait()["StatusCode"] == 0
    changes = {(c["Path"], c["Kind"]) for c in container.diff()}
    assert {("/made", 1), ("/made/f", 1), ("/etc", 0), ("/etc/group", 2)} <= changes, changes
    container.remove()


def test_stops_that_wait_keep_the_service_answering(service, isolated_store, cli):
    """Forty `stop -t 600` of a container that ignores SIGTERM (its PID 1 has no handler) are all
    under way at once, and meanwhile everyone else's calls are answered: once they shared the
    loop's thread pool (cpu_count + 4 threads), the first few took it and everything else, a
    `ps` as much as a `kill`, waited behind them for ten minutes."""
    import socket

    run = service.docker("run", "-d", "--name", "stubborn", "--network", "none", "busybox", "sleep", "1000")
    assert run.returncode == 0, run.stderr
    stops = []
    try:
        for _ in range(40):
            stop = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stops.append(stop)
            stop.connect(service.path)
            stop.sendall(b"POST /containers/stubborn/stop?t=600 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")

        def signalled() -> int:  # each stop records its SIGTERM as a `kill` event
            return (isolated_store / "events.log").read_text().count('"Action":"kill"')

        assert wait_until(lambda: signalled() == 40), signalled()
        status, _, body = service.request("GET", "/containers/json")
        assert status == 200 and [c["Names"] for c in json.loads(body)] == [["/stubborn"]], body
        assert service.request("POST", "/containers/stubborn/kill")[0] == 204
        for stop in stops:
            stop.settimeout(60)
            assert stop.recv(4096).startswith(b"HTTP/1.1 204"), "a stop did not end with its container"
    finally:
        cli("kill", "stubborn")  # not through the service: without threads to spare, it answers nothing
        for stop in stops:
            stop.close()
