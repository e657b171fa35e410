"""segr1.data.refer on a tiny RefCOCO written in the real refer format (refs pickle + COCO instances.json)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakedata import uncompressed_rle
from segr1.data.benchmarks import load_benchmark
from segr1.data.check import check_root, format_report
from segr1.data.refer import ReferDataset, decode_segmentation
from segr1.data.safe_pickle import UnsafePickleError

H1, W1 = 16, 20  # image 1 (height, width)
H2, W2 = 12, 10  # image 2


def _expected_polygon() -> np.ndarray:
    """Hand-drawn: pixel (x, y) is inside a polygon when its unit square [x, x+1) x [y, y+1) is."""
    m = np.zeros((H1, W1), dtype=bool)
    m[1:4, 2:6] = True  # ring 1: rectangle (2,1)-(6,4)
    m[10:12, 10:13] = True  # ring 2: rectangle (10,10)-(13,12)
    return m


def _expected_rle_plain() -> np.ndarray:
    m = np.zeros((H1, W1), dtype=bool)
    m[5:9, 12:18] = True
    m[0, 0] = True
    return m


def _expected_rle_compressed() -> np.ndarray:
    m = np.zeros((H2, W2), dtype=bool)
    m[2:10, 3:5] = True  # an L shape
    m[8:10, 3:9] = True
    return m


def _sent(text: str, sent_id: int) -> dict:
    return {"tokens": text.split(), "raw": text.upper(), "sent_id": sent_id, "sent": text}


def make_refer(
    root: Path, name: str = "refcoco", split_by: str = "unc", pickle_bytes: bytes | None = None
) -> Path:
    """Write <root>/Refer_Segm/<name>/{refs(<split_by>).p, instances.json} and the COCO images."""
    from pycocotools import mask as mask_utils

    folder = root / "Refer_Segm" / name
    folder.mkdir(parents=True)
    images_dir = root / "Refer_Segm" / "coco_2014" / "train2014"
    images_dir.mkdir(parents=True, exist_ok=True)
    f1, f2 = "COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"
    Image.new("RGB", (W1, H1), (90, 120, 30)).save(images_dir / f1)
    Image.new("RGB", (W2, H2), (10, 20, 200)).save(images_dir / f2)
    compressed = mask_utils.encode(np.asfortranarray(_expected_rle_compressed().astype(np.uint8)))
    instances = {
        "images": [
            {"id": 1, "file_name": f1, "height": H1, "width": W1},
            {"id": 2, "file_name": f2, "height": H2, "width": W2},
        ],
        "annotations": [
            {
                "id": 101,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4], [10.0, 10.0, 13.0, 10.0, 13.0, 12.0, 10.0, 12.0]],
            },
            {
                "id": 102,
                "image_id": 1,
                "category_id": 3,
                "segmentation": uncompressed_rle(_expected_rle_plain()),
            },
            {
                "id": 103,
                "image_id": 2,
                "category_id": 18,
                "segmentation": {"counts": compressed["counts"].decode("ascii"), "size": [H2, W2]},
            },
            {"id": 104, "image_id": 2, "category_id": 18, "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
    }
    (folder / "instances.json").write_text(json.dumps(instances))
    test_split = "testA" if name != "refcocog" else "test"
    refs = [
        {
            "ref_id": 0,
            "ann_id": 101,
            "image_id": 1,
            "split": "val",
            "category_id": 1,
            "sent_ids": [0, 1],
            "file_name": "COCO_train2014_000000000001_101.jpg",
            "sentences": [_sent("the man on the left", 0), _sent("left guy", 1)],
        },
        {
            "ref_id": 1,
            "ann_id": 102,
            "image_id": 1,
            "split": "val",
            "category_id": 3,
            "sent_ids": [2],
            "file_name": "COCO_train2014_000000000001_102.jpg",
            "sentences": [_sent("red car", 2)],
        },
        {
            "ref_id": 2,
            "ann_id": 103,
            "image_id": 2,
            "split": test_split,
            "category_id": 18,
            "sent_ids": [3],
            "file_name": "COCO_train2014_000000000002_103.jpg",
            "sentences": [_sent("dog in the corner", 3)],
        },
        {
            "ref_id": 3,
            "ann_id": 104,
            "image_id": 2,
            "split": "train",
            "category_id": 18,
            "sent_ids": [4],
            "file_name": "COCO_train2014_000000000002_104.jpg",
            "sentences": [_sent("tiny dog", 4)],
        },
    ]
    data = pickle_bytes if pickle_bytes is not None else pickle.dumps(refs, protocol=2)
    (folder / f"refs({split_by}).p").write_bytes(data)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_refer(tmp_path)
    return tmp_path


def test_val_split_one_sample_per_sentence(root):
    ds = ReferDataset("refcoco", root, split="val")
    assert len(ds) == 3
    samples = list(ds)
    assert [s.text for s in samples] == ["the man on the left", "left guy", "red car"]
    assert [s.id for s in samples] == ["0_0", "0_1", "1_2"]
    assert all(s.task == "referring" for s in samples)
    first = samples[0]
    assert first.image == root / "Refer_Segm/coco_2014/train2014/COCO_train2014_000000000001.jpg"
    assert first.image.is_file()
    assert first.meta == {
        "dataset": "refcoco",
        "split": "val",
        "split_by": "unc",
        "ref_id": 0,
        "ann_id": 101,
        "image_id": 1,
        "sent_id": 0,
        "category_id": 1,
        "height": H1,
        "width": W1,
    }


def test_polygon_mask_matches_hand_drawn(root):
    mask = ReferDataset("refcoco", root, split="val")[0].mask
    assert mask.dtype == bool and mask.shape == (H1, W1)
    np.testing.assert_array_equal(mask, _expected_polygon())


def test_uncompressed_rle_mask_matches_hand_drawn(root):
    sample = ReferDataset("refcoco", root, split="val")[2]
    np.testing.assert_array_equal(sample.mask, _expected_rle_plain())


def test_compressed_rle_mask_and_other_split(root):
    ds = ReferDataset("refcoco", root, split="testA")
    assert len(ds) == 1
    sample = ds[0]
    assert sample.text == "dog in the corner" and sample.meta["split"] == "testA"
    assert sample.mask.shape == (H2, W2)
    np.testing.assert_array_equal(sample.mask, _expected_rle_compressed())
    assert len(ReferDataset("refcoco", root, split="testB")) == 0


def test_decode_segmentation_forms():
    exp = _expected_rle_plain()
    np.testing.assert_array_equal(decode_segmentation(uncompressed_rle(exp), H1, W1), exp)
    np.testing.assert_array_equal(decode_segmentation([uncompressed_rle(exp)], H1, W1), exp)
    assert not decode_segmentation([], H1, W1).any()
    assert not decode_segmentation([[1, 1, 2, 2]], H1, W1).any()  # degenerate ring: no area, not a box
    with pytest.raises(ValueError, match="size"):
        decode_segmentation(uncompressed_rle(exp), H1 + 1, W1)
    with pytest.raises(ValueError):
        decode_segmentation("not a segmentation", H1, W1)


def test_slicing_and_sequence_protocol(root):
    ds = ReferDataset("refcoco", root)  # default split: val
    assert [s.id for s in ds[1:]] == ["0_1", "1_2"]
    assert ds[-1].id == "1_2"
    with pytest.raises(IndexError):
        ds[3]


def test_image_root_override(root, tmp_path):
    other = tmp_path / "elsewhere"
    sample = ReferDataset("refcoco", root, split="val", image_root=other)[0]
    assert sample.image == other / "COCO_train2014_000000000001.jpg"


def test_refcocog_umd_and_load_benchmark(tmp_path):
    make_refer(tmp_path, "refcocog", "umd")
    samples = load_benchmark("RefCOCOg", tmp_path, split="test")
    assert len(samples) == 1 and samples[0].meta["split_by"] == "umd"
    with pytest.raises(ValueError, match="testA"):
        load_benchmark("refcocog", tmp_path, split="testA")
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\)\.p"):
        load_benchmark("refcoco+", tmp_path, split="val")


def test_bad_split_and_name(root):
    with pytest.raises(ValueError, match="val, testA, testB"):
        ReferDataset("refcoco", root, split="validation")
    with pytest.raises(ValueError, match="refcoco"):
        ReferDataset("refclef", root)


def test_malicious_refs_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    make_refer(tmp_path, pickle_bytes=pickle.dumps([Evil()], protocol=2))
    with pytest.raises(UnsafePickleError):
        ReferDataset("refcoco", tmp_path, split="val")
    report = check_root(tmp_path)
    status = next(d for d in report.datasets if d.name == "refcoco")
    assert status.present and not status.complete
    assert any("UnsafePickleError" in p for p in status.problems)
    assert not marker.exists()


def test_check_root_counts_sentences_and_missing_images(root):
    (root / "Refer_Segm/coco_2014/train2014/COCO_train2014_000000000002.jpg").unlink()
    report = check_root(root)
    status = next(d for d in report.datasets if d.name == "refcoco")
    assert status.present and not status.complete
    assert status.counts == {"val": 3, "testA": 1, "testB": 0, "images_missing": 1}
    assert any("COCO_train2014_000000000002.jpg" in p for p in status.problems)
    assert not next(d for d in report.datasets if d.name == "refcocog").present
    text = format_report(report)
    assert "RefCOCO (unc)" in text and "val 3/10834" in text
