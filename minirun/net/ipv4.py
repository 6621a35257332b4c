"""IPv4 arithmetic, pure: addresses as ints, subnets as (network, prefix). Hand-written because
the standard ipaddress module would cost ~4 ms on every start."""

from __future__ import annotations

import socket
import struct

from minirun.errors import UsageError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import NoReturn


def canonical_ip(text: str) -> str:
    """A dotted quad exactly as inet_ntop writes it, else UsageError. Not inet_aton: it takes
    "127.1", "0x7f.0.0.1", "2130706433" and "127.0.0.1 anything", and addresses given by users
    end up in nft scripts, bookings' file names and records."""
    try:
        canonical = socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: a NUL or an unencodable character
        return _bad_ip(text)
    return canonical if canonical == text else _bad_ip(text)  # (glibc's inet_pton is strict already)


def ip_to_int(text: str) -> int:
    value: int = struct.unpack("!I", socket.inet_pton(socket.AF_INET, canonical_ip(text)))[0]
    return value


def _bad_ip(text: str) -> NoReturn:
    raise UsageError(f"invalid IPv4 address: {shown_text(text)}")


def shown_text(text: str) -> str:
    """User input in a one-line message: as typed when printable, else quoted with escapes."""
    return text if text.isprintable() else repr(text)


def int_to_ip(value: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", value))


def parse_subnet(text: str) -> tuple[int, int]:
    """`10.66.0.0/16` -> (network as int, prefix length); host bits must be zero, as docker asks."""
    address, slash, length = text.partition("/")
    if not slash or not (length.isdigit() and length.isascii()) or not 0 <= int(length) <= 32:
        raise UsageError(f"invalid subnet {shown_text(text)}: want ADDRESS/PREFIX, like 10.70.0.0/24")
    prefix = int(length)
    value = ip_to_int(address)
    network = value & mask(prefix)
    if network != value:
        raise UsageError(f"invalid subnet {text}: it should be {int_to_ip(network)}/{prefix}")
    if prefix > 30:
        raise UsageError(f"invalid subnet {text}: too small for a gateway and a container (at most /30)")
    return network, prefix


def mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    shorter = min(a[1], b[1])
    return (a[0] & mask(shorter)) == (b[0] & mask(shorter))


def broadcast(network: int, prefix: int) -> int:
    return network | (~mask(prefix) & 0xFFFFFFFF)


def in_subnet(address: int, subnet: tuple[int, int]) -> bool:
    return address & mask(subnet[1]) == subnet[0]


def first_free_address(subnet: tuple[int, int], taken: set[int]) -> int | None:
    """The lowest host address of `subnet` not in `taken` (network and broadcast never count)."""
    network, prefix = subnet
    for candidate in range(network + 1, broadcast(network, prefix)):
        if candidate not in taken:
            return candidate
    return None


def free_subnet(candidates: Iterable[tuple[int, int]], used: list[tuple[int, int]]) -> tuple[int, int] | None:
    for candidate in candidates:
        if not any(overlaps(candidate, u) for u in used):
            return candidate
    return None


def mac_for(address: str) -> str:
    """docker's scheme: 02:42 and the four bytes of the address, so a MAC never repeats on a bridge."""
    return "02:42:" + ":".join(f"{b:02x}" for b in socket.inet_aton(address))
