"""Multi-object results end to end: one mask per object in `SegResult`, the instance overlay, and the
per-instance files and lines `segr1 segment` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segr1.answer import SegPrompt
from segr1.commands.segment import instance_file_name, segment_files
from segr1.overlay import draw_instance_overlay, draw_overlay, instance_color
from segr1.pipeline import ERROR_UNPARSABLE, SegR1Pipeline, SegResult
from segr1.policies import Generation

TWO_BOXES = (
    "<think>two</think> <bbox>[10,10,40,40]</bbox>, <bbox>[60,20,90,70]</bbox>, "
    "<points>[[20,20],[70,30],[5,90]]</points>, <labels>[1,1,0]</labels>"
)
VR_THREE = (
    '<think>three</think><answer>[{"bbox_2d": [0,0,20,20], "point_2d": [10,10]}, {"bbox_2d": [30,30,50,50], '
    '"point_2d": [40,40]}, {"bbox_2d": [10,60,90,90], "point_2d": [50,75]}]</answer>'
)


class Fixed:
    """A policy answering ``answer`` to everything (model frame = image frame when both are 100 px)."""

    name = "fixed"
    frame = None

    def __init__(self, answer: str, metadata: dict | None = None) -> None:
        self.answer, self.metadata = answer, metadata or {}

    def generate_detailed(self, images, instructions, num_samples=1, **kwargs):
        n = len(images)
        return Generation([[self.answer] * num_samples] * n, [[False] * num_samples] * n)

    def generate(self, images, instructions, **kwargs):
        return self.generate_detailed(images, instructions, **kwargs).texts


class BoxSegmenter:
    """Each prompt set's mask is its boxes filled; records the prompt sets it got per call."""

    name = "boxes"

    def __init__(self) -> None:
        self.calls: list[list[SegPrompt]] = []

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes.round().astype(int):
                m[y1 : y2 + 1, x1 : x2 + 1] = True
            out.append(m)
        return out


IMAGE = np.full((100, 100, 3), 120, np.uint8)


def test_seg_r1_tags_with_several_boxes_are_one_instance_per_box():
    seg = BoxSegmenter()
    result = SegR1Pipeline(Fixed(TWO_BOXES), seg, frame=100)(IMAGE)
    assert len(seg.calls) == 1  # one segmenter call for all the objects of an image
    assert result.n_instances == 2
    assert [p.boxes.tolist() for p in result.instance_prompts] == [[[10, 10, 40, 40]], [[60, 20, 90, 70]]]
    assert [p.points.tolist() for p in result.instance_prompts] == [[[20, 20]], [[70, 30]]]  # inside its box
    assert [int(m.sum()) for m in result.instances] == [31 * 31, 31 * 51]
    assert np.array_equal(result.mask, result.instances[0] | result.instances[1])
    assert result.prompt.points.shape == (3, 2)  # the union prompt keeps every point, as before
    # one colour per instance in the overlay
    assert np.array_equal(
        result.overlay, draw_instance_overlay(IMAGE, result.instances, result.instance_prompts)
    )
    assert tuple(result.overlay[25, 25]) != tuple(result.overlay[45, 75])


def test_one_object_keeps_the_single_mask_overlay_and_failures_have_no_instance():
    one = TWO_BOXES.replace("<bbox>[60,20,90,70]</bbox>, ", "")
    result = SegR1Pipeline(Fixed(one), BoxSegmenter(), frame=100)(IMAGE)
    assert result.n_instances == 1 and np.array_equal(result.instances[0], result.mask)
    assert np.array_equal(result.overlay, draw_overlay(IMAGE, result.mask, result.prompt))
    bad = SegR1Pipeline(Fixed("<think>no idea</think>"), BoxSegmenter(), frame=100)(IMAGE)
    assert bad.error == ERROR_UNPARSABLE and bad.instances == [] and bad.to_dict()["n_instances"] == 0


def test_seg_result_built_without_instances_has_its_mask_as_the_one_instance():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    prompt = SegPrompt([[0, 0, 2, 2]])
    r = SegResult("a", prompt, prompt, mask, np.zeros((4, 4, 3), np.uint8))
    assert r.instances == [mask] and r.instance_prompts == [prompt]
    empty = SegResult("a", prompt, prompt, np.zeros((4, 4), bool), np.zeros((4, 4, 3), np.uint8))
    assert empty.instances == []
    with pytest.raises(ValueError, match="instance prompts"):
        SegResult("a", prompt, prompt, mask, np.zeros((4, 4, 3), np.uint8), instances=[mask, mask])


def test_instance_overlay_colours_and_checks():
    masks = [np.zeros((20, 20), bool) for _ in range(3)]
    masks[0][:5, :5] = masks[1][10:, 10:] = masks[2][:5, 15:] = True
    out = draw_instance_overlay(np.zeros((20, 20, 3), np.uint8), masks)
    colours = {tuple(out[2, 2]), tuple(out[15, 15]), tuple(out[2, 17])}
    assert len(colours) == 3 and tuple(out[8, 2]) == (0, 0, 0)  # background untouched
    assert instance_color(0) != instance_color(1) and instance_color(0) == instance_color(10)
    with pytest.raises(ValueError, match="prompts"):
        draw_instance_overlay(np.zeros((20, 20, 3), np.uint8), masks, [SegPrompt()])


def test_segment_writes_one_mask_per_instance_and_cleans_up_on_rerun(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("scene.png", "scene_inst1.png"):  # an image whose own stem looks like an instance file
        Image.fromarray(IMAGE).save(src / name)
    out = tmp_path / "out"
    out.mkdir()
    pipe = SegR1Pipeline(Fixed(VR_THREE, {"prompt_style": "vision-reasoner"}), BoxSegmenter(), frame=100)
    assert segment_files(pipe, [src / "scene.png", src / "scene_inst1.png"], out, text="all the squares") == 0
    lines = {json.loads(x)["stem"]: json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()}
    line = lines["scene"]
    assert (line["prompt_style"], line["answer_format"], line["n_instances"]) == ("vision-reasoner", "vision-reasoner-json", 3)  # fmt: skip
    for k, entry in enumerate(line["instances"], start=1):
        path = out / instance_file_name("scene", k)
        assert entry["mask"] == str(path)
        mask = np.asarray(Image.open(path)) > 128
        assert int(mask.sum()) == entry["mask_area"] > 0
    assert (out / "scene_inst1_mask.png").is_file() and (out / "scene_inst1_inst3.png").is_file()
    # a rerun whose answer holds one object: no stale instance file, its one instance is the mask itself
    single = SegR1Pipeline(
        Fixed(TWO_BOXES.replace("<bbox>[60,20,90,70]</bbox>, ", "")), BoxSegmenter(), frame=100
    )
    assert segment_files(single, [src / "scene.png"], out) == 0
    assert not (out / "scene_inst1.png").exists() and not (out / "scene_inst3.png").exists()
    assert (out / "scene_inst1_inst1.png").is_file()  # the other image's outputs are kept
    lines = {json.loads(x)["stem"]: json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()}
    assert lines["scene"]["instances"][0]["mask"] == str(out / "scene_mask.png")
    assert lines["scene_inst1"]["n_instances"] == 3


def test_the_demo_shows_each_object_in_its_own_colour(tmp_path):
    from segr1.app.fakes import RedBlobPolicy, red_discs_scene
    from segr1.app.handler import DemoLimits, handle_request

    image, _ = red_discs_scene(120, 90, [(30, 30, 12), (85, 60, 14)])
    path = tmp_path / "two.png"
    Image.fromarray(image).save(path)
    pipes = {"foreground": SegR1Pipeline(RedBlobPolicy(frame=120, per_blob=True), BoxSegmenter())}
    r = handle_request(pipes, path, "foreground", None, DemoLimits(), tmp_path / "out")
    assert r.details["n_instances"] == 2 and "2 objects, each in its own colour" in r.status
    assert r.status.startswith("ok: mask covers")
    assert tuple(r.overlay[30, 38]) != tuple(r.overlay[60, 95])  # two colours (beside the points)
    single = {"foreground": SegR1Pipeline(RedBlobPolicy(frame=120), BoxSegmenter())}
    r1 = handle_request(single, path, "foreground", None, DemoLimits(), tmp_path / "out")
    assert r1.details["n_instances"] == 1 and "objects" not in r1.status
