"""Every container of the store in one read (`ps`): the records come from one index file, each
entry checked against a stat of the two files it was read from, so the index is a cache and never
a second truth: what is listed, and in which state, is what the records say.

`containers.index` at the store's root (not in containers/, where `system check` takes any other
name for debris), mode 0600 (records hold env values): {id: [config stamp, state stamp, config,
state]}, a stamp being [inode, size, mtime ns, ctime ns] of the file when it was read, the config
without the fields ContainerConfig.from_json fills in itself (a third of it to load). In marshal's
format, not JSON: `json` and the `re` it imports are ~5 ms of ps's start, marshal is built in and
loads as fast. marshal's format is the interpreter's own and it trusts what it reads: so the file
starts with a line naming the format, the interpreter's version, the config defaults (a later
minirun may change one) and a CRC of the rest, and an index whose line is not exactly that is not read (the store is root's alone, as is every record in it).
A listing
- lists containers/ (which containers exist is never the index's say) and stats both records of
  each: a container without config.json is debris, never listed (Containers.ids);
- takes the cached records of an entry whose two stamps match, checked as a load checks them;
- reads the records of every other container (new, changed, its entry damaged) as Containers.load
  does, a damaged record becoming docker's `dead` stand-in (load_or_dead), which is never cached;
- writes a whole new index by rename when what it may cache differs from what it found; a
  read-only or full store only costs the next listing the reads.

A stamp can be trusted because every write of a record either replaces the file (atomicfile.py:
a new inode, a new ctime) or, on a full disk, rewrites it in place (a new mtime and ctime). The one
blind spot is two writes within one tick of the file system's clock, the second landing on the
first's recycled inode with the same size; so a record is cached only once its times are
SETTLED_NS older than the listing's start (git's "racily clean" rule): any later write carries a
later ctime. A young record is read afresh by every listing until it settles.

Two listings at once each rename a whole index into place; either is right, every entry carrying
its own stamps. A container started meanwhile has a new state.json, so a new stamp: it is read.
"""

from __future__ import annotations

import marshal
import os
import sys
import time
import zlib

from minirun.atomicfile import atomic_write
from minirun.containers.container import DEFAULTS_TAG, Container, Containers, without_defaults
from minirun.errors import DamagedRecord, NotFound, UsageError
from minirun.store.fsutil import read_capped, read_record

INDEX_NAME = "containers.index"
# the format; the interpreter and marshal versions; the config defaults its entries leave out
_FORMAT = (1, sys.hexversion, marshal.version, zlib.crc32(DEFAULTS_TAG))
HEADER = b"minirun containers index %d python %x marshal %d defaults %08x crc " % _FORMAT
SETTLED_NS = 2_000_000_000  # past any file system's timestamp granularity (FAT's is 2 s)
INDEX_LIMIT = 256 << 20  # a bigger index is not written (and one found is not read): records are

TYPE_CHECKING = False  # typing costs ~4 ms of ps's start
if TYPE_CHECKING:
    Stamp = list[int]


def index_path(containers: Containers) -> str:
    return os.path.join(containers.store.root, INDEX_NAME)


def listing(containers: Containers) -> list[Container]:
    """Containers.all(), in the same order and with the same stand-ins, through the index."""
    started = time.time_ns()
    path = index_path(containers)
    cached = _read_index(path)
    entries: dict[str, object] = {}
    found: list[Container] = []
    added = False
    for id_ in _names(containers.dir):
        stamps = _stamps(f"{containers.dir}/{id_}")
        if stamps is None:
            continue  # debris: no config.json
        entry = cached.get(id_)
        container = _cached(containers, id_, entry, stamps) if entry is not None else None
        if container is not None:
            found.append(container)
            entries[id_] = entry
            continue
        container, records = _read(containers, id_)
        if container is None:
            continue  # removed meanwhile
        found.append(container)
        if records is not None and _settled(stamps, started):
            entries[id_] = [*stamps, without_defaults(records[0]), records[1]]
            added = True
    if added or cached.keys() - entries.keys():
        _write_index(path, entries)
    return found


def _names(directory: str) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if len(name) == 64]
    except FileNotFoundError:
        return []


def _stamps(directory: str) -> tuple[Stamp, Stamp | None] | None:
    """(config.json's stamp, state.json's or None where it cannot be stat'ed); None without config.json."""
    try:  # f-strings, not os.path.join: a hundred containers make this ps's busiest line
        config = os.stat(f"{directory}/config.json")
    except OSError:
        return None
    try:
        state = os.stat(f"{directory}/state.json")
    except OSError:
        return _stamp(config), None
    return _stamp(config), _stamp(state)


def _stamp(st: os.stat_result) -> Stamp:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _settled(stamps: tuple[Stamp, Stamp | None], started: int) -> bool:
    config, state = stamps
    return state is not None and max(config[2], config[3], state[2], state[3]) < started - SETTLED_NS


def _cached(containers: Containers, id_: str, entry: object, stamps: tuple[Stamp, Stamp | None]) -> Container | None:
    """The container from its entry if the entry is whole and its stamps are the files' now."""
    if not (isinstance(entry, list) and len(entry) == 4 and entry[0] == stamps[0] and entry[1] == stamps[1]):
        return None
    try:
        container = containers.from_records(id_, entry[2], entry[3])
    except DamagedRecord:  # the entry is: the files were good when cached
        return None
    return container if container.id == id_ else None


def _read(containers: Containers, id_: str) -> tuple[Container | None, tuple[dict, dict] | None]:
    """The container from its files, and the records to cache (None for a stand-in); (None, None)
    for one that is gone."""
    directory = os.path.join(containers.dir, id_)
    try:
        config = read_record(os.path.join(directory, "config.json"))
        state = read_record(os.path.join(directory, "state.json"))
        return containers.from_records(id_, config, state), (config, state)
    except (FileNotFoundError, DamagedRecord):
        pass
    try:  # the owner's reading of what is odd: damaged is `dead`, half-removed is gone
        return containers.load_or_dead(id_), None
    except NotFound:
        return None, None


def _read_index(path: str) -> dict:
    """The cached entries; none where the index is missing, damaged or another version's."""
    try:
        data = read_capped(path, INDEX_LIMIT, "index")
    except (OSError, UsageError):
        return {}
    line, _, payload = data.partition(b"\n")
    if line != HEADER + b"%08x" % zlib.crc32(payload):
        return {}
    try:
        entries = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_index(path: str, entries: dict[str, object]) -> None:
    payload = marshal.dumps(entries)
    data = HEADER + b"%08x\n" % zlib.crc32(payload) + payload
    try:
        if len(data) > INDEX_LIMIT:
            os.unlink(path)  # too big to read back: the records are read instead
        else:
            atomic_write(path, data, mode=0o600, durable=False)
    except OSError:
        pass  # read-only or full: a cache, and the next listing reads the records
