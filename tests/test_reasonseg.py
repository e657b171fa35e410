"""segr1.data.reasonseg on tiny ReasonSeg splits written in the real format (X.jpg + LabelMe-style X.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.data.benchmarks import load_benchmark
from segr1.data.check import check_root, format_report
from segr1.data.reasonseg import ReasonSegDataset, rasterize_shapes

W, H = 40, 30


def _shape(label: str, points: list[list[float]]) -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}


def _rect(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _write(
    folder: Path, stem: str, anno: dict | bytes, size=(W, H), exif_orientation: int | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (120, 80, 40))
    if exif_orientation is None:
        image.save(folder / f"{stem}.jpg")
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(folder / f"{stem}.jpg", exif=exif)
    data = anno if isinstance(anno, bytes) else json.dumps(anno).encode("utf-8")
    (folder / f"{stem}.json").write_bytes(data)


ANNO_A = {
    "text": ["What part of the table would you put a cup on?", "Where does a cup go?"],
    "is_sentence": True,
    "shapes": [
        _shape("target", _rect(5, 5, 30, 25)),
        _shape("ignore", _rect(10, 10, 15, 15)),
        _shape("flag", _rect(0, 0, 39, 29)),  # deprecated annotation: must be dropped
    ],
}
ANNO_B = {
    "text": "the cat",  # a single string, a short phrase
    "is_sentence": False,
    "shapes": [
        _shape("ignore", _rect(0, 0, 20, 20)),
        _shape("target", [[2.9, 2.9], [8.7, 2.2], [8.9, 6.99], [2.1, 6.5]]),  # floats, truncated like LISA
    ],
}


def _expected_a() -> tuple[np.ndarray, np.ndarray]:
    """Hand-drawn: OpenCV polygons at integer vertices include their boundary pixels."""
    target = np.zeros((H, W), dtype=bool)
    target[5:26, 5:31] = True
    ignore = np.zeros((H, W), dtype=bool)
    ignore[10:16, 10:16] = True
    return target & ~ignore, ignore


def _expected_b() -> tuple[np.ndarray, np.ndarray]:
    ignore = np.zeros((H, W), dtype=bool)
    ignore[0:21, 0:21] = True
    target = np.zeros((H, W), dtype=bool)
    target[2:7, 2:9] = True  # vertices (2,2) (8,2) (8,6) (2,6) after truncation; drawn last (smaller)
    return target, ignore & ~target


@pytest.fixture
def root(tmp_path: Path) -> Path:
    val = tmp_path / "ReasonSeg" / "val"
    _write(val, "a_table", ANNO_A)
    _write(val, "b_cat", ANNO_B)
    (val / "c_orphan.jpg").write_bytes((val / "a_table.jpg").read_bytes())  # no JSON: skipped
    _write(tmp_path / "ReasonSeg" / "test", "t1", ANNO_A)
    return tmp_path


def test_masks_and_ignore_match_hand_drawn(root):
    ds = ReasonSegDataset(root, split="val")
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a.id == "a_table" and a.task == "reasoning"
    assert a.text == ANNO_A["text"][0]  # LISA evaluates the first query
    assert a.image == root / "ReasonSeg/val/a_table.jpg"
    exp_target, exp_ignore = _expected_a()
    assert a.mask.dtype == bool and a.mask.shape == (H, W)
    np.testing.assert_array_equal(a.mask, exp_target)
    np.testing.assert_array_equal(a.meta["ignore"], exp_ignore)
    assert a.meta["is_sentence"] is True and a.meta["split"] == "val" and a.meta["dataset"] == "reasonseg"

    exp_target, exp_ignore = _expected_b()
    assert b.text == "the cat" and b.meta["is_sentence"] is False
    np.testing.assert_array_equal(b.mask, exp_target)  # the smaller target wins inside the larger ignore
    np.testing.assert_array_equal(b.meta["ignore"], exp_ignore)


def test_no_ignore_region_gives_none(tmp_path):
    anno = {"text": ["q"], "is_sentence": True, "shapes": [_shape("target", _rect(1, 1, 3, 3))]}
    _write(tmp_path / "ReasonSeg" / "val", "x", anno)
    sample = ReasonSegDataset(tmp_path)[0]
    assert sample.meta["ignore"] is None
    assert sample.mask.sum() == 9


def test_all_queries_mode(root):
    ds = ReasonSegDataset(root, split="val", queries="all")
    assert [s.id for s in ds] == ["a_table_q0", "a_table_q1", "b_cat_q0"]
    assert ds[1].text == "Where does a cup go?" and ds[1].meta["query_index"] == 1
    np.testing.assert_array_equal(ds[0].mask, ds[1].mask)


def test_exif_orientation_swaps_the_mask_size(tmp_path):
    anno = {"text": ["q"], "is_sentence": False, "shapes": [_shape("target", _rect(1, 1, 3, 3))]}
    _write(tmp_path / "ReasonSeg" / "val", "rot", anno, exif_orientation=6)
    sample = ReasonSegDataset(tmp_path)[0]
    assert sample.mask.shape == (W, H)  # displayed (rotated) size, as cv2.imread / segr1.data.io read it


def test_cp1252_json_and_malformed_annotation(tmp_path):
    val = tmp_path / "ReasonSeg" / "val"
    raw = json.dumps(
        {"text": ["QUOTE"], "is_sentence": True, "shapes": [_shape("target", _rect(0, 0, 2, 2))]}
    )
    _write(val, "a_cp1252", raw.replace("QUOTE", "\u201cthe cup\u201d").encode("cp1252"))
    _write(val, "b_bad", {"text": ["q"], "is_sentence": True, "shapes": [_shape("target", [[1, 2, 3]])]})
    ds = ReasonSegDataset(tmp_path)
    assert len(ds) == 2
    assert ds[0].text == "\u201cthe cup\u201d"
    with pytest.raises(ValueError, match="points"):
        ds[1]  # the bad sample fails alone, when indexed


def test_rasterize_rejects_bad_shapes():
    with pytest.raises(ValueError):
        rasterize_shapes([{"points": [[0, 0], [1, 1], [1, 0]]}], 4, 4)
    with pytest.raises(ValueError):
        rasterize_shapes([_shape("target", [[0, float("nan")], [1, 1], [1, 0]])], 4, 4)
    target, ignore = rasterize_shapes([], 4, 5)
    assert target.shape == (4, 5) and not target.any() and not ignore.any()


def test_load_benchmark_and_split_errors(root):
    test = load_benchmark("ReasonSeg", root, split="test")
    assert len(test) == 1 and test[0].meta["split"] == "test"
    assert len(load_benchmark("reasonseg", root)) == 2  # default split: val
    with pytest.raises(ValueError, match="val, test, train"):
        load_benchmark("reasonseg", root, split="testA")
    with pytest.raises(FileNotFoundError):
        load_benchmark("reasonseg", root, split="train")


def test_check_root_reports_reasonseg(root):
    report = check_root(root)
    status = next(d for d in report.datasets if d.name == "reasonseg")
    assert status.present and not status.complete
    assert status.counts == {"val": 2, "test": 1}
    assert any("c_orphan" in p for p in status.problems)
    assert any("published 779" in p for p in status.problems)
    assert "ReasonSeg" in format_report(report)
