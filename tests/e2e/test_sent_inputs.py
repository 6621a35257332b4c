"""What a sent build context (a tar on stdin, the Engine API's /build body) or a client's request
can make the host do: a link in the context is followed as if the context were `/` (docker's
daemon reads a context it is sent with FollowSymlinkInScope), so a Dockerfile or ignore file that
is a link never reads a file of the host, and a body nested past the parser is a 400."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.e2e.engineapi import _UnixHTTP, service  # noqa: F401  (a fixture)


def _tar(*members: tuple[str, bytes | str]) -> bytes:
    """Members `(name, bytes)` are files, `(name, "->target")` symlinks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content.removeprefix("->")
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.fixture
def secret(tmp_path):
    """A host file no build may read: its first line is a bad Dockerfile and a bad ignore pattern,
    so whichever reads it says so in its error."""
    path = tmp_path / "host-secret"
    path.write_text("[matkc-host-secret-line\n")
    return path


def _links(secret) -> list[tuple[str, tuple]]:
    dockerfile = ("Dockerfile", b"FROM busybox\nCOPY . /c/\n")
    return [
        ("dockerfile", (("Dockerfile", f"->{secret}"),)),
        ("dockerfile-up", (("Dockerfile", "->" + "../" * 40 + str(secret).lstrip("/")),)),
        ("containerfile", (("Containerfile", f"->{secret}"), dockerfile)),
        ("dockerignore", (dockerfile, (".dockerignore", f"->{secret}"))),
        ("dockerfile-dockerignore", (dockerfile, ("Dockerfile.dockerignore", f"->{secret}"))),
    ]


@pytest.mark.parametrize("case", range(5), ids=[name for name, _ in _links("x")])
def test_a_link_in_a_sent_context_reads_no_host_file(cli, busybox, secret, case):
    members = _links(secret)[case][1]
    built = cli("build", "-q", "-", input=_tar(*members))
    assert "matkc-host-secret" not in (built.out + built.err).lower(), built
    if members[0][0] != "Dockerfile":  # a Dockerfile of the context's own: the build goes on
        assert built.code == 0, built.err


def test_links_inside_a_sent_context_are_followed_there(cli, busybox):
    """As docker: a link to `/sub/Df` or up past the root lands in the context."""
    context = _tar(
        ("sub/Df", b"FROM busybox\nCOPY . /c/\n"),
        ("Dockerfile", "->/sub/Df"),
        ("ign", b"hidden\n"),
        (".dockerignore", "->../../ign"),
        ("hidden", b"h"),
        ("kept", b"k"),
    )
    built = cli("build", "-q", "-t", "scoped:1", "-", input=context)
    assert built.code == 0, built.err
    listed = cli("run", "--rm", "--network", "none", "scoped:1", "ls", "/c")
    assert listed.out.split() == ["Dockerfile", "ign", "kept", "sub"], listed


def test_the_apis_build_reads_no_host_file_through_a_link(service, secret):  # noqa: F811
    from urllib.parse import quote

    body = _tar(("sub", f"->{secret.parent}"), ("Dockerfile", f"->{secret}"))
    for dockerfile in ("Dockerfile", f"sub/{secret.name}"):
        connection = _UnixHTTP(service.path)
        try:
            connection.request(
                "POST", f"/build?dockerfile={quote(dockerfile, safe='')}", body, {"Content-Type": "application/x-tar"}
            )
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        assert "matkc-host-secret" not in text.lower(), text
        assert "does not exist" in text or "no Containerfile or Dockerfile" in text, text


def test_a_body_nested_past_the_parser_is_a_400(service):  # noqa: F811
    connection = _UnixHTTP(service.path)
    try:
        body = "[" * 100_000 + "]" * 100_000
        connection.request("POST", "/containers/create", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 400, answer
    assert answer["message"].startswith("invalid JSON"), answer
