"""`system check [--repair]`, each finding made on purpose: a layer whose bytes changed, a layer
no image uses, a dangling link, a damaged tag file, a broken image, debris of a container, a
record that says running when nothing runs, an empty cgroup nobody owns."""

from __future__ import annotations

import json
import os

from minirun.procs import is_alive
from minirun.runtime import cgroups
from tests.helpers import wait_until


def check(cli, *args: str):
    result = cli("system", "check", *args)
    return result.code, result.out.splitlines()


def test_a_clean_store_checks_clean(cli, busybox):
    code, lines = check(cli)
    assert code == 0 and lines[-1] == "no problems", lines
    assert lines[0].startswith("checked 1 layers, 1 images")


def test_a_layer_whose_files_changed_is_found_and_removed_with_its_images(cli, busybox, isolated_store):
    assert cli("import", "-", "lone:1", input=_tar()).code == 0
    image = json.loads(cli("inspect", "lone:1").out)[0]
    diff_id = image["RootFS"]["Layers"][0]
    (isolated_store / "layers" / diff_id[7:] / "diff" / "hello.txt").write_text("tampered\n")
    code, lines = check(cli)
    assert code == 1 and any(
        line.startswith(f"problem: damaged layer {diff_id}") and image["Id"] in line for line in lines
    ), lines
    assert check(cli, "--quick")[0] == 0  # without reading the bytes, nothing looks wrong
    code, lines = check(cli, "--repair")
    assert code == 0 and lines[-1].endswith("0 left"), lines
    assert cli("inspect", "lone:1").code == 125  # the image went with its layer
    assert check(cli)[1][-1] == "no problems"
    assert cli("run", "--rm", "--network", "none", "busybox", "true").code == 0  # the rest still works


def test_debris_dangling_links_unused_layers_and_a_damaged_tag_file(cli, busybox, isolated_store):
    store = isolated_store
    (store / "l" / "ABCDEFGHIJKLMNOPQRSTUVWXYZ").symlink_to("../layers/nothing/diff")
    debris = store / "containers" / ("d" * 64)
    (debris / "upper").mkdir(parents=True)  # a create cut short: no config.json
    assert cli("import", "-", "lone:1", input=_tar()).code == 0
    lone = json.loads(cli("inspect", "lone:1").out)[0]["Id"]
    (store / "images" / (lone[7:] + ".json")).unlink()  # its layer is now used by nobody
    tags = (store / "tags.json").read_text()
    (store / "tags.json").write_text(tags[:-5])
    code, lines = check(cli)
    found = "\n".join(lines)
    assert code == 1
    for expected in ("dangling link", "container debris", "unused layer", "damaged record"):
        assert expected in found, found
    code, lines = check(cli, "--repair")
    assert code == 0, lines
    assert not os.path.lexists(store / "l" / "ABCDEFGHIJKLMNOPQRSTUVWXYZ") and not debris.exists()
    assert [p.name for p in store.iterdir() if p.name.startswith("tags.json.damaged-")]  # set aside, not lost
    assert check(cli)[1][-1] == "no problems"
    assert cli("images", "-q").out.strip()  # busybox, by id now


def test_a_record_that_says_running_and_an_orphan_cgroup(cli, busybox, isolated_store):
    started = cli("run", "-d", "--network", "none", "busybox", "sleep", "300")
    cid = started.out.strip()
    state_path = isolated_store / "containers" / cid / "state.json"
    state = json.loads(state_path.read_text())
    os.kill(state["MonitorPid"], 9)  # PID 1 dies with it; the record still says running
    # its death takes a moment (a PID namespace's init tears the namespace down): the check is of
    # a container whose processes are gone, so it waits for that
    assert wait_until(lambda: not is_alive(state["Pid"], state.get("PidStartTime")))
    orphan = "e" * 64
    hierarchy = cgroups.hierarchies()[0]
    os.makedirs(hierarchy.path(orphan), exist_ok=True)
    proxies = hierarchy.path(cgroups.PROXIES)  # the port proxies' (portproxy.py): no container's
    os.makedirs(proxies, exist_ok=True)
    try:
        code, lines = check(cli)
        found = "\n".join(lines)
        assert code == 1 and f"container {cid} is recorded as running" in found, found
        assert f"empty cgroups of {orphan}" in found
        assert cgroups.PROXIES not in found, found
        assert check(cli, "--repair")[0] == 0
        assert json.loads(state_path.read_text())["Status"] == "exited"
        assert not os.path.exists(hierarchy.path(orphan))
        assert os.path.isdir(proxies)
    finally:
        for path in (hierarchy.path(orphan), proxies):
            if os.path.isdir(path):
                os.rmdir(path)


def test_a_port_left_published_is_this_stores_problem_and_no_other_stores(cli, busybox, isolated_store, tmp_path):
    """A port whose container died with its monitor is found and unpublished by its own store's
    check; another store's check leaves it be (that container may be stopping now)."""
    from minirun.net import networks, portmap

    started = cli("run", "-d", "-p", "127.0.0.1::80", "busybox", "sleep", "300")
    assert started.code == 0, started
    cid = started.out.strip()
    state = json.loads((isolated_store / "containers" / cid / "state.json").read_text())
    address = state["NetworkSettings"]["IPAddress"]
    os.kill(state["MonitorPid"], 9)
    assert wait_until(lambda: not is_alive(state["Pid"], state.get("PidStartTime")))
    booking_path = os.path.join(networks.bridge_dir(networks.owner_of(address)["bridge"]), address)
    booking = json.loads(open(booking_path).read())

    def book(record: dict) -> None:  # whole or not at all: other tests' allocations read it
        (tmp_path / "booking").write_text(json.dumps(record))
        os.replace(tmp_path / "booking", booking_path)

    # the booking, so the port, are now another store's, which has the container's record (an
    # allocation on the bridge frees a booking whose record is gone)
    other = tmp_path / "other-store"
    (other / "containers" / cid).mkdir(parents=True)
    (other / "containers" / cid / "config.json").write_bytes(
        (isolated_store / "containers" / cid / "config.json").read_bytes()
    )
    book(dict(booking, store=str(other)))
    code, lines = check(cli)
    assert not any("published port" in line for line in lines), lines
    book(booking)
    code, lines = check(cli)
    assert code == 1 and any(
        line.startswith("problem: published port 127.0.0.1:") and f"leads to {address}:80" in line for line in lines
    ), lines
    assert check(cli, "--repair")[0] == 0
    assert not [e for e in portmap.list_elements() or [] if e[3] == address]
    assert cli("rm", "-f", cid).code == 0


def _tar() -> bytes:
    from tests.helpers import f, make_tar

    return make_tar([f("hello.txt", "hi\n")])
