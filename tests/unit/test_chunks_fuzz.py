"""Bounded fuzzing of the chunk-index parser: whatever bytes arrive as ``chunks.json``, the parser
either returns an index whose sizes add up and whose names are plain file names, or raises
ChunkIndexError; never anything else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvdeploy.bundle.chunkindex import FILE_NAME, ChunkIndexError, parse_index

HEX = "ab" * 32
GOOD = {"format": "tvdeploy-chunks/1", "bundle": "b.tar", "size": 10, "sha256": HEX, "chunk_size": 4,
        "chunks": [{"name": "b.000", "size": 4, "sha256": HEX}, {"name": "b.001", "size": 4, "sha256": HEX},
                   {"name": "b.002", "size": 2, "sha256": HEX}]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 20) | st.text(max_size=12) | st.sampled_from(
        ["..", "/etc/passwd", "a/b", ".x", "chunks.json", "b.000", HEX]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def check(data: bytes) -> None:
    try:
        index = parse_index(data)
    except ChunkIndexError:
        return
    assert sum(c.size for c in index.chunks) == index.size
    assert all(FILE_NAME.fullmatch(c.name) and "/" not in c.name for c in index.chunks)
    assert len({c.name.lower() for c in index.chunks}) == len(index.chunks)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["format", "bundle", "size", "sha256", "chunk_size", "chunks"]), json_values,
       st.integers(0, 2), st.sampled_from(["name", "size", "sha256", None]))
def test_mutated_index(field: str, value: object, i: int, chunk_field: str | None) -> None:
    doc = json.loads(json.dumps(GOOD))
    if chunk_field is None:
        doc[field] = value
    else:
        doc["chunks"][i][chunk_field] = value
    check(json.dumps(doc).encode())


def test_the_seed_is_valid() -> None:
    assert parse_index(json.dumps(GOOD).encode()).size == 10
