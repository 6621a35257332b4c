"""The runtime's own walls, attacked from inside a container the way runc's advisories did: the
host's inodes a container is handed (device nodes, masks) and the host-side processes that show
up in its PID namespace (`exec`)."""

from __future__ import annotations

import os

import pytest


def run(cli, *args: str):
    result = cli("run", "--rm", "--network", "none", *args)
    assert result.code == 0, result
    return result


# -- device nodes: the host's inodes, bound -------------------------------------------------------------


@pytest.fixture
def host_node(tmp_path) -> str:
    """A null device node of the test's own, as a host node a --device hands over."""
    node = tmp_path / "node"
    os.mknod(node, 0o20666, os.makedev(1, 3))
    os.chmod(node, 0o666)
    return str(node)


def test_the_container_cannot_chmod_or_chown_the_hosts_device_nodes(cli, busybox, host_node):
    """Each default node, each mask over a /proc file and each --device is the host's inode bound
    in: its mode and owner are the host's (chmod 000 /dev/null would break every host user)."""
    before = os.stat(host_node)
    # each chmod keeps the mode the node has (a no-op on a host where the wall is down), then one
    # that would change it, on the test's own node
    script = (
        "for f in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /proc/keys /dev/mine; do"
        "  chmod 666 $f 2>/dev/null && echo chmod $f; chown 0:0 $f 2>/dev/null && echo chown $f;"
        " done; chmod 600 /dev/mine 2>/dev/null && echo chmod 600; touch -c /dev/mine 2>/dev/null && echo touch;"
        " echo x > /dev/null && echo x > /dev/mine && head -c 3 /dev/zero | wc -c"
    )
    out = run(cli, "--device", f"{host_node}:/dev/mine", "busybox", "sh", "-c", script).out
    assert out == "3\n"  # every change refused; the devices still work
    after = os.stat(host_node)
    assert (after.st_mode, after.st_uid, after.st_ctime_ns) == (before.st_mode, before.st_uid, before.st_ctime_ns)
