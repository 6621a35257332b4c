"""`.dockerignore` patterns: docker's reading of the file and its matcher (moby's ignorefile and
patternmatcher), and what a COPY of a directory then sees."""

from __future__ import annotations

import os

import pytest

from minirun.build.buildcopy import glob_in_scope, kept_entries, present
from minirun.build.ignore import ContextFilter, find_ignore_file, read_patterns
from minirun.errors import UsageError


def test_reading_the_file():
    text = "\ufefftest1\r\n/test2\n/a/file/here\n\nlastfile\n# a comment\n ## not one\n! /inverted/abs/path\n!\n! \n"
    assert read_patterns(text) == [
        "test1",
        "test2",  # a leading slash goes: patterns are relative to the context root
        "a/file/here",
        "lastfile",
        "## not one",  # `#` only comments at the very start of a line
        "!inverted/abs/path",
        "!",
        "!",
    ]
    assert read_patterns("a/b/../c/\n./d\n/\n") == ["a/c", "d", "/"]


@pytest.mark.parametrize(
    "pattern, path, excluded",
    [
        ("*", "fileutils.go", True),
        ("*.go", "fileutils.go", True),
        ("*.go", "dir/fileutils.go", False),  # `*` stops at a slash
        ("**", "dir/file", True),
        ("**/", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("abc/**", "abc", False),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),  # a parent matches
        ("**/dir2/*", "dir/dir2/file", True),
        ("**file", "dir/dir/file", True),
        ("**/file*.txt", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a[b-d]e", "ace", True),
        ("a[b-d]e", "aae", False),
        ("a[^b-d]e", "aze", True),
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcZdef", False),  # regexp characters are literal
        ("abc?def", "abcZdef", True),
        ("**/.foo", "bar.foo", False),
        ("a(b)c/def", "a(b)c/def", True),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        ("secret", "secret\n", False),  # `$` of a regexp would allow the newline; Go's does not
        ("sec*", "secret/deeper/file", True),
    ],
)
def test_one_pattern(pattern, path, excluded):
    assert ContextFilter([pattern]).excluded(path) is excluded


@pytest.mark.parametrize(
    "patterns, path, excluded",
    [
        (["!fileutils.go", "*.go"], "fileutils.go", True),  # the last match decides
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs", "!docs/README.md"], "docs/other.md", True),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["*.go"], ".", False),  # the context itself never
        ([], "anything", False),
    ],
)
def test_patterns_in_order(patterns, path, excluded):
    assert ContextFilter(patterns).excluded(path) is excluded


@pytest.mark.parametrize("pattern", ["[", "a[", "[^bc", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "[z-a]"])
def test_a_bad_pattern_is_an_error_naming_it(pattern):
    with pytest.raises(UsageError) as info:
        ContextFilter([pattern], "ctx/.dockerignore")
    assert info.value.message == f"ctx/.dockerignore: syntax error in pattern: {pattern}"
    with pytest.raises(UsageError, match='illegal exclusion pattern: "!"'):
        ContextFilter(["!"])


@pytest.mark.parametrize("pattern", ["[\\]a]", "[\\-]", "[x\\-]", "[[]", "a]"])
def test_patterns_go_accepts(pattern):
    ContextFilter([pattern])


def test_pruning_only_where_no_exception_can_reach():
    assert not ContextFilter(["node_modules"]).may_keep_below("node_modules")
    rules = ContextFilter(["docs", "vendor", "!docs/README.md", "!**/LICENSE", "!x/*/keep"])
    assert rules.may_keep_below("docs")
    assert rules.may_keep_below("vendor")  # `**/LICENSE` may be anywhere
    rules = ContextFilter(["docs", "vendor", "x", "!docs/README.md", "!x/*/keep"])
    assert not rules.may_keep_below("vendor")
    assert rules.may_keep_below("x/y")
    assert not rules.may_keep_below("x/y/z")


def test_a_directory_walk_sees_what_is_left(tmp_path):
    for name in ("keep.txt", "secret.txt", "docs/README.md", "docs/internal.md", "node_modules/a/b.js", "only/x.key"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    rules = ContextFilter(read_patterns("secret.txt\ndocs\n!docs/README.md\nnode_modules\n**/*.key\n"))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert [e.name for e, _ in kept_entries(fd, "", rules)] == ["docs", "keep.txt", "only"]
    finally:
        os.close(fd)
    assert present(rules, str(tmp_path), "docs")  # excluded, but sent for its README
    assert present(rules, str(tmp_path), "docs/README.md")
    assert not present(rules, str(tmp_path), "docs/internal.md")
    assert not present(rules, str(tmp_path), "node_modules")
    assert present(rules, str(tmp_path), "only")  # not excluded itself, even with nothing left in it


def test_which_ignore_file(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert find_ignore_file(str(tmp_path), str(tmp_path / "Dockerfile")) is None
    (tmp_path / ".dockerignore").write_text("a\n")
    assert find_ignore_file(str(tmp_path), str(tmp_path / "Dockerfile")) == str(tmp_path / ".dockerignore")
    (tmp_path / ".containerignore").write_text("a\n")
    assert find_ignore_file(str(tmp_path), None) == str(tmp_path / ".containerignore")
    (tmp_path / "Dockerfile.dockerignore").write_text("b\n")
    assert find_ignore_file(str(tmp_path), str(tmp_path / "Dockerfile")) == str(tmp_path / "Dockerfile.dockerignore")


def test_wildcards_resolve_links_inside_the_root(tmp_path):
    root = tmp_path / "root"
    for name in ("srv/app/a.conf", "srv/app/b.conf", "srv/app/.hidden.conf", "etc/x.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    os.symlink("/srv/app", root / "app")  # absolute: it means root/srv/app, never the host's
    os.symlink("/", root / "hostroot")
    (tmp_path / "outside.txt").write_text("host")
    assert glob_in_scope(str(root), "app/*.conf") == ["app/.hidden.conf", "app/a.conf", "app/b.conf"]
    assert glob_in_scope(str(root), "hostroot/e*/*.txt") == ["hostroot/etc/x.txt"]
    assert glob_in_scope(str(root), f"hostroot{tmp_path}/*.txt") == []  # the host's dir is never listed
    assert glob_in_scope(str(root), "*/app/[ab].conf") == [
        "hostroot/app/a.conf",  # hostroot is root itself
        "hostroot/app/b.conf",
        "srv/app/a.conf",
        "srv/app/b.conf",
    ]
    assert glob_in_scope(str(root), "srv/**.conf") == []  # `**` is `*` to filepath.Match: one level
    with pytest.raises(UsageError, match=r"syntax error in pattern: \[a-"):
        glob_in_scope(str(root), "srv/[a-")
