"""Tests for segr1.segmenters: GrabCut, SAM2 via transformers (tiny random model built offline), official SAM2."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segr1.answer import SegPrompt
from segr1.segmenters import SPEC_HELP, Segmenter, load_segmenter
from segr1.segmenters._common import as_rgb_array, check_prompts, expand_prompts, parse_dtype_name
from segr1.segmenters.grabcut import GrabCutConfig, GrabCutSegmenter

H, W = 120, 200  # non-square on purpose


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _disc_scene(h: int = 160, w: int = 240, discs=((120, 80, 45),), seed: int = 0):
    """Red discs on a noisy green background: (image (h, w, 3) uint8, ground truth (h, w) bool)."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal((40, 130, 50), 12, (h, w, 3)), 0, 255).astype(np.uint8)
    gt = np.zeros((h, w), np.uint8)
    for cx, cy, r in discs:
        cv2.circle(gt, (cx, cy), r, 1, thickness=-1)
    gt = gt.astype(bool)
    img[gt] = np.clip(rng.normal((210, 50, 60), 12, (int(gt.sum()), 3)), 0, 255).astype(np.uint8)
    return img, gt


# ------------------------------------------------------------------------------------------------ common


def test_as_rgb_array_coerces_and_rejects():
    grey = np.zeros((4, 5), np.uint8)
    assert as_rgb_array(grey).shape == (4, 5, 3)
    assert as_rgb_array(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert as_rgb_array(Image.new("L", (5, 4))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="uint8"):
        as_rgb_array(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        as_rgb_array(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(TypeError):
        as_rgb_array("image.png")  # type: ignore[arg-type]


def test_check_prompts_and_expand():
    with pytest.raises(TypeError, match="single SegPrompt"):
        check_prompts(SegPrompt(boxes=[[0, 0, 1, 1]]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        check_prompts([SegPrompt(), {"boxes": []}])  # type: ignore[list-item]
    prompts = [
        SegPrompt(
            boxes=[[0, 0, 50, 50], [60, 0, 300, 90]], points=[[10, 10], [70, 10], [55, 55]], labels=[1, 0, 1]
        ),
        SegPrompt(),
        SegPrompt(points=[[5, 5]], labels=[1]),
    ]
    subs = expand_prompts(prompts, (W, H))
    assert subs.owner == [0, 0, 2]
    assert subs.items[1].boxes[0, 2] == W - 1  # clipped to the image
    assert subs.items[0].points.tolist() == [[10, 10]]
    assert subs.items[1].points.tolist() == [[70, 10]]  # (55, 55) lies in no box: dropped


def test_parse_dtype_name():
    assert parse_dtype_name(None) is None
    assert parse_dtype_name("bf16") == "bfloat16"
    assert parse_dtype_name("torch.float32") == "float32"
    with pytest.raises(ValueError, match="int8"):
        parse_dtype_name("int8")


# ----------------------------------------------------------------------------------------------- grabcut


def test_grabcut_recovers_disc_from_box_points_and_both():
    img, gt = _disc_scene()
    seg = GrabCutSegmenter()
    prompts = [
        SegPrompt(boxes=[[70, 30, 170, 130]]),
        SegPrompt(points=[[120, 80], [125, 90]], labels=[1, 1]),
        SegPrompt(boxes=[[70, 30, 170, 130]], points=[[120, 80], [75, 35]], labels=[1, 0]),
    ]
    masks = seg.segment(img, prompts)
    assert len(masks) == 3
    for m in masks:
        assert m.shape == gt.shape and m.dtype == bool
        assert _iou(m, gt) > 0.8
    assert isinstance(seg, Segmenter)


def test_grabcut_several_boxes_is_union_and_deterministic():
    img, gt = _disc_scene(discs=((60, 60, 30), (180, 100, 35)))
    seg = GrabCutSegmenter()
    both = SegPrompt(boxes=[[25, 25, 95, 95], [140, 60, 220, 140]])
    one, two = SegPrompt(boxes=[[25, 25, 95, 95]]), SegPrompt(boxes=[[140, 60, 220, 140]])
    m_both, m_one, m_two = seg.segment(img, [both, one, two])
    assert _iou(m_both, gt) > 0.8
    np.testing.assert_array_equal(m_both, m_one | m_two)
    np.testing.assert_array_equal(seg.segment(img, [both])[0], m_both)


def test_grabcut_downscales_large_images_and_returns_full_size():
    img, gt = _disc_scene(h=600, w=900, discs=((450, 300, 170),))
    seg = GrabCutSegmenter(GrabCutConfig(max_side=256))
    (mask,) = seg.segment(Image.fromarray(img), [SegPrompt(boxes=[[260, 110, 640, 490]])])
    assert mask.shape == (600, 900)
    assert _iou(mask, gt) > 0.8


def test_grabcut_edge_cases_do_not_raise():
    img, _ = _disc_scene(h=H, w=W)
    seg = GrabCutSegmenter()
    prompts = [
        SegPrompt(),  # empty
        SegPrompt(boxes=[[50, 50, 50, 50]]),  # zero area
        SegPrompt(boxes=[[500, 500, 900, 900]]),  # outside the image
        SegPrompt(boxes=[[-10, -10, 1000, 1000]]),  # covers the whole image: no background seed
        SegPrompt(points=[[10, 10]], labels=[0]),  # only a negative point
        SegPrompt(boxes=[[170, 119, 70, 30]]),  # corners swapped
    ]
    masks = seg.segment(img, prompts)
    assert [m.shape for m in masks] == [(H, W)] * len(prompts)
    assert not masks[0].any() and not masks[4].any()
    assert masks[1].sum() <= 4 and masks[2].sum() <= 4
    assert masks[5].any()
    assert seg.segment(img, []) == []


def test_grabcut_config_validation():
    with pytest.raises(ValueError, match="max_side"):
        GrabCutConfig(max_side=4)
    with pytest.raises(ValueError, match="iterations"):
        GrabCutConfig(iterations=0)


# ---------------------------------------------------------------------------------------- sam2 (transformers)


@pytest.fixture(scope="module")
def tiny_sam2_dir(tmp_path_factory) -> Path:
    from segr1.segmenters.sam2_hf import build_tiny_sam2

    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"))


@pytest.fixture(scope="module")
def sam2_hf(tiny_sam2_dir):
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter

    return Sam2HFSegmenter(tiny_sam2_dir, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return (np.random.default_rng(1).random((H, W, 3)) * 255).astype(np.uint8)


PROMPTS = [
    SegPrompt(boxes=[[20, 20, 100, 90]]),  # box only
    SegPrompt(points=[[50, 60]], labels=[1]),  # one point: multimask, best predicted IoU
    SegPrompt(points=[[50, 60], [10, 100], [150, 30]], labels=[1, 0, 1]),  # points only
    SegPrompt(boxes=[[20, 20, 100, 90]], points=[[50, 60], [30, 30]], labels=[1, 0]),  # box + points
    SegPrompt(boxes=[[20, 20, 100, 90], [120, 10, 190, 110]], points=[[150, 50]], labels=[1]),  # two boxes
    SegPrompt(),  # empty
    SegPrompt(boxes=[[0, 0, 199, 119]], points=[[100, 60]], labels=[1]),
]


def test_tiny_sam2_folder_layout(tiny_sam2_dir):
    names = {p.name for p in tiny_sam2_dir.iterdir()}
    assert {"config.json", "model.safetensors"} <= names


def test_sam2_hf_shapes_and_empty(sam2_hf, image):
    masks = sam2_hf.segment(Image.fromarray(image), PROMPTS)
    assert len(masks) == len(PROMPTS)
    for m in masks:
        assert m.shape == (H, W) and m.dtype == bool
    assert not masks[5].any()
    assert all(m.any() for i, m in enumerate(masks) if i != 5)
    assert sam2_hf.segment(image, []) == []
    assert [m.any() for m in sam2_hf.segment(image, [SegPrompt(), SegPrompt()])] == [False, False]


def test_sam2_hf_batched_equals_one_by_one(sam2_hf, image):
    batched = sam2_hf.segment(image, PROMPTS)
    for prompt, mask in zip(PROMPTS, batched, strict=True):
        np.testing.assert_array_equal(sam2_hf.segment(image, [prompt])[0], mask)


def test_sam2_hf_several_boxes_is_union_of_sub_prompts(sam2_hf, image):
    both, one, two = sam2_hf.segment(
        image,
        [
            PROMPTS[4],
            SegPrompt(boxes=[[20, 20, 100, 90]]),
            SegPrompt(boxes=[[120, 10, 190, 110]], points=[[150, 50]], labels=[1]),
        ],
    )
    np.testing.assert_array_equal(both, one | two)


def test_sam2_hf_embeds_once_and_batches_decoding(sam2_hf, image, monkeypatch):
    calls = {"embed": 0, "decode": 0}
    model = sam2_hf.model
    embed, forward = model.get_image_embeddings, model.forward

    def count_embed(*a, **k):
        calls["embed"] += 1
        return embed(*a, **k)

    def count_forward(*a, **k):
        calls["decode"] += 1
        return forward(*a, **k)

    monkeypatch.setattr(model, "get_image_embeddings", count_embed)
    monkeypatch.setattr(model, "forward", count_forward)
    many = [
        SegPrompt(boxes=[[10 + i, 10, 100 + i, 90]], points=[[50 + i, 50]], labels=[1]) for i in range(16)
    ]
    sam2_hf.segment(image, many)
    assert calls == {"embed": 1, "decode": 1}


def test_sam2_hf_matches_transformers_reference_path(sam2_hf, image):
    """Our coordinate scaling, batching and upsampling equal Sam2Processor + Sam2Model + post_process_masks."""
    import torch

    proc, model = sam2_hf.processor, sam2_hf.model
    inputs = proc(
        images=image,
        input_boxes=[[[20, 20, 100, 90]]],
        input_points=[[[[50, 60], [30, 30]]]],
        input_labels=[[[1, 0]]],
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model(**inputs, multimask_output=False)
    ref = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0, 0].numpy()
    np.testing.assert_array_equal(sam2_hf.segment(image, [PROMPTS[3]])[0], ref)

    inputs = proc(images=image, input_points=[[[[50, 60]]]], input_labels=[[[1]]], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, multimask_output=True)
    best = int(out.iou_scores[0, 0].argmax())
    ref = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0, best].numpy()
    np.testing.assert_array_equal(sam2_hf.segment(image, [PROMPTS[1]])[0], ref)


def test_sam2_hf_pad_points_mode(tiny_sam2_dir, sam2_hf, image):
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter

    padded = Sam2HFSegmenter(tiny_sam2_dir, device="cpu", pad_points=True, max_decode_batch=2)
    exact = sam2_hf.segment(image, PROMPTS)
    for a, b in zip(padded.segment(image, PROMPTS), exact, strict=True):
        assert a.shape == b.shape
        assert (a == b).mean() > 0.95  # padding tokens nudge the logits; masks stay nearly the same


def test_sam2_hf_thread_safe(sam2_hf, image):
    expected = sam2_hf.segment(image, PROMPTS)
    results: list[list[np.ndarray]] = [[] for _ in range(3)]

    def work(i: int) -> None:
        results[i] = sam2_hf.segment(image, PROMPTS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        for a, b in zip(res, expected, strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- load_segmenter


def test_load_segmenter_specs(tiny_sam2_dir, image):
    assert load_segmenter().name == "grabcut"
    seg = load_segmenter(f"sam2-hf:{tiny_sam2_dir}", device="cpu", dtype="float32")
    assert seg.name == f"sam2-hf:{tiny_sam2_dir}"
    assert seg.segment(image, [PROMPTS[0]])[0].shape == (H, W)
    for bad in ["", "sam3", "grabcut:x", "SAM2-HF"]:
        with pytest.raises(ValueError, match="valid specs") as err:
            load_segmenter(bad)
        assert SPEC_HELP in str(err.value)
    with pytest.raises(ValueError, match="<config>@<checkpoint>"):
        load_segmenter("sam2:configs/sam2.1/sam2.1_hiera_l.yaml")
    with pytest.raises(ValueError, match="dtype"):
        load_segmenter(f"sam2-hf:{tiny_sam2_dir}", dtype="int8")


def test_load_segmenter_missing_local_folder_says_how_to_fix(tmp_path):
    with pytest.raises(OSError, match="sam2-hf:/path/to/folder"):
        load_segmenter(f"sam2-hf:{tmp_path / 'missing'}", device="cpu")


def test_sam2_official_missing_package_names_the_extra(monkeypatch):
    for name in ("sam2", "sam2.build_sam", "sam2.sam2_image_predictor"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError, as if not installed
    with pytest.raises(ImportError, match=r"pip install 'segr1\[sam2\]'"):
        load_segmenter("sam2:configs/sam2.1/sam2.1_hiera_l.yaml@/nowhere/sam2.1_hiera_large.pt")


def test_sam2_spec_parsing():
    from segr1.segmenters.sam2_official import packaged_config_name, parse_sam2_spec

    assert parse_sam2_spec("configs/sam2.1/sam2.1_hiera_l.yaml@/w/a@b.pt") == (
        "configs/sam2.1/sam2.1_hiera_l.yaml@/w/a",
        "b.pt",
    )
    assert parse_sam2_spec(" cfg.yaml @ ck.pt ") == ("cfg.yaml", "ck.pt")
    assert packaged_config_name("sam2.1_hiera_l") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert packaged_config_name("sam2_hiera_t.yaml") == "configs/sam2/sam2_hiera_t.yaml"
    assert packaged_config_name("configs/sam2.1/sam2.1_hiera_s.yaml") == "configs/sam2.1/sam2.1_hiera_s.yaml"


# ---------------------------------------------------------------------------------------------- official sam2


@pytest.fixture(scope="module")
def sam2_official(tmp_path_factory):
    pytest.importorskip("sam2", reason="official SAM2 package not installed (pip install 'segr1[sam2]')")
    from segr1.segmenters.sam2_official import Sam2OfficialSegmenter, build_tiny_sam2_official

    config, ckpt = build_tiny_sam2_official(tmp_path_factory.mktemp("tiny-sam2-official"))
    return load_segmenter(f"sam2:{config}@{ckpt}", device="cpu"), Sam2OfficialSegmenter


def test_sam2_official_tiny_random_model(sam2_official, image):
    seg, cls = sam2_official
    assert isinstance(seg, cls) and isinstance(seg, Segmenter)
    masks = seg.segment(image, PROMPTS)
    assert [m.shape for m in masks] == [(H, W)] * len(PROMPTS)
    assert all(m.dtype == bool for m in masks) and not masks[5].any()
    # several boxes = union of the sub-prompts decoded one by one
    one, two = seg.segment(
        image,
        [
            SegPrompt(boxes=[[20, 20, 100, 90]]),
            SegPrompt(boxes=[[120, 10, 190, 110]], points=[[150, 50]], labels=[1]),
        ],
    )
    np.testing.assert_array_equal(masks[4], one | two)


@pytest.mark.slow
def test_sam2_official_batched_equals_one_by_one(sam2_official, image):
    seg, _ = sam2_official
    batched = seg.segment(image, PROMPTS)
    for prompt, mask in zip(PROMPTS, batched, strict=True):  # each call re-embeds the 1024 px input
        np.testing.assert_array_equal(seg.segment(image, [prompt])[0], mask)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_sam2_hf_cuda_bf16(tiny_sam2_dir, sam2_hf, image):
    from segr1.segmenters.sam2_hf import Sam2HFSegmenter

    gpu = Sam2HFSegmenter(tiny_sam2_dir, device="cuda")  # bf16 autocast by default
    assert gpu.autocast_dtype is not None
    masks = gpu.segment(image, PROMPTS)
    assert [(m.shape, m.dtype) for m in masks] == [((H, W), np.dtype(bool))] * len(PROMPTS)
    for prompt, mask in zip(PROMPTS, masks, strict=True):
        np.testing.assert_array_equal(gpu.segment(image, [prompt])[0], mask)
