"""minirun.registry against a real docker-registry: uploads (monolithic, chunked), mounts, errors;
and the pure helpers (challenges, which hosts get plain HTTP)."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from minirun import registry as client
from minirun.errors import MinirunError, NotFound
from minirun.registry import Registry, RegistryError, parse_challenge, repository_path, uses_plain_http
from tests.registryserver import registry  # noqa: F401


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_parse_challenge_keeps_quoted_commas():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                      "scope": "repository:team/app:pull,push", "error": "insufficient_scope"}
    assert parse_challenge('Basic realm="minirun \\"tests\\""') == ("basic", {"realm": 'minirun "tests"'})
    assert parse_challenge("") == ("", {})


def test_plain_http_only_for_loopback_names_or_insecure():
    assert uses_plain_http("localhost:5000", False) and uses_plain_http("127.0.0.1", False)
    assert uses_plain_http("[::1]:5000", False)
    assert not uses_plain_http("127.0.0.2:5000", False) and not uses_plain_http("registry.example.com", False)
    assert uses_plain_http("registry.example.com:5000", True)
    assert repository_path(None, "busybox") == "library/busybox"
    assert repository_path("docker.io", "team/app") == "team/app"
    assert repository_path("127.0.0.1:5000", "busybox") == "busybox"


@pytest.mark.parametrize("size, chunked", [(300_001, True), (50_000, False)])
def test_upload_then_read_back(registry, monkeypatch, size, chunked):  # noqa: F811
    # a low threshold sends this blob in five PATCHes of 64 KiB and a last short one
    monkeypatch.setattr(client, "CHUNKED_UPLOAD_THRESHOLD", 100_000)
    monkeypatch.setattr(client, "CHUNK_SIZE", 64 << 10)
    data = os.urandom(size)
    reg = Registry(registry.host)
    seen = []
    assert reg.blob_size("blobs/test", sha256(data)) is None
    assert reg.upload_blob("blobs/test", sha256(data), size, lambda: io.BytesIO(data), progress=seen.append) == ""
    assert sum(seen) == size and (len(seen) > 1) == chunked
    assert reg.blob_size("blobs/test", sha256(data)) == size
    response = reg.open_blob("blobs/test", sha256(data))
    assert response.read() == data
    reg.release(response)
    # the same connection serves the next request (keep-alive after a body read to its end)
    assert reg.blob_size("blobs/test", sha256(data)) == size
    reg.close()


def test_the_registry_refuses_a_blob_whose_digest_is_wrong(registry):  # noqa: F811
    reg = Registry(registry.host)
    data = b"some bytes"
    with pytest.raises(RegistryError) as raised:
        reg.upload_blob("blobs/test", sha256(b"other bytes"), len(data), lambda: io.BytesIO(data))
    assert "digest invalid" in raised.value.message
    assert reg.blob_size("blobs/test", sha256(b"other bytes")) is None


def test_a_stream_shorter_than_announced_is_an_error_not_a_short_blob(registry):  # noqa: F811
    reg = Registry(registry.host)
    with pytest.raises(MinirunError, match="ended 5 bytes early"):
        reg.upload_blob("blobs/test", sha256(b"0123456789"), 10, lambda: io.BytesIO(b"01234"))
    # the connection that carried the broken request is not reused
    assert reg.blob_size("blobs/test", sha256(b"0123456789")) is None


def test_mount_from_a_repository_without_the_blob_falls_back_to_an_upload(registry):  # noqa: F811
    reg = Registry(registry.host)
    data = b"mount me"
    assert reg.upload_blob("mounts/one", sha256(data), len(data), lambda: io.BytesIO(data)) == ""
    assert reg.upload_blob("mounts/two", sha256(data), len(data), lambda: io.BytesIO(data),
                           mount_from=["mounts/one"]) == "mounts/one"
    other = b"not in one"
    assert reg.upload_blob("mounts/three", sha256(other), len(other), lambda: io.BytesIO(other),
                           mount_from=["mounts/one"]) == ""
    assert reg.blob_size("mounts/three", sha256(other)) == len(other)


def test_missing_manifest_and_blob_are_not_found(registry):  # noqa: F811
    reg = Registry(registry.host)
    with pytest.raises(NotFound):
        reg.get_manifest("nothing/here", "latest")
    with pytest.raises(NotFound):
        reg.open_blob("nothing/here", sha256(b"x"))
