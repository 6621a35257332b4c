"""The seed's walkthrough end to end, as the README's demo runs it."""

from __future__ import annotations

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def du_kib(path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def test_the_seed_walkthrough(cli, busybox, isolated_store):
    assert cli("build", "-q", "-t", "myapp:1.0", os.path.join(REPO, "images/myapp")).code == 0
    history = cli("history", "myapp:1.0").out.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert all(re.match(r"^[0-9a-f]{12} ", row) for row in history[1:])  # an id on every row
    assert "/bin/sh -c echo v2 > /etc/config.yaml && rm …   3B" in history[2]
    assert "/bin/sh -c echo v1 > /etc/config.yaml           3B" in history[3]
    assert cli("run", "--rm", "myapp:1.0", "cat", "/etc/config.yaml").out == "v2\n"
    assert cli("run", "--rm", "myapp:1.0", "sh", "-c", "test -e /etc/group || echo deleted").out == "deleted\n"
    ids = []
    try:
        ids.append(cli("run", "-d", "--name", "myapp", "myapp:1.0").out.strip())
        assert cli("exec", "myapp", "sh", "-c", "echo data > /tmp/file.txt").code == 0
        assert cli("diff", "myapp").out == "C /tmp\nA /tmp/file.txt\n"
        before = du_kib(isolated_store / "containers")
        for name in ("myapp2", "myapp3"):
            ids.append(cli("run", "-d", "--name", name, "myapp:1.0").out.strip())
        # each extra container costs its own few KiB, never a copy of the 2 MB image
        assert du_kib(isolated_store / "containers") - before < 2 * 64
        df = cli("system", "df", "-v").out
        assert "Total: 3 layers" in df and "each stored once" in df
        rows = {
            line.split()[-1]: line
            for line in df.splitlines()
            if line.split() and line.split()[-1] in ("myapp", "myapp2", "myapp3")
        }
        assert " 5B " in rows["myapp"] and " 0B " in rows["myapp2"] and " 0B " in rows["myapp3"]
    finally:
        for container_id in ids:
            cli("rm", "-f", container_id)
