"""A client for the OCI distribution API (what `docker pull`/`push` speak), on http.client.

One `Registry` per registry host and command. It authenticates the way docker does: on a 401 it
reads the WWW-Authenticate challenge and either fetches a Bearer token from the challenge's realm
(with Basic credentials from `login`, or anonymously) or sends Basic credentials itself. Each thread
keeps its own keep-alive connection (http.client connections are not thread-safe), so blobs can
download in parallel. HTTPS with the system CAs by default; plain HTTP for `--insecure` and for
loopback hosts, as docker does.

Nothing here verifies content: callers hash what they read and compare with the digests they asked
for (a registry is trusted with nothing).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import BinaryIO

from minirun.errors import MinirunError, NotFound

# Names without a registry (and docker.io's aliases) go to Docker Hub's API host, as in docker;
# minirun keeps Hub credentials under that host too.
HUB_DOMAINS = ("docker.io", "index.docker.io", "registry-1.docker.io")
HUB_HOST = "registry-1.docker.io"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

# The distribution registry refuses manifests over 4 MiB; a larger answer is not a manifest.
MAX_MANIFEST_BYTES = 4 << 20
# Blobs larger than this are uploaded in chunks (one PATCH each): a failure costs one chunk, and no
# single request has to stream hundreds of megabytes past proxies with request-size limits.
CHUNKED_UPLOAD_THRESHOLD = 64 << 20
CHUNK_SIZE = 32 << 20
_TIMEOUT_S = 60
_BLOCK = 1 << 20  # http.client sends file bodies in 8 KiB blocks by default: 128x the syscalls
_MAX_REDIRECTS = 5
# Bodies nobody needs whole (errors, challenges, redirects, acknowledgements) are read up to this;
# a longer one costs the connection, never memory (a hostile server can send gigabytes, or no end).
_MAX_SMALL_BODY = 1 << 16
_USER_AGENT = "minirun/0.1"


def manifest_accept() -> str:
    from minirun.image.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

    return ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


class RegistryError(MinirunError):
    """The registry answered with an error (its code and message are in the text)."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Unauthorized(RegistryError):
    pass


def registry_host(domain: str | None) -> str:
    """The host[:port] to talk to for a reference's domain (None: Docker Hub)."""
    if domain is None or domain in HUB_DOMAINS:
        return HUB_HOST
    return domain


def repository_path(domain: str | None, path: str) -> str:
    """The repository name on the registry: Hub's official images live under `library/`."""
    if (domain is None or domain in HUB_DOMAINS) and "/" not in path:
        return "library/" + path
    return path


def uses_plain_http(host: str, insecure: bool) -> bool:
    return insecure or _hostname(host) in LOOPBACK_HOSTS


class TransferView:
    """What a pull or a push reports as it goes (this base reports nowhere); the CLI renders it
    (lines in a pipe, bars on a terminal)."""

    def line(self, text: str) -> None:
        pass

    def layer_status(self, short_id: str, text: str) -> None:
        pass

    def layer_started(self, short_id: str, total: int) -> None:
        pass

    def layer_progress(self, short_id: str, count: int) -> None:
        pass


def _hostname(host: str) -> str:
    """`host:port` or `[v6]:port` without the port and brackets."""
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Registry:
    def __init__(
        self, host: str, insecure: bool = False, credentials: tuple[str, str] | None = None, scopes: Iterable[str] = ()
    ) -> None:
        self.host = host
        self.scheme = "http" if uses_plain_http(host, insecure) else "https"
        self.credentials = credentials
        # Bearer scopes asked for in one token, e.g. `repository:a/b:pull,push` (docker asks for
        # the source repository of a cross-repository mount in the same token).
        self.scopes = list(scopes)
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._authorization: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._open: list[http.client.HTTPConnection] = []  # every thread's, for close()
        self._open_lock = threading.Lock()

    def url(self, target: str) -> str:
        """The URL of a path on this registry (an absolute upload Location stays as it is),
        without its query: upload URLs carry state tokens nobody needs to read."""
        url = target if target.startswith(("http://", "https://")) else f"{self.scheme}://{self.host}{target}"
        return _strip_query(url)

    # -- the API ------------------------------------------------------------------------
    def ping(self) -> None:
        """GET /v2/: checks the endpoint and, with credentials, that they are accepted."""
        self._done(self._call("GET", "/v2/"), "GET", "/v2/")

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """The manifest bytes as served, their media type (Content-Type) and the digest the
        registry says they have (Docker-Content-Digest, "" when it says none)."""
        path = f"/v2/{repo}/manifests/{reference}"
        response = self._call("GET", path, {"Accept": manifest_accept()})
        if response.status == 404:
            body = response.read(1 << 16)
            self.release(response)
            raise NotFound(_error_text(body, "manifest unknown"))
        self._check(response, "GET", path)
        data = response.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            self.release(response)
            raise RegistryError(f"manifest {repo}:{reference} is larger than {MAX_MANIFEST_BYTES} bytes")
        media_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip()
        return data, media_type, response.getheader("Docker-Content-Digest") or ""

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag; returns the digest the registry reports."""
        path = f"/v2/{repo}/manifests/{reference}"
        headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
        response = self._done(self._call("PUT", path, headers, body=data), "PUT", path, expected=(201,))
        return response.getheader("Docker-Content-Digest") or ""

    def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        path = f"/v2/{repo}/blobs/{digest}"
        response = self._call("HEAD", path, follow_redirects=True)
        if response.status == 404:
            self._small_body(response)
            return None
        self._done(response, "HEAD", path)
        length = response.getheader("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def open_blob(self, repo: str, digest: str) -> http.client.HTTPResponse:
        """GET a blob, following redirects (registries often send blobs from a CDN). The caller
        reads, hashes and closes the response."""
        path = f"/v2/{repo}/blobs/{digest}"
        response = self._call("GET", path, follow_redirects=True)
        if response.status == 404:
            body = response.read(1 << 16)
            self.release(response)
            raise NotFound(f"blob {digest} not found: {_error_text(body, 'blob unknown')}")
        try:
            self._check(response, "GET", path)
        except BaseException:
            response.close()
            raise
        return response

    def release(self, response: http.client.HTTPResponse) -> None:
        """Close a response from open_blob. One not read to its end leaves unread bytes on the
        keep-alive connection, which is then dropped rather than reused."""
        if not response.isclosed():
            response.close()
            self._drop_connection()

    def upload_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        open_data: Callable[[], BinaryIO],
        mount_from: Iterable[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Put a blob into `repo`: mounted from another repository of this registry when one of
        `mount_from` has it (returns that repository), else uploaded from `open_data()` (returns
        ""), monolithically or in chunks by size. `open_data` is called again for a retry."""
        location = None
        for source in mount_from:
            query = urllib.parse.urlencode({"mount": digest, "from": source})
            response = self._call("POST", f"/v2/{repo}/blobs/uploads/?{query}", {"Content-Length": "0"}, body=b"")
            self._done(response, "POST", f"/v2/{repo}/blobs/uploads/", expected=(201, 202))
            if response.status == 201:
                return source
            # 202: the registry could not mount and opened an ordinary upload instead
            location = response.getheader("Location")
            break
        if location is None:
            location = self._start_upload(repo)
        upload = self._upload_chunked if size > CHUNKED_UPLOAD_THRESHOLD else self._upload_monolithic
        try:
            upload(location, digest, size, open_data, progress)
        except Unauthorized:
            # a token that expired during a long upload (_call fetched a new one): a fresh
            # session, once, the same way (a large blob never goes as one request)
            upload(self._start_upload(repo), digest, size, open_data, progress)
        return ""

    # -- uploads ------------------------------------------------------------------------
    def _start_upload(self, repo: str) -> str:
        path = f"/v2/{repo}/blobs/uploads/"
        response = self._done(
            self._call("POST", path, {"Content-Length": "0"}, body=b""), "POST", path, expected=(202,)
        )
        location = response.getheader("Location")
        if not location:
            raise RegistryError(f"POST {self.url(path)}: the registry gave no upload location")
        return location

    def _upload_monolithic(
        self,
        location: str,
        digest: str,
        size: int,
        open_data: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None,
    ) -> None:
        target = _with_query(location, digest=digest)
        with open_data() as data:
            body = _Window(data, size, progress)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            response = self._done(self._call("PUT", target, headers, body=body), "PUT", target, expected=(201,))
        self._check_digest(response, digest)

    def _upload_chunked(
        self,
        location: str,
        digest: str,
        size: int,
        open_data: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None,
    ) -> None:
        with open_data() as data:
            offset = 0
            while offset < size:
                count = min(CHUNK_SIZE, size - offset)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(count),
                    "Content-Range": f"{offset}-{offset + count - 1}",
                }  # inclusive, no unit
                response = self._call("PATCH", location, headers, body=_Window(data, count, progress))
                self._done(response, "PATCH", location, expected=(202,))
                location = response.getheader("Location") or location
                offset += count
        target = _with_query(location, digest=digest)
        response = self._done(
            self._call("PUT", target, {"Content-Length": "0"}, body=b""), "PUT", target, expected=(201,)
        )
        self._check_digest(response, digest)

    @staticmethod
    def _check_digest(response: http.client.HTTPResponse, digest: str) -> None:
        stored = response.getheader("Docker-Content-Digest")
        if stored and stored != digest:
            raise RegistryError(f"the registry stored blob {digest} as {stored}")

    # -- requests, redirects and authentication -------------------------------------------
    def _call(
        self, method: str, target: str, headers: dict[str, str] | None = None, body=None, follow_redirects: bool = False
    ) -> http.client.HTTPResponse:
        """One request to this registry, authenticated; retried once after a 401 when the body
        can be sent again, and once on a keep-alive connection the server had closed."""
        response = self._send(method, target, headers, body, authorize=True)
        if response.status == 401:
            challenge = response.getheader("WWW-Authenticate") or ""
            self._small_body(response)
            self._authenticate(challenge, f"{method} {self.url(_strip_query(target))}")
            if not _resendable(body):
                raise Unauthorized(
                    "unauthorized: the registry asked for credentials again during an upload", 401, "UNAUTHORIZED"
                )
            response = self._send(method, target, headers, body, authorize=True)
            if response.status == 401:
                text = _error_text(self._small_body(response), "authentication required")
                raise Unauthorized(
                    f"unauthorized: {text}" if not text.startswith("unauthorized") else text, 401, "UNAUTHORIZED"
                )
        redirects = 0
        while follow_redirects and response.status in (301, 302, 303, 307, 308):
            redirects += 1
            location = response.getheader("Location")
            self._small_body(response)
            if not location or redirects > _MAX_REDIRECTS:
                raise RegistryError(f"{method} {self.url(target)}: too many redirects")
            response = self._follow(method, urllib.parse.urljoin(self.url(target), location))
        return response

    def _send(
        self, method: str, target: str, headers: dict[str, str] | None, body, authorize: bool
    ) -> http.client.HTTPResponse:
        all_headers = {"User-Agent": _USER_AGENT, **(headers or {})}
        if authorize and self._authorization:
            all_headers["Authorization"] = self._authorization
        path = target
        if target.startswith(("http://", "https://")):  # an upload Location may be absolute
            parts = urllib.parse.urlsplit(target)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, path, body=body, headers=all_headers)
                return connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop_connection()
                if attempt == 2 or not _resendable(body):
                    raise self._network_error(method, target, exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise self._network_error(method, target, exc) from exc
            except BaseException:  # the body's reader failed midway: the connection is unusable
                self._drop_connection()
                raise
        raise AssertionError("unreachable")

    def _follow(self, method: str, url: str) -> http.client.HTTPResponse:
        """A redirected GET/HEAD on its own connection, without our credentials: the target is
        often another host (a CDN with a signed URL), which must not see the registry's token."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"{method} {url}: unsupported redirect")
        same = parts.netloc == self.host and parts.scheme == self.scheme
        connection = self._new_connection(parts.scheme, parts.netloc)
        headers = {"User-Agent": _USER_AGENT}
        if same and self._authorization:
            headers["Authorization"] = self._authorization
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, path or "/", headers=headers)
            return connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise self._network_error(method, url, exc) from exc

    def _authenticate(self, challenge: str, what: str) -> None:
        scheme, params = parse_challenge(challenge)
        with self._auth_lock:
            if scheme == "basic":
                if self.credentials is None:
                    raise Unauthorized(f"{what}: no basic auth credentials", 401, "UNAUTHORIZED")
                self._authorization = "Basic " + _basic(*self.credentials)
            elif scheme == "bearer":
                self._authorization = "Bearer " + self._fetch_token(params)
            else:
                raise Unauthorized(f"{what}: unsupported authentication challenge {challenge!r}", 401)

    def _fetch_token(self, params: dict[str, str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"the registry {self.host} sent a Bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        challenged = params["scope"].split(" ") if params.get("scope") else []
        query += [("scope", scope) for scope in merge_scopes(self.scopes + challenged)]
        if self.credentials is not None:
            query.append(("account", self.credentials[0]))
        url = _with_query(realm, *query)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"unsupported token realm {realm}")
        connection = self._new_connection(parts.scheme, parts.netloc)
        headers = {"User-Agent": _USER_AGENT}
        if self.credentials is not None:
            headers["Authorization"] = "Basic " + _basic(*self.credentials)
        try:
            connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
            response = connection.getresponse()
            body = response.read(1 << 20)
        except (OSError, http.client.HTTPException) as exc:
            raise self._network_error("GET", realm, exc) from exc
        finally:
            connection.close()
        if response.status in (401, 403):
            raise Unauthorized(
                f"unauthorized: {_error_text(body, 'incorrect username or password')}", response.status, "UNAUTHORIZED"
            )
        if response.status != 200:
            raise RegistryError(f"GET {realm}: token server answered {response.status}", response.status)
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"GET {realm}: the token server sent no token")
        return token

    def _done(
        self, response: http.client.HTTPResponse, method: str, target: str, expected: tuple[int, ...] = (200,)
    ) -> http.client.HTTPResponse:
        """Check the status, then read the (small) body to its end so the connection is reusable."""
        self._check(response, method, target, expected)
        self._small_body(response)
        return response

    def _check(
        self, response: http.client.HTTPResponse, method: str, path: str, expected: tuple[int, ...] = (200,)
    ) -> None:
        if response.status in expected:
            return
        body = self._small_body(response)
        text = _error_text(body, response.reason or "")
        status = response.status
        if status == 401:
            raise Unauthorized(f"unauthorized: {text}", status, "UNAUTHORIZED")
        if status == 403:
            raise RegistryError(f"denied: {text}", status, "DENIED")
        raise RegistryError(f"{method} {self.url(path)}: {status} {text}".rstrip(), status, _error_code(body))

    def _small_body(self, response: http.client.HTTPResponse) -> bytes:
        """Up to _MAX_SMALL_BODY bytes of a body, and the response closed: read to its end when
        that is all of it (the keep-alive connection stays usable), else dropped with its
        connection (what is left unread would be taken for the next response)."""
        body = response.read(_MAX_SMALL_BODY)
        if not response.isclosed():
            response.close()
            self._drop_connection()
        return body

    # -- connections --------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._new_connection(self.scheme, self.host)
            with self._open_lock:
                self._open.append(connection)
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._open_lock:
                self._open.remove(connection)

    def _new_connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # system CAs (SSL_CERT_FILE honoured)
            return http.client.HTTPSConnection(netloc, timeout=_TIMEOUT_S, context=self._ssl, blocksize=_BLOCK)
        return http.client.HTTPConnection(netloc, timeout=_TIMEOUT_S, blocksize=_BLOCK)

    def close(self) -> None:
        """Close the keep-alive connections of every thread that used this client."""
        self._drop_connection()
        with self._open_lock:
            for connection in self._open:
                connection.close()
            self._open.clear()

    def _network_error(self, method: str, target: str, exc: BaseException) -> MinirunError:
        url = target if target.startswith(("http://", "https://")) else self.url(target)
        url = _strip_query(url)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"tls: certificate verify failed: {exc.verify_message or exc.reason}"
        elif isinstance(exc, ssl.SSLError):
            reason = f"tls: {exc.reason or exc}"
            if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
                reason = "http: server gave HTTP response to HTTPS client (use --insecure)"
        elif isinstance(exc, socket.gaierror):
            reason = f"lookup {_hostname(urllib.parse.urlsplit(url).netloc)}: no such host"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connect: connection refused"
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            reason = "i/o timeout"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror.lower()
        else:
            reason = str(exc) or type(exc).__name__
        return MinirunError(f'{method} "{url}": {reason}')


# -- small pure helpers ---------------------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"` ->
    ("bearer", {...}). Quoted values keep their commas (scopes like `pull,push` have them)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _CHALLENGE_PARAM.match(rest, position)
        if match is None or match.end() == position:
            break
        key, quoted, bare = match.groups()
        params[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        position = match.end()
    return scheme.lower(), params


def _error_text(body: bytes, default: str) -> str:
    """The registry's `{"errors": [{"code", "message", "detail"}]}` as docker prints it."""
    try:
        errors = json.loads(body)["errors"]
        first = errors[0]
        code = str(first.get("code", "")).lower().replace("_", " ")
        message = str(first.get("message", ""))
        return f"{code}: {message}" if code and message else (message or code or default)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        # not the registry's JSON (a proxy, or a TLS port spoken to in plain HTTP): a short
        # text body says more than the status line
        text = body[:300].decode("utf-8", "replace").strip().splitlines()
        if text and text[0].isprintable() and not text[0].lstrip().startswith("<"):
            return f"{default}: {text[0]}" if default else text[0]
        return default


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return ""


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def merge_scopes(scopes: list[str]) -> list[str]:
    """One scope per resource with the union of its actions, in first-seen order: the registry's
    challenge may name `push,pull` for what we already ask as `pull,push`."""
    actions: dict[str, list[str]] = {}
    for scope in scopes:
        resource, _, wanted = scope.rpartition(":")
        if not resource:
            resource, wanted = scope, ""
        merged = actions.setdefault(resource, [])
        merged += [a for a in wanted.split(",") if a and a not in merged]
    return [f"{resource}:{','.join(sorted(merged))}" if merged else resource for resource, merged in actions.items()]


def _with_query(url: str, *pairs: tuple[str, str], **params: str) -> str:
    query = urllib.parse.urlencode(list(pairs) + list(params.items()))
    return url + ("&" if "?" in url else "?") + query


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _resendable(body) -> bool:
    return body is None or isinstance(body, (bytes, bytearray))


class _Window:
    """The next `size` bytes of a stream as a request body (http.client reads until EOF), with a
    progress callback; a stream that ends early is an error, not a short upload."""

    def __init__(self, inner: BinaryIO, size: int, progress: Callable[[int], None] | None) -> None:
        self._inner, self._left, self._progress = inner, size, progress

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._inner.read(want)
        if not data:
            raise MinirunError(f"the data to upload ended {self._left} bytes early")
        self._left -= len(data)
        if self._progress is not None:
            self._progress(len(data))
        return data
