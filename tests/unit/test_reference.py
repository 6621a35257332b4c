"""Image references parse as docker's distribution/reference grammar says (cases checked
against the docker 28 CLI), but keep the name as the user typed it."""

from __future__ import annotations

import re

import pytest

from minirun.errors import UsageError
from minirun.store.reference import Reference, looks_like_id, parse_reference

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    "text, name, tag, digest",
    [
        ("busybox", "busybox", "latest", None),
        ("busybox:1.36", "busybox", "1.36", None),
        ("library/busybox:musl", "library/busybox", "musl", None),
        ("foo/bar/baz:t", "foo/bar/baz", "t", None),
        # A colon before the last slash is a port, not a tag.
        ("localhost:5000/foo", "localhost:5000/foo", "latest", None),
        ("localhost:5000/foo:v2", "localhost:5000/foo", "v2", None),
        ("example.com:443/a/b/c:v1.0", "example.com:443/a/b/c", "v1.0", None),
        ("[::1]:5000/foo", "[::1]:5000/foo", "latest", None),
        # A lone component is never a domain, so this is name `a`, tag `5000`.
        ("a:5000", "a", "5000", None),
        ("foo.bar", "foo.bar", "latest", None),
        ("foo---bar", "foo---bar", "latest", None),
        ("foo__bar", "foo__bar", "latest", None),
        ("foo:_x", "foo", "_x", None),
        ("foo:x.y-z_W", "foo", "x.y-z_W", None),
        # With a digest no default tag is added; an explicit tag stays.
        (f"foo@{DIGEST}", "foo", None, DIGEST),
        (f"foo:tag@{DIGEST}", "foo", "tag", DIGEST),
        # Domains may be uppercase; only path components must be lowercase.
        ("Registry.Example.COM/foo", "Registry.Example.COM/foo", "latest", None),
    ],
)
def test_parse_valid(text: str, name: str, tag: str | None, digest: str | None) -> None:
    assert parse_reference(text) == Reference(name, tag, digest)


def test_names_are_kept_as_typed() -> None:
    ref = parse_reference("busybox")
    assert str(ref) == "busybox:latest"
    assert ref.domain is None


def test_default_tag_can_be_changed_or_left_out() -> None:
    assert parse_reference("busybox", default_tag=None) == Reference("busybox", None, None)
    assert parse_reference("busybox", default_tag="stable").tag == "stable"
    assert parse_reference("busybox:1", default_tag=None).tag == "1"


@pytest.mark.parametrize(
    "ref, text",
    [
        (Reference("busybox", "latest", None), "busybox:latest"),
        (Reference("busybox", None, None), "busybox"),
        (Reference("foo", None, DIGEST), f"foo@{DIGEST}"),
        (Reference("foo", "v1", DIGEST), f"foo:v1@{DIGEST}"),
    ],
)
def test_str(ref: Reference, text: str) -> None:
    assert str(ref) == text


@pytest.mark.parametrize(
    "text, domain, path",
    [
        ("busybox", None, "busybox"),
        ("me/app", None, "me/app"),
        ("localhost/app", "localhost", "app"),
        ("localhost:5000/me/app", "localhost:5000", "me/app"),
        ("registry.example.com/app", "registry.example.com", "app"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app"),
        ("[::1]:5000/app", "[::1]:5000", "app"),
        # docker: an uppercase first component can only be a registry host.
        ("Foo/bar", "Foo", "bar"),
        # docker: a single component is a path even when it looks like a host.
        ("localhost", None, "localhost"),
        ("example.com", None, "example.com"),
    ],
)
def test_domain_and_path(text: str, domain: str | None, path: str) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "foo:bar:",
        "foo:",
        ":tag",
        "/foo",
        "foo/",
        "foo//bar",
        "foo..bar",
        "foo___bar",
        "foo-",
        "-foo",
        "_foo",
        "foo:-x",
        "foo:.x",
        "foo bar",
        "[fe80::1%eth0]/foo",
        "foo@sha256:",
        "foo:" + "a" * 129,
    ],
)
def test_invalid_format(text: str) -> None:
    with pytest.raises(UsageError, match=f'^invalid reference format: "{re.escape(text)}"$'):
        parse_reference(text)


def test_tag_may_be_128_characters() -> None:
    assert parse_reference("foo:" + "a" * 128).tag == "a" * 128


@pytest.mark.parametrize(
    "text, shown",
    [
        # docker reports the path it would send to Docker Hub, `library/` included.
        ("Foo", "library/Foo"),
        ("Foo:tag", "library/Foo"),
        ("docker.io/Foo", "library/Foo"),
        ("me/Foo", "me/Foo"),
        ("foo/Bar:tag", "foo/Bar"),
        ("localhost:5000/Foo", "Foo"),
        # docker cuts at the first colon, digest or not.
        (f"Foo@{DIGEST}", "library/Foo@sha256"),
    ],
)
def test_uppercase_path_message(text: str, shown: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_reference(text)
    assert info.value.message == f"invalid reference format: repository name ({shown}) must be lowercase"


def test_path_length_limit_counts_library_prefix() -> None:
    # docker limits the path (not the whole name) to 255, and a Hub name's path
    # includes `library/`: 247 characters pass, 248 do not.
    assert parse_reference("a" * 247).name == "a" * 247
    with pytest.raises(UsageError, match="must not be more than 255 characters"):
        parse_reference("a" * 248)


def test_path_length_limit_excludes_domain() -> None:
    assert parse_reference("example.com/" + "a" * 255).path == "a" * 255
    with pytest.raises(UsageError, match="must not be more than 255 characters"):
        parse_reference("example.com/" + "a" * 256)


def test_full_hex_name_is_refused() -> None:
    with pytest.raises(UsageError, match="cannot specify 64-byte hexadecimal strings"):
        parse_reference(HEX)


@pytest.mark.parametrize(
    "digest, message",
    [
        ("sha256:" + "a" * 63, "invalid checksum digest length"),
        ("sha256:" + "a" * 66, "invalid checksum digest length"),
        ("sha384:" + "a" * 64, "invalid checksum digest length"),
        ("sha256:" + "A" * 64, "invalid checksum digest format"),
        ("md5:" + "a" * 32, "unsupported digest algorithm"),
    ],
)
def test_bad_digest(digest: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}"):
        parse_reference(f"foo@{digest}")


def test_other_registered_digest_algorithms() -> None:
    assert parse_reference("foo@sha512:" + "b" * 128).digest == "sha512:" + "b" * 128


@pytest.mark.parametrize("text", ["a", "abc123", HEX, f"sha256:{HEX}", "sha256:0f"])
def test_looks_like_id(text: str) -> None:
    assert looks_like_id(text)


@pytest.mark.parametrize("text", ["", "sha256:", "ABC", "busybox", HEX + "0", "sha512:abc", "abc:def"])
def test_does_not_look_like_id(text: str) -> None:
    assert not looks_like_id(text)


def test_the_simple_shapes_read_without_re_as_the_grammar_reads_them():
    """reference._simple_reference (no re) against docker's grammar (re), on names people type
    and on shapes made to trip it: wherever it answers, the grammar answers the same."""
    import random
    import re

    from minirun.store import reference

    def by_grammar(text):
        try:
            if len(text) == 64 and set(text) <= set("0123456789abcdef"):
                return "error"
            match = re.fullmatch(reference._REFERENCE, text, re.ASCII)
            if match is None or text.split(":", 1)[0].lower() != text.split(":", 1)[0]:
                return "error"
            name, tag, digest = match.groups()
            if digest is not None or len("library/" + name) > 255 or "/" in name:
                return "other"
            return reference.Reference(name, tag or "latest", None)
        except Exception:
            return "error"

    rng = random.Random(16)
    alphabet = "ab09.-_:/@Z"
    samples = ["busybox", "app:1.0", "a__b", "a___b", "a.-b", "a--b:v", "a:", ":a", "a:.x", "a:_x", "a" * 300, "f" * 64]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(5000)]
    answered = 0
    for text in samples:
        fast = reference._simple_reference(text, "latest")
        if fast is not None:
            answered += 1
            assert by_grammar(text) == fast, text
    assert answered > 500
