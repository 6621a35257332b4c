"""Registry credentials for `login`/`logout`, kept apart from the store.

They live in `$MINIRUN_CONFIG/auth.json` (default `~/.minirun/auth.json`), in docker's
config.json shape (`{"auths": {"host:port": {"auth": base64("user:password")}}}`), mode 0600 in
a 0700 directory. The file is replaced atomically and created with its final mode, so a password
is never readable by others, not even for a moment. A change (read, modify, replace) holds an
flock on `auth.json.lock`: two logins at once would otherwise each write back what they read, and
one of them be lost. Nothing here prints a password.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os

from minirun.distribution.registry import HUB_DOMAINS, HUB_HOST
from minirun.errors import MinirunError, UsageError
from minirun.store.fsutil import flocked, replace_when_done

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


def config_dir() -> str:
    return os.environ.get("MINIRUN_CONFIG") or os.path.join(os.path.expanduser("~"), ".minirun")


def auth_path() -> str:
    return os.path.join(config_dir(), "auth.json")


def server_key(server: str) -> str:
    """The key credentials are kept under: a host[:port], without scheme or path, as docker
    normalises `login https://host:5000/v2/`. Docker Hub's names all map to one key."""
    text = server.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("/", 1)[0]
    if not text or any(c.isspace() for c in text):
        raise UsageError(f"invalid registry address: {server!r}")
    return HUB_HOST if text in HUB_DOMAINS else text


def login(server: str, user: str, password: str) -> str:
    """Check the credentials against the registry (GET /v2/, through its token server when it
    has one), then save them. Returns the key they were saved under."""
    key = check(server, user, password)
    save(key, user, password)
    return key


def check(server: str, user: str, password: str) -> str:
    """Check the credentials against the registry, saving nothing (the Engine API's /auth: the
    client keeps them); the registry's key."""
    from minirun.distribution.registry import Registry

    if not user:
        raise UsageError("username is empty")
    if not password:
        raise UsageError("password is empty")
    key = server_key(server)
    registry = Registry(key, credentials=(user, password))
    try:
        registry.ping()
    finally:
        registry.close()
    return key


def lookup(host: str) -> tuple[str, str] | None:
    """The (user, password) saved for a registry host, or None."""
    entry = _load().get("auths", {}).get(server_key(host))
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
        return None
    try:
        user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise MinirunError(f"{auth_path()}: the saved credentials for {host} are unreadable") from None
    return (user, password) if sep else None


def save(host: str, user: str, password: str) -> None:
    key = server_key(host)
    with _changing():
        config = _load()
        auths = config.setdefault("auths", {})
        auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        _store(config)


def remove(host: str) -> bool:
    """Forget a registry's credentials; False when there were none."""
    key = server_key(host)
    if not os.path.exists(auth_path()):  # nothing to forget: no directory created for a lock
        return False
    with _changing():
        config = _load()
        if config.get("auths", {}).pop(key, None) is None:
            return False
        _store(config)
        return True


@contextlib.contextmanager
def _changing() -> Iterator[None]:
    """Hold the credentials' lock while they are read, changed and written back."""
    directory = config_dir()
    with contextlib.ExitStack() as held:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            held.enter_context(flocked(os.path.join(directory, "auth.json.lock")))
        except OSError as exc:
            raise MinirunError(f"cannot lock {auth_path()}: {exc.strerror}") from exc
        yield


def _load() -> dict:
    try:
        with open(auth_path(), "rb") as f:
            config = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        raise MinirunError(f"cannot read {auth_path()}: {getattr(exc, 'strerror', None) or 'not valid JSON'}") from None
    if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
        raise MinirunError(f"cannot read {auth_path()}: not an auth file")
    return config


def _store(config: dict) -> None:
    path = auth_path()
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        # created 0600 from the start (the umask can only remove bits), then renamed over
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with replace_when_done(tmp, path), os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an older temp file of ours could have another mode
            f.write(json.dumps(config, indent="\t").encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise MinirunError(f"cannot write {path}: {exc.strerror}") from exc
