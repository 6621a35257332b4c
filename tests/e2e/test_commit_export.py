"""commit (upper -> OCI layer -> new image) and export (merged view -> tar), for real."""

from __future__ import annotations

import io
import json
import os
import tarfile

from tests.helpers import d, f, make_image, make_tar


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_commit_then_run_keeps_deletes_and_adds(cli, busybox, store):
    assert cli("run", "--name", "work", "busybox", "sh", "-c", "rm /etc/group; echo hi > /added").code == 0
    committed = cli("commit", "-m", "first change", "-a", "Jane <j@example.com>", "work", "snap:1")
    assert committed.code == 0 and committed.out.startswith("sha256:"), committed
    check = cli("run", "--rm", "snap:1", "sh", "-c", "test -e /etc/group && echo group-back; cat /added")
    assert check.out == "hi\n"
    history = cli("history", "snap:1").out.splitlines()
    assert len(history) == 3 and history[1].rstrip().endswith("first change")
    assert "sh -c rm /etc/group; echo hi > /added" in history[1]
    doc = json.loads(cli("inspect", "snap:1").out)[0]
    assert doc["Author"] == "Jane <j@example.com>" and len(doc["RootFS"]["Layers"]) == 2
    # docker's commit records the container's command as the image's
    assert doc["Config"]["Cmd"] == ["sh", "-c", "rm /etc/group; echo hi > /added"]


def test_commit_with_changes_and_same_diff_id_twice(cli, busybox, store):
    cli("run", "--name", "cfg", "busybox", "sh", "-c", "echo x > /x")
    first = cli("commit", "-c", 'CMD ["cat", "/x"]', "-c", "ENV MODE=prod", "cfg", "cfg:1")
    assert cli("run", "--rm", "cfg:1").out == "x\n"
    assert "MODE=prod" in json.loads(cli("inspect", "cfg:1").out)[0]["Config"]["Env"]
    second = cli("commit", "cfg", "cfg:2")

    def layers(ref: str) -> list[str]:
        return json.loads(cli("inspect", ref).out)[0]["RootFS"]["Layers"]

    assert layers("cfg:1") == layers("cfg:2")  # the same upper gives the same layer, stored once
    assert first.out != second.out
    bad = cli("commit", "-c", "FROBNICATE x", "cfg", "cfg:3")
    assert bad.code == 125 and len(bad.err.strip().splitlines()) == 1


def test_commit_of_an_opaque_dir(cli, busybox, store):
    make_image(store, "withdir", [make_tar([d("srv"), f("srv/old", "o"), f("srv/keep", "k")])], base=busybox)
    cli("run", "--name", "opq", "withdir", "sh", "-c", "rm -rf /srv && mkdir /srv && echo n > /srv/new")
    image_id = cli("commit", "opq", "opq:1").out.strip()
    image = store.images.get(image_id)
    layer = store.layers.diff_dir(image.diff_ids[-1])
    assert os.getxattr(os.path.join(layer, "srv"), "trusted.overlay.opaque") == b"y"
    assert cli("run", "--rm", "opq:1", "ls", "/srv").out == "new\n"
    # in OCI form: the marker right after its directory, before the dir's other entries
    from minirun.containers.commit import layer_tar

    container_upper = store.root + "/containers/" + json.loads(cli("inspect", "opq").out)[0]["Id"] + "/upper"
    out = io.BytesIO()
    layer_tar(container_upper, out)
    names = [m.name for m in members(out.getvalue())]
    assert names.index("srv/.wh..wh..opq") == names.index("srv") + 1 < names.index("srv/new")
    assert not [m for m in members(out.getvalue()) if any("overlay" in k for k in m.pax_headers)]


def test_whiteouts_become_oci_whiteouts_in_the_layer_tar(cli, busybox, store):
    cli("run", "--name", "wh", "busybox", "rm", "/etc/passwd")
    from minirun.containers.commit import layer_tar

    upper = store.root + "/containers/" + json.loads(cli("inspect", "wh").out)[0]["Id"] + "/upper"
    out = io.BytesIO()
    layer_tar(upper, out)
    found = {m.name: m for m in members(out.getvalue())}
    assert set(found) == {"etc", "etc/.wh.passwd"} and found["etc/.wh.passwd"].isreg()


def test_commit_of_a_running_container(cli, busybox):
    cid = cli("run", "-d", "busybox", "sh", "-c", "echo live > /live; sleep 1000").out.strip()
    try:
        import time

        deadline = time.monotonic() + 10
        while "A /live" not in cli("diff", cid).out and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cli("commit", cid, "live:1").code == 0
        assert "Up " in cli("ps").out  # still running
        assert cli("run", "--rm", "live:1", "cat", "/live").out == "live\n"
    finally:
        cli("rm", "-f", cid)


def test_export_is_the_merged_view_without_whiteouts(cli, busybox, tmp_path):
    cli("run", "--name", "ex", "busybox", "sh", "-c", "rm /etc/group; echo data > /tmp/file.txt")
    target = tmp_path / "ex.tar"
    assert cli("export", "-o", str(target), "ex").code == 0
    names = {m.name for m in members(target.read_bytes())}
    assert "tmp/file.txt" in names and "bin/busybox" in names and "etc/passwd" in names
    assert "etc/group" not in names and not [n for n in names if ".wh." in n]
    assert [p for p in os.listdir(tmp_path) if p.startswith("ex.tar.tmp")] == []
    assert not [line for line in open("/proc/mounts") if "overlay" in line and str(tmp_path) in line]


def test_export_and_commit_errors(cli, tmp_path):
    assert cli("export", "-o", str(tmp_path / "x.tar"), "nosuch").code == 125
    assert not (tmp_path / "x.tar").exists()
    missing = cli("commit", "nosuch", "x:1")
    assert missing.code == 125 and "No such container" in missing.err


def test_commit_freezes_a_running_container_while_it_reads_its_upper(cli, busybox, store, monkeypatch):
    """docker's commit pauses the container (--pause, on by default): a process inside cannot swap
    or rewrite its files while the upper is read. --pause=false reads it running."""
    from minirun.containers import commit
    from minirun.containers.container import Containers
    from minirun.runtime import freezer

    started = cli("run", "-d", "--name", "busy", "busybox", "sh", "-c", "echo x > /f; exec sleep 600")
    assert started.code == 0, started
    containers = Containers(store)
    container = containers.find("busy")
    seen = []
    staged = commit.stage_upper

    def stage_and_look(store_, upper):
        # frozen, and recorded so: a commit SIGKILLed here leaves a container that says it is paused
        recorded = Containers(store).find("busy").state.get("Paused", False)
        seen.append(freezer.is_frozen(container.id) and recorded)
        return staged(store_, upper)

    monkeypatch.setattr(commit, "stage_upper", stage_and_look)
    try:
        commit.commit_container(store, container, pause=True)
        commit.commit_container(store, container, pause=False)
        assert seen == [True, False]
        assert not freezer.is_frozen(container.id)  # thawed again, and still running unpaused
        listed = cli("ps", "--filter", "name=busy", "--format", "{{.Status}}").out
        assert listed.startswith("Up") and "Paused" not in listed, listed
        # a container the user paused stays paused
        assert cli("pause", "busy").code == 0
        commit.commit_container(store, container, pause=True)
        assert freezer.is_frozen(container.id) and seen[-1] is True
        assert cli("unpause", "busy").code == 0
        events = cli("events", "--since", "0", "--until", "0s", "--filter", "container=busy", "--format", "{{.Action}}")
        assert events.out.split().count("pause") == 2, events  # the commit's, then the user's
        assert cli("commit", "--pause=false", "busy", "snap:running").code == 0
    finally:
        cli("rm", "-f", "busy")


def test_unpause_thaws_a_container_a_killed_commit_left_frozen(cli, busybox, store):
    """A pause or commit killed between its freeze and its record leaves the container frozen
    with no record of it: unpause must still thaw it."""
    from minirun.containers.container import Containers
    from minirun.runtime import freezer

    assert cli("run", "-d", "--name", "left", "busybox", "sleep", "600").code == 0
    try:
        container = Containers(store).find("left")
        freezer.freeze(container.id)  # where a SIGKILLed commit leaves it
        done = cli("unpause", "left")
        assert done.code == 0, done
        assert not freezer.is_frozen(container.id)
        assert cli("unpause", "left").code == 125  # not paused now, by either account
    finally:
        cli("rm", "-f", "left")
