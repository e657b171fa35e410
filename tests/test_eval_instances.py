"""Per-instance evaluation: predicted objects matched to ground-truth objects, checked against a brute-force
matching written here, on synthetic multi-object scenes (instance maps) and single-object samples."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from segr1.data.folders import read_manifest
from segr1.data.records import Sample
from segr1.data.synthetic_multi import write_multi_scenes
from segr1.evaluate import EvalConfig, evaluate
from segr1.evaluate.instances import ground_truth_instances, instance_metrics, instance_scores
from segr1.formats import get_format
from segr1.instances import decode_instance_map, instance_masks
from segr1.pipeline import SegR1Pipeline
from segr1.policies import Generation

SIZE = 96


class Queue:
    """A policy answering the given answers in order (one per image)."""

    name = "queue"
    frame = None
    metadata = {"prompt_style": "vision-reasoner"}

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)

    def generate_detailed(self, images, instructions, num_samples=1, **kwargs):
        got = [self.answers.pop(0) for _ in images]
        return Generation([[a] * num_samples for a in got], [[False] * num_samples for _ in got])

    def generate(self, images, instructions, **kwargs):
        return self.generate_detailed(images, instructions, **kwargs).texts


class BoxSegmenter:
    name = "boxes"

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        out = []
        for p in prompts:
            m = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in p.boxes.round().astype(int):
                m[y1 : y2 + 1, x1 : x2 + 1] = True
            out.append(m)
        return out


class OneProcess:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


def box_mask(box) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def best_matching(pred: list[np.ndarray], gt: list[np.ndarray]) -> list[float]:
    """Per ground-truth object, its IoU under the assignment with the largest IoU sum (brute force)."""

    def iou(a, b):
        u = (a | b).sum()
        return (a & b).sum() / u if u else 0.0

    best, best_sum = [0.0] * len(gt), -1.0
    for perm in itertools.permutations(range(max(len(pred), len(gt)))):
        ious = [iou(pred[perm[j]], gt[j]) if perm[j] < len(pred) else 0.0 for j in range(len(gt))]
        if sum(ious) > best_sum + 1e-12:
            best, best_sum = ious, sum(ious)
    return best


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    write_multi_scenes(4, folder, seed=7, size=SIZE)
    return read_manifest(folder / "manifest.jsonl")  # as `segr1 eval referring --manifest` reads them


def test_manifest_instance_paths_resolve_and_give_the_referred_objects(scenes):
    for s in scenes:
        gt = ground_truth_instances(s, np.asarray(decode_instance_map(s.meta["instances"])) > 0)
        assert len(gt) == len(s.meta["boxes"]) == s.meta["n_targets"]
    single = Sample("one", np.zeros((4, 4, 3), np.uint8), None, "x", "referring", {})
    mask = np.eye(4, dtype=bool)
    assert [m.tolist() for m in ground_truth_instances(single, mask)] == [mask.tolist()]
    assert ground_truth_instances(single, np.zeros((4, 4), bool)) == []
    with pytest.raises(ValueError, match="shape"):
        ground_truth_instances(Sample("b", "x", meta={"instances": np.ones((3, 3), np.uint8)}), mask)


def test_per_instance_scores_match_a_brute_force_matching(scenes, tmp_path):
    vr = get_format("vision-reasoner-json")
    answers, expected = [], []
    for k, s in enumerate(scenes):
        gt = instance_masks(decode_instance_map(s.meta["instances"]))[1]
        boxes = [list(map(int, b)) for b in s.meta["boxes"]]
        boxes = {0: boxes, 1: boxes[:1], 2: [], 3: boxes + [[0, 0, 9, 9]]}[k]  # all, one, none, one extra
        if boxes:
            answers.append(vr.render_objects(vr.objects(
                "<answer>" + json.dumps([{"bbox_2d": b, "point_2d": [b[0], b[1]]} for b in boxes]) + "</answer>"
            ), "t"))  # fmt: skip
        else:
            answers.append("<think>none</think>")
        pred = [box_mask(b) for b in boxes]
        expected.append((len(pred), len(gt), best_matching(pred, gt)))
    pipe = SegR1Pipeline(Queue(answers), BoxSegmenter(), task="referring", frame=SIZE, batch_size=1)
    config = EvalConfig(task="referring", out_dir=tmp_path / "out", batch_size=1, report_n=0, per_instance=True,
                        progress=False)  # fmt: skip
    doc = evaluate(scenes, pipe, config, state=OneProcess())
    recs = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    for rec, (m, n, ious) in zip(recs, expected, strict=True):
        assert (rec["instances"]["n_pred"], rec["instances"]["n_gt"]) == (m, n)
        assert rec["instances"]["ious"] == pytest.approx(ious, abs=1e-6)
    per_sample = [sum(ious) / max(m, n) for m, n, ious in expected]
    hits = sum(sum(v > 0.5 for v in ious) for _, _, ious in expected)
    n_pred, n_gt = sum(m for m, _, _ in expected), sum(n for _, n, _ in expected)
    got = doc["metrics"]
    assert got["inst_miou"] == pytest.approx(np.mean(per_sample))
    assert got["inst_precision50"] == pytest.approx(hits / n_pred)
    assert got["inst_recall50"] == pytest.approx(hits / n_gt)
    assert got["inst_count_acc"] == pytest.approx(np.mean([m == n for m, n, _ in expected]))
    assert got["giou"] is not None  # the union is still scored
    assert hits > 0 and got["inst_miou"] < 1  # boxes around circles and stars are not the shapes


def test_instance_metrics_edge_cases():
    assert instance_scores([], []) == {"n_pred": 0, "n_gt": 0, "ious": []}
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    assert instance_scores([a], []) == {"n_pred": 1, "n_gt": 0, "ious": []}
    recs = [{"instances": {"n_pred": 0, "n_gt": 0, "ious": []}}, {"instances": {"n_pred": 1, "n_gt": 0, "ious": []}},
            {"iou": 1.0}]  # fmt: skip
    got = instance_metrics(recs)
    assert got == {"inst_miou": 0.0, "inst_precision50": 0.0, "inst_recall50": None, "inst_f1_50": None,
                   "inst_count_acc": 0.5}  # fmt: skip
    assert all(v is None for v in instance_metrics([]).values())


def test_eval_command_per_instance_option(scenes, tmp_path, monkeypatch):
    from segr1.cli import main
    from segr1.commands import eval as eval_command

    vr = get_format("vision-reasoner-json")
    answers = [vr.render_objects([vr.objects(f'<answer>[{{"bbox_2d": {json.dumps(list(map(int, b)))}, "point_2d": [1,1]}}]</answer>')[0]
                                  for b in s.meta["boxes"]], "t") for s in scenes]  # fmt: skip

    def build(task, model, segmenter, *, frame, max_new_tokens, batch_size, device, **kwargs):
        return SegR1Pipeline(Queue(answers), BoxSegmenter(), task=task, frame=SIZE, batch_size=1)

    monkeypatch.setattr(eval_command, "build_pipeline", build)
    manifest = scenes[0].image.parent.parent / "manifest.jsonl"
    out = tmp_path / "cli"
    assert main(["eval", "referring", "--manifest", str(manifest), "--out", str(out), "--per-instance",
                 "--no-progress", "--batch-size", "1"]) == 0  # fmt: skip
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["per_instance"] is True and doc["metrics"]["inst_count_acc"] == 1.0
    assert doc["metrics"]["inst_recall50"] > 0
