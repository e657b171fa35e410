"""SegR1Pipeline: answer -> prompt (image frame) -> mask -> overlay, with fake policies and GrabCut."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segr1.app.fakes import iou, red_discs_scene
from segr1.pipeline import (
    ERROR_EMPTY_MASK,
    ERROR_TRUNCATED,
    ERROR_UNPARSABLE,
    SegR1Pipeline,
    SegResult,
    as_rgb_array,
)


class FixedPolicy:
    """Answers every image with the next text from ``answers`` (cycling); records its calls."""

    name = "fixed"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[Image.Image], list[str], dict]] = []
        self._next = 0

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        self.calls.append((list(images), list(instructions), {"temperature": temperature, "system": system}))
        out = []
        for _ in images:
            out.append([self.answers[self._next % len(self.answers)]] * num_samples)
            self._next += 1
        return out


class RedOraclePolicy:
    """Looks at the model-frame image it is given and answers with one box + centre point per red blob.

    Its coordinates are in the model frame, so the pipeline's frame mapping is what makes masks right.
    """

    name = "red-oracle"

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        self.calls.append([im.size for im in images])
        return [[self.answer_for(np.asarray(im.convert("RGB")))] * num_samples for im in images]

    @staticmethod
    def answer_for(arr: np.ndarray) -> str:
        red = (arr[..., 0] > 180) & (arr[..., 1] < 90) & (arr[..., 2] < 90)
        labels, n = ndimage.label(red)
        boxes, points = [], []
        for sl in ndimage.find_objects(labels):
            y, x = sl
            boxes.append(f"<bbox>[{x.start - 2},{y.start - 2},{x.stop + 1},{y.stop + 1}]</bbox>")
            points.append(f"[{(x.start + x.stop) // 2},{(y.start + y.stop) // 2}]")
        if not n:
            return "<think>nothing red</think>"
        return (
            "<think>the red discs</think> "
            + ", ".join(boxes)
            + f", <points>[{','.join(points)}]</points>, <labels>[{','.join('1' * n)}]</labels>"
        )


class CountingSegmenter:
    """Wraps a segmenter and counts calls; or returns all-False masks / raises when asked."""

    name = "counting"

    def __init__(self, inner=None, mode: str = "pass") -> None:
        self.inner, self.mode, self.calls = inner, mode, 0

    def segment(self, image, prompts):
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "empty":
            h, w = np.asarray(image).shape[:2]
            return [np.zeros((h, w), dtype=bool) for _ in prompts]
        return self.inner.segment(image, prompts)


@pytest.fixture(scope="module")
def grabcut():
    from segr1.segmenters import load_segmenter

    return load_segmenter("grabcut")


def test_fixed_answer_non_square_maps_box_to_image_frame_and_segments(grabcut):
    width, height = 240, 160
    image, gt = red_discs_scene(width, height, [(150, 80, 40)])
    frame = 768
    sx, sy = frame / width, frame / height
    box = (106, 36, 194, 124)  # image frame
    answer = (
        f"<think>a red disc</think> <bbox>[{box[0] * sx:.1f},{box[1] * sy:.1f},{box[2] * sx:.1f},{box[3] * sy:.1f}]"
        f"</bbox>, <points>[[{150 * sx:.1f},{80 * sy:.1f}],[{20 * sx:.1f},{20 * sy:.1f}]]</points>, <labels>[1,0]</labels>"
    )
    policy = FixedPolicy(answer)
    pipe = SegR1Pipeline(policy, grabcut, task="foreground")
    assert pipe.frame == frame

    result = pipe(Image.fromarray(image))

    assert isinstance(result, SegResult)
    assert result.error is None and result.ok
    assert result.answer == answer
    np.testing.assert_allclose(result.prompt.boxes, [box], atol=0.2)
    np.testing.assert_allclose(result.prompt.points, [[150, 80], [20, 20]], atol=0.2)
    np.testing.assert_array_equal(result.prompt.labels, [1, 0])
    np.testing.assert_allclose(result.prompt_model_frame.boxes[0, 2], box[2] * sx, atol=0.1)
    assert result.mask.shape == (height, width) and result.mask.dtype == bool
    assert iou(result.mask, gt) > 0.8
    assert result.overlay.shape == (height, width, 3) and result.overlay.dtype == np.uint8
    assert result.image_size == (width, height)
    assert set(result.timings) >= {"generate_s", "segment_s"}
    # the policy saw the image resized to the square model frame
    ((images, instructions, _),) = policy.calls
    assert [im.size for im in images] == [(frame, frame)]
    assert len(instructions) == 1 and instructions[0]


def test_multi_box_answer_gives_union_mask(grabcut):
    image, gt = red_discs_scene(300, 200, [(70, 70, 35), (220, 130, 45)], seed=1)
    policy = RedOraclePolicy()
    result = SegR1Pipeline(policy, grabcut, frame=512)(image)

    assert result.ok, result.error
    assert len(result.prompt.boxes) == 2
    assert iou(result.mask, gt) > 0.8
    labels, _ = ndimage.label(gt)
    for k in (1, 2):  # each disc is mostly covered
        assert result.mask[labels == k].mean() > 0.8


def test_unparsable_answer_records_error_and_empty_mask():
    segmenter = CountingSegmenter(mode="raise")  # must not even be called
    image, _ = red_discs_scene(90, 60, [(45, 30, 10)])
    result = SegR1Pipeline(FixedPolicy("I cannot see anything."), segmenter)(image)

    assert result.error == ERROR_UNPARSABLE and not result.ok
    assert result.mask.shape == (60, 90) and not result.mask.any()
    assert result.overlay.shape == (60, 90, 3)
    np.testing.assert_array_equal(result.overlay, image)  # nothing to draw
    assert result.prompt.is_empty
    assert segmenter.calls == 0


def test_empty_mask_and_segmenter_failure_are_recorded_not_raised():
    image, _ = red_discs_scene(80, 64, [(40, 32, 12)])
    answer = "<bbox>[100,100,600,600]</bbox>"
    empty = SegR1Pipeline(FixedPolicy(answer), CountingSegmenter(mode="empty"))(image)
    assert empty.error == ERROR_EMPTY_MASK
    assert empty.prompt.boxes.shape == (1, 4)

    failed = SegR1Pipeline(FixedPolicy(answer), CountingSegmenter(mode="raise"))([image, image])
    assert [r.error.startswith("segmentation failed") for r in failed] == [True, True]
    assert all(r.mask.shape == (64, 80) and not r.mask.any() for r in failed)


def test_batch_of_different_sizes_one_policy_call_per_batch(grabcut):
    sizes = [(200, 120), (96, 300), (160, 160)]
    scenes = [
        red_discs_scene(w, h, [(w * 0.55, h * 0.45, min(w, h) * 0.25)], seed=i)
        for i, (w, h) in enumerate(sizes)
    ]
    policy = RedOraclePolicy()
    segmenter = CountingSegmenter(grabcut)
    pipe = SegR1Pipeline(policy, segmenter, frame=384, batch_size=2)

    inputs = [Image.fromarray(scenes[0][0]), scenes[1][0], Image.fromarray(scenes[2][0])]
    results = pipe(inputs)

    assert isinstance(results, list) and len(results) == 3
    assert policy.calls == [[(384, 384)] * 2, [(384, 384)]]
    assert segmenter.calls == 3
    for (w, h), (_, gt), result in zip(sizes, scenes, results, strict=True):
        assert result.ok, result.error
        assert result.mask.shape == (h, w)
        assert result.overlay.shape == (h, w, 3)
        assert iou(result.mask, gt) > 0.8


def test_texts_are_put_in_the_instructions_and_required_for_referring():
    image, _ = red_discs_scene(64, 48, [(30, 20, 8)])
    policy = FixedPolicy("<bbox>[0,0,10,10]</bbox>")
    seg = CountingSegmenter(mode="empty")
    pipe = SegR1Pipeline(policy, seg, task="referring", system="be brief", temperature=0.5)
    assert pipe.frame == 1024
    pipe([image, image], ["the red ball", "the second thing"])
    _, instructions, kwargs = policy.calls[0]
    assert "the red ball" in instructions[0] and "the second thing" in instructions[1]
    assert kwargs == {"temperature": 0.5, "system": "be brief"}

    with pytest.raises(ValueError, match="needs a text"):
        pipe(image)
    with pytest.raises(ValueError, match="texts"):
        pipe([image, image], ["only one"])


def test_results_serialise_to_one_json_line(grabcut):
    import json

    image, _ = red_discs_scene(120, 90, [(60, 45, 20)])
    result = SegR1Pipeline(RedOraclePolicy(), grabcut, frame=256)(image)
    line = result.to_json(image="x.png")
    assert "\n" not in line
    record = json.loads(line)
    assert record["image"] == "x.png"
    assert record["error"] is None
    assert record["image_size"] == [120, 90]
    assert len(record["prompt"]["boxes"]) == 1
    assert record["mask_area"] == int(result.mask.sum())


def test_frame_defaults_to_the_policys_own_frame_then_the_task_default():
    policy = FixedPolicy("x")
    assert SegR1Pipeline(policy, CountingSegmenter()).frame == 768
    policy.frame = 224  # a checkpoint that records the frame it was trained at
    assert SegR1Pipeline(policy, CountingSegmenter()).frame == 224
    assert SegR1Pipeline(policy, CountingSegmenter(), frame=512).frame == 512
    policy.frame = None
    assert SegR1Pipeline(policy, CountingSegmenter(), task="reasoning").frame == 1024


def test_default_system_prompt_follows_the_task_and_style():
    from segr1.prompts import system_prompt
    from segr1.styles.seg_r1 import SYSTEM_EVAL

    # a policy that records nothing is prompted like the released checkpoints (seg-r1 style)
    assert SegR1Pipeline(FixedPolicy("x"), CountingSegmenter()).system == SYSTEM_EVAL
    segr1 = SegR1Pipeline(FixedPolicy("x"), CountingSegmenter(), prompt_style="segr1")
    assert segr1.system == system_prompt("foreground")
    assert SegR1Pipeline(FixedPolicy("x"), CountingSegmenter(), system="").system is None
    assert SegR1Pipeline(FixedPolicy("x"), CountingSegmenter(), task="prerl").system is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task": "nope"},
        {"frame": 0},
        {"frame": 12.5},
        {"batch_size": 0},
        {"temperature": -1.0},
        {"max_new_tokens": 0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        SegR1Pipeline(FixedPolicy("x"), CountingSegmenter(), **kwargs)


def test_as_rgb_array_accepts_common_inputs():
    grey = np.full((5, 7), 9, dtype=np.uint8)
    assert as_rgb_array(grey).shape == (5, 7, 3)
    rgba = np.zeros((5, 7, 4), dtype=np.uint8)
    assert as_rgb_array(rgba).shape == (5, 7, 3)
    assert as_rgb_array(np.ones((2, 3, 3), dtype=np.float32)).max() == 255
    assert as_rgb_array(Image.new("L", (7, 5))).shape == (5, 7, 3)
    with pytest.raises(ValueError):
        as_rgb_array(np.zeros((5, 7, 2), dtype=np.uint8))
    with pytest.raises(TypeError):
        as_rgb_array("image.png")  # type: ignore[arg-type]


def test_integration_tiny_policy_and_grabcut():
    """The real tiny policy runs end to end; its (untrained) answer may not parse, but the result is well formed."""
    pytest.importorskip("transformers")
    from segr1.policies import load_policy
    from segr1.policies.tiny import tiny_model_dir
    from segr1.segmenters import load_segmenter

    policy = load_policy(str(tiny_model_dir()), device="cpu")
    pipe = SegR1Pipeline(policy, load_segmenter("grabcut"), frame=224, max_new_tokens=24)
    images = [red_discs_scene(100, 70, [(50, 35, 15)])[0], red_discs_scene(64, 96, [(30, 50, 12)])[0]]
    results = pipe(images)
    for image, result in zip(images, results, strict=True):
        assert isinstance(result.answer, str)
        assert result.mask.shape == image.shape[:2]
        assert result.overlay.shape == image.shape
        assert result.error in (None, ERROR_UNPARSABLE, ERROR_TRUNCATED, ERROR_EMPTY_MASK)
        assert (result.error in (ERROR_UNPARSABLE, ERROR_TRUNCATED)) == result.prompt.is_empty
        assert (result.error == ERROR_TRUNCATED) == (result.prompt.is_empty and result.truncated)


def test_system_prompt_follows_the_checkpoint_record():
    """A policy trained without a system turn is prompted without one; others get Seg-R1's."""
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import recorded_system_prompt
    from segr1.prompts import system_prompt
    from segr1.styles.seg_r1 import SYSTEM_EVAL

    class Recorded:
        name, frame = "recorded", 224

        def __init__(self, metadata):
            self.metadata = metadata

    seg = object()
    assert SegR1Pipeline(Recorded({"system_prompt": None}), seg).system is None
    assert SegR1Pipeline(Recorded({"segr1_args": {"system_prompt": "none"}}), seg).system is None
    assert SegR1Pipeline(Recorded({"system_prompt": "Be brief."}), seg).system == "Be brief."
    assert SegR1Pipeline(Recorded({}), seg).system == SYSTEM_EVAL  # records no style: seg-r1's
    own = {"prompt_style": "segr1"}
    assert SegR1Pipeline(Recorded(own), seg).system == system_prompt("foreground")
    assert SegR1Pipeline(Recorded({**own, "system_prompt": "default"}), seg).system == system_prompt(
        "foreground"
    )
    assert SegR1Pipeline(Recorded({"system_prompt": None}), seg, system="Explicit.").system == "Explicit."
    assert recorded_system_prompt(None) is None


def test_a_text_first_style_asks_the_policy_for_the_text_before_the_image():
    """The pipeline passes ``image_first=False`` only for a text-first style; policies that do not take the
    keyword (every fake above) keep working with the image-first styles."""
    from segr1.segmenters.grabcut import GrabCutSegmenter

    class OrderPolicy(FixedPolicy):
        def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256,
                     system=None, **order):  # fmt: skip
            self.orders = getattr(self, "orders", []) + [order]
            return super().generate(images, instructions, num_samples, temperature, max_new_tokens, system)

    scene = red_discs_scene(160, 120, [(60, 60, 20)])[0]
    answer = "<think>x</think> <bbox>[10,10,100,100]</bbox>, <points>[[50,50]]</points>, <labels>[1]</labels>"
    for style, want in (("segr1-text-first", {"image_first": False}), ("segr1", {}), ("seg-r1", {})):
        policy = OrderPolicy(answer)
        pipe = SegR1Pipeline(policy, GrabCutSegmenter(), task="referring", prompt_style=style)
        pipe(scene, texts="the red disc")
        assert policy.orders == [want], style
