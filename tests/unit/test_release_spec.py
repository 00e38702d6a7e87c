"""Release spec parsing: valid specs load; each mistake is one error naming file:line: key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvdeploy.errors import ConfigError, InputFileError
from tvdeploy.release.spec import load_release_spec, normalize_reference

VALID = """\
release: "2026.11-1"
sequence: 3
images:
  cloud: trueverit/cloud:1.0
  edge: trueverit/edge
  registry: 10.0.0.5:5000/trueverit/registry:2.8
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(text)
    return path


def test_valid_spec(tmp_path: Path) -> None:
    spec = load_release_spec(write(tmp_path, VALID))
    assert spec.release == "2026.11-1"
    assert spec.sequence == 3
    assert spec.images["registry"] == "10.0.0.5:5000/trueverit/registry:2.8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("sequence: 3", "sequence: 0"), ":2: sequence: Input should be greater than or equal to 1"),
        (VALID.replace("sequence: 3", 'sequence: "3"'), ":2: sequence: Input should be a valid integer"),
        (VALID.replace("sequence: 3", "sequence: true"), ":2: sequence: Input should be a valid integer"),
        (VALID.replace("sequence: 3\n", ""), ":1: sequence: required key is missing"),
        (VALID.replace('release: "2026.11-1"', "release: ../x"), ":1: release: not a valid release id"),
        (VALID.replace("  edge: trueverit/edge", "  Edge: trueverit/edge"), ":5: images.Edge: not a valid service name"),
        (VALID.replace("trueverit/cloud:1.0", "Trueverit/cloud:1.0"), ":4: images.cloud: not an image reference"),
        (VALID.replace("trueverit/cloud:1.0", "trueverit/cloud@sha256:" + "a" * 64),
         ":4: images.cloud: not an image reference"),
        (VALID + "extra: 1\n", ":7: extra: unknown key"),
        (VALID.replace("  edge: trueverit/edge", "  cloud: trueverit/edge"), ":5: images.cloud: duplicate key"),
        ("release: x\nsequence: 1\nimages: {}\n", ":3: images: Dictionary should have at least 1 item"),
        ("- a\n- b\n", ":1: (top level): expected a mapping"),
        ("release: [\n", "not valid YAML"),
    ],
)
def test_bad_specs_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_release_spec(path)
    assert info.value.message.startswith(str(path))
    assert expected in info.value.message


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        load_release_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("ref", "normal"),
    [("a/b", "a/b:latest"), ("a/b:1", "a/b:1"), ("h:5000/a/b", "h:5000/a/b:latest"), ("h:5000/a:2", "h:5000/a:2")],
)
def test_normalize_reference(ref: str, normal: str) -> None:
    assert normalize_reference(ref) == normal


@pytest.mark.parametrize("name", ["release-spec.yaml", "hotfix-spec.yaml"])
def test_shipped_example_specs_are_valid(name: str) -> None:
    from pathlib import Path

    from tvdeploy.release.spec import load_release_spec

    path = Path(__file__).resolve().parents[2] / "bundles" / "examples" / name
    spec = load_release_spec(path)
    assert spec.sequence >= 1 and "cloud" in spec.images
