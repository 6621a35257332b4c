"""Which repositories of which registries are known to hold a blob (docker's v2 metadata), so that
push can ask a registry to mount a blob from a sibling repository instead of uploading it again.

`<store>/distribution.json`: `{digest: ["host/repo", ...]}`, newest first, a few per digest,
written under the store lock. A stale entry costs nothing: the registry answers a mount it cannot
do by opening an ordinary upload. Entries for blobs the store no longer has are pruned on write.
"""

from __future__ import annotations

import json
import os

from minirun.store.fsutil import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.store import Store

_FILE = "distribution.json"
_KEEP = 4


def _path(store: Store) -> str:
    return os.path.join(store.root, _FILE)


def _load(store: Store) -> dict[str, list[str]]:
    try:
        with open(_path(store), "rb") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sources(store: Store, host: str, digest: str, exclude_repo: str) -> list[str]:
    """Repositories on `host` (other than `exclude_repo`) known to have `digest`."""
    prefix = host + "/"
    found = []
    for entry in _load(store).get(digest, []):
        if isinstance(entry, str) and entry.startswith(prefix) and entry[len(prefix) :] != exclude_repo:
            found.append(entry[len(prefix) :])
    return found


def remember(store: Store, host: str, repo: str, digests: list[str]) -> None:
    entry = f"{host}/{repo}"
    with store.locked():
        data = _load(store)
        for digest in digests:
            known = [e for e in data.get(digest, []) if e != entry]
            data[digest] = [entry] + known[: _KEEP - 1]
        live = set(store.layers.all_ids()) | set(store.images.ids())
        data = {digest: entries for digest, entries in data.items() if digest in live}
        atomic_write(_path(store), json.dumps(data, sort_keys=True).encode(), mode=0o600, durable=False)
