"""`version`, `--version` and `info` (also as `system info`): docker's fields, true of this store
and this host."""

from __future__ import annotations

import json
import os
import re


def test_version_in_its_three_forms(cli):
    assert re.fullmatch(r"minirun version \d+\.\d+\.\d+\n", cli("--version").out)
    document = json.loads(cli("version", "--format", "json").out)
    assert document["Client"]["Version"] == document["Server"]["Version"] == cli("--version").out.split()[2]
    assert document["Server"]["KernelVersion"] == os.uname().release
    text = cli("version").out
    assert text.startswith("Client:\n Version:") and "\nServer: " in text


def test_info_counts_this_stores_containers_and_images(cli, busybox):
    before = json.loads(cli("info", "--format", "json").out)
    assert (before["Containers"], before["Images"]) == (0, 1)  # busybox
    running = cli("run", "-d", "--network", "none", "busybox", "sleep", "100").out.strip()
    assert cli("run", "--network", "none", "busybox", "true").code == 0
    try:
        after = json.loads(cli("system", "info", "--format", "json").out)
        assert (after["Containers"], after["ContainersRunning"], after["ContainersStopped"]) == (2, 1, 1)
        assert after["Driver"] == "overlay2" and after["NCPU"] == os.cpu_count()
        assert after["DockerRootDir"].endswith("store")
        text = cli("info").out
        assert " Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 1\n" in text
        assert f" Kernel Version: {os.uname().release}\n" in text
    finally:
        cli("rm", "-f", running)
