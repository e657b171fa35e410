"""segr1.data.benchmarks and segr1.data.check on tiny foreground benchmarks in their published layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.data.benchmarks import (
    BENCHMARK_NAMES,
    FOREGROUND_BENCHMARKS,
    canonical_name,
    find_layout,
    load_benchmark,
    pair_folders,
)
from segr1.data.check import check_root, format_report

CAM = ["COD10K-CAM-1-Aquatic-1-BatFish-3", "COD10K-CAM-3-Flying-53-Bird-3045"]
NONCAM = "COD10K-NonCAM-5-Background-1-Sky-4001"


def _mask(i: int, size=(12, 9)) -> np.ndarray:
    """A distinct hand-drawn mask per index (H=9, W=12)."""
    m = np.zeros((size[1], size[0]), dtype=bool)
    m[1 + i : 5 + i, 2 : 4 + 2 * i] = True
    return m


def _image(path: Path, size=(12, 9)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path)


def _gt(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    # COD10K-v3: test images hold camouflaged and non-camouflaged photos.
    for i, stem in enumerate(CAM):
        _image(tmp_path / f"COD10K-v3/Test/Image/{stem}.jpg")
        _gt(tmp_path / f"COD10K-v3/Test/GT_Object/{stem}.png", _mask(i))
    _image(tmp_path / f"COD10K-v3/Test/Image/{NONCAM}.jpg")
    _image(tmp_path / "COD10K-v3/Test/Image/._COD10K-CAM-1-Aquatic-1-BatFish-3.jpg")  # macOS junk: ignored
    # CAMO: Images/Test + one GT folder with train and test masks.
    _image(tmp_path / "CAMO-V.1.0-CVIU2019/Images/Test/camourflage_00012.jpg")
    _gt(tmp_path / "CAMO-V.1.0-CVIU2019/GT/camourflage_00012.png", _mask(1))
    _gt(tmp_path / "CAMO-V.1.0-CVIU2019/GT/camourflage_00001.png", _mask(0))  # a train mask
    # NC4K in SINet's TestDataset layout, with one image missing its mask.
    _image(tmp_path / "TestDataset/NC4K/Imgs/1.jpg")
    _gt(tmp_path / "TestDataset/NC4K/GT/1.png", _mask(2))
    _image(tmp_path / "TestDataset/NC4K/Imgs/2.jpg")
    # DUTS-TE and DUT-OMRON, HKU-IS (png images), ECSSD, PASCAL-S, DIS-TE1 in their published layouts.
    _image(tmp_path / "DUTS/DUTS-TE/DUTS-TE-Image/ILSVRC2012_test_00000003.jpg")
    _gt(tmp_path / "DUTS/DUTS-TE/DUTS-TE-Mask/ILSVRC2012_test_00000003.png", _mask(0))
    _image(tmp_path / "DUT-OMRON/DUT-OMRON-image/im005.jpg")
    _gt(tmp_path / "DUT-OMRON/pixelwiseGT-new-PNG/im005.png", _mask(1))
    _image(tmp_path / "HKU-IS/imgs/0004.png")
    _gt(tmp_path / "HKU-IS/gt/0004.png", _mask(2))
    _image(tmp_path / "ECSSD/images/0001.jpg")
    _gt(tmp_path / "ECSSD/ground_truth_mask/0001.png", _mask(0))
    _gt(tmp_path / "ECSSD/ground_truth_mask/0002.png", _mask(0))  # a mask without its image
    _image(tmp_path / "PASCAL-S/datasets/imgs/pascal/1.jpg")
    _gt(tmp_path / "PASCAL-S/datasets/masks/pascal/1.png", _mask(1))
    _image(tmp_path / "DIS5K/DIS-TE1/im/1#Accessories#1#Bag#4.jpg")
    _gt(tmp_path / "DIS5K/DIS-TE1/gt/1#Accessories#1#Bag#4.png", _mask(2))
    return tmp_path


def test_cod10k_keeps_only_camouflaged_images_with_their_masks(root):
    from segr1.data.io import read_mask

    samples = load_benchmark("cod10k", root)
    assert [s.id for s in samples] == sorted(CAM)
    for s in samples:
        assert s.task == "foreground" and s.text is None
        assert s.meta == {"dataset": "cod10k", "split": "test", "title": "COD10K-v3 Test"}
        assert s.image == root / f"COD10K-v3/Test/Image/{s.id}.jpg"
        np.testing.assert_array_equal(read_mask(s.mask), _mask(CAM.index(s.id)))


@pytest.mark.parametrize(
    ("name", "stem", "image", "mask"),
    [
        (
            "camo",
            "camourflage_00012",
            "CAMO-V.1.0-CVIU2019/Images/Test/camourflage_00012.jpg",
            "CAMO-V.1.0-CVIU2019/GT/camourflage_00012.png",
        ),
        (
            "duts-te",
            "ILSVRC2012_test_00000003",
            "DUTS/DUTS-TE/DUTS-TE-Image/ILSVRC2012_test_00000003.jpg",
            "DUTS/DUTS-TE/DUTS-TE-Mask/ILSVRC2012_test_00000003.png",
        ),
        (
            "dut-omron",
            "im005",
            "DUT-OMRON/DUT-OMRON-image/im005.jpg",
            "DUT-OMRON/pixelwiseGT-new-PNG/im005.png",
        ),
        ("hku-is", "0004", "HKU-IS/imgs/0004.png", "HKU-IS/gt/0004.png"),
        ("ecssd", "0001", "ECSSD/images/0001.jpg", "ECSSD/ground_truth_mask/0001.png"),
        ("pascal-s", "1", "PASCAL-S/datasets/imgs/pascal/1.jpg", "PASCAL-S/datasets/masks/pascal/1.png"),
        (
            "dis-te1",
            "1#Accessories#1#Bag#4",
            "DIS5K/DIS-TE1/im/1#Accessories#1#Bag#4.jpg",
            "DIS5K/DIS-TE1/gt/1#Accessories#1#Bag#4.png",
        ),
    ],
)
def test_published_layouts(root, name, stem, image, mask):
    samples = load_benchmark(name, root)
    assert [(s.id, s.image, s.mask) for s in samples] == [(stem, root / image, root / mask)]


def test_image_without_mask_is_kept_with_none(root):
    samples = load_benchmark("nc4k", root)
    assert [(s.id, s.mask is None) for s in samples] == [("1", False), ("2", True)]


def test_missing_benchmark_lists_the_layouts_tried(root):
    with pytest.raises(FileNotFoundError, match="CHAMELEON/Imgs"):
        load_benchmark("chameleon", root)


def test_names_aliases_and_errors(root):
    assert canonical_name("COD10K") == "cod10k"
    assert canonical_name("DUTS_TE") == "duts-te"
    assert canonical_name("DIS5K-TE1") == "dis-te1"
    assert canonical_name("refcoco+") == "refcoco+"
    expected = {
        "cod10k",
        "camo",
        "nc4k",
        "chameleon",
        "duts-te",
        "dut-omron",
        "hku-is",
        "ecssd",
        "pascal-s",
        "dis-vd",
        "dis-te1",
        "dis-te2",
        "dis-te3",
        "dis-te4",
        "refcoco",
        "refcoco+",
        "refcocog",
        "reasonseg",
    }
    assert set(BENCHMARK_NAMES) == expected
    with pytest.raises(ValueError, match="cod10k.*reasonseg"):
        load_benchmark("imagenet", root)
    with pytest.raises(ValueError, match="only the split 'test'"):
        load_benchmark("ecssd", root, split="train")
    assert len(load_benchmark("ecssd", root, split="test")) == 1


def test_first_existing_layout_wins(tmp_path):
    bench = FOREGROUND_BENCHMARKS["chameleon"]
    assert find_layout(bench, tmp_path) is None
    (tmp_path / "CHAMELEON/Image").mkdir(parents=True)
    (tmp_path / "CHAMELEON/GT").mkdir()
    assert find_layout(bench, tmp_path).images == "CHAMELEON/Image"
    (tmp_path / "CHAMELEON/Imgs").mkdir()
    assert find_layout(bench, tmp_path).images == "CHAMELEON/Imgs"


def test_pair_folders_prefers_published_extensions(tmp_path):
    _image(tmp_path / "im/a.jpg")
    _image(tmp_path / "im/a.png")  # same stem twice: .jpg preferred for images
    (tmp_path / "im/notes.txt").write_text("x")
    _gt(tmp_path / "gt/a.png", _mask(0))
    _gt(tmp_path / "gt/a.bmp", _mask(1))  # .png preferred for masks
    _gt(tmp_path / "gt/b.png", _mask(0))
    pairing = pair_folders(tmp_path / "im", tmp_path / "gt")
    assert pairing.pairs == [("a", tmp_path / "im/a.jpg", tmp_path / "gt/a.png")]
    assert pairing.images_without_mask == [] and pairing.masks_without_image == [tmp_path / "gt/b.png"]


def test_check_root_foreground(root):
    report = check_root(root, deep=False)
    by = {d.name: d for d in report.datasets}
    assert [d.name for d in report.datasets][: len(FOREGROUND_BENCHMARKS)] == list(FOREGROUND_BENCHMARKS)
    cod = by["cod10k"]
    assert cod.present and cod.location == "COD10K-v3/Test/Image + COD10K-v3/Test/GT_Object"
    assert cod.counts == {"images": 2, "masks": 2, "pairs": 2, "excluded": 1}
    assert cod.problems == ["2 image/mask pairs, the published set has 2026"]
    assert by["camo"].problems == ["1 image/mask pairs, the published set has 250"]  # train masks are fine
    assert any("image(s) without a mask (2.jpg)" in p for p in by["nc4k"].problems)
    assert any("mask(s) without an image (0002.png)" in p for p in by["ecssd"].problems)
    assert not by["chameleon"].present and not by["dis-vd"].present
    assert set(report.present) >= {
        "cod10k",
        "camo",
        "nc4k",
        "duts-te",
        "dut-omron",
        "hku-is",
        "ecssd",
        "pascal-s",
        "dis-te1",
    }
    text = format_report(report)
    assert "COD10K-v3 Test" in text and "pairs 2/2026" in text and "missing" in text
    assert "! 1 image(s) without a mask (2.jpg)" in text


def test_check_root_complete_when_counts_match(root, monkeypatch):
    import dataclasses

    import segr1.data.benchmarks as benchmarks

    patched = dict(benchmarks.FOREGROUND_BENCHMARKS)
    patched["dut-omron"] = dataclasses.replace(patched["dut-omron"], expected=1)
    monkeypatch.setattr(benchmarks, "FOREGROUND_BENCHMARKS", patched)
    monkeypatch.setattr("segr1.data.check.FOREGROUND_BENCHMARKS", patched)
    status = next(d for d in check_root(root).datasets if d.name == "dut-omron")
    assert status.complete and status.problems == []
    assert "dut-omron" in check_root(root).complete


def test_check_root_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_root(tmp_path / "nope")
    report = check_root(tmp_path)
    assert report.present == [] and "0 of 18 datasets present" in format_report(report)
    assert report.to_dict()["datasets"][0]["name"] == "cod10k"
