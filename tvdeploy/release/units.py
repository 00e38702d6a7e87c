"""Compose-file units (pure): durations ("1m30s") to nanoseconds, sizes ("128M") to bytes,
CPU counts ("0.50") to NanoCPUs, file modes ("0400" or 256) to ints."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
_MULT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def duration_ns(value: str | int | float) -> int:
    """'10s' -> 10_000_000_000; a bare number is seconds (compose accepts both)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    text = str(value).strip()
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (e.g. 10s, 1m30s, 500ms)")
    return total


def size_bytes(value: str | int) -> int:
    """'128M' -> 134217728 (binary units, as docker reads them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value).strip())
    if not m:
        raise ValueError(f"not a size: {value!r} (e.g. 128M, 1G)")
    return int(float(m.group(1)) * _MULT[m.group(2).lower()])


def nano_cpus(value: str | int | float) -> int:
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a CPU count: {value!r} (e.g. '0.5')") from None
    if cpus <= 0:
        raise ValueError(f"not a CPU count: {value!r}: must be above 0")
    return int(round(cpus * 1e9))


def file_mode(value: str | int) -> int:
    """0o400, 256 or '0400' -> 256 (YAML 1.1 reads 0400 as octal already)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ValueError(f"not a file mode: {value!r} (e.g. '0400')") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"not a file mode: {value!r}")
    return mode
