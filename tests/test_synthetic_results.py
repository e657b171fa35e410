"""scripts/synthetic_results.py and segr1.evaluate.baselines: the references a policy must beat (fixed box
chosen on validation scenes, text-blind object baselines), cIoU / gIoU, positive points in the target,
per-sample task and text, margin rows and the picture grid."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import fakedata as fd
from segr1.answer import SegPrompt
from segr1.data.records import Sample
from segr1.evaluate import baselines as b

ROOT = Path(__file__).resolve().parents[1]
TINY_POLICY = ROOT / "src" / "segr1" / "assets" / "tiny-policy"


@pytest.fixture(scope="module")
def script():
    return fd.load_script("synthetic_results", register=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from segr1.data.synthetic import write_scenes

    root = tmp_path_factory.mktemp("families")
    out = {}
    for kind in ("salient-hard", "reasoning"):
        for split, seed in (("test", 5000), ("val", 300)):
            out[kind, split] = root / f"{kind}-{split}"
            write_scenes(kind, 3, out[kind, split], seed=seed, min_size=96, max_size=120, progress=False)
    return out


class BoxSegmenter:
    """A stand-in segmenter: the mask is the union of the prompt's boxes (and nothing for points)."""

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        masks = []
        for p in prompts:
            m = np.zeros((h, w), dtype=bool)
            for x1, y1, x2, y2 in np.round(p.boxes).astype(int):
                m[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1] = True
            masks.append(m)
        return masks


def _sample(i: int, gt: np.ndarray, **kw) -> Sample:
    image = np.zeros((*gt.shape, 3), dtype=np.uint8)
    return Sample(f"s{i}", image, gt, **kw)


def test_fixed_box_is_chosen_on_the_given_scenes_from_the_grid():
    grid = b.box_grid()
    assert len(grid) == 16 + 8 and grid["centred, margins x 0.1 y 0.3"] == (0.1, 0.3, 0.9, 0.7)
    top_left = np.zeros((101, 101), dtype=bool)
    top_left[0:51, 0:51] = True  # exactly the top-left quadrant's box
    centre = np.zeros((101, 101), dtype=bool)
    centre[20:81, 20:81] = True  # the centred 0.2 x 0.2 margin box
    got_tl = b.choose_fixed_box([_sample(i, top_left) for i in range(2)], BoxSegmenter())
    got_c = b.choose_fixed_box([_sample(i, centre) for i in range(2)], BoxSegmenter(), workers=2)
    assert got_tl["name"] == "top-left quadrant" and got_tl["val_mean_iou"] == pytest.approx(1.0)
    assert got_c["name"] == "centred, margins x 0.2 y 0.2" and got_c["box"] == [0.2, 0.2, 0.8, 0.8]
    assert got_c["val_mean_iou"] == max(got_c["grid_iou"].values()) and set(got_c["grid_iou"]) == set(grid)
    assert got_c["val_n"] == 2


def test_text_blind_baselines_only_for_multi_object_text_tasks(script, folders):
    fg = script.load_family(folders["salient-hard", "test"], None)
    rs = script.load_family(folders["reasoning", "test"], None)
    assert all(len(b.scene_objects(s)) >= 2 for s in fg)  # several objects, but no text to ignore
    assert not set(b.TEXT_BLIND) & set(b.applicable_references(fg))
    assert set(b.TEXT_BLIND) <= set(b.applicable_references(rs))
    one = [Sample("x", np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), bool), "the star", "referring",
                  {"objects": [{"box": [0, 0, 4, 4], "centre": [2, 2], "area": 16}]})]  # fmt: skip
    assert not set(b.TEXT_BLIND) & set(b.applicable_references(one))
    assert b.BEST_FIXED not in b.applicable_references(rs, has_validation=False)
    with pytest.raises(ValueError, match="unknown references"):
        b.applicable_references(rs, ["nearest object"])


def test_object_prompts_use_the_target_mask_else_the_box_and_centre():
    gt = np.zeros((20, 30), dtype=bool)
    gt[5:16, 12:23] = True  # rows 5..15, cols 12..22: the farthest pixel from the boundary is (17, 10)
    objects = [{"box": [12, 5, 23, 16], "centre": [16.0, 9.0], "area": 121},
               {"box": [0, 0, 6, 6], "centre": [2.5, 2.5], "area": 300}]  # fmt: skip
    sample = Sample(
        "x", np.zeros((20, 30, 3), np.uint8), gt, "q", "reasoning", {"objects": objects, "target": 0}
    )
    largest = b.reference_prompt(b.LARGEST_OBJECT, sample, gt, 0, 0)
    assert largest.boxes.tolist() == [[0.0, 0.0, 5.0, 5.0]] and largest.points.tolist() == [[2.5, 2.5]]
    target = b.object_prompt(objects[0], gt)
    assert target.boxes.tolist() == [[12.0, 5.0, 22.0, 15.0]]  # exclusive end made inclusive
    assert target.points.tolist() == [[17.0, 10.0]] and target.labels.tolist() == [1]
    picks = {b.random_object_index(2, 0, i) for i in range(40)}
    assert picks == {0, 1} and b.random_object_index(2, 0, 3) == b.random_object_index(2, 0, 3)


def test_positive_points_inside_on_a_hand_made_prompt():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:5, 2:5] = True
    prompt = SegPrompt(points=[[3, 3], [8, 8], [4, 2], [2.6, 2.4], [-1, 3]], labels=[1, 1, 0, 1, 1])
    assert b.positive_points_inside(prompt, gt) == (4, 2)  # (3,3), (2.6,2.4)->(3,2) in; (8,8), (-1,3) out
    assert b.positive_points_inside(SegPrompt(points=[[3, 3]], labels=[0]), gt) == (0, 0)
    cell = b.Cell()
    cell.add("a", b.score_scene(gt, gt, prompt))
    cell.add("b", b.score_scene(gt, gt, SegPrompt(points=[[3, 3]], labels=[1])))
    cell.add("c", b.score_scene(gt, gt, None))
    got = cell.summary()
    assert got["positive_points"] == 5 and got["pos_points_in_target"] == pytest.approx(3 / 5)
    assert got["answers_with_pos_points"] == 2 and got["answers_all_pos_in_target"] == pytest.approx(1 / 3)
    assert b.Cell().summary()["pos_points_in_target"] is None


def test_ciou_and_giou_on_hand_made_masks():
    gt_a = np.zeros((8, 8), dtype=bool)
    gt_a[0:2, 0:2] = True  # 4 pixels, predicted exactly: IoU 1
    gt_b = np.zeros((8, 8), dtype=bool)
    gt_b[4:7, 4:8] = True  # 12 pixels, predicted as 4 other pixels: IoU 0, union 16
    pred_b = np.zeros((8, 8), dtype=bool)
    pred_b[0:2, 6:8] = True
    cell = b.Cell()
    cell.add("a", b.score_scene(gt_a, gt_a, None))
    cell.add("b", b.score_scene(pred_b, gt_b, None))
    got = cell.summary()
    assert got["giou"] == got["mean_iou"] == pytest.approx(0.5)
    assert got["ciou"] == pytest.approx(4 / 20) and got["empty_masks"] == 0


class _FakePipeline:
    batch_size = 2

    def __init__(self, task, calls):
        from segr1.formats import get_format

        self.task, self.calls, self.answer_format = task, calls, get_format("seg-r1")

    def __call__(self, images, texts):
        from types import SimpleNamespace

        self.calls.append((self.task, list(texts)))
        out = []
        for im in images:
            mask = np.zeros(im.shape[:2], dtype=bool)
            mask[: im.shape[0] // 2] = self.task == "reasoning"
            out.append(SimpleNamespace(mask=mask, prompt=SegPrompt(), answer=f"<think>{self.task}</think>"))
        return out


def test_policies_run_each_sample_with_its_own_task_and_text(script, folders):
    samples = script.load_family(folders["salient-hard", "test"], 2) + script.load_family(
        folders["reasoning", "test"], 2
    )
    samples = [samples[0], samples[2], samples[1], samples[3]]  # interleaved tasks
    calls: list = []

    class Runner:
        def pipeline(self, task):
            return _FakePipeline(task, calls)

    cell = b.Cell(valid=0)
    kept = script.run_policy(Runner(), samples, cell, "fake", keep=3)
    assert calls == [("foreground", [None, None]), ("reasoning", [samples[1].text, samples[3].text])]
    assert [r["id"] for r in cell.per_scene] == [s.id for s in samples]  # sample order kept
    assert [r["answer"] for r in cell.per_scene][:2] == [
        "<think>foreground</think>",
        "<think>reasoning</think>",
    ]
    assert len(kept) == 3 and kept[1]["text"] == samples[1].text and cell.summary()["format_validity"] == 0


def test_the_whole_run_on_tiny_scenes(script, folders, tmp_path):
    from segr1.evaluate.picture_grid import grid_size

    out_json, out_md, grid = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "grid.png"
    args = ["--test", f"salient-hard={folders['salient-hard', 'test']}",
            "--val", f"salient-hard={folders['salient-hard', 'val']}",
            "--test", f"reasoning={folders['reasoning', 'test']}",
            "--val", f"reasoning={folders['reasoning', 'val']}",
            "--policy", f"tiny={TINY_POLICY}", "--n", "2", "--workers", "2",
            "--out-json", str(out_json), "--out-md", str(out_md), "--grid", str(grid), "--grid-k", "2"]  # fmt: skip
    assert script.main(args) == 0
    report = json.loads(out_json.read_text())
    res, settings = report["results"], report["settings"]
    for fam in ("salient-hard", "reasoning"):
        fixed = settings["fixed_boxes"][fam]
        assert fixed["name"] in b.box_grid() and fixed["val"] == str(folders[fam, "val"])
        assert fixed["val_n"] == 3 and fixed["val_mean_iou"] == max(fixed["grid_iou"].values())
        assert res[fam][b.GT_PROMPT]["pos_points_in_target"] == 1.0
        assert res[fam]["tiny"]["n"] == 2 and res[fam]["tiny"]["format_validity"] is not None
        best = max(res[fam][m]["giou"] for m in b.IMAGE_INDEPENDENT)
        margin = report["margins"][fam]["tiny"][script.MARGIN_IMAGE_INDEPENDENT]["margin"]
        assert margin == pytest.approx(res[fam]["tiny"]["giou"] - best)
    assert b.RANDOM_OBJECT not in res["salient-hard"] and b.LARGEST_OBJECT in res["reasoning"]
    assert script.MARGIN_TEXT_BLIND not in report["margins"]["salient-hard"]["tiny"]
    blind = max(res["reasoning"][m]["giou"] for m in b.TEXT_BLIND)
    got = report["margins"]["reasoning"]["tiny"][script.MARGIN_TEXT_BLIND]["margin"]
    assert got == pytest.approx(res["reasoning"]["tiny"]["giou"] - blind)
    md = out_md.read_text()
    assert md.count(f"| {script.MARGIN_IMAGE_INDEPENDENT} (tiny;") == 2
    assert md.count(f"| {script.MARGIN_TEXT_BLIND} (tiny;") == 1 and "Best fixed box:" in md
    png = cv2.imread(str(grid))
    assert png is not None and png.shape[:2] == grid_size(2, 2)


def test_without_a_validation_folder_there_is_no_chosen_box(script, folders, tmp_path):
    out = tmp_path / "r.json"
    args = ["--test", f"salient-hard={folders['salient-hard', 'test']}", "--n", "1", "--out-json", str(out),
            "--references", f"{b.BEST_FIXED},{b.WHOLE_IMAGE}"]  # fmt: skip
    assert script.main(args) == 0
    report = json.loads(out.read_text())
    assert (
        list(report["results"]["salient-hard"]) == [b.WHOLE_IMAGE] and report["settings"]["fixed_boxes"] == {}
    )
    assert (
        script.main([*args, "--val", f"reasoning={folders['reasoning', 'val']}"]) == 2
    )  # no such test family
    with pytest.raises(SystemExit):
        script.main([*args, "--workers", "0"])


def test_references_are_reused_from_an_earlier_report_of_the_same_scenes(
    script, folders, tmp_path, monkeypatch
):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    args = ["--test", f"salient-hard={folders['salient-hard', 'test']}", "--n", "1",
            "--val", f"salient-hard={folders['salient-hard', 'val']}", "--val-n", "1"]  # fmt: skip
    assert script.main([*args, "--out-json", str(first)]) == 0

    def no_run(*a, **k):
        raise AssertionError("references measured again")

    monkeypatch.setattr(script, "run_references", no_run)
    monkeypatch.setattr(script, "choose_fixed_box", no_run)
    assert script.main([*args, "--reuse", str(first), "--out-json", str(second)]) == 0
    a, b_ = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["results"] == b_["results"] and a["settings"]["fixed_boxes"] == b_["settings"]["fixed_boxes"]
    with pytest.raises(AssertionError, match="measured again"):  # other scenes: not reusable
        script.main([*args[:3], "2", *args[4:], "--reuse", str(first)])


def test_help_prints(script, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    assert "--references" in capsys.readouterr().out
