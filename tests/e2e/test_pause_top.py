"""`pause`/`unpause` freeze and thaw a container's processes (a counter stops, then counts again),
with docker's Paused state in ps and inspect, exec refused while paused, and stop still working;
`top` runs the host's ps with the options given."""

from __future__ import annotations

import json

from tests.helpers import wait_until

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; done"


def test_pause_freezes_a_container_until_unpause_and_top_shows_it(cli, busybox, isolated_store):
    cid = cli("run", "-d", "--name", "busy", "busybox", "sh", "-c", COUNTER).out.strip()
    count_file = isolated_store / "containers" / cid / "upper" / "tmp" / "n"

    def count() -> int:
        try:
            return int(count_file.read_text())  # mv replaces it whole: never half-written
        except (FileNotFoundError, ValueError):
            return 0

    assert wait_until(lambda: count() > 10)
    top = cli("top", "busy", "-o", "pid,user,args").out.splitlines()
    assert top[0].split() == ["PID", "USER", "COMMAND"]
    assert any(line.split()[1:3] == ["root", "sh"] for line in top[1:]), top

    assert cli("pause", "busy").code == 0
    frozen = count()
    assert "(Paused)" in cli("ps", "--filter", "status=paused").out.splitlines()[1]
    state = json.loads(cli("inspect", "busy").out)[0]["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    with open(f"/proc/{state['Pid']}/stat") as f:
        assert f.read().rpartition(")")[2].split()[0] in ("S", "D")  # in the freezer, not running
    refused = cli("exec", "busy", "true")
    assert (refused.code, refused.err) == (
        125,
        f"minirun: error: Container {cid} is paused, unpause the container before exec\n",
    )
    again = cli("pause", "busy")
    assert (again.code, again.err) == (125, f"minirun: error: Container {cid} is already paused\n")
    assert count() == frozen  # through all those commands

    assert cli("unpause", "busy").code == 0
    assert wait_until(lambda: count() > frozen + 10)
    assert cli("pause", "busy").code == 0
    assert cli("stop", "-t", "1", "busy").code == 0  # a paused container stops: docker unpauses it
    state = json.loads(cli("inspect", "busy").out)[0]["State"]
    assert (state["Status"], state["Paused"], state["ExitCode"]) == ("exited", False, 137)
