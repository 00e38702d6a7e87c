"""What `bundle inventory` gathers (the signed file format is tvdeploy.bundle.inventory's)."""

from __future__ import annotations

from tvdeploy.release import site_inventory as inv

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_node_blobs_are_image_ids_and_layer_diff_ids() -> None:
    images = [{"Id": A, "RootFS": {"Layers": [B, "sha256:" + "e" * 64]}}, {"Id": "x", "RootFS": None}, {}]
    assert inv.node_blobs(images) == {A, B, "sha256:" + "e" * 64, "x"}
