"""segr1.rewards: hand-written completions scored against known masks."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from segr1 import rewards
from segr1.answer import SegPrompt
from segr1.rewards import (
    SegmentationReward,
    completion_text,
    decode_mask,
    format_reward,
    length_reward,
    points_format_reward,
)

FULL = "<think>a disc</think> <bbox>[10,10,50,50]</bbox>, <points>[[30,30],[5,5]]</points>, <labels>[1,0]</labels>"
POINTS = "<think>a disc</think> <points>[[30,30],[5,5]]</points>, <labels>[1,0]</labels>"
GARBAGE = "I cannot see anything <bbox>[oops]</bbox> <points>eval('1')</points>"


def conv(text: str) -> list[dict]:
    """A completion in TRL's conversational form."""
    return [{"role": "assistant", "content": text}]


def disc(size: tuple[int, int] = (120, 80), center=(60, 40), radius=20) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2


class CountingSegmenter:
    """Fake segmenter: records calls; returns the box (if any) as the mask, else a 5 px square per positive point."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], list[SegPrompt]]] = []

    def segment(self, image, prompts):
        arr = np.asarray(image)
        self.calls.append((arr.shape, list(prompts)))
        h, w = arr.shape[:2]
        out = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes.round().astype(int):
                m[y1 : y2 + 1, x1 : x2 + 1] = True
            if p.boxes.shape[0] == 0:
                for (x, y), lab in zip(p.points.round().astype(int), p.labels, strict=True):
                    if lab == 1:
                        m[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = True
            out.append(m)
        return out


class FailingSegmenter:
    name = "failing"

    def segment(self, image, prompts):
        raise RuntimeError("backend exploded")


# ----------------------------------------------------------------------------------------- text + format


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        (conv("hello"), "hello"),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            "ab",
        ),
        ({"role": "assistant", "content": "x"}, "x"),
        ([{"role": "user", "content": "not me"}, {"role": "assistant", "content": "me"}], "me"),
        (None, ""),
        (42, ""),
        ([1, 2], ""),
    ],
)
def test_completion_text_forms(completion, text):
    assert completion_text(completion) == text


def test_format_reward_full_and_points_only():
    comps = [
        conv(FULL),
        conv(POINTS),
        conv(GARBAGE),
        conv(""),
        FULL,
        conv(FULL.replace("<think>a disc</think>", "")),
    ]
    assert format_reward(comps) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert points_format_reward(comps) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert points_format_reward.__name__ == "format_points"


def test_format_reward_label_mismatch_is_not_complete():
    bad = "<think>t</think> <bbox>[1,1,5,5]</bbox>, <points>[[2,2],[3,3]]</points>, <labels>[1]</labels>"
    assert format_reward([conv(bad)]) == [0.0]


def test_length_reward_is_the_original_gaussian():
    def pts(n: int) -> str:
        return "<points>[" + ",".join(f"[{i},{i}]" for i in range(n)) + "]</points>"

    got = length_reward([conv(pts(8)), conv(pts(6)), conv(pts(1)), conv("none")])
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(math.exp(-4 / 8))
    assert got[2] == pytest.approx(math.exp(-49 / 8))
    assert got[3] == 0.0
    assert length_reward([conv(pts(4))], ideal_points=4)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sigma"):
        length_reward([conv(pts(4))], sigma=0)


# ------------------------------------------------------------------------------------------- decode_mask


def test_decode_mask_never_thresholds_binary_masks_at_128(tmp_path):
    gt = disc()
    as01 = gt.astype(np.uint8)
    as255 = as01 * 255
    np.testing.assert_array_equal(decode_mask(gt), gt)
    np.testing.assert_array_equal(decode_mask(as01), gt)  # 0/1 labels stay foreground
    np.testing.assert_array_equal(decode_mask(as255), gt)
    np.testing.assert_array_equal(decode_mask(gt.astype(np.float32)), gt)
    grey = as255.copy()
    grey[0, 0] = 100  # anti-aliased 8-bit map: > 128 is foreground
    assert not decode_mask(grey)[0, 0]
    buf = io.BytesIO()
    Image.fromarray(as255).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_mask(buf.getvalue()), gt)
    np.testing.assert_array_equal(decode_mask({"bytes": buf.getvalue(), "path": None}), gt)
    np.testing.assert_array_equal(decode_mask(Image.fromarray(as255)), gt)
    np.testing.assert_array_equal(decode_mask(Image.fromarray(gt)), gt)  # mode "1"
    path = tmp_path / "m.png"
    Image.fromarray(as255).save(path)
    np.testing.assert_array_equal(decode_mask(str(path)), gt)
    np.testing.assert_array_equal(decode_mask(path), gt)
    with pytest.raises(ValueError):
        decode_mask(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError):
        decode_mask(3.5)


# ------------------------------------------------------------------------------------- SegmentationReward


def test_segmentation_reward_one_segment_call_per_unique_image():
    img_a = np.zeros((80, 120, 3), np.uint8)
    img_b = np.full((80, 120, 3), 200, np.uint8)
    gt = disc()
    seg = CountingSegmenter()
    reward = SegmentationReward(seg, frame=100)
    # 4 completions per image, as TRL's repeat sampler gives them; every row holds its OWN copy of the image
    # (datasets decode a fresh object per row), so grouping must go by pixels, not identity.
    images = [Image.fromarray(img_a.copy()) for _ in range(4)] + [img_b.copy() for _ in range(4)]
    comps = [conv(FULL)] * 3 + [conv(GARBAGE)] + [conv(FULL)] * 4
    out = reward(comps, image=images, mask=[gt] * 8)
    assert len(out) == 8
    assert len(seg.calls) == 2  # one per distinct image
    assert [len(p) for _, p in seg.calls] == [3, 4]  # the unparsable completion is not sent
    assert out[3] == 0.0
    assert reward.segment_calls == 2
    assert reward.last_stats["segment_calls"] == 2
    assert reward.last_stats["empty"] == pytest.approx(1 / 8)


def test_segmentation_reward_maps_model_frame_to_image_frame():
    seg = CountingSegmenter()
    reward = SegmentationReward(seg, frame=100)
    image = np.zeros((80, 120, 3), np.uint8)  # (W, H) = (120, 80)
    reward([conv(FULL)], image=[image], mask=[disc()])
    (_, [prompt]) = seg.calls[0]
    np.testing.assert_allclose(prompt.boxes, [[12, 8, 60, 40]])  # x * 1.2, y * 0.8
    np.testing.assert_allclose(prompt.points, [[36, 24], [6, 4]])


def test_segmentation_reward_perfect_prompt_scores_one_and_weights_apply():
    gt = np.zeros((80, 120), bool)
    gt[20:41, 30:71] = True  # exactly the box below, in a 1:1 frame
    box = "<think>t</think> <bbox>[30,20,70,40]</bbox>, <points>[[50,30]]</points>, <labels>[1]</labels>"
    image = np.zeros((80, 120, 3), np.uint8)
    r = SegmentationReward(CountingSegmenter(), frame=120)  # frame != H: y scaled by 80/120
    gt_scaled = np.zeros((80, 120), bool)
    gt_scaled[13:27, 30:71] = True
    assert r([conv(box)], image=[image], mask=[gt_scaled])[0] > 0.8
    square = SegmentationReward(CountingSegmenter(), frame=120)
    img_sq = np.zeros((120, 120, 3), np.uint8)
    gt_sq = np.zeros((120, 120), bool)
    gt_sq[20:41, 30:71] = True
    assert square([conv(box)], image=[img_sq], mask=[gt_sq]) == [pytest.approx(1.0)]
    iou_only = SegmentationReward(CountingSegmenter(), frame=120, iou_weight=1.0, s_weight=0.0)
    half = "<think>t</think> <bbox>[30,20,50,40]</bbox>, <points>[[40,30]]</points>, <labels>[1]</labels>"
    got = iou_only([conv(half)], image=[img_sq], mask=[gt_sq])[0]
    assert got == pytest.approx(21 * 21 / (21 * 41))


def test_segmentation_reward_compares_at_ground_truth_resolution():
    # The image column holds the frame-sized image; the ground truth keeps its own (larger) size.
    gt = np.zeros((200, 300), bool)
    gt[50:150, 75:225] = True
    image = np.zeros((100, 100, 3), np.uint8)
    box = "<think>t</think> <bbox>[25,25,74,74]</bbox>, <points>[[50,50]]</points>, <labels>[1]</labels>"
    r = SegmentationReward(CountingSegmenter(), frame=100, iou_weight=1.0, s_weight=0.0)
    assert r([conv(box)], image=[image], mask=[gt])[0] == pytest.approx(1.0)


def test_segmentation_reward_garbage_and_failures_score_zero_without_raising(caplog):
    gt = disc()
    image = np.zeros((80, 120, 3), np.uint8)
    r = SegmentationReward(CountingSegmenter(), frame=100)
    assert (
        r(
            [conv(GARBAGE), conv(""), None, conv("<points>[[1e400, 3]]</points>")],
            image=[image] * 4,
            mask=[gt] * 4,
        )
        == [0.0] * 4
    )
    failing = SegmentationReward(FailingSegmenter(), frame=100)
    assert failing([conv(FULL)] * 2, image=[image] * 2, mask=[gt] * 2) == [0.0, 0.0]
    assert failing.last_stats["errors"] == 2
    bad_gt = SegmentationReward(CountingSegmenter(), frame=100)
    assert bad_gt([conv(FULL)], image=[image], mask=["/no/such/mask.png"]) == [0.0]
    assert bad_gt.last_stats["errors"] == 1


def test_segmentation_reward_points_only_ignores_boxes():
    seg = CountingSegmenter()
    r = SegmentationReward(seg, frame=100, points_only=True)
    assert r.__name__ == "segmentation_points"
    r(
        [conv(FULL), conv("<think>t</think> <bbox>[1,1,9,9]</bbox>")],
        image=[np.zeros((50, 50, 3), np.uint8)] * 2,
        mask=[np.ones((50, 50), bool)] * 2,
    )
    (_, prompts) = seg.calls[0]
    assert len(prompts) == 1 and prompts[0].boxes.shape == (0, 4)


def test_segmentation_reward_logs_mean_iou_and_validates_columns():
    logged: dict[str, float] = {}
    gt = np.zeros((100, 100), bool)
    gt[10:51, 10:51] = True
    r = SegmentationReward(CountingSegmenter(), frame=100)
    r(
        [conv(FULL), conv(GARBAGE)],
        image=[np.zeros((100, 100, 3), np.uint8)] * 2,
        mask=[gt] * 2,
        log_metric=lambda k, v: logged.__setitem__(k, v),
    )
    assert logged["segmentation/mask_iou"] == pytest.approx(0.5)  # IoU 1 and an empty answer
    assert r.last_mean_iou == pytest.approx(0.5)
    assert set(logged) == {"segmentation/mask_iou", "segmentation/s_measure", "segmentation/empty"}
    with pytest.raises(ValueError, match="mask"):
        r([conv(FULL)], image=[np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="frame"):
        SegmentationReward(CountingSegmenter(), frame=0)
    with pytest.raises(ValueError, match="weight"):
        SegmentationReward(CountingSegmenter(), iou_weight=-1)


def test_segmentation_reward_threads_give_the_same_scores():
    gt = disc()
    images = [np.full((80, 120, 3), v, np.uint8) for v in (0, 50, 100, 150)]
    comps = [conv(FULL)] * 4
    one = SegmentationReward(CountingSegmenter(), frame=100)(comps, image=images, mask=[gt] * 4)
    many = SegmentationReward(CountingSegmenter(), frame=100, num_workers=3)(
        comps, image=images, mask=[gt] * 4
    )
    assert one == many


def test_segmentation_reward_loads_a_segmenter_spec_lazily(monkeypatch):
    loaded = []

    def fake_load(spec, device=None, dtype=None):
        loaded.append((spec, device, dtype))
        return CountingSegmenter()

    import segr1.segmenters

    monkeypatch.setattr(segr1.segmenters, "load_segmenter", fake_load)
    r = SegmentationReward("grabcut", frame=100, device="cpu")
    assert loaded == []
    r([conv(FULL)] * 2, image=[np.zeros((80, 120, 3), np.uint8)] * 2, mask=[disc()] * 2)
    r([conv(FULL)], image=[np.zeros((80, 120, 3), np.uint8)], mask=[disc()])
    assert loaded == [("grabcut", "cpu", None)]


# ------------------------------------------------------------------------------------- with real GrabCut


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)  # dark noisy background
    gt = disc((w, h), center=(70, 50), radius=25)
    image[gt] = (rng.integers(190, 256, (int(gt.sum()), 3))).astype(np.uint8)  # bright disc
    return image, gt


def test_grabcut_exact_gt_box_scores_high_and_garbage_zero():
    from segr1.geometry import mask_to_box

    image, gt = _scene()
    frame = 64
    # the GT box and a centre point, written in the 64x64 model frame
    x1, y1, x2, y2 = mask_to_box(gt)
    sx, sy = frame / gt.shape[1], frame / gt.shape[0]
    box = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
    centre = [round(70 * sx), round(50 * sy)]
    good = (
        f"<think>a bright disc</think> <bbox>[{box[0]},{box[1]},{box[2]},{box[3]}]</bbox>, "
        f"<points>[[{centre[0]},{centre[1]}]]</points>, <labels>[1]</labels>"
    )
    wrong = "<think>t</think> <bbox>[0,0,10,10]</bbox>, <points>[[5,5]]</points>, <labels>[1]</labels>"
    r = SegmentationReward("grabcut", frame=frame)
    out = r([conv(good), conv(GARBAGE), conv(wrong)], image=[Image.fromarray(image)] * 3, mask=[gt] * 3)
    assert out[0] > 0.8, r.last_stats
    assert out[1] == 0.0
    assert out[2] < 0.3
    assert r.last_stats["segment_calls"] == 1


def test_segmentation_reward_pickles_before_loading():
    import pickle

    r = pickle.loads(pickle.dumps(SegmentationReward("grabcut", frame=64, iou_weight=0.5)))
    assert r.iou_weight == 0.5 and r.__name__ == "segmentation"
    assert r([conv(GARBAGE)], image=[np.zeros((8, 8, 3), np.uint8)], mask=[np.ones((8, 8), bool)]) == [0.0]


def test_reward_names_cover_the_registry():
    assert set(rewards.REWARD_NAMES) == {"format", "format_points", "segmentation", "length"}
