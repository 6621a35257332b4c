"""`ps` through its index (containers/listindex.py) tells what the records and the processes say:
once the index holds a container, a start, a damaged record or a monitor killed with -9 still
shows at once, and never hides a running container."""

from __future__ import annotations

import json
import marshal
import os
import signal
import zlib

from minirun.containers import listindex
from tests.helpers import wait_until


def cached(store_root) -> set[str]:
    try:
        with open(store_root / listindex.INDEX_NAME, "rb") as f:
            line, _, payload = f.read().partition(b"\n")
    except FileNotFoundError:
        return set()
    assert line == listindex.HEADER + b"%08x" % zlib.crc32(payload)
    return set(marshal.loads(payload))


def row(cli, cid: str) -> str:
    listed = cli("ps", "-a", "--no-trunc")
    assert listed.code == 0, listed
    return next(line for line in listed.out.splitlines() if line.startswith(cid))


def test_ps_through_its_index_shows_every_change_at_once(cli, busybox, isolated_store, monkeypatch):
    created = cli("create", "--network", "none", "busybox", "sleep", "300").out.strip()
    with monkeypatch.context() as env:  # a monitors' server of its own, whose death takes only it
        env.setenv("MINIRUN_MONITOR_GROUP", "killed")
        running = cli("run", "-d", "--network", "none", "busybox", "sleep", "300").out.strip()
    victim = cli("run", "-d", "--network", "none", "busybox", "sleep", "300").out.strip()
    ids = {created, running, victim}
    try:
        # records are cached once settled (SETTLED_NS after their last write): list until they are
        assert wait_until(lambda: cli("ps", "-a").code == 0 and cached(isolated_store) == ids, timeout=30)
        assert "Created" in row(cli, created) and "Up " in row(cli, running)

        assert cli("start", created).code == 0
        assert "Up " in row(cli, created)

        state = isolated_store / "containers" / victim / "state.json"
        state.write_bytes(state.read_bytes()[:20])  # torn, in place
        assert "Dead" in row(cli, victim) and victim not in cli("ps", "-q", "--no-trunc").out

        record = json.loads((isolated_store / "containers" / running / "state.json").read_text())
        os.kill(record["MonitorPid"], signal.SIGKILL)  # PID 1 dies with it; nobody records the exit
        assert wait_until(lambda: not os.path.exists(f"/proc/{record['Pid']}") or "Exited" in row(cli, running))
        assert "Exited (255)" in row(cli, running)
        assert cli("ps", "-q", "--no-trunc").out.split() == [created]
    finally:
        cli("rm", "-f", *ids)
    assert cli("ps", "-aq").out == ""
