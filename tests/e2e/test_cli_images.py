"""The image verbs as a user types them: output formats, exit codes, the store on disk."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.helpers import d, f, make_tar

ID12 = re.compile(r"^[0-9a-f]{12}$")


@pytest.fixture
def rootfs(tmp_path):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(make_tar([d("etc"), f("etc/hello", "hello\n"), f("data", b"x" * 3000)]))
    return str(path)


def one_error_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 125, result
    assert len(lines) == 1 and lines[0].startswith("minirun: error: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def test_import_prints_the_id_and_images_lists_it(cli, rootfs):
    before = time.monotonic()
    imported = cli("import", rootfs, "myimage:1.0", "-c", 'CMD ["sh"]')
    assert imported.code == 0, imported.err
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", imported.out)
    listing = cli("images")
    took = time.monotonic() - before  # what CREATED can say: the image is at most this old
    header, row = listing.out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    # docker's tabwriter: columns start where the header's do, min width 10, padding 3
    assert header.index("TAG") == len("REPOSITORY") + 3
    assert row.split()[:3] == ["myimage", "1.0", imported.out[7:19]]
    ages = ["Less than a second ago"] + [f"{n} second{'s' if n > 1 else ''} ago" for n in range(1, int(took) + 1)]
    assert row.rstrip().endswith("3.01kB") and any(age in row for age in ages), (row, took)
    assert cli("images", "-q").out == imported.out[7:19] + "\n"


def test_history_shows_the_import_and_its_comment(cli, rootfs):
    cli("import", rootfs, "img", "-m", "first import")
    out = cli("history", "img").out.splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert ID12.match(out[1].split()[0])
    assert out[1].rstrip().endswith("3.01kB    first import")
    cli("import", rootfs, "plain")
    assert cli("history", "plain").out.splitlines()[1].rstrip().endswith("Imported from -")
    full = cli("history", "--no-trunc", "plain").out.splitlines()[1].split()[0]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", full)
    assert ID12.match(cli("history", "-q", "plain").out.strip())
    record = json.loads(cli("history", "--format", "json", "plain").out)
    assert record["Comment"] == "Imported from -" and record["Size"] == "3.01kB" and ID12.match(record["ID"])


def test_first_use_builds_busybox_from_images(cli, isolated_store):
    history = cli("history", "busybox")
    assert history.code == 0, history.err
    rows = history.out.splitlines()
    assert len(rows) == 2 and ID12.match(rows[1].split()[0])
    assert re.search(r"\b1\.9\dMB\b", rows[1]), rows[1]
    listing = cli("images").out.splitlines()
    assert listing[1].split()[:2] == ["busybox", "latest"]
    config = json.loads(cli("inspect", "busybox").out)[0]["Config"]
    assert config["Cmd"] == ["sh"]
    # a second use does not rebuild: the id stays the same
    assert cli("history", "-q", "busybox").out == cli("history", "-q", "busybox").out
    layers = os.listdir(isolated_store / "layers")
    assert len(layers) == 1
    diff = isolated_store / "layers" / layers[0] / "diff"
    assert os.stat(diff / "bin/sh").st_ino == os.stat(diff / "bin/busybox").st_ino
    assert oct(os.stat(diff / "tmp").st_mode & 0o7777) == "0o1777"
    assert "nobody:x:65534" in (diff / "etc/passwd").read_text()


def test_inspect_is_docker_like_json(cli, rootfs):
    image_id = cli("import", rootfs, "img:2", "-c", "ENV A=b", "-c", "WORKDIR /srv").out.strip()
    doc = json.loads(cli("inspect", "img:2").out)
    assert isinstance(doc, list) and len(doc) == 1
    doc = doc[0]
    assert doc["Id"] == image_id and doc["RepoTags"] == ["img:2"]
    assert doc["Config"]["Env"] == ["A=b"] and doc["Config"]["WorkingDir"] == "/srv"
    assert doc["RootFS"]["Type"] == "layers" and len(doc["RootFS"]["Layers"]) == 1
    assert doc["Size"] == 3006 and doc["Os"] == "linux" and doc["Created"].endswith("Z")
    assert doc["GraphDriver"]["Name"] == "overlay"
    assert json.loads(cli("inspect", image_id[7:17]).out)[0]["Id"] == image_id  # unique prefix


def test_rmi_untags_then_deletes_unused_layers_only(cli, rootfs, tmp_path, isolated_store):
    other = tmp_path / "other.tar"
    other.write_bytes(make_tar([f("other", "o")]))
    cli("import", rootfs, "a")
    cli("import", rootfs, "b")
    cli("import", str(other), "c")

    def layers() -> list[str]:
        return sorted(os.listdir(isolated_store / "layers"))

    assert len(layers()) == 2
    removed = cli("rmi", "a")
    assert removed.code == 0
    assert removed.out.splitlines()[0] == "Untagged: a:latest"
    assert removed.out.splitlines()[1].startswith("Deleted: sha256:")
    assert len(layers()) == 2  # b still uses the shared layer
    cli("rmi", "b")
    assert len(layers()) == 1
    assert [r.split()[0] for r in cli("images").out.splitlines()[1:]] == ["c"]
    assert len(os.listdir(isolated_store / "l")) == 1


def test_rmi_of_one_of_two_tags_only_untags(cli, rootfs, store):
    from minirun.store.reference import parse_reference

    image_id = cli("import", rootfs, "x:1").out.strip()
    with store.locked():
        store.images.tag(parse_reference("x:2"), image_id)
    untagged = cli("rmi", "x:1")
    assert untagged.out == "Untagged: x:1\n"
    assert cli("images", "-q").out.strip() == image_id[7:19]
    store.images.tag(parse_reference("y"), image_id)
    conflict = cli("rmi", image_id[7:19])  # by id, with two names: docker wants -f
    assert "must be forced" in one_error_line(conflict)
    forced = cli("rmi", "-f", image_id[7:19])
    assert forced.out.splitlines() == [
        "Untagged: x:2",
        "Untagged: y:latest",
        "Deleted: " + image_id,
        forced.out.splitlines()[-1],
    ]
    assert cli("images", "-q").out == ""


@pytest.mark.parametrize(
    "args,needle",
    [
        (["import", "/nonexistent/rootfs.tar", "x"], "no such file"),
        (["history", "nosuchimage"], "No such image: nosuchimage:latest"),
        (["inspect", "nosuchimage:9"], "No such image: nosuchimage:9"),
        (["rmi", "nosuchimage"], "No such image"),
        (["import", "{rootfs}", "Bad_Name"], "invalid reference format"),
        (["import", "{rootfs}", "x", "-c", "FROBNICATE yes"], "FROBNICATE"),
        (["images", "--bogus-flag"], "--bogus-flag"),
        (["history", "--format", "{{.ID", "busybox"], "template parsing error"),  # other text is a template
    ],
)
def test_bad_input_is_one_line_and_exit_125(cli, rootfs, args, needle, isolated_store):
    args = [a.replace("{rootfs}", rootfs) for a in args]
    line = one_error_line(cli(*args))
    assert needle.lower() in line.lower()
    assert cli("images", "-q").out == ""
    layers = isolated_store / "layers"
    assert not layers.exists() or os.listdir(layers) == []


def test_bad_tar_import_exit_125_and_nothing_stored(cli, tmp_path, isolated_store):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"garbage" * 500)
    line = one_error_line(cli("import", str(bad), "bad"))
    assert "tar" in line
    assert cli("images", "-q").out == ""
    assert os.listdir(isolated_store / "layers") == []


def test_tag_names_an_image_again(cli, rootfs):
    image_id = cli("import", rootfs, "orig:1").out.strip()
    assert cli("tag", "orig:1", "copy").code == 0
    assert cli("tag", image_id[7:19], "localhost:5000/team/app:2").code == 0
    rows = {tuple(r.split()[:3]) for r in cli("images").out.splitlines()[1:]}
    assert rows == {
        ("orig", "1", image_id[7:19]),
        ("copy", "latest", image_id[7:19]),
        ("localhost:5000/team/app", "2", image_id[7:19]),
    }
    assert cli("rmi", "copy").out == "Untagged: copy:latest\n"  # the image keeps its other names
    for args, needle in (
        (["tag", "nosuch", "x"], "No such image"),
        (["tag", "orig:1", "Bad:Name"], "invalid reference"),
        (["tag", "orig:1", "x@sha256:" + "a" * 64], "digest"),
    ):
        bad = cli(*args)
        assert bad.code == 125 and needle in bad.err and len(bad.err.strip().splitlines()) == 1, bad


def test_an_image_without_a_creation_date_lists_as_na(cli, store):
    """docker load/pull can bring configs with no `created` (or junk in it): `images` still lists."""
    import io

    from minirun.store.reference import parse_reference
    from tests.helpers import f, make_tar

    staged = store.unpack_layer(io.BytesIO(make_tar([f("x", "1")])))
    for name, created in (("nodate:1", None), ("baddate:1", 12)):
        config = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [staged.applied.diff_id]},
        }
        if created is not None:
            config["created"] = created
        store.commit_image([staged] if name == "nodate:1" else [], config, parse_reference(name))
    listed = cli("images")
    assert listed.code == 0, listed.err
    assert [line.split()[3] for line in listed.out.splitlines()[1:]] == ["N/A", "N/A"]
    assert cli("history", "nodate:1").code == 0


def test_a_second_import_of_the_same_file_takes_its_layer_and_never_a_stale_one(cli, rootfs, isolated_store):
    """The store remembers which layer an unchanged file became (store/importmemo.py): a second
    import shares it. A file written since is unpacked again, and a layer that has gone is made
    again: the memo is a hint, never the content (the time saved is bench_import.py's to show)."""

    def layers(name: str) -> list[str]:
        return json.loads(cli("inspect", name).out)[0]["RootFS"]["Layers"]

    assert cli("import", str(rootfs), "first:1").code == 0
    assert cli("import", str(rootfs), "second:1").code == 0
    assert layers("first:1") == layers("second:1")
    memo = json.loads((isolated_store / "imports.json").read_text())
    assert list(memo.values()) == layers("first:1")

    with open(rootfs, "ab") as tar:  # a tar's end is two zero blocks: more of them, other bytes
        tar.write(bytes(1024))
    assert cli("import", str(rootfs), "third:1").code == 0
    assert layers("third:1") != layers("first:1")

    assert cli("rmi", "first:1", "second:1", "third:1").code == 0  # every layer goes
    assert not os.listdir(isolated_store / "layers")
    assert cli("import", str(rootfs), "fourth:1").code == 0  # the memo names a layer that has gone
    assert layers("fourth:1") == list(json.loads((isolated_store / "imports.json").read_text()).values())[-1:]
    assert cli("system", "check").code == 0
