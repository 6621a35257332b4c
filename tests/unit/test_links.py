"""docker's links: --link's words, the linker's /etc/hosts lines, the legacy environment."""

from __future__ import annotations

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.containers import links
from minirun.errors import UsageError


def test_link_words_are_name_and_alias():
    assert links.parse_link("db") == ["db", "db"]
    assert links.parse_link("/db:/database") == ["db", "database"]
    for bad in ("", "a:b:c", ":x", "x:"):
        with pytest.raises(UsageError, match="bad format for links"):
            links.parse_link(bad)
    assert parse_run_args(["--network", "net", "--link", "db:d", "img"]).flags.links == [["db", "d"]]


def test_link_with_host_or_container_network_is_dockers_conflict():
    with pytest.raises(UsageError, match="host type networking can't be used with links"):
        parse_run_args(["--network", "host", "--link", "db", "img"])
    with pytest.raises(UsageError, match="container type network can't be used with links"):
        parse_run_args(["--network", "container:x", "--link", "db", "img"])


def test_hosts_lines_name_the_linked_container_by_alias():
    members = [
        {"ip": "10.0.0.2", "name": "db", "hostname": "abc", "container": "a" * 64},
        {"ip": "10.0.0.3", "name": "web", "hostname": "def", "container": "b" * 64, "aliases": ["www"]},
    ]
    given = [["db", "database"], ["www", "front"], ["third", "bar"], ["b" * 12, "byid"]]
    assert links.hosts_lines(given, members, legacy=False) == (
        "10.0.0.2\tdatabase db\n10.0.0.3\tfront www\n10.0.0.3\tbyid " + "b" * 12 + "\n"
    )
    # docker's legacy line: alias, the child's hostname, its name
    assert links.hosts_lines([["db", "database"]], members, legacy=True) == "10.0.0.2\tdatabase abc db\n"
    assert links.hosts_lines([["db", "db"]], members, legacy=True) == "10.0.0.2\tdb abc\n"


def test_legacy_environment_is_dockers():
    env = links.legacy_env(
        "web", "my-db", "172.17.0.5", ["5432/tcp", "53/udp", "6000/tcp", "6001/tcp"], ["PATH=/bin", "PW=x=y", "HOME=/"]
    )
    assert env == [
        "MY_DB_PORT=tcp://172.17.0.5:5432",
        "MY_DB_PORT_5432_TCP=tcp://172.17.0.5:5432",
        "MY_DB_PORT_5432_TCP_ADDR=172.17.0.5",
        "MY_DB_PORT_5432_TCP_PORT=5432",
        "MY_DB_PORT_5432_TCP_PROTO=tcp",
        "MY_DB_PORT_6000_TCP=tcp://172.17.0.5:6000",
        "MY_DB_PORT_6000_TCP_ADDR=172.17.0.5",
        "MY_DB_PORT_6000_TCP_PORT=6000",
        "MY_DB_PORT_6000_TCP_PROTO=tcp",
        "MY_DB_PORT_6001_TCP=tcp://172.17.0.5:6001",
        "MY_DB_PORT_6001_TCP_ADDR=172.17.0.5",
        "MY_DB_PORT_6001_TCP_PORT=6001",
        "MY_DB_PORT_6001_TCP_PROTO=tcp",
        # docker's loop closes the 6000-6001 range at the next port, after that port's own
        "MY_DB_PORT_53_UDP=udp://172.17.0.5:53",
        "MY_DB_PORT_53_UDP_ADDR=172.17.0.5",
        "MY_DB_PORT_53_UDP_PORT=53",
        "MY_DB_PORT_53_UDP_PROTO=udp",
        "MY_DB_PORT_6000_TCP_START=tcp://172.17.0.5:6000",
        "MY_DB_PORT_6000_TCP_PORT_START=6000",
        "MY_DB_PORT_6000_TCP_END=tcp://172.17.0.5:6001",
        "MY_DB_PORT_6000_TCP_PORT_END=6001",
        "MY_DB_NAME=/web/my-db",
        "MY_DB_ENV_PW=x=y",
    ]
    assert links.with_env(["A_NAME=/w/a", "X=1"], ["X=2"]) == ["A_NAME=/w/a", "X=2"]
