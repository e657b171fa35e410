"""segr1.tiered_rewards: SAM-R1's tiered mask-IoU reward with fake and GrabCut segmenters."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fakedata import BoxSegmenter
from segr1.answer import SegPrompt, format_answer
from segr1.answer_json import format_json_answer
from segr1.tiered_rewards import TieredMaskIoUReward, tier_reward, tiered_iou_grabcut


class CountingBoxSegmenter(BoxSegmenter):
    def __init__(self) -> None:
        self.calls: list[int] = []

    def segment(self, image, prompts):
        self.calls.append(len(prompts))
        return super().segment(image, prompts)


def answer(*boxes) -> str:
    return format_json_answer([SegPrompt(boxes=[b]) for b in boxes], "here")


def square_gt(h=100, w=100, box=(20, 20, 59, 59)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = box
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


@pytest.mark.parametrize(
    ("iou", "want"),
    [(1.0, 4.0), (0.81, 4.0), (0.8, 3.0), (0.75, 3.0), (0.7, 2.0), (0.51, 2.0), (0.5, 0.0), (0.0, 0.0)],
)
def test_tier_boundaries_are_strict(iou, want):
    assert tier_reward(iou, ((0.8, 4.0), (0.7, 3.0), (0.5, 2.0))) == want


def test_tiers_by_hand_with_a_box_segmenter():
    # GT is the 40 x 40 square [20..59]; predictions are boxes whose IoU is computed by hand (inclusive pixels)
    gt = square_gt()
    image = np.zeros((100, 100, 3), np.uint8)
    completions = [
        answer([20, 20, 59, 59]),  # IoU 1 -> 4
        answer([20, 20, 59, 63]),  # 1600 / 1760 = 0.909 -> 4
        answer([20, 20, 59, 71]),  # 1600 / 2080 = 0.769 -> 3
        answer([20, 20, 59, 79]),  # 1600 / 2400 = 0.667 -> 2
        answer([20, 20, 59, 99]),  # 1600 / 3200 = 0.5 -> 0 (not > 0.5)
        answer([20, 20, 39, 59], [40, 20, 59, 59]),  # two objects whose union is the square -> 4
        "<think>no answer</think>",  # -> 0
    ]
    seg = CountingBoxSegmenter()
    reward = TieredMaskIoUReward(seg)
    got = reward(completions, image=[image] * len(completions), mask=[gt] * len(completions))
    assert got == [4.0, 4.0, 3.0, 2.0, 0.0, 4.0, 0.0]
    # one call for the one distinct image: one prompt set per object (the two-object answer gives two), the
    # unparsable answer left out
    assert seg.calls == [7]
    assert reward.last_stats["mask_iou"] == pytest.approx(
        (1 + 1600 / 1760 + 1600 / 2080 + 1600 / 2400 + 0.5 + 1) / 7
    )
    assert reward.last_stats["tier_0.8"] == pytest.approx(3 / 7) and reward.last_stats["errors"] == 0.0


def test_frames_tags_custom_tiers_and_logging():
    gt = square_gt(200, 200, (40, 40, 119, 119))
    image = np.zeros((200, 200, 3), np.uint8)
    # model frame 100: the box [20, 20, 59.5, 59.5] maps to [40, 40, 119, 119] in the 200 x 200 image
    scaled = TieredMaskIoUReward(BoxSegmenter(), frame=100)
    assert scaled([answer([20, 20, 59.5, 59.5])], image=[image], mask=[gt]) == [4.0]
    tags = TieredMaskIoUReward(BoxSegmenter(), answer_format="tags", tiers=[(0.9, 1.0)])
    tag_answer = format_answer(SegPrompt(boxes=[[40, 40, 119, 119]]), think="t")
    logged: dict[str, float] = {}
    out = tags([tag_answer, answer([40, 40, 119, 119])], image=[image] * 2, mask=[gt] * 2,
               log_metric=lambda k, v: logged.__setitem__(k, v))  # fmt: skip
    assert out == [1.0, 0.0]  # the JSON answer means nothing to the tag parser
    assert logged == {"tiered_mask_iou/mask_iou": 0.5, "tiered_mask_iou/tier_0.9": 0.5}


def test_failures_score_zero_and_bad_options():
    class Failing:
        name = "failing"

        def segment(self, image, prompts):
            raise RuntimeError("boom")

    image = np.zeros((50, 50, 3), np.uint8)
    r = TieredMaskIoUReward(Failing())
    assert r([answer([1, 1, 9, 9])] * 2, image=[image] * 2, mask=[square_gt(50, 50, (1, 1, 9, 9))] * 2) == [
        0,
        0,
    ]
    assert r.last_stats["errors"] == 2.0
    r = TieredMaskIoUReward(BoxSegmenter())
    assert r([answer([1, 1, 9, 9])], image=[image], mask=["/no/such/mask.png"]) == [0.0]
    with pytest.raises(ValueError, match="mask"):
        r([answer([1, 1, 9, 9])], image=[image])
    for bad, match in (({"tiers": [(0.5, 1), (0.7, 2)]}, "decreasing"), ({"tiers": []}, "non-empty"),
                       ({"answer_format": "xml"}, "answer_format")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            TieredMaskIoUReward(BoxSegmenter(), **bad)


def test_grabcut_instance_end_to_end_and_pickles():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (96, 96, 3), dtype=np.uint8)
    gt = square_gt(96, 96, (30, 30, 69, 69))
    image[gt] = (220, 60, 60)
    got = tiered_iou_grabcut(
        [answer([30, 30, 69, 69]), answer([0, 0, 10, 10])], image=[image] * 2, mask=[gt] * 2
    )
    assert got[0] == 4.0 and got[1] == 0.0
    copy = pickle.loads(pickle.dumps(tiered_iou_grabcut))
    assert copy.__name__ == "tiered_iou_grabcut" and copy.frame_from_image
