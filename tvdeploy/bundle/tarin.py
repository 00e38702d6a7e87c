"""Reading a tar stream member by member, data straight into the caller's buffer.

For the build engine's ``docker save`` stream: tarfile's stream mode joins and slices every
block it reads (two extra copies of each layer); here a layer's bytes go from the socket into
one reused buffer, then to the hash and the bundle. Understands what Go's archive/tar writes:
ustar headers, pax extended headers (long names, large sizes) and GNU long names.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from tvdeploy.bundle import tarout

BLOCK = 512
MAX_META = 1024 * 1024  # pax headers and GNU long names


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int: ...


class TarStreamError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type: bytes
    size: int
    linkname: str

    def isfile(self) -> bool:
        return self.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class MemberData:
    """The data of one member: read()/readinto() stop at its end; a short source is an error."""

    def __init__(self, src: Readable, size: int) -> None:
        self.src = src
        self.remaining = size

    def readinto(self, view: memoryview) -> int:
        if not self.remaining:
            return 0
        if len(view) > self.remaining:
            view = view[: self.remaining]
        n = self.src.readinto(view)
        if not n:
            raise tarout.TruncatedSource(f"{self.remaining} bytes missing")
        self.remaining -= n
        return n

    def read(self, n: int = -1, /) -> bytes:
        n = self.remaining if n is None or n < 0 else min(n, self.remaining)
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            got += self.readinto(view[got:])
        return bytes(out)

    def skip(self) -> None:
        buf = memoryview(bytearray(min(self.remaining, tarout.CHUNK) or 1))
        while self.remaining:
            self.readinto(buf)


def _exact(src: Readable, n: int) -> bytes:
    return MemberData(src, n).read()


def members(src: Readable) -> Iterator[tuple[Member, MemberData]]:
    """Yield each member with its data; the caller may read all, part or none of it."""
    pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        header = src.read(BLOCK)
        if len(header) < BLOCK:
            raise tarout.TruncatedSource("cut inside a tar header")
        if header == b"\0" * BLOCK:
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise TarStreamError(f"bad tar header: {exc}") from None
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if info.size > MAX_META:
                raise TarStreamError("tar metadata entry too large")
            meta = _exact(src, info.size)
            _exact(src, -info.size % BLOCK)
            if info.type == tarfile.XHDTYPE:
                try:
                    pax = tarout.parse_pax(meta)
                except ValueError as exc:
                    raise TarStreamError(str(exc)) from None
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = meta.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = meta.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        size = int(pax["size"]) if "size" in pax and pax["size"].isdigit() else info.size
        name = pax.get("path") or long_name or info.name
        link = pax.get("linkpath") or long_link or info.linkname
        pax, long_name, long_link = {}, None, None
        member = Member(name, info.type, size if info.type not in (tarfile.DIRTYPE, tarfile.SYMTYPE,
                                                                   tarfile.LNKTYPE) else 0, link)
        data = MemberData(src, member.size)
        yield member, data
        data.skip()
        _exact(src, -member.size % BLOCK)
