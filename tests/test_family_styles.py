"""The Seg-Zero and VisionReasoner prompt styles and answer formats: their exact texts, frames and budgets, how a
checkpoint gets them (hub id, recorded style), and the pipeline prompting and parsing in them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from segr1.family import SEG_ZERO, SEG_ZERO_TEMPLATE, VISION_REASONER, VISION_REASONER_TEMPLATE
from segr1.formats import FORMATS, format_for, get_format
from segr1.pipeline import SegR1Pipeline
from segr1.policies import Generation, known_metadata, policy_metadata
from segr1.protocol import for_style, get_protocol
from segr1.styles import STAGES, TASKS, checkpoint_style, get_style, style_for
from segr1.styles._family import FOREGROUND_QUESTION

# The rendered texts, written out by hand from the two projects' scripts (not built from segr1.family).
SZ_EVAL = (
    "Please find 'the dog on the left' with bbox and points.Compare the difference between objects and find the "
    "most closely matched one.Output the thinking process in <think> </think> and final answer in <answer> "
    "</answer> tags.Output the one bbox and points of two largest inscribed circles inside the interested object "
    "in JSON format.i.e., <think> thinking process here </think><answer>{'bbox': [10,100,200,210], 'points_1': "
    "[30,110], 'points_2': [35,180]}</answer>"
)
VR_EVAL = (
    'Please find "what holds water" with bboxs and points.Compare the difference between object(s) and find the '
    "most closely matched object(s).Output the thinking process in <think> </think> and final answer in <answer> "
    "</answer> tags.Output the bbox(es) and point(s) inside the interested object(s) in JSON format.i.e., <think> "
    'thinking process here </think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": '
    '[225,296,706,786], "point_2d": [302,410]}]</answer>'
)

VR_ANSWER = (
    '<think>two red shapes</think><answer>[{"bbox_2d": [84,84,252,252], "point_2d": [168,168]}, '
    '{"bbox_2d": [504,504,756,756], "point_2d": [630,630]}]</answer>'
)
SZ_ANSWER = '<think>one</think><answer>{"bbox": [84,84,252,252], "points_1": [150,150], "points_2": [180,180]}</answer>'


def test_user_texts_are_the_projects_own_byte_for_byte():
    sz, vr = get_style("seg-zero"), get_style("vision-reasoner")
    assert sz.user("referring", "The dog on the left.") == SZ_EVAL
    assert vr.user("reasoning", "What holds water?", query_kind="phrase") == VR_EVAL
    assert vr.user("referring", "What holds water?") == VR_EVAL  # the same template for every query
    # training (EasyR1): '.' stripped only, VisionReasoner's newline after the <image> placeholder
    assert vr.user("referring", "What holds water?", stage="train") == "\n" + VR_EVAL.replace(
        '"what holds water"', '"what holds water?"'
    )
    assert sz.user("referring", "The dog on the left.", stage="sft") == SZ_EVAL
    for style, template in ((sz, SEG_ZERO_TEMPLATE), (vr, VISION_REASONER_TEMPLATE)):
        assert style.user("foreground") == style.protocol.user_text(FOREGROUND_QUESTION)
        assert template.split("{Question}")[0] in style.user("prerl")


def test_system_turns_frames_budgets_and_order():
    for name, fam in (("seg-zero", SEG_ZERO), ("vision-reasoner", VISION_REASONER)):
        style = get_style(name)
        for task in TASKS:
            for stage in STAGES:
                assert style.frame(task, stage) == 840
                training = stage in ("train", "sft")
                assert style.system(task, stage) == ("You are a helpful assistant." if training else None)
                budget = fam.max_response_length if training else fam.max_new_tokens
                assert style.max_new_tokens(task, stage) == budget
                messages = style.messages("IMG", "t", style.system(task, stage), stage=stage)
                assert [b["type"] for b in messages[-1]["content"]] == ["image", "text"]
            assert style.asks_think(task)
        assert style.frame_filter == "bilinear"
    assert (get_style("seg-zero").max_new_tokens("referring"), get_style("vision-reasoner").max_new_tokens("referring")) == (1024, 2048)  # fmt: skip
    assert get_style("seg-zero").answer_format == "seg-zero-json"
    assert get_style("vision-reasoner").answer_format == "vision-reasoner-json"
    assert get_style("segr1").answer_format == get_style("seg-r1").answer_format == "seg-r1"


def test_hub_ids_resolve_to_their_family_without_loading(tmp_path):
    assert checkpoint_style("Ricky06662/Seg-Zero-7B") == "seg-zero"
    assert checkpoint_style("hf:ricky06662/visionreasoner-7b") == "vision-reasoner"
    assert checkpoint_style("Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest") == "seg-zero"
    assert checkpoint_style("geshang/Seg-R1-7B") is None and checkpoint_style(None) is None
    meta = known_metadata("Ricky06662/VisionReasoner-7B")
    assert meta == {"prompt_style": "vision-reasoner", "answer_format": "vision-reasoner-json"}
    assert style_for(meta).name == "vision-reasoner" and format_for(meta).name == "vision-reasoner-json"
    assert known_metadata("geshang/Seg-R1-7B") == {} and style_for(known_metadata("x/y")).name == "seg-r1"
    assert policy_metadata("Ricky06662/Seg-Zero-7B")["answer_format"] == "seg-zero-json"
    (tmp_path / "segr1_policy.json").write_text(json.dumps({"prompt_style": "seg-zero"}))
    assert policy_metadata(tmp_path) == {"prompt_style": "seg-zero"}  # a folder: its own file
    assert (
        format_for(policy_metadata(tmp_path), style=style_for(policy_metadata(tmp_path))).name
        == "seg-zero-json"
    )


def test_formats_parse_both_layouts_and_render_their_own():
    vr, sz = get_format("vision-reasoner-json"), get_format("seg-zero-json")
    assert vr.multi_object and not sz.multi_object and FORMATS["seg-r1"].multi_object
    objs = vr.objects(VR_ANSWER)
    assert [o.boxes.tolist() for o in objs] == [[[84, 84, 252, 252]], [[504, 504, 756, 756]]]
    assert [o.points.tolist() for o in objs] == [[[168, 168]], [[630, 630]]]
    assert vr.render_objects(objs, "two red shapes") == VR_ANSWER
    union = vr.parse(VR_ANSWER)
    assert union.boxes.shape == (2, 4) and union.points.shape == (2, 2) and union.validity.bbox
    assert vr.render(union, "two red shapes") == VR_ANSWER  # each box with the points inside it
    (one,) = sz.objects(SZ_ANSWER)
    assert one.points.tolist() == [[150, 150], [180, 180]] and one.labels.tolist() == [1, 1]
    assert sz.render_objects([one], "one") == SZ_ANSWER
    assert len(sz.objects(VR_ANSWER)) == 2  # either layout is read
    with pytest.raises(ValueError, match="exactly one object"):
        sz.render_objects(objs)
    for bad in ("", "<answer>[{", "<think>x</think>", "<answer>" + "[" * 5000 + "</answer>", None):
        assert vr.objects(bad) == [] and vr.parse(bad).is_empty  # type: ignore[arg-type]
    tags = FORMATS["seg-r1"]
    text = "<think>t</think> <bbox>[0,0,10,10]</bbox>, <bbox>[20,20,40,40]</bbox>, <points>[[5,5],[30,30],[60,60]]</points>, <labels>[1,1,0]</labels>"
    assert [o.points.tolist() for o in tags.objects(text)] == [
        [[5, 5]],
        [[30, 30]],
    ]  # points go with their box
    assert tags.render_objects(tags.objects(text), "t") == tags.render(tags.parse(text).__class__(
        [[0, 0, 10, 10], [20, 20, 40, 40]], [[5, 5], [30, 30]], [1, 1]), "t")  # fmt: skip


def test_a_style_that_fixes_its_filter_wins_over_the_protocol():
    assert get_protocol().frame_filter == "bicubic"
    assert for_style(get_protocol(), get_style("vision-reasoner")).frame_filter == "bilinear"
    same = get_protocol()
    assert for_style(same, get_style("segr1")) is same


class Recorder:
    """A policy that records what it is asked and answers ``answer``; ``metadata`` as a checkpoint's."""

    def __init__(self, answer: str, metadata: dict, name: str = "recorder") -> None:
        self.answer, self.metadata, self.name, self.frame = answer, metadata, name, None
        self.calls: list[dict] = []

    def generate_detailed(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):  # fmt: skip
        self.calls.append({"sizes": [im.size for im in images], "images": list(images),
                           "instructions": list(instructions), "system": system, "budget": max_new_tokens})  # fmt: skip
        n = len(images)
        return Generation([[self.answer] * num_samples] * n, [[False] * num_samples] * n)

    def generate(self, images, instructions, **kwargs):
        return self.generate_detailed(images, instructions, **kwargs).texts


class BoxSegmenter:
    """Each prompt set's mask is its box filled (image frame); records the prompt sets."""

    name = "boxes"

    def __init__(self) -> None:
        self.seen: list[list] = []

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        self.seen.append(list(prompts))
        out = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes.round().astype(int):
                m[y1 : y2 + 1, x1 : x2 + 1] = True
            out.append(m)
        return out


def test_a_seg_zero_hub_id_is_prompted_and_parsed_as_seg_zero():
    image = np.zeros((420, 840, 3), np.uint8)
    image[:, :, 0] = np.arange(840, dtype=np.uint8)[None, :] % 251  # something a filter changes
    policy = Recorder(SZ_ANSWER, known_metadata("Ricky06662/Seg-Zero-7B"), name="hf:Ricky06662/Seg-Zero-7B")
    seg = BoxSegmenter()
    pipe = SegR1Pipeline(policy, seg, task="referring")
    assert (pipe.style.name, pipe.answer_format.name, pipe.frame, pipe.max_new_tokens) == ("seg-zero", "seg-zero-json", 840, 1024)  # fmt: skip
    result = pipe(image, "The dog on the left.")
    (call,) = policy.calls
    assert call["instructions"] == [SZ_EVAL] and call["system"] is None and call["sizes"] == [(840, 840)]
    expected = Image.fromarray(image).resize((840, 840), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(call["images"][0]), np.asarray(expected))  # PIL bilinear, as Seg-Zero
    (prompts,) = seg.seen
    assert len(prompts) == 1 and prompts[0].points.shape == (2, 2)  # one object with both points
    # model frame 840 -> image 840 x 420: x unchanged, y halved
    assert result.prompt.boxes.tolist() == [[84, 42, 252, 126]] and result.ok and result.n_instances == 1


def test_a_recorded_vision_reasoner_style_gives_one_instance_per_entry():
    policy = Recorder(VR_ANSWER, {"prompt_style": "vision-reasoner"})
    seg = BoxSegmenter()
    pipe = SegR1Pipeline(policy, seg, task="referring")
    assert pipe.answer_format.name == "vision-reasoner-json"  # the style's own format
    result = pipe(np.zeros((840, 840, 3), np.uint8), "all the red shapes")
    assert policy.calls[0]["budget"] == 2048 and policy.calls[0]["instructions"][0].startswith(
        'Please find "all'
    )
    assert result.n_instances == 2 and [p.boxes.tolist() for p in result.instance_prompts] == [
        [[84, 84, 252, 252]], [[504, 504, 756, 756]]]  # fmt: skip
    assert np.array_equal(result.mask, result.instances[0] | result.instances[1])
    assert [m.sum() for m in result.instances] == [169 * 169, 253 * 253]
    d = result.to_dict()
    assert d["n_instances"] == 2 and [i["mask_area"] for i in d["instances"]] == [169 * 169, 253 * 253]
    # an explicit style wins over the recorded format; an explicit format over both
    tagged = SegR1Pipeline(Recorder(VR_ANSWER, {"prompt_style": "segr1", "answer_format": "seg-r1"}), seg,
                           prompt_style="vision-reasoner")  # fmt: skip
    assert tagged.answer_format.name == "vision-reasoner-json"
    forced = SegR1Pipeline(policy, seg, answer_format="seg-r1")
    assert forced.answer_format.name == "seg-r1" and not forced(np.zeros((64, 64, 3), np.uint8)).ok


@pytest.fixture(scope="module")
def tiny_vr_folder(tmp_path_factory):
    """A copy of the offline tiny model whose segr1_policy.json records the vision-reasoner style."""
    from segr1.policies.tiny import tiny_model_dir

    folder = tmp_path_factory.mktemp("tiny-vr") / "policy"
    shutil.copytree(tiny_model_dir(), folder)
    meta = json.loads((folder / "segr1_policy.json").read_text())
    meta.update(prompt_style="vision-reasoner", frame=224)
    (folder / "segr1_policy.json").write_text(json.dumps(meta))
    return folder


def test_segment_command_uses_the_style_a_tiny_checkpoint_records(tiny_vr_folder, tmp_path, monkeypatch):
    from segr1.cli import main
    from segr1.policies.hf import HFPolicy

    seen: list[list[str]] = []
    original = HFPolicy.generate_detailed

    def spy(self, images, instructions, *args, **kwargs):
        seen.append(list(instructions))
        return original(self, images, instructions, *args, **kwargs)

    monkeypatch.setattr(HFPolicy, "generate_detailed", spy)
    image = tmp_path / "scene.png"
    Image.new("RGB", (96, 64), (90, 120, 150)).save(image)
    out = tmp_path / "out"
    code = main(["segment", str(image), "--task", "referring", "--text", "the blue star", "--model",
                 str(tiny_vr_folder), "--out", str(out), "--max-new-tokens", "8", "--device", "cpu", "--segmenter", "grabcut"])  # fmt: skip
    assert code in (0, 1)  # an untrained tiny model rarely answers in JSON
    assert seen == [[get_style("vision-reasoner").user("referring", "the blue star")]]
    (line,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert (line["prompt_style"], line["answer_format"]) == ("vision-reasoner", "vision-reasoner-json")
    assert line["frame"] == 224  # the frame the checkpoint records wins over the style's 840
    code = main(["segment", str(image), "--model", str(tiny_vr_folder), "--out", str(out), "--max-new-tokens",
                 "4", "--device", "cpu", "--prompt-style", "segr1", "--answer-format", "seg-r1", "--segmenter", "grabcut"])  # fmt: skip
    (line,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert (line["prompt_style"], line["answer_format"]) == ("segr1", "seg-r1")
