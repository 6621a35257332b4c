"""testcontainers (PyPI) runs a busybox web server through the Engine API, waits for it and
reaches it over its published port. Its "ryuk" reaper container (testcontainers/ryuk, from a
registry) is disabled, as TESTCONTAINERS_RYUK_DISABLED=true does: the test removes what it starts."""

from __future__ import annotations

import urllib.request

import pytest

from tests.e2e.engineapi import service  # noqa: F401  (a fixture)

SERVE = "mkdir /www && echo hello-from-tc > /www/index.html && echo serving && exec httpd -f -p 80 -h /www"


@pytest.fixture
def testcontainers(service, monkeypatch):  # noqa: F811
    pytest.importorskip("testcontainers", reason="scripts/setup.sh --test installs testcontainers")
    from testcontainers.core.config import testcontainers_config

    monkeypatch.setenv("DOCKER_HOST", f"unix://{service.path}")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)


@pytest.mark.usefixtures("testcontainers")
@pytest.mark.parametrize("host", ["gateway", "localhost"])
def test_a_busybox_web_server_is_waited_for_and_reached(service, monkeypatch, host):  # noqa: F811
    from testcontainers.core.config import ConnectionMode, testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

    if host == "localhost":  # its docker_host mode (the default but on a host with /.dockerenv: the gateway)
        monkeypatch.setattr(testcontainers_config, "connection_mode_override", ConnectionMode.docker_host)
    container = (
        DockerContainer("busybox")
        .with_command(["sh", "-c", SERVE])
        .with_exposed_ports(80)
        .waiting_for(LogMessageWaitStrategy("serving"))
    )
    with container:
        HttpWaitStrategy(80).for_response_predicate(lambda body: "hello-from-tc" in body).wait_until_ready(container)
        ip = container.get_container_host_ip()
        gateway = service.docker("inspect", "-f", "{{.NetworkSettings.Gateway}}", container.get_wrapped_container().id)
        assert ip in ("localhost", gateway.stdout.strip()) and (host == "gateway" or ip == "localhost")
        address = f"http://{ip}:{container.get_exposed_port(80)}/"
        with urllib.request.urlopen(address, timeout=30) as response:
            assert response.read() == b"hello-from-tc\n"
    assert service.docker("ps", "-aq").stdout == ""  # stopped and removed by testcontainers
