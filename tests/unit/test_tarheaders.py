"""minirun.layer.tarheaders on its own: what it reads from every header format, and every malformed
header it must refuse. The input is untrusted: a refusal is a BadArchive, never another error."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from minirun.errors import BadArchive
from minirun.layer.tarheaders import BLOCK, MAX_EXTENDED, HeaderReader, TarMember, Unsupported, _byte_sum, _checksum_ok


class Mem:
    """A tar in memory, read the way a stream is: forward only, the reads of a member's headers
    without a gap (the reader promises both)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.last = 0

    def begin_member(self, offset: int) -> None:
        assert offset >= self.last
        self.last = offset

    def read_at(self, offset: int, size: int) -> bytes:
        assert offset >= self.last, "the reader went back"
        self.last = offset + size
        return self.data[offset : offset + size]


def members(data: bytes) -> list[TarMember]:
    return list(HeaderReader(Mem(data)))


def content(data: bytes, m: TarMember) -> bytes:
    return data[m.offset : m.offset + m.size]


def build(entries, fmt=tarfile.PAX_FORMAT, end=True, **kw) -> bytes:
    """entries: (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tar:
        for fields, data in entries:
            info = tarfile.TarInfo(fields.pop("name"))
            pax = fields.pop("pax", None)
            for k, v in fields.items():
                setattr(info, k, v)
            if pax:
                info.pax_headers = pax
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out = buf.getvalue()
    return out if end else out.rstrip(b"\0")  # careful: only for tars whose last byte is not NUL


def header(
    name: bytes = b"file",
    mode: bytes = b"0000644\0",
    uid: bytes = b"0000000\0",
    gid: bytes = b"0000000\0",
    size: bytes = b"00000000000\0",
    mtime: bytes = b"14533260200\0",
    type_: bytes = b"0",
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    devmajor: bytes = b"0000000\0",
    devminor: bytes = b"0000000\0",
    prefix: bytes = b"",
    chksum: bytes | None = None,
) -> bytes:
    """One raw 512-byte ustar header; the checksum is computed unless given."""
    block = bytearray(BLOCK)

    def put(offset: int, width: int, value: bytes) -> None:
        assert len(value) <= width, (value, width)
        block[offset : offset + len(value)] = value

    put(0, 100, name)
    put(100, 8, mode)
    put(108, 8, uid)
    put(116, 8, gid)
    put(124, 12, size)
    put(136, 12, mtime)
    put(156, 1, type_)
    put(157, 100, linkname)
    put(257, 8, magic)
    put(329, 8, devmajor)
    put(337, 8, devminor)
    put(345, 155, prefix)
    if chksum is None:
        block[148:156] = b" " * 8
        chksum = b"%06o\0 " % sum(block)
    put(148, 8, chksum)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def regular(name: bytes, data: bytes) -> bytes:
    return header(name=name, size=b"%011o\0" % len(data)) + padded(data)


def pax_block(records: bytes, type_: bytes = b"x") -> bytes:
    return header(name=b"PaxHeader", type_=type_, size=b"%011o\0" % len(records)) + padded(records)


def record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


END = bytes(2 * BLOCK)


# -- what is read --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["ustar", "gnu", "pax"]
)
def test_fields_of_every_type_in_every_format(fmt):
    data = build(
        [
            (dict(name="dir", type=tarfile.DIRTYPE, mode=0o2755, uid=12, gid=34, mtime=1_600_000_000), None),
            (dict(name="dir/file", mode=0o4711, uid=1000, gid=1001, mtime=1_500_000_001), b"hello world"),
            (dict(name="dir/empty", mode=0o600), b""),
            (dict(name="link", type=tarfile.SYMTYPE, linkname="dir/file", mode=0o777), None),
            (dict(name="hard", type=tarfile.LNKTYPE, linkname="dir/file"), None),
            (dict(name="null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
            (dict(name="loop", type=tarfile.BLKTYPE, devmajor=7, devminor=0), None),
            (dict(name="fifo", type=tarfile.FIFOTYPE, mode=0o640), None),
        ],
        fmt=fmt,
    )
    got = members(data)
    assert [(m.name, m.type) for m in got] == [
        ("dir/", b"5"),
        ("dir/file", b"0"),
        ("dir/empty", b"0"),
        ("link", b"2"),
        ("hard", b"1"),
        ("null", b"3"),
        ("loop", b"4"),
        ("fifo", b"6"),
    ]
    d, f, e, s, h, c, b, p = got
    assert (d.mode, d.uid, d.gid, d.mtime_ns, d.size) == (0o2755, 12, 34, 1_600_000_000 * 10**9, 0)
    assert (f.mode, f.uid, f.gid, f.mtime_ns, f.size) == (0o4711, 1000, 1001, 1_500_000_001 * 10**9, 11)
    assert content(data, f) == b"hello world" and e.size == 0
    assert (s.linkname, h.linkname) == ("dir/file", "dir/file")
    assert (c.devmajor, c.devminor, b.devmajor, b.devminor) == (1, 3, 7, 0)
    assert all(m.xattrs is None for m in got)


def test_long_names_gnu():
    long_name = "d/" + "n" * 200 + "/file"
    long_target = "t" * 300
    data = build(
        [(dict(name=long_name), b"x"), (dict(name="l" * 150, type=tarfile.SYMTYPE, linkname=long_target), None)],
        fmt=tarfile.GNU_FORMAT,
    )
    assert b"././@LongLink" in data
    f, s = members(data)
    assert (f.name, content(data, f)) == (long_name, b"x")
    assert (s.name, s.linkname) == ("l" * 150, long_target)


def test_long_names_pax_and_ustar_prefix():
    long_name = "p/" + "q" * 120 + "/file"
    pax = build([(dict(name=long_name), b"y"), (dict(name="s", type=tarfile.SYMTYPE, linkname="t" * 300), None)])
    f, s = members(pax)
    assert (f.name, content(pax, f), s.linkname) == (long_name, b"y", "t" * 300)
    ustar_name = "a" * 90 + "/" + "b" * 90  # fits as prefix + name
    ustar = build([(dict(name=ustar_name), b"z")], fmt=tarfile.USTAR_FORMAT)
    assert members(ustar)[0].name == ustar_name


def test_pax_values_win_over_the_header():
    data = build(
        [
            (
                dict(
                    name="f",
                    uid=1,
                    gid=2,
                    mtime=3,
                    pax={
                        "path": "renamed/by/pax",
                        "uid": "4000000000",
                        "gid": "4000000001",
                        "mtime": "1700000000.123456789",
                    },
                ),
                b"abc",
            )
        ]
    )
    (m,) = members(data)
    assert (m.name, m.uid, m.gid, m.mtime_ns, m.size) == (
        "renamed/by/pax",
        4_000_000_000,
        4_000_000_001,
        1_700_000_000_123_456_789,
        3,
    )
    neg = header(name=b"neg")
    data = pax_block(record(b"mtime", b"-1.5") + record(b"size", b"")) + neg + END
    assert members(data)[0].mtime_ns == -1_500_000_000  # an empty value deletes a record: size stays 0


def test_pax_size_moves_the_data_and_the_next_header():
    body = b"x" * 700
    data = (
        pax_block(record(b"size", b"700"))
        + header(name=b"big", size=b"00000000000\0")
        + padded(body)
        + header(name=b"next")
        + END
    )
    big, nxt = members(data)
    assert (big.size, content(data, big), nxt.name) == (700, body, "next")


def test_xattrs_schily_and_libarchive():
    data = build(
        [
            (
                dict(
                    name="f",
                    pax={
                        "SCHILY.xattr.user.plain": "v",
                        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02 \udcff\udc80",  # raw bytes, not UTF-8
                        "SCHILY.xattr.user.empty": "",
                        "LIBARCHIVE.xattr.user.pct%20name": "aGVsbG8",  # base64 without its padding
                    },
                ),
                b"",
            )
        ]
    )
    (m,) = members(data)
    assert m.xattrs == {
        "user.plain": b"v",
        "security.capability": b"\x01\x00\x00\x02 \xff\x80",
        "user.empty": b"",
        "user.pct name": b"hello",
    }


def test_base256_numbers_and_gnu_big_ids():
    data = build([(dict(name="f", uid=10_000_000, gid=3_000_000_000, mtime=1), b"q")], fmt=tarfile.GNU_FORMAT)
    (m,) = members(data)
    assert (m.uid, m.gid) == (10_000_000, 3_000_000_000)
    size = b"\x80" + (5).to_bytes(11, "big")
    data = header(name=b"b256", size=size) + padded(b"12345") + END
    (m,) = members(data)
    assert (m.size, content(data, m)) == (5, b"12345")
    old = header(name=b"old", mtime=b"\xff" * 12)  # -1 in two's complement
    assert members(old + END)[0].mtime_ns == -1_000_000_000


def test_number_fields_with_spaces_and_no_terminator():
    data = (
        header(name=b"sp", mode=b"   644 \0", uid=b"       ", size=b"00000000003 ", mtime=b"777777777777")
        + padded(b"abc")
        + END
    )
    (m,) = members(data)
    assert (m.mode, m.uid, m.size, m.mtime_ns) == (0o644, 0, 3, 0o777777777777 * 10**9)


def test_signed_checksum_accepted():
    block = bytearray(header(name="é".encode()))
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b >= 128 else b for b in block)
    block[148:156] = b"%06o\0 " % signed
    assert members(bytes(block) + END)[0].name == "é"


def test_byte_sum_is_exact():
    for size in (1, 100, 148, 256):
        assert _byte_sum(b"\xff" * size) == 255 * size
        for _ in range(200):
            piece = os.urandom(size)
            assert _byte_sum(piece) == sum(piece)
    block = os.urandom(BLOCK)
    stored = sum(block[:148]) + 256 + sum(block[156:])
    assert _checksum_ok(block, stored) and not _checksum_ok(block, stored + 1)


def test_old_style_directory_and_header_only_sizes():
    data = (
        header(name=b"olddir/", type_=b"\0")
        + header(name=b"sym", type_=b"2", linkname=b"t", size=b"00000001000\0")
        + header(name=b"after")
        + END
    )
    d, s, a = members(data)
    assert (d.type, d.name, s.size, a.name) == (b"5", "olddir/", 0, "after")  # no data after a symlink


def test_ends():
    one = regular(b"only", b"1")
    assert [m.name for m in members(one + END)] == ["only"]
    assert [m.name for m in members(one + bytes(BLOCK) + b"trailing garbage")] == ["only"]  # first zero block ends it
    assert [m.name for m in members(one)] == ["only"]  # no end marker: ends at a header boundary
    assert members(END * 5) == []  # an empty archive (docker's empty layer)
    with pytest.raises(BadArchive, match="empty"):
        members(b"")


def test_reader_only_moves_forward_and_reports_unsupported_from_the_first_block():
    before = regular(b"before", b"data")
    sparse_pax = pax_block(record(b"GNU.sparse.major", b"1") + record(b"GNU.sparse.minor", b"0"))
    data = before + sparse_pax + header(name=b"sparse") + END
    reader = HeaderReader(Mem(data))
    assert reader.next().name == "before"  # type: ignore[union-attr]
    with pytest.raises(Unsupported) as caught:
        reader.next()
    assert caught.value.start == len(before)


@pytest.mark.parametrize("type_", [b"S", b"g", b"X", b"V", b"M", b"D", b"N", b"Z"])
def test_other_types_are_left_to_tarfile(type_):
    data = header(name=b"ok") + header(name=b"odd", type_=type_) + END
    reader = HeaderReader(Mem(data))
    reader.next()
    with pytest.raises(Unsupported) as caught:
        reader.next()
    assert caught.value.start == BLOCK


# -- what is refused -----------------------------------------------------------------------

GOOD = regular(b"fine", b"x")


def flipped(block: bytes, offset: int) -> bytes:
    raw = bytearray(block)
    raw[offset] ^= 0x01
    return bytes(raw)


# Complete inputs: those that must fail before the end carry no end marker.
MALFORMED = {
    "bad-checksum-name": flipped(header(name=b"evil"), 3),
    "bad-checksum-size": flipped(header(name=b"evil", size=b"00000000001\0"), 134),
    "checksum-not-octal": header(chksum=b"01234x\0 "),
    "mode-not-octal": header(mode=b"0000a44\0"),
    "mode-with-9": header(mode=b"0000694\0"),
    "uid-inner-space": header(uid=b"00 0001\0"),
    "gid-sign": header(gid=b"-000001\0"),
    "size-sign": header(size=b"+0000000001\0"),
    "size-underscore": header(size=b"0000_000001\0"),
    "size-hex": header(size=b"0x000000001\0"),
    "size-negative-base256": header(size=b"\xff" * 12),
    "mtime-not-octal": header(mtime=b"1453326020z\0"),
    "base256-bad-marker": header(size=b"\x81" + bytes(11)),
    "uid-too-big": header(uid=b"\x80" + (1 << 32).to_bytes(7, "big")),
    "uid-minus-one": header(uid=b"\x80" + (0xFFFFFFFF).to_bytes(7, "big")),
    "devmajor-not-octal": header(type_=b"3", devmajor=b"00000z1\0"),
    "truncated-header": header()[:300],
    "truncated-after-member": GOOD + header()[:511],
    "pax-length-not-a-number": pax_block(b"1x path=a\n") + header(),
    "pax-length-too-long": pax_block(b"99 path=a\n") + header(),
    "pax-length-too-short": pax_block(b"3 path=a\n") + header(),
    "pax-no-newline": pax_block(b"11 path=abc") + header(),
    "pax-no-equals": pax_block(b"9 pathab\n") + header(),
    "pax-empty-keyword": pax_block(b"7 =abc\n") + header(),
    "pax-garbage-after-padding": pax_block(record(b"path", b"a") + b"\0\0junk") + header(),
    "pax-size-not-decimal": pax_block(record(b"size", b"12a")) + header(),
    "pax-size-negative": pax_block(record(b"size", b"-1")) + header(),
    "pax-uid-not-decimal": pax_block(record(b"uid", b" 1")) + header(),
    "pax-uid-too-big": pax_block(record(b"uid", b"4294967295")) + header(),
    "pax-mtime-not-a-time": pax_block(record(b"mtime", b"yesterday")) + header(),
    "pax-libarchive-xattr-bad-base64": pax_block(record(b"LIBARCHIVE.xattr.user.x", b"a")) + header(),
    "pax-then-end-marker": pax_block(record(b"path", b"a")) + END,
    "pax-then-eof": pax_block(record(b"path", b"a")),
    "pax-data-truncated": header(name=b"PaxHeader", type_=b"x", size=b"00000001000\0") + b"20 path=aaaaaaaaaaa\n",
    "two-pax-for-one-member": pax_block(record(b"path", b"a")) + pax_block(record(b"path", b"b")) + header(),
    "two-longnames-for-one-member": pax_block(b"a\0", b"L") + pax_block(b"b\0", b"L") + header(),
    "two-longlinks-for-one-member": pax_block(b"a\0", b"K") + pax_block(b"b\0", b"K") + header(),
    "longname-then-eof": pax_block(b"a\0", b"L"),
    "longname-too-big": header(name=b"././@LongLink", type_=b"L", size=b"%011o\0" % (MAX_EXTENDED + 1)) + bytes(BLOCK),
    "garbage": b"this is not a tar archive at all" * 40,
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_headers_are_refused(data):
    with pytest.raises(BadArchive) as caught:
        members(data)
    assert str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_headers_are_refused_after_a_good_member(data):
    """tarfile ends the archive quietly at a bad header past the first; this reader refuses."""
    with pytest.raises(BadArchive):
        members(GOOD + data)
