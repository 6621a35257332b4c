"""A real OCI registry for tests: `docker-registry serve` (distribution) on 127.0.0.1, a free port,
storage in the test's tmp dir, killed at teardown.

Import the fixtures into a test module (`from tests.registryserver import registry, ...`):
  registry          plain HTTP, no auth
  auth_registry     Basic auth from an htpasswd file (USER / PASSWORD below)
  token_registry    (registry, token server): Bearer tokens, signed and checked for real
  tls_registry      HTTPS on 127.0.0.2 with a self-signed certificate (`.certificate`)
  plain_registry_on_127_0_0_2   plain HTTP on a loopback address that is not a loopback *name*
  redirect_registry blobs served through a 307 to a static file server, as from a CDN
  minirun_config    an isolated MINIRUN_CONFIG (credentials) dir
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "tester"
PASSWORD = "secret-pw"
_START_TIMEOUT_S = 15


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT", as a reference's domain
    storage: Path  # the filesystem driver's root directory
    process: subprocess.Popen
    log: Path
    scheme: str = "http"

    def blob_data(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (overwrite it to corrupt the blob)."""
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    @property
    def certificate(self) -> Path:
        """The self-signed certificate of a TLS registry."""
        return self.storage.parent / "tls.crt"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line (distribution's htpasswd reader accepts bcrypt only). Cost 4, not the
    usual 12: the registry checks the hash on every request, ~0.25 s each at cost 12."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # crypt: deprecated in 3.11, gone in 3.13
            import crypt
    except ImportError:
        if shutil.which("htpasswd") is None:
            pytest.skip("no bcrypt: neither Python's crypt module nor htpasswd (apache2-utils)")
        return (
            subprocess.run(
                ["htpasswd", "-nbB", "-C", "4", user, password], check=True, capture_output=True, text=True
            ).stdout.strip()
            + "\n"
        )
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"


def start_registry(
    directory: Path,
    htpasswd: bool = False,
    redirect_to: str | None = None,
    token: str | None = None,
    address: str = "127.0.0.1",
    tls: bool = False,
) -> RegistryServer:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (scripts/setup.sh --test installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    storage = directory / "storage"
    sections = []  # top-level config sections after `http:`
    http_extra = ""  # more keys of the `http:` section
    if htpasswd:
        (directory / "htpasswd").write_text(htpasswd_line(USER, PASSWORD))
        sections.append(f"auth:\n  htpasswd:\n    realm: minirun-tests\n    path: {directory / 'htpasswd'}\n")
    if token:  # Bearer tokens from this realm, signed by the key whose certificate is token.crt
        sections.append(
            f"auth:\n  token:\n    realm: {token}\n    service: {TOKEN_SERVICE}\n"
            f"    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {directory / 'token.crt'}\n"
        )
    if redirect_to:  # blob GETs and HEADs answered with a 307 to redirect_to + the storage path
        sections.append(
            f"middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {redirect_to}\n"
        )
    if tls:  # HTTPS with a self-signed certificate for `address` (trusted via SSL_CERT_FILE)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(directory / "tls.key"),
                "-out",
                str(directory / "tls.crt"),
                "-days",
                "1",
                "-subj",
                f"/CN={address}",
                "-addext",
                f"subjectAltName=IP:{address}",
            ],
            check=True,
            capture_output=True,
        )
        http_extra = f"  tls:\n    certificate: {directory / 'tls.crt'}\n    key: {directory / 'tls.key'}\n"
    log = directory / "registry.log"
    for _ in range(3):  # another process may take the free port before the registry binds it
        port = free_port(address)
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {address}:{port}\n  secret: minirun-tests\n{http_extra}" + "".join(sections)
        )
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        server = RegistryServer(f"{address}:{port}", storage, process, log, "https" if tls else "http")
        if _wait_ready(server):
            return server
        server.stop()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")


def _wait_ready(server: RegistryServer) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            import ssl

            unverified = ssl._create_unverified_context()  # only asks whether it is up
            urllib.request.urlopen(f"{server.scheme}://{server.host}/v2/", timeout=1, context=unverified).close()
            return True
        except urllib.error.HTTPError:  # 401 from the htpasswd variant: it is up
            return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture
def registry(tmp_path):
    server = start_registry(tmp_path / "registry")
    yield server
    server.stop()


@pytest.fixture
def auth_registry(tmp_path):
    server = start_registry(tmp_path / "auth-registry", htpasswd=True)
    yield server
    server.stop()


@pytest.fixture
def tls_registry(tmp_path):
    """HTTPS on 127.0.0.2 (loopback, but not a name that gets plain HTTP), with a self-signed
    certificate (`.certificate`)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    server = start_registry(tmp_path / "tls-registry", address="127.0.0.2", tls=True)
    yield server
    server.stop()


@pytest.fixture
def plain_registry_on_127_0_0_2(tmp_path):
    server = start_registry(tmp_path / "plain-registry", address="127.0.0.2")
    yield server
    server.stop()


@pytest.fixture
def redirect_registry(tmp_path):
    """A registry that sends every blob from another server (as registries on a CDN do): a plain
    static file server on the registry's storage directory."""
    import sys

    storage = tmp_path / "redirect-registry" / "storage"
    storage.mkdir(parents=True)
    port = free_port()
    files = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(storage)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or files.poll() is not None:
                    raise RuntimeError("the static file server did not start") from None
                time.sleep(0.05)
        server = start_registry(tmp_path / "redirect-registry", redirect_to=f"http://127.0.0.1:{port}/")
        try:
            yield server
        finally:
            server.stop()
    finally:
        files.terminate()
        files.wait(timeout=10)


@pytest.fixture
def minirun_config(tmp_path, monkeypatch):
    """An isolated credentials dir (MINIRUN_CONFIG), so no test reads or writes ~/.minirun."""
    directory = tmp_path / "minirun-config"
    monkeypatch.setenv("MINIRUN_CONFIG", str(directory))
    return directory


# -- a registry behind a Bearer token server ----------------------------------------------------
# No token server is packaged for Debian (docker_auth, Harbor's core are not), so the tests run
# this small one. The registry does the real work: it checks each token's signature (RS256, with
# the signing certificate in the x5c header, chained to its rootcertbundle), issuer, audience,
# expiry and granted actions, and answers 401 with an insufficient_scope challenge otherwise.

TOKEN_SERVICE = "minirun-test-registry"
TOKEN_ISSUER = "minirun-test-issuer"


@dataclass
class TokenServer:
    url: str
    requests: list  # (user or None, [scopes]) per token asked for
    server: object

    def stop(self) -> None:
        self.server.shutdown()  # type: ignore[attr-defined]
        self.server.server_close()  # type: ignore[attr-defined]


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def start_token_server(directory: Path) -> TokenServer:
    """Grants what it is asked for to USER/PASSWORD, only `pull` to anonymous callers, 401 to
    wrong credentials; signs with a fresh self-signed RSA key (openssl)."""
    import base64
    import http.server
    import json
    import ssl
    import threading
    import urllib.parse
    import uuid

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = directory / "token.key", directory / "token.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=minirun-test-issuer",
        ],
        check=True,
        capture_output=True,
    )
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}).encode())
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    requests: list = []

    def sign(claims: dict) -> str:
        payload = f"{header}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(key)], input=payload.encode(), check=True, capture_output=True
        ).stdout
        return f"{payload}.{_b64url(signature)}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            given = self.headers.get("Authorization")
            if given is not None and given != expected:
                requests.append(("<wrong>", query.get("scope", [])))
                return self._answer(401, {"details": "incorrect username or password"})
            user = USER if given else None
            requests.append((user, query.get("scope", [])))
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                allowed = [a for a in actions.split(",") if user or a == "pull"]
                access.append({"type": kind, "name": name, "actions": allowed})
            now = int(time.time())
            token = sign(
                {
                    "iss": TOKEN_ISSUER,
                    "sub": user or "",
                    "aud": query.get("service", [""])[0],
                    "exp": now + 300,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": uuid.uuid4().hex,
                    "access": access,
                }
            )
            self._answer(200, {"token": token, "expires_in": 300})

        def _answer(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return TokenServer(f"http://127.0.0.1:{server.server_address[1]}/token", requests, server)


@pytest.fixture
def token_registry(tmp_path):
    """(registry, token server): a registry that trusts only tokens from the token server."""
    directory = tmp_path / "token-registry"
    directory.mkdir()
    tokens = start_token_server(directory)
    try:
        server = start_registry(directory, token=tokens.url)
        try:
            yield server, tokens
        finally:
            server.stop()
    finally:
        tokens.stop()
