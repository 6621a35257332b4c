"""docker's cp path rules, as pure functions (containers/copy.py, layer/treetar.py)."""

from __future__ import annotations

import pytest

from minirun.containers.copy import (
    archive_name,
    archive_root,
    container_path,
    prepare_copy,
    preserve_trailing,
    split_cp_arg,
    split_dir_entry,
)
from minirun.errors import BadArchive, MinirunError, NotFound
from minirun.layer.treetar import clean_name, rebase


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("c1:/etc/hosts", ("c1", "/etc/hosts")),
        ("c1:etc", ("c1", "etc")),
        ("c1:", ("c1", "")),
        ("/abs/with:colon", ("", "/abs/with:colon")),
        ("./rel:colon", ("", "./rel:colon")),
        ("plain.txt", ("", "plain.txt")),
        ("-", ("", "-")),
    ],
)
def test_split_cp_arg(arg, expected):
    assert split_cp_arg(arg) == expected


def test_trailing_slash_and_dot_are_kept():
    assert preserve_trailing("/a/b", "a/b/") == "/a/b/"
    assert preserve_trailing("/a/b", "a/b/.") == "/a/b/."
    assert preserve_trailing("/", "/.") == "/."
    assert preserve_trailing("/a", "a") == "/a"
    assert container_path("etc//x/../y/") == "/etc/y/"
    assert container_path("//data/.") == "/data/."
    assert container_path("") == "/"


def test_split_dir_entry():
    assert split_dir_entry("/a/b/") == ("/a", "b")
    assert split_dir_entry("/a/b/.") == ("/a/b", ".")
    assert split_dir_entry("/a") == ("/", "a")
    assert split_dir_entry("/") == ("/", "/")
    assert archive_name("/a/b/") == "b"
    assert archive_name("/a/b/.") == "."
    assert archive_name("/") == "."
    assert archive_root(".") == archive_root("/") == ""


def test_prepare_copy_follows_dockers_table():
    # DEST an existing directory: SRC goes into it, named as it is
    assert prepare_copy(False, "f", "/d", True, True) == ("/d", None, None)
    assert prepare_copy(True, "src", "/d/", True, True) == ("/d/", None, None)
    # DEST an existing file: a file overwrites it under DEST's name; a directory may not
    assert prepare_copy(False, "f", "/d/g", True, False) == ("/d", "f", "g")
    with pytest.raises(MinirunError, match="cannot copy a directory to a file: /d/g"):
        prepare_copy(True, "src", "/d/g", True, False)
    # DEST missing: created under its own name; a file cannot make a directory
    assert prepare_copy(True, "src", "/d/new", False, False) == ("/d", "src", "new")
    assert prepare_copy(True, ".", "/d/new", False, False) == ("/d", ".", "new")
    assert prepare_copy(False, "f", "/d/new", False, False) == ("/d", "f", "new")
    with pytest.raises(NotFound, match="the destination directory must exist: /d/new/"):
        prepare_copy(False, "f", "/d/new/", False, False)


def test_member_names_stay_below_the_destination():
    assert clean_name("./a//b/", "/dst") == "a/b"
    assert clean_name("/abs/x", "/dst") == "abs/x"  # docker joins it below the destination
    assert clean_name("a/../b", "/dst") == "b"
    assert clean_name("./", "/dst") == ""
    for hostile in ("../x", "a/../../x", "/../etc/passwd", ".."):
        with pytest.raises(BadArchive, match="is outside of"):
            clean_name(hostile, "/dst")


def test_rebase_renames_only_the_first_element():
    renamed = rebase("src", "new")
    assert [renamed(n) for n in ("src", "src/x", "srcx", "other/src")] == ["new", "new/x", "srcx", "other/src"]
    contents = rebase("", "new")  # an archive of a directory's contents (`dir/.`)
    assert [contents(n) for n in ("", "x", "x/y")] == ["new", "new/x", "new/x/y"]
