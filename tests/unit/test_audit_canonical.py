"""Canonical JSON: one byte form per value, so hashes and signatures verify anywhere."""

from __future__ import annotations

import pytest

from tvdeploy.audit.canonical import CanonicalError, canonical_json, is_canonical

CASES = [
    ({}, b"{}"),
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ({"z": {"y": [3, 2, 1], "x": None}}, b'{"z":{"x":null,"y":[3,2,1]}}'),
    ({"t": True, "f": False, "n": -7}, b'{"f":false,"n":-7,"t":true}'),
    ({"u": "é ü 日本"}, '{"u":"é ü 日本"}'.encode()),  # UTF-8, not \\u escapes
    ({"q": 'a"b\\c\n'}, b'{"q":"a\\"b\\\\c\\n"}'),
    ({"big": 2**70}, b'{"big":1180591620717411303424}'),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_canonical_bytes(value, expected) -> None:
    assert canonical_json(value) == expected
    assert is_canonical(expected)


def test_key_order_does_not_matter() -> None:
    a = {"seq": 1, "event": "vm.create", "objects": [{"type": "vm", "name": "n"}]}
    b = {"objects": [{"name": "n", "type": "vm"}], "event": "vm.create", "seq": 1}
    assert canonical_json(a) == canonical_json(b)


def test_stable_across_calls() -> None:
    value = {"k": ["x", {"b": None, "a": 1}], "é": "ü"}
    assert len({canonical_json(value) for _ in range(20)}) == 1


@pytest.mark.parametrize(
    "value",
    [{"f": 1.5}, {"f": float("nan")}, {"l": [0.0]}, {1: "int key"}, {"s": {1, 2}}, {"b": b"bytes"}],
    ids=["float", "nan", "float-in-list", "int-key", "set", "bytes"],
)
def test_values_without_canonical_form_are_refused(value) -> None:
    with pytest.raises(CanonicalError):
        canonical_json(value)


def test_too_deep_is_refused() -> None:
    value: dict = {}
    for _ in range(40):
        value = {"a": value}
    with pytest.raises(CanonicalError):
        canonical_json(value)


@pytest.mark.parametrize(
    "line",
    [b'{"b":1,"a":2}', b'{"a": 2}', b'{"a":1.0}', b'{"a":1,"a":1}', b"not json", b'{"a":"\\u00e9"}'],
    ids=["unsorted", "space", "float", "duplicate-key", "garbage", "ascii-escape"],
)
def test_non_canonical_lines_are_detected(line) -> None:
    assert not is_canonical(line)
