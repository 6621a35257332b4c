"""containers/listindex.py: ps's index is a cache of the records, never a second truth. A listing
through it is what Containers.all() reads, whatever happened to the records or to the index
(changed, removed, damaged, unwritable) and with other listings running at once."""

from __future__ import annotations

import marshal
import multiprocessing
import os
import shutil
import zlib

import pytest

from minirun.containers import listindex
from minirun.containers.container import ContainerConfig, Containers, new_container_id
from minirun.store import Store
from minirun.timestamps import rfc3339_now


@pytest.fixture
def containers(tmp_path) -> Containers:
    return Containers(Store(str(tmp_path / "store")))


@pytest.fixture
def settled(monkeypatch):
    """Every record counts as settled (as if written long ago), so a listing caches it at once."""
    monkeypatch.setattr(listindex, "SETTLED_NS", -(10**12))


def create(containers: Containers, argv: tuple[str, ...] = ("true",)) -> str:
    config = ContainerConfig(
        id=new_container_id(), name="", image="sha256:" + "0" * 64, image_ref="busybox",
        created=rfc3339_now(), argv=list(argv), env=["PATH=/bin"],
    )  # fmt: skip
    return containers.create(config, b"nameserver 10.0.0.1\n").id


def seen(listed) -> dict[str, tuple[dict, dict]]:
    return {c.id: (c.config.to_json(), c.state) for c in listed}


def cached_ids(containers: Containers) -> set[str]:
    with open(listindex.index_path(containers), "rb") as f:
        line, _, payload = f.read().partition(b"\n")
    assert line == listindex.HEADER + b"%08x" % zlib.crc32(payload)
    return set(marshal.loads(payload))


def not_read_again(monkeypatch) -> None:
    def refuse(path, *args):
        raise AssertionError(f"read {path}: the index should have answered")

    monkeypatch.setattr(listindex, "read_record", refuse)


def test_a_listing_is_what_the_records_say_and_then_comes_from_the_index(containers, settled, monkeypatch):
    ids = [create(containers) for _ in range(3)]
    containers.update_state(containers.load(ids[0]), Status="exited", ExitCode=3)
    assert seen(listindex.listing(containers)) == seen(containers.all())
    assert cached_ids(containers) == set(ids)
    assert os.stat(listindex.index_path(containers)).st_mode & 0o777 == 0o600  # records hold env values
    written = os.stat(listindex.index_path(containers)).st_mtime_ns
    not_read_again(monkeypatch)
    assert seen(listindex.listing(containers)) == seen(containers.all())
    assert os.stat(listindex.index_path(containers)).st_mtime_ns == written  # nothing changed, nothing written


def test_a_changed_record_is_read_again_at_once(containers, settled):
    cid = create(containers)
    listindex.listing(containers)
    containers.update_state(containers.load(cid), Status="exited", ExitCode=1)  # the same size as before
    assert listindex.listing(containers)[0].state["ExitCode"] == 1
    # rewritten in place (as on a full disk), the same size: a later write carries a later time
    state = os.path.join(containers.dir, cid, "state.json")
    before = os.stat(state)
    with open(state, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b'"ExitCode": 1', b'"ExitCode": 7'))
    os.utime(state, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.stat(state).st_ino == before.st_ino and os.stat(state).st_size == before.st_size
    assert listindex.listing(containers)[0].state["ExitCode"] == 7


def test_a_young_record_is_read_every_time_until_it_settles(containers):
    old, young = create(containers), create(containers)
    listindex.listing(containers)
    assert not os.path.exists(listindex.index_path(containers))  # both written just now
    os.utime(os.path.join(containers.dir, old, "config.json"), ns=(0, 0))  # ctime stays now: still young
    listindex.listing(containers)
    assert not os.path.exists(listindex.index_path(containers))
    assert {c.id for c in listindex.listing(containers)} == {old, young}


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: data[: len(data) // 2],  # torn
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # a flipped bit: the CRC no longer agrees
        lambda data: data.replace(b"python", b"pythoN", 1),  # another interpreter's format
        lambda data: os.urandom(len(data)),
    ],
)
def test_a_damaged_index_is_not_believed_and_is_rebuilt(containers, settled, damage):
    ids = {create(containers), create(containers)}
    listindex.listing(containers)
    path = listindex.index_path(containers)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(damage(data))
    assert seen(listindex.listing(containers)) == seen(containers.all())
    assert cached_ids(containers) == ids


def write_index(containers: Containers, entries: dict) -> None:
    payload = marshal.dumps(entries)
    with open(listindex.index_path(containers), "wb") as f:
        f.write(listindex.HEADER + b"%08x\n" % zlib.crc32(payload) + payload)


def test_a_cached_entry_that_is_no_record_is_not_believed(containers, settled):
    a, b, c = create(containers), create(containers), create(containers)
    listindex.listing(containers)
    with open(listindex.index_path(containers), "rb") as f:
        entries = marshal.loads(f.read().partition(b"\n")[2])
    entries[a][2] = {"id": a}  # a config without its fields
    entries[b][3] = {"Status": "flying"}
    entries[c] = entries[c][:2]
    write_index(containers, entries)
    assert seen(listindex.listing(containers)) == seen(containers.all())
    assert cached_ids(containers) == {a, b, c}


def test_a_damaged_record_is_dead_every_time_and_never_cached(containers, settled):
    cid, other = create(containers), create(containers)
    listindex.listing(containers)
    state = os.path.join(containers.dir, cid, "state.json")
    with open(state, "rb") as f:
        good = f.read()
    with open(state, "wb") as f:
        f.write(good[:20])  # torn by a crash
    for _ in range(2):
        listed = {c.id: c for c in listindex.listing(containers)}
        assert listed[cid].state["Status"] == "dead" and state in listed[cid].state["Error"]
        assert cached_ids(containers) == {other}
    with open(state, "wb") as f:
        f.write(good)
    assert {c.id: c.state["Status"] for c in listindex.listing(containers)} == {cid: "created", other: "created"}


def test_removed_half_removed_and_debris_are_not_listed(containers, settled):
    kept, removed, half, debris = (create(containers) for _ in range(4))
    listindex.listing(containers)
    shutil.rmtree(os.path.join(containers.dir, removed))
    os.unlink(os.path.join(containers.dir, half, "state.json"))
    os.unlink(os.path.join(containers.dir, debris, "config.json"))  # how a removal starts
    os.mkdir(os.path.join(containers.dir, "f" * 64))
    assert [c.id for c in listindex.listing(containers)] == [c.id for c in containers.all()] == [kept]
    assert cached_ids(containers) == {kept}


def test_a_store_where_no_index_can_be_written_still_lists(containers, settled):
    cid = create(containers)
    os.mkdir(listindex.index_path(containers))  # the rename over it fails, as on a read-only store
    assert [c.id for c in listindex.listing(containers)] == [cid]
    assert os.listdir(os.path.dirname(listindex.index_path(containers))).count("containers.index") == 1


def lister(root: str, rounds: int, results) -> None:
    """In a process of its own: list again and again, at least `rounds` times and until it has
    seen several states (on a loaded machine the writer may get few turns in 100 rounds), 60 s
    at most; every container is there, with a state some writer wrote (never a torn or stale
    mix of two). Puts the states seen, or the failure."""
    import time

    containers = Containers(Store(root))
    seen_errors = set()
    done, deadline = 0, time.monotonic() + 60
    while done < rounds or (len(seen_errors) < 4 and time.monotonic() < deadline):
        done += 1
        listed = listindex.listing(containers)
        if len(listed) != 4 or any(c.state.get("Status") not in ("created", "exited") for c in listed):
            results.put(("failed", [(c.id, c.state) for c in listed]))
            return
        seen_errors |= {c.state.get("Error") for c in listed}
    results.put(("seen", len(seen_errors)))


def test_listings_at_once_while_records_change_agree_with_the_records(containers, settled):
    ids = [create(containers) for _ in range(4)]
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    workers = [fork.Process(target=lister, args=(containers.store.root, 100, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    # Each state a size never seen before (a longer Error), so a recycled inode never brings
    # back an older stamp; written for as long as the listers list.
    n = 0
    while any(worker.is_alive() for worker in workers):
        n += 1
        containers.update_state(containers.load(ids[n % 4]), Status="exited", Error="x" * n)
    reports = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert all(kind == "seen" for kind, _ in reports), reports
    assert sum(count for _, count in reports) > 2  # the listers did list while the states changed
    assert seen(listindex.listing(containers)) == seen(containers.all())
    assert {c.state["Error"] for c in listindex.listing(containers)} == {"x" * k for k in range(n - 3, n + 1)}
