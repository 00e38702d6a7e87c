"""The size parser of ``bundle split --size``: data-driven, good and bad spellings."""

from __future__ import annotations

import pytest

from tvdeploy.bundle.sizes import format_size, parse_size

GOOD = [
    ("100MiB", 100 * 1024**2),
    ("4GiB", 4 * 1024**3),
    ("700MB", 700_000_000),
    ("700mb", 700_000_000),
    ("1.5GiB", 1536 * 1024**2),
    ("65536", 65536),
    ("512B", 512),
    ("1k", 1000),
    ("1KiB", 1024),
    (" 2 TiB ", 2 * 1024**4),
    ("dvd", 4_700_372_992),
    ("DVD", 4_700_372_992),
    ("fat32", 4 * 1024**3 - 1),
    ("cd", 700 * 1024**2),
]

BAD = [
    ("", "is not a size"),
    ("MiB", "is not a size"),
    ("100 MiBs", "is not a size"),
    ("-1MiB", "is not a size"),
    ("1e6", "is not a size"),
    ("0", "at least 1 byte"),
    ("0.5", "whole number of bytes"),
    ("1.0000001KiB", "whole number of bytes"),
    ("2PiB", "is not a size"),
    ("5000TiB", "larger than 1 PiB"),
    ("100Mb/s", "is not a size"),
    ("１００MiB", "is not a size"),  # full-width digits
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_size_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                        (100 * 1024**2, "100.0 MiB"), (5 * 1024**4, "5.0 TiB")])
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text
