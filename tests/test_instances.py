"""segr1.instances: instance maps, components, representative points and instance matching."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segr1.instances import (
    connected_components,
    decode_instance_map,
    inscribed_point,
    instance_masks,
    mask_iou_matrix,
    match_instances,
    objects_from_masks,
    two_points,
)


def disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_instance_map_forms(tmp_path):
    arr = np.zeros((6, 8), np.uint8)
    arr[1:3, 1:3], arr[4:6, 5:8] = 1, 2
    path = tmp_path / "inst.png"
    path.write_bytes(png(arr))
    wide = arr.astype(np.uint16) * 300  # 16-bit ids
    for value in (arr, png(arr), str(path), path, {"bytes": png(arr), "path": None}, Image.fromarray(arr)):
        np.testing.assert_array_equal(decode_instance_map(value), arr)
    np.testing.assert_array_equal(decode_instance_map(png(wide)), wide.astype(np.int32))
    assert decode_instance_map(arr == 1).max() == 1
    for bad, match in (
        (np.zeros((4, 4, 3), np.uint8), "integer array"),
        (Image.new("RGB", (4, 4)), "single-channel"),
        (np.full((2, 2), -1), ">= 0"),
        (np.zeros((2, 2), np.float32), "integer"),
        ([[1, 2]], "cannot read"),
    ):
        with pytest.raises(ValueError, match=match):
            decode_instance_map(bad)


def test_instance_masks_and_components():
    arr = np.zeros((10, 12), np.int32)
    arr[0:3, 0:3], arr[5:9, 6:12] = 7, 2
    ids, masks = instance_masks(arr)
    assert ids == [2, 7] and masks[0].sum() == 24 and masks[1].sum() == 9
    mask = arr > 0
    mask[9, 0] = True  # a 1-pixel speck
    comps = connected_components(mask)
    assert [int(c.sum()) for c in comps] == [24, 9, 1]
    assert [int(c.sum()) for c in connected_components(mask, min_pixels=2)] == [24, 9]
    diag = np.eye(4, dtype=bool)  # 8-connected: one component
    assert len(connected_components(diag)) == 1
    assert connected_components(np.zeros((3, 3), bool)) == []
    with pytest.raises(ValueError):
        connected_components(mask, min_pixels=0)


def _brute_inscribed(mask: np.ndarray) -> tuple[int, int]:
    """Independent reference: the mask pixel with the largest distance to any background pixel (first in
    row-major order), background = the zeros inside the array (scipy's convention)."""
    bg = np.argwhere(~mask)
    best, best_d = None, -1.0
    for y, x in np.argwhere(mask):
        d = np.min(np.hypot(bg[:, 0] - y, bg[:, 1] - x)) if len(bg) else np.inf
        if d > best_d:
            best, best_d = (int(x), int(y)), d
    return best


@pytest.mark.parametrize("seed", range(6))
def test_inscribed_point_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((24, 30), bool)
    for _ in range(3):
        x, y = rng.integers(2, 26), rng.integers(2, 20)
        mask[y : y + rng.integers(2, 8), x : x + rng.integers(2, 10)] = True
    np.testing.assert_array_equal(inscribed_point(mask), _brute_inscribed(mask))


def test_points_of_simple_shapes():
    rect = np.zeros((20, 30), bool)
    rect[5:10, 4:21] = True  # rows 5..9, cols 4..20: the centre row is 7
    x, y = inscribed_point(rect)
    assert y == 7 and 6 <= x <= 18
    assert inscribed_point(np.zeros((3, 3), bool)) is None and two_points(np.zeros((3, 3), bool)) is None
    dumbbell = disc(40, 80, 20, 20, 12) | disc(40, 80, 60, 20, 8)
    p = two_points(dumbbell)
    np.testing.assert_array_equal(p[0], [20, 20])  # centre of the larger disc
    assert abs(p[1][0] - 60) <= 1 and abs(p[1][1] - 20) <= 1  # the smaller disc's centre
    single = np.zeros((5, 5), bool)
    single[2, 3] = True
    np.testing.assert_array_equal(two_points(single), [[3, 2], [3, 2]])


def test_objects_from_masks():
    a, b = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    a[1:4, 2:7], b[6:9, 6:9] = True, True
    boxes, points = objects_from_masks([a, np.zeros((10, 10), bool), b])
    np.testing.assert_array_equal(boxes, [[2, 1, 6, 3], [6, 6, 8, 8]])
    assert points.shape == (2, 1, 2)
    np.testing.assert_array_equal(points[1, 0], [7, 7])
    assert objects_from_masks([a, b], points_per_object=2)[1].shape == (2, 2, 2)
    assert objects_from_masks([])[0].shape == (0, 4)
    with pytest.raises(ValueError):
        objects_from_masks([a], points_per_object=3)


def test_mask_iou_matrix_and_matching():
    h, w = 30, 60
    gt = [disc(h, w, 10, 15, 6), disc(h, w, 30, 15, 6), disc(h, w, 50, 15, 6)]
    pred = [gt[2], gt[0] | gt[1], np.zeros((h, w), bool)]
    iou = mask_iou_matrix(pred, gt)
    assert iou.shape == (3, 3)
    np.testing.assert_allclose(iou[0], [0, 0, 1])
    np.testing.assert_allclose(iou[1, :2], [0.5, 0.5])
    assert iou[2].sum() == 0
    pairs = match_instances(iou)
    assert (0, 2) in pairs and len([p for p in pairs if p[0] == 1]) == 1
    assert all(iou[r, c] > 0 for r, c in pairs)  # the empty prediction is not paired
    assert match_instances(iou, min_score=0.6) == [(0, 2)]
    assert match_instances(np.zeros((0, 3))) == [] and mask_iou_matrix([], gt).shape == (0, 3)
    with pytest.raises(ValueError, match="differ in size"):
        mask_iou_matrix([np.zeros((2, 2), bool)], [np.zeros((3, 3), bool)])
