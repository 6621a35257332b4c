"""minirun.distribution.registry against a real docker-registry: uploads (monolithic, chunked), mounts, errors;
and the pure helpers (challenges, which hosts get plain HTTP)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from minirun.distribution import registry as client
from minirun.distribution.registry import Registry, RegistryError, parse_challenge, repository_path, uses_plain_http
from minirun.errors import MinirunError, NotFound
from tests.registryserver import registry  # noqa: F401


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_parse_challenge_keeps_quoted_commas():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/app:pull,push",
        "error": "insufficient_scope",
    }
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
    assert (
        reg.upload_blob("mounts/two", sha256(data), len(data), lambda: io.BytesIO(data), mount_from=["mounts/one"])
        == "mounts/one"
    )
    other = b"not in one"
    assert (
        reg.upload_blob("mounts/three", sha256(other), len(other), lambda: io.BytesIO(other), mount_from=["mounts/one"])
        == ""
    )
    assert reg.blob_size("mounts/three", sha256(other)) == len(other)


def test_missing_manifest_and_blob_are_not_found(registry):  # noqa: F811
    reg = Registry(registry.host)
    with pytest.raises(NotFound):
        reg.get_manifest("nothing/here", "latest")
    with pytest.raises(NotFound):
        reg.open_blob("nothing/here", sha256(b"x"))


# -- a hostile server: what no real registry sends, so a crafted one stands in ------------------


class HostileServer:
    """HTTP/1.1 on 127.0.0.1 answering every request with `status` and a body of `body_size`
    zero bytes (Content-Length, or endless chunks up to that size): it counts what it managed to
    send before the client hung up. Extra headers from `headers`; a 3xx goes to /elsewhere,
    which answers 404; /token answers 200 with `token_body`."""

    def __init__(
        self, status: int, body_size: int, chunked: bool = False, headers: dict | None = None, token_body: bytes = b""
    ) -> None:
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                if self.path in ("/elsewhere", "/token") or self.path.startswith("/token?"):
                    body = b"" if self.path == "/elsewhere" else token_body
                    self.send_response(404 if self.path == "/elsewhere" else 200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(body_size))
                self.end_headers()
                if self.command == "HEAD":
                    return
                piece = bytes(1 << 20)
                frame = b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece
                try:
                    for _ in range(0, body_size, len(piece)):
                        self.wfile.write(frame)
                        server.sent += len(piece)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client hung up: what it would not read stays unsent
                    self.close_connection = True

        self.sent = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


OFFERED = 256 << 20  # what the server would send: the client read all of it before
TAKEN = 32 << 20  # at most what may be sent before the client hangs up (socket buffers hold some MiB)


@pytest.fixture
def hostile():
    servers = []

    def start(*args, **kw) -> HostileServer:
        servers.append(HostileServer(*args, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("case", ["401 with a huge body", "401 with endless chunks", "200 with a huge body"])
def test_bodies_nobody_needs_are_not_read_whole(hostile, case):
    server = hostile(200 if case.startswith("200") else 401, OFFERED, chunked="chunks" in case)
    reg = Registry(server.host)
    try:
        if case.startswith("200"):
            reg.ping()  # GET /v2/ answered: its body is not wanted
        else:
            with pytest.raises(RegistryError, match="unsupported authentication challenge"):
                reg.ping()
    finally:
        reg.close()
    assert server.sent < TAKEN, f"{case}: the client took {server.sent >> 20} MiB"


def test_a_redirect_body_is_not_read_whole(hostile):
    server = hostile(307, OFFERED)
    reg = Registry(server.host)
    try:
        with pytest.raises(NotFound):  # followed to /elsewhere, which has nothing
            reg.open_blob("any/repo", sha256(b"x"))
    finally:
        reg.close()
    assert server.sent < TAKEN, f"the client took {server.sent >> 20} MiB"


def test_a_second_401_and_json_nested_too_deeply_are_clean_errors(hostile):
    # Basic challenge, credentials sent, 401 again: the error body is quoted, 64 KiB of it at most
    server = hostile(401, OFFERED, headers={"WWW-Authenticate": 'Basic realm="x"'})
    reg = Registry(server.host, credentials=("u", "p"))
    try:
        with pytest.raises(RegistryError, match="unauthorized"):
            reg.ping()
    finally:
        reg.close()
    assert server.sent < 2 * TAKEN
    # JSON nested deeper than the parser goes: a token server's answer, an error body
    server = hostile(
        401, 0, headers={"WWW-Authenticate": f'Bearer realm="http://{server.host}/token"'}, token_body=b"[" * 100_000
    )
    reg = Registry(server.host)
    try:
        with pytest.raises(RegistryError, match="the token server sent no token"):
            reg.ping()
    finally:
        reg.close()
    assert client._error_text(b"[" * 60_000, "denied").startswith("denied: [[[")
    assert client._error_code(b"[" * 60_000) == ""


def test_an_upload_whose_token_expired_is_retried_in_chunks_when_large(monkeypatch):
    """A 401 in the middle of a chunked upload starts a fresh session, and that one is chunked
    too: a large blob never goes as one request (it did, as a monolithic PUT)."""
    from minirun.distribution import registry as registry_module

    reg = Registry("127.0.0.1:1")
    calls: list[str] = []

    def chunked(location, digest, size, open_data, progress):
        calls.append("chunked")
        if len(calls) == 1:
            raise registry_module.Unauthorized("unauthorized: token expired", 401, "UNAUTHORIZED")

    monkeypatch.setattr(reg, "_start_upload", lambda repo: "/v2/r/blobs/uploads/x")
    monkeypatch.setattr(reg, "_upload_chunked", chunked)
    monkeypatch.setattr(reg, "_upload_monolithic", lambda *a: calls.append("monolithic"))
    size = registry_module.CHUNKED_UPLOAD_THRESHOLD + 1
    assert reg.upload_blob("r", "sha256:" + "0" * 64, size, lambda: None) == ""
    assert calls == ["chunked", "chunked"]
