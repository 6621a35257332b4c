"""Container names as links (Containers, containers/container.py): a name is found and checked
without reading every record, and the records stay the truth whatever the links say (stale,
pointing elsewhere, or not made yet in a store from before them)."""

from __future__ import annotations

import os

import pytest

from minirun.containers import lifecycle
from minirun.containers.container import ContainerConfig, Containers, new_container_id
from minirun.errors import Conflict, NotFound
from minirun.store import Store
from minirun.timestamps import rfc3339_now


@pytest.fixture
def containers(tmp_path) -> Containers:
    return Containers(Store(str(tmp_path / "store")))


def create(containers: Containers, name: str = "") -> str:
    config = ContainerConfig(
        id=new_container_id(), name=name, image="sha256:" + "0" * 64, image_ref="busybox",
        created=rfc3339_now(), argv=["true"], env=["PATH=/bin"],
    )  # fmt: skip
    return containers.create(config, b"").id


def links(containers: Containers) -> dict[str, str]:
    return {
        n: os.readlink(os.path.join(containers.names_dir, n)) for n in os.listdir(containers.names_dir) if n[0] != "."
    }


def test_names_are_links_kept_by_create_rename_and_remove(containers):
    web = create(containers, "web")
    unnamed = create(containers)
    generated = containers.find(unnamed).name
    assert links(containers) == {"web": web, generated: unnamed}
    with pytest.raises(Conflict, match='"/web" is already in use by container'):
        create(containers, "web")
    assert containers.find("web").id == web and containers.find("/web").id == web

    lifecycle.rename(containers, containers.find("web"), "api")
    assert links(containers) == {"api": web, generated: unnamed}
    assert containers.find("api").id == web
    with pytest.raises(NotFound):
        containers.find("web")
    assert containers.find(web[:12]).id == web  # an id prefix, once no name matches

    containers.remove(containers.find("api"))
    assert links(containers) == {generated: unnamed}
    assert create(containers, "api")  # free again


def test_a_link_counts_only_where_the_record_agrees(containers):
    other = create(containers, "other")
    # a crash in a rename of "other" to "new" between the new link and the record
    os.symlink(other, os.path.join(containers.names_dir, "new"))
    assert containers.named("new") is None
    with pytest.raises(NotFound):
        containers.find("new")
    assert containers.find("other").id == other
    fresh = create(containers, "new")  # the name is free: its link is replaced
    assert containers.find("new").id == fresh and containers.find("other").id == other
    # a stale link: its container removed behind our back
    os.symlink(new_container_id(), os.path.join(containers.names_dir, "gone"))
    with pytest.raises(NotFound):
        containers.find("gone")
    assert containers.find(create(containers, "gone")).name == "gone"


def test_a_store_from_before_the_links_gets_them_at_its_first_create(containers):
    old = create(containers, "old")
    for name in os.listdir(containers.names_dir):  # as a store made before the links was
        os.unlink(os.path.join(containers.names_dir, name))
    os.rmdir(containers.names_dir)
    assert containers.find("old").id == old  # found by reading the records
    with pytest.raises(Conflict):
        create(containers, "old")  # checked against the records, which the links then come from
    assert links(containers) == {"old": old}
    assert os.path.exists(os.path.join(containers.names_dir, ".complete"))
