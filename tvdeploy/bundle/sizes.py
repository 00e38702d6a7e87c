"""Byte sizes as people write them for removable media: ``100MiB``, ``4GiB``, ``700MB``, ``dvd``.

Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal units (kB, MB, GB, TB) powers of
1000, as printed on media. Units are case-insensitive (``100mib``): a bit unit is never meant
here. A few media names stand for the largest file the medium holds.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
MEDIA = {
    "cd": 700 * 1024**2,  # a 700 MB CD-R holds 703 MiB of data; leave room for the file system
    "dvd": 4_700_372_992,  # single-layer DVD±R capacity in bytes
    "dvd-dl": 8_543_666_176,  # dual-layer DVD+R
    "fat32": 4 * 1024**3 - 1,  # the largest file FAT32 (most USB sticks) can hold
}
SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", re.ASCII)
MAX_SIZE = 1024**5  # 1 PiB: anything above is a typo


def parse_size(text: str) -> int:
    """The number of bytes *text* stands for; ValueError says what is wrong."""
    lowered = text.strip().lower()
    if lowered in MEDIA:
        return MEDIA[lowered]
    m = SIZE.fullmatch(lowered)
    if not m or m.group(2) not in UNITS:
        media = ", ".join(MEDIA)
        raise ValueError(f"{text!r} is not a size (examples: 100MiB, 4GiB, 700MB, 65536; or {media})")
    try:
        value = Decimal(m.group(1)) * UNITS[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a size") from None
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if value < 1:
        raise ValueError(f"{text!r}: a size must be at least 1 byte")
    if value > MAX_SIZE:
        raise ValueError(f"{text!r}: larger than 1 PiB")
    return int(value)


def format_size(n: int) -> str:
    """``1.5 GiB``-style text for messages (binary units, one decimal)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
