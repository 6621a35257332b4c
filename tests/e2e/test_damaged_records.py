"""A damaged record never hides a container or an image: what can be read is listed, what cannot
is named in one line, and a container whose record is damaged is `Dead` and still removable,
processes and all (found through its cgroups)."""

from __future__ import annotations

import json
import time

import pytest

from minirun.runtime import cgroups
from tests.helpers import wait_until


def run_d(cli, *args: str) -> str:
    started = cli("run", "-d", "--network", "none", *args)
    assert started.code == 0, started
    return started.out.strip()


def processes_of(cid: str) -> list[int]:
    return [pid for path in cgroups.existing_paths(cid) for pid in cgroups.members(path)]


@pytest.mark.parametrize("record", ["state.json", "config.json"])
def test_a_running_container_with_a_damaged_record_is_dead_not_gone(cli, busybox, isolated_store, record):
    cid = run_d(cli, "--name", "victim", "busybox", "sleep", "300")
    path = isolated_store / "containers" / cid / record
    path.write_bytes(path.read_bytes()[:20])  # torn mid-write, as by a crash or a full disk
    listed = cli("ps", "-a", "--no-trunc")
    assert listed.code == 0 and cid in listed.out and "Dead" in listed.out, listed
    assert cid not in cli("ps", "--no-trunc").out  # not running, as far as anyone can tell
    assert processes_of(cid)  # ...but its processes still are, in its cgroups
    exec_ = cli("exec", cid[:12], "true")
    assert exec_.code == 125 and f"damaged record {path}" in exec_.err and exec_.err.count("\n") == 1, exec_
    inspected = json.loads(cli("inspect", cid).out)[0]
    assert inspected["State"]["Status"] == "dead" and str(path) in inspected["State"]["Error"]
    plain_rm = cli("rm", cid)
    assert plain_rm.code == 125 and "You cannot remove a running container" in plain_rm.err
    removed = cli("rm", "-f", cid[:12])
    assert removed.code == 0, removed
    assert not (isolated_store / "containers" / cid).exists()
    assert wait_until(lambda: not processes_of(cid) and not cgroups.existing_paths(cid))
    assert cli("ps", "-aq").out == ""


def test_a_dead_container_without_processes_goes_with_prune(cli, busybox, isolated_store):
    cid = run_d(cli, "busybox", "true")
    assert wait_until(lambda: '"exited"' in (isolated_store / "containers" / cid / "state.json").read_text())
    (isolated_store / "containers" / cid / "state.json").write_text("{")
    assert "Dead" in cli("ps", "-a").out
    start = cli("start", cid)
    assert start.code == 125 and "is dead" in start.err and "state.json" in start.err
    assert cli("container", "prune", "-f").code == 0
    assert cli("ps", "-aq").out == ""


def test_a_damaged_image_config_hides_no_other_image(cli, busybox, isolated_store):
    assert cli("tag", "busybox", "other:1").code == 0
    assert cli("import", "-", "lone:1", input=_empty_tar()).code == 0
    lone = json.loads(cli("inspect", "lone:1").out)[0]["Id"]
    config = isolated_store / "images" / (lone.split(":")[1] + ".json")
    config.write_text('{"rootfs": ')
    images = cli("images")
    assert images.code == 0, images
    assert "busybox" in images.out and "other" in images.out and "lone" not in images.out
    assert (
        images.err
        == f"minirun: warning: skipped damaged record {config}: Expecting value: line 1 column 12 (char 11)\n"
    )
    inspect = cli("inspect", "lone:1")
    assert inspect.code == 125 and f"damaged record {config}" in inspect.err and inspect.err.count("\n") == 1


def test_a_damaged_tag_file_lists_every_image_by_id_and_is_never_overwritten(cli, busybox, isolated_store):
    tags = isolated_store / "tags.json"
    tags.write_text('{"busybox:latest": ')
    images = cli("images", "-q")
    assert images.code == 0 and images.out.strip(), images  # the image, by id
    assert (
        images.err == f"minirun: warning: skipped damaged record {tags}: Expecting value: line 1 column 20 (char 19)\n"
    )
    tag = cli("tag", images.out.strip(), "again:1")
    assert tag.code == 125 and f"damaged record {tags}" in tag.err
    assert tags.read_text() == '{"busybox:latest": '  # left for the user (or system check) to repair


def test_an_endless_env_file_is_refused_at_once(cli, busybox):
    started = time.monotonic()
    result = cli("run", "--rm", "--env-file", "/dev/zero", "busybox", "true")
    assert result.code == 125 and result.err == "minirun: error: env file /dev/zero is larger than 1024 KiB\n"
    assert time.monotonic() - started < 5  # a clean error, not gigabytes of memory first
    assert cli("ps", "-aq").out == ""


def _empty_tar() -> bytes:
    from tests.helpers import f, make_tar

    return make_tar([f("hello.txt", "hi\n")])


def test_a_huge_dockerfile_is_refused_at_once(cli, busybox, tmp_path):
    (tmp_path / "Containerfile").write_bytes(b"FROM busybox\n" + b"# " + b"x" * (5 << 20) + b"\n")
    result = cli("build", str(tmp_path))
    assert result.code == 125 and "is larger than 4096 KiB" in result.err and result.err.count("\n") == 1, result
