"""docker's links for real: on a user-defined network (the linker's own /etc/hosts names the
linked container by its alias, kept right as containers come and go), on the default bridge
(docker's legacy links: /etc/hosts and the environment), through `network connect --link`, and
through the Engine API as docker's CLI sends them."""

from __future__ import annotations

import json

from tests.e2e.engineapi import service  # noqa: F401  (a fixture)
from tests.e2e.test_network_connect import veths  # noqa: F401  (a fixture: nothing left behind)
from tests.helpers import PING


def ip_of(cli, name: str, network: str) -> str:
    settings = json.loads(cli("inspect", name).out)[0]["NetworkSettings"]["Networks"]
    return settings[network]["IPAddress"]


def hosts(cli, name: str) -> list[list[str]]:
    result = cli("exec", name, "cat", "/etc/hosts")
    assert result.code == 0, result
    return [line.split() for line in result.out.splitlines()]


def resolved(cli, name: str, host: str) -> str:
    """The address `host` has in `name`'s /etc/hosts (the first line naming it), or ""."""
    return next((words[0] for words in hosts(cli, name) if host in words[1:]), "")


def up(cli, *args: str) -> str:
    result = cli("run", "-d", *args, "busybox", "sleep", "300")
    assert result.code == 0, result
    return result.out.strip()


def test_a_link_on_a_user_network_names_the_container_for_the_linker_alone(cli, busybox, veths):  # noqa: F811
    assert cli("network", "create", "lnet").code == 0
    up(cli, "--name", "first", "--network", "lnet")
    # a link to a container that does not exist yet is taken, as docker takes it there
    up(cli, "--name", "second", "--network", "lnet", *PING, "--link", "first:foo", "--link", "third:bar")
    up(cli, "--name", "other", "--network", "lnet")
    assert resolved(cli, "second", "foo") == ip_of(cli, "first", "lnet")
    assert cli("exec", "second", "ping", "-c", "1", "-W", "2", "foo").code == 0
    assert resolved(cli, "second", "bar") == ""
    assert resolved(cli, "other", "foo") == ""  # the linker's name only
    up(cli, "--name", "third", "--network", "lnet")
    assert resolved(cli, "second", "bar") == ip_of(cli, "third", "lnet")
    assert cli("rm", "-f", "third").code == 0
    assert resolved(cli, "second", "bar") == ""
    # the linked container again, at another address: the line follows it
    old = ip_of(cli, "first", "lnet")
    assert cli("rm", "-f", "first").code == 0
    up(cli, "--name", "filler", "--network", "lnet")
    up(cli, "--name", "first", "--network", "lnet")
    assert ip_of(cli, "first", "lnet") != old
    assert resolved(cli, "second", "foo") == ip_of(cli, "first", "lnet")
    # network connect --link: an alias on the second network, to the address there
    assert cli("network", "create", "lnet2").code == 0
    assert cli("network", "connect", "lnet2", "first").code == 0
    assert cli("network", "connect", "--link", "first:FirstIn2", "lnet2", "second").code == 0
    assert resolved(cli, "second", "FirstIn2") == ip_of(cli, "first", "lnet2")
    shown = json.loads(cli("inspect", "second").out)[0]["NetworkSettings"]["Networks"]
    assert shown["lnet"]["Links"] == ["first:foo", "third:bar"] and shown["lnet2"]["Links"] == ["first:FirstIn2"]


def test_legacy_links_on_the_default_bridge(cli, busybox, veths):  # noqa: F811
    up(cli, "--name", "db", "-e", "PW=secret", "--expose", "5432", "--hostname", "dbhost")
    db_ip = ip_of(cli, "db", "bridge")
    out = cli("run", "--rm", "--name", "web", "--link", "db:database", "busybox", "sh", "-c", "cat /etc/hosts; env")
    assert out.code == 0, out
    assert f"{db_ip}\tdatabase dbhost db" in out.out.splitlines(), out.out
    env = set(out.out.splitlines())
    assert {
        f"DATABASE_PORT=tcp://{db_ip}:5432",
        f"DATABASE_PORT_5432_TCP=tcp://{db_ip}:5432",
        f"DATABASE_PORT_5432_TCP_ADDR={db_ip}",
        "DATABASE_PORT_5432_TCP_PORT=5432",
        "DATABASE_PORT_5432_TCP_PROTO=tcp",
        "DATABASE_NAME=/web/database",
        "DATABASE_ENV_PW=secret",
    } <= env, out.out
    # docker's errors: a link to no container, and links with the host's network or another's
    missing = cli("run", "--rm", "--link", "nosuch:x", "busybox", "true")
    assert missing.code == 125 and "could not get container for nosuch: No such container: nosuch" in missing.err
    host = cli("run", "--rm", "--network", "host", "--link", "db", "busybox", "true")
    assert host.code == 125 and "host type networking can't be used with links" in host.err, host
    shared = cli("run", "--rm", "--network", "container:db", "--link", "db", "busybox", "true")
    assert shared.code == 125 and "container type network can't be used with links" in shared.err, shared
    # the line follows the linked container to a new address
    up(cli, "--name", "app", "--link", "db:d")
    assert json.loads(cli("inspect", "app").out)[0]["HostConfig"]["Links"] == ["/db:/app/d"]
    assert resolved(cli, "app", "d") == db_ip
    # the bridge hands out its lowest free address, and other tests' containers on it come and go:
    # each round a filler holds one more, until db comes back at another
    for round_ in range(5):
        assert cli("rm", "-f", "db").code == 0
        up(cli, "--name", f"filler{round_}")
        up(cli, "--name", "db")
        if ip_of(cli, "db", "bridge") != db_ip:
            break
    assert ip_of(cli, "db", "bridge") != db_ip
    assert resolved(cli, "app", "d") == ip_of(cli, "db", "bridge")
    # at the linker's start the linked container must run, as docker has it
    assert cli("create", "--name", "late", "--link", "db:d", "busybox", "true").code == 0
    assert cli("stop", "-t", "0", "db").code == 0
    started = cli("start", "late")
    assert started.code != 0 and "Cannot link to a non running container: /db AS /late/d" in started.err, started


def test_a_legacy_link_names_a_container_of_its_own_store(cli, busybox, veths, tmp_path):  # noqa: F811
    """The default bridge's address book is the host's, shared by every store: a container named
    db in another store (another user's, started first) must not answer for this store's db."""
    other = str(tmp_path / "other-store")
    assert cli("run", "-d", "--name", "db", "--hostname", "otherstore", "busybox", "sleep", "300", root=other).code == 0
    try:
        up(cli, "--name", "db", "--hostname", "dbhost")
        out = cli("run", "--rm", "--link", "db:database", "busybox", "cat", "/etc/hosts")
        assert f"{ip_of(cli, 'db', 'bridge')}\tdatabase dbhost db" in out.out.splitlines(), out
        assert "otherstore" not in out.out, out
    finally:
        assert cli("rm", "-f", "db", root=other).code == 0


def test_docker_clis_links_through_the_engine_api(service):  # noqa: F811
    assert service.docker("network", "create", "apinet").returncode == 0
    assert (
        service.docker("run", "-d", "--name", "first", "--network", "apinet", "busybox", "sleep", "300").returncode == 0
    )
    # docker's CLI sends --link on a user network as EndpointsConfig.apinet.Links
    done = service.docker(
        "run", "--rm", "--network", "apinet", "--link", "first:foo", *PING, "busybox", "ping", "-c1", "foo"
    )
    assert done.returncode == 0, done
    # on the default bridge as HostConfig.Links: docker's legacy links
    assert service.docker("run", "-d", "--name", "db", "-e", "K=v", "busybox", "sleep", "300").returncode == 0
    done = service.docker("run", "--rm", "--name", "web", "--link", "db:dbal", "busybox", "env")
    assert done.returncode == 0 and "DBAL_NAME=/web/dbal" in done.stdout and "DBAL_ENV_K=v" in done.stdout, done
    missing = service.docker("run", "--rm", "--link", "nosuch", "busybox", "true")
    assert missing.returncode == 125 and "could not get container for nosuch" in missing.stderr, missing
    # network connect --link: EndpointConfig.Links
    assert service.docker("network", "create", "apinet2").returncode == 0
    assert service.docker("network", "connect", "apinet2", "first").returncode == 0
    assert (
        service.docker("run", "-d", "--name", "box", "--network", "apinet", *PING, "busybox", "sleep", "300").returncode
        == 0
    )
    done = service.docker("network", "connect", "--link", "first:viaconnect", "apinet2", "box")
    assert done.returncode == 0, done
    assert service.docker("exec", "box", "ping", "-c1", "viaconnect").returncode == 0
    assert service.docker("rm", "-f", "first", "box", "db").returncode == 0
    assert service.docker("network", "rm", "apinet", "apinet2").returncode == 0
