"""An image archive as `load` reads it: the outer tar indexed by member name (offset and size,
never extracted), and the plans made from it (each image's config and where each of its layers
lies in the archive), with the progress load reports.

imageload reads the archive and makes the plans; layerworkers unpacks the layers they locate.
Both take these types from here, so neither imports the other's module for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from minirun.errors import BadArchive
from minirun.image.manifests import load_json
from minirun.records import Record

if TYPE_CHECKING:
    from minirun.store.reference import Reference

# Limits on what the index may make this process hold (a crafted archive is small compressed):
_MAX_FILES = 100_000  # files and links in the archive (directories are not kept)
_MAX_NAME_BYTES = 16 << 20  # their names and link targets, in all


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """What load reports while it works; the CLI draws it (or not)."""

    def spooled(self, nbytes: int) -> None:
        pass

    def layer_started(self, key: str, total: int) -> None:
        pass

    def layer_advanced(self, key: str, nbytes: int) -> None:
        pass

    def layer_finished(self, key: str, note: str) -> None:
        pass


# -- the outer archive -------------------------------------------------------------------------


class Member(NamedTuple):  # a dict key (imageload's configs): hashable, as a frozen dataclass
    name: str
    offset: int  # of the data, in the archive file
    size: int


class Archive:
    """An uncompressed tar file, indexed by member name; read at random, never extracted."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.members: dict[str, Member] = {}
        self._links: dict[str, str] = {}
        self._name_bytes = 0
        self._index()

    def _index(self) -> None:
        """Headers by minirun.layer.tarheaders, which holds no extended header above MAX_EXTENDED in
        memory (tarfile reads whatever size a PAX or GNU long-name header claims: a crafted 1 MB
        archive made it take gigabytes); from a member it does not handle on, tarfile through
        tarheaders.open_tarfile, which refuses any single read of that size."""
        from minirun.layer.tarheaders import BLOCK, HeaderReader, Unsupported

        reader = HeaderReader(_PreadSource(self.fd, self.size))
        try:
            try:
                for member in reader:
                    self._add(member.name, member.type, member.linkname, member.offset, member.size)
                end = reader.pos
            except Unsupported as rest:
                end = self._index_with_tarfile(rest.start)
        except BadArchive as exc:
            if exc.message.startswith(("truncated archive", "not an image archive")):
                raise
            raise BadArchive(f"invalid archive: {exc.message}") from None
        # The end-of-archive block must be there: without it the archive was cut short.
        if os.pread(self.fd, BLOCK, end) != bytes(BLOCK):
            raise BadArchive("truncated or corrupt archive: no end-of-archive marker after the last member")
        for name in self._links:
            target = self._resolve(name, self._links)
            if target is not None:
                self.members[name] = Member(name, target.offset, target.size)

    def _index_with_tarfile(self, start: int) -> int:
        """The members from `start` on, by tarfile (PAX global headers, sparse files, ...);
        returns where the end-of-archive block must be."""
        import tarfile

        from minirun.layer.tarheaders import open_tarfile

        raw = os.fdopen(self.reopen(), "rb")  # its own offset
        try:
            raw.seek(start)
            with open_tarfile(raw, start) as tar:
                while (info := tar.next()) is not None:
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every TarInfo it read; nothing here needs them
                    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
                        continue  # its data is not where it could be read from: not an image file
                    kind = b"0" if info.isreg() else b"2" if info.issym() else b"1" if info.islnk() else b"5"
                    self._add(info.name, kind, info.linkname, info.offset_data, info.size)
                return tar.offset
        except tarfile.TarError as exc:
            raise BadArchive(str(exc) or type(exc).__name__) from None
        finally:
            raw.close()

    def _add(self, raw_name: str, kind: bytes, linkname: str, offset: int, size: int) -> None:
        """Index one member: regular files by name, links to resolve once all are known."""
        from minirun.layer.tarheaders import REGULAR_TYPES

        if kind not in REGULAR_TYPES and kind not in (b"1", b"2"):
            return  # directories and the like name nothing to read
        name = clean_name(raw_name)
        self._name_bytes += len(name) + len(linkname)
        if len(self.members) + len(self._links) >= _MAX_FILES or self._name_bytes > _MAX_NAME_BYTES:
            raise BadArchive(
                f"not an image archive: more than {_MAX_FILES} files, or names of more than {_MAX_NAME_BYTES >> 20} MiB"
            )
        if kind == b"2":
            target = linkname if linkname.startswith("/") else os.path.join(os.path.dirname(name), linkname)
            self._links[name] = clean_name(os.path.normpath(target))
        elif kind == b"1":
            self._links[name] = clean_name(linkname)
        else:
            if offset + size > self.size:
                raise BadArchive(f"truncated archive: {name} ends past the end of the file")
            self.members[name] = Member(name, offset, size)

    def _resolve(self, name: str, links: dict[str, str]) -> Member | None:
        for _ in range(16):  # a loop of links names nothing
            name = links.get(name, name)
            if name in self.members:
                return self.members[name]
            if name not in links:
                return None
        return None

    def has(self, name: str) -> bool:
        return name in self.members

    def member(self, name: str, what: str) -> Member:
        try:
            return self.members[clean_name(name)]
        except KeyError:
            raise BadArchive(f"{what}: {name} is missing from the archive") from None

    def read(self, name: str, what: str, limit: int) -> bytes:
        """A small member (a JSON document) whole; one above `limit` bytes is not what it claims."""
        member = self.member(name, what)
        if member.size > limit:
            raise BadArchive(f"{what}: {name} is too large ({member.size} bytes, at most {limit})")
        data = os.pread(self.fd, member.size, member.offset)
        if len(data) != member.size:
            raise BadArchive(f"truncated archive: {name} is cut short")
        return data

    def reopen(self) -> int:
        """A new file description of the archive (its own offset), for one worker thread."""
        return os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)


class _PreadSource:
    """The archive's header blocks for tarheaders.HeaderReader, by pread: member data between
    them is never read while indexing."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size

    def begin_member(self, offset: int) -> None:
        pass

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        return os.pread(self.fd, size, offset) if size else b""


def clean_name(name: str) -> str:
    """A member name as the index keys it: no `./` in front, no `/` at either end."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def blob_path(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


# -- what the archive holds --------------------------------------------------------------------


class LayerPlan(Record):
    diff_id: str  # what the config says the layer is
    member: Member
    blob_digest: str | None  # what the archive says the member's bytes hash to, when it says
    what: str  # how error messages name it


class ImagePlan(Record):
    id: str  # the config's digest
    raw_config: bytes
    diff_ids: list[str]
    layers: list[LayerPlan]
    names: dict[Reference, None]  # ordered, each once
    DEFAULTS = {"names": dict}

    @property
    def refs(self) -> list[Reference]:
        return list(self.names)

    def config(self) -> dict:
        """Parsed when committed, one image at a time: a parsed config can take many times its
        size (plans hold the bytes only, at most imageload's _MAX_CONFIGS of them)."""
        return load_json(self.raw_config, "image config")
