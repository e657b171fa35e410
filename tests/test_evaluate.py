"""segr1.evaluate through its Python API: tiny datasets in the real formats, fake policies with known answers.

Metric values are checked against independent computations (numpy IoU from the written prediction PNGs,
PySODMetrics for the foreground suite); resuming and sharding must reproduce metrics.json exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fakedata as fd
from segr1.data.benchmarks import load_benchmark
from segr1.evaluate import EvalConfig, evaluate
from segr1.evaluate import records as rec_io
from segr1.evaluate.records import SettingsMismatch
from segr1.evaluate.sources import load_eval_samples
from segr1.geometry import mask_to_box
from segr1.pipeline import SegR1Pipeline

FRAME = 1024


class FakeState:
    """Stands in for accelerate's PartialState: one rank of ``world`` run sequentially in this process."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.process_index, self.num_processes = rank, world
        self.is_main_process = rank == 0
        self.barriers = 0

    def wait_for_everyone(self) -> None:
        self.barriers += 1


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def load_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def numpy_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    return (inter / union if union else 1.0), inter, union


def gt_box_answers(samples, frame: int = FRAME) -> dict[str, str]:
    """The ground-truth box of every sample as a model-frame answer, keyed by the sample's text."""
    answers = {}
    for s in samples:
        box = mask_to_box(s.mask | (s.meta.get("ignore") if s.meta.get("ignore") is not None else False))
        answers[s.text] = fd.box_answer(box, (s.mask.shape[1], s.mask.shape[0]), frame)
    return answers


def run(samples, pipeline, out: Path, task: str, state=None, **kw) -> dict | None:
    config = EvalConfig(task=task, out_dir=out, settings={"dataset": "test"}, progress=False, **kw)
    return evaluate(samples, pipeline, config, state=state or FakeState())


# ------------------------------------------------------------------------------------------------ referring


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refer")
    fd.write_refcoco(root)
    return root


def test_referring_gt_box_answers_match_numpy_and_report_escapes(refcoco, tmp_path):
    ds = load_benchmark("refcoco", refcoco)
    answers = gt_box_answers(ds)
    answers["red thing"] = "<think><script>alert('x')</script></think> I cannot see it"  # unparsable
    pipeline = SegR1Pipeline(fd.AnswerBook(answers), fd.BoxSegmenter(), task="referring", frame=FRAME)
    doc = run(ds, pipeline, tmp_path, "referring", batch_size=2)

    records = load_records(tmp_path)
    assert [r["index"] for r in records] == list(range(len(ds)))
    assert [r["id"] for r in records] == [s.id for s in ds]
    inters, unions, ious = 0, 0, []
    for rec, sample in zip(records, ds, strict=True):
        pred = read_png(tmp_path / rec["pred"])
        assert pred.dtype == np.uint8 and pred.shape == sample.mask.shape and set(np.unique(pred)) <= {0, 255}
        value, inter, union = numpy_iou(pred > 0, sample.mask)
        assert rec["iou"] == pytest.approx(value, abs=1e-12)
        assert (rec["intersection"], rec["union"]) == (inter, union)
        inters, unions = inters + inter, unions + union
        ious.append(value)
    # Independent expectations: rectangles are found exactly; the L shape scores area / box area; the
    # unparsable answer gives an all-zero prediction with IoU 0 that still counts.
    by_text = {r["text"]: r for r in records}
    assert by_text["the red block on the left"]["iou"] == 1.0
    assert by_text["the blue block"]["iou"] == 1.0
    assert by_text["the blue l shape"]["iou"] == pytest.approx(298 / 550)
    failed = by_text["red thing"]
    assert failed["iou"] == 0.0 and failed["error"] == "unparsable answer" and failed["scored"]
    assert not read_png(tmp_path / failed["pred"]).any()
    assert doc["metrics"]["giou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert doc["metrics"]["ciou"] == pytest.approx(inters / unions, abs=1e-12)
    assert (doc["n_total"], doc["n_ok"], doc["n_failed"], doc["n_scored"]) == (5, 4, 1, 5)
    assert doc["failures"] == {"unparsable answer": 1}
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(doc))
    # Image-frame prompts are recorded.
    assert by_text["the blue block"]["prompt"]["boxes"] == [pytest.approx([38, 20, 57, 39], abs=1e-3)]

    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert html.count("data:image/png;base64,") == 5  # 3 best + 2 worst of 5 samples
    assert "unparsable answer" in html and "giou" in html
    assert "1 of 1 failed samples" in html and "0_1" in html  # failed samples are listed too


# ------------------------------------------------------------------------------------------------ reasoning


def test_reasonseg_ignore_region_is_left_out_and_broken_sample_counted(tmp_path):
    fd.write_reasonseg(tmp_path / "data")
    samples, settings = load_eval_samples("reasoning", split="val", data_root=tmp_path / "data")
    assert settings == {"dataset": "reasonseg", "split": "val"}
    good = [samples[0], samples[1]]  # c_broken cannot be built
    answers = gt_box_answers(good)  # boxes around target + ignore
    pipeline = SegR1Pipeline(fd.AnswerBook(answers), fd.BoxSegmenter(), task="reasoning", frame=FRAME)
    doc = run(samples, pipeline, tmp_path / "out", "reasoning")
    records = load_records(tmp_path / "out")
    a = records[0]
    assert a["id"] == "a_table" and a["text"] == fd.REASON_QUERIES["a_table"]
    pred = read_png(tmp_path / "out" / a["pred"]) > 0
    ignore = good[0].meta["ignore"]
    assert ignore.sum() == 81 and (pred & ignore).sum() == 81  # the prediction covers the ignore square
    keep = ~ignore
    assert numpy_iou(pred, good[0].mask)[0] < 1.0  # scored naively it would lose the ignore pixels
    assert a["iou"] == 1.0 == numpy_iou(pred & keep, good[0].mask & keep)[0]
    assert a["union"] == int(good[0].mask.sum())
    assert records[1]["iou"] == 1.0
    broken = records[2]
    assert broken["id"] == "#2" and broken["reason"] == "unreadable sample" and not broken["scored"]
    assert broken["pred"] is None
    assert doc["metrics"] == {"giou": 1.0, "ciou": 1.0}
    assert (doc["n_total"], doc["n_ok"], doc["n_failed"], doc["n_scored"]) == (3, 2, 1, 2)
    assert doc["failures"] == {"unreadable sample": 1}


# ------------------------------------------------------------------------------------------------ foreground


def pysod_reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The foreground suite computed by PySODMetrics on (pred uint8, gt uint8) pairs."""
    sod = pytest.importorskip("py_sod_metrics")
    sm, mae, wfm, em, fm = sod.Smeasure(), sod.MAE(), sod.WeightedFmeasure(), sod.Emeasure(), sod.Fmeasure()
    for pred, gt in pairs:
        for m in (sm, mae, wfm, em, fm):
            m.step(pred=pred, gt=gt)
    e, f = em.get_results()["em"], fm.get_results()["fm"]
    return {
        "sm": sm.get_results()["sm"],
        "mae": mae.get_results()["mae"],
        "wfm": wfm.get_results()["wfm"],
        "adp_em": e["adp"],
        "mean_em": e["curve"].mean(),
        "max_em": e["curve"].max(),
        "adp_fm": f["adp"],
        "mean_fm": f["curve"].mean(),
        "max_fm": f["curve"].max(),
    }


def test_folder_pair_with_grabcut_matches_pysodmetrics_and_counts_failures(tmp_path):
    masks = fd.write_folder_pair(tmp_path / "data", 6, corrupt=("s2",), no_mask=("s4",))
    samples, settings = load_eval_samples(
        "foreground", images=tmp_path / "data/images", masks=tmp_path / "data/masks"
    )
    assert [s.id for s in samples] == [f"s{i}" for i in range(6)] and samples[4].mask is None
    assert settings["dataset"].startswith("folder:")
    doc = run(samples, fd.red_box_pipeline(), tmp_path / "out", "foreground", batch_size=4)
    records = {r["id"]: r for r in load_records(tmp_path / "out")}
    assert records["s2"]["reason"] == "unreadable image" and records["s2"]["scored"]
    assert "cannot read image" in records["s2"]["error"]
    assert not read_png(tmp_path / "out" / records["s2"]["pred"]).any()  # scored as an all-zero map
    assert records["s4"]["reason"] == "missing ground truth" and not records["s4"]["scored"]
    assert records["s4"]["answer"] is not None  # still predicted
    assert doc["failures"] == {"missing ground truth": 1, "unreadable image": 1}
    assert (doc["n_total"], doc["n_ok"], doc["n_failed"], doc["n_scored"]) == (6, 4, 2, 5)
    pairs = []
    for stem, mask in masks.items():
        pred = read_png(tmp_path / "out" / records[stem]["pred"])
        assert pred.shape == mask.shape
        pairs.append((pred, mask.astype(np.uint8) * 255))
        assert records[stem]["iou"] == pytest.approx(numpy_iou(pred > 0, mask)[0], abs=1e-12)
    ok_ious = [records[s]["iou"] for s in masks if s != "s2"]
    assert min(ok_ious) > 0.6  # GrabCut inside the red box finds the red ellipse
    expected = pysod_reference(pairs)
    assert set(doc["metrics"]) >= set(expected)
    for key, value in expected.items():
        assert doc["metrics"][key] == pytest.approx(value, abs=1e-6), key
    sod = pytest.importorskip("py_sod_metrics")
    for stem, (pred, gt) in zip(masks, pairs, strict=True):
        one = sod.Smeasure()
        one.step(pred=pred, gt=gt)
        assert records[stem]["sm"] == pytest.approx(one.get_results()["sm"], abs=1e-6)


# ------------------------------------------------------------------------------------------------ resume / shards


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory) -> tuple[list, Path]:
    root = tmp_path_factory.mktemp("pairs")
    fd.write_folder_pair(root, 7, corrupt=("s5",))
    samples, _ = load_eval_samples("foreground", images=root / "images", masks=root / "masks")
    return samples, root


@pytest.fixture(scope="module")
def uninterrupted(pair_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    run(pair_data[0], fd.red_box_pipeline(batch_size=3), out, "foreground", batch_size=3)
    return out


def test_resume_after_limit_and_kill_equals_uninterrupted(pair_data, uninterrupted, tmp_path):
    samples = pair_data[0]
    run(samples, fd.red_box_pipeline(), tmp_path, "foreground", limit=4, batch_size=2)
    partial = json.loads((tmp_path / "metrics.json").read_text())
    assert partial["n_total"] == 4 and partial["limit"] == 4
    # Simulate a kill: a half-written line, and a record whose prediction file never made it.
    lines = (tmp_path / "samples.jsonl").read_text().splitlines(keepends=True)
    lost = json.loads(lines[1])
    (tmp_path / lost["pred"]).unlink()
    with (tmp_path / "samples.jsonl").open("a") as f:
        f.write('{"index": 4, "id": "s4", "answer": "<think>trunc')
    calls = []
    pipeline = fd.red_box_pipeline()
    inner = pipeline.policy.generate

    def counting(images, *a, **k):
        calls.append(len(images))
        return inner(images, *a, **k)

    pipeline.policy.generate = counting
    run(samples, pipeline, tmp_path, "foreground", batch_size=2)
    assert sum(calls) == 1 + 2  # sample 1 again (its prediction was lost) and s4, s6 (s5 is unreadable)
    assert (tmp_path / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    records = load_records(tmp_path)
    assert [r["index"] for r in records] == list(range(7))
    assert [r["id"] for r in records] == [r["id"] for r in load_records(uninterrupted)]
    # Running again does nothing new and changes nothing.
    calls.clear()
    run(samples, pipeline, tmp_path, "foreground")
    assert (
        calls == []
        and (tmp_path / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    )


def test_two_shards_merge_to_the_single_process_result(pair_data, uninterrupted, tmp_path):
    samples = pair_data[0]
    rank1 = FakeState(1, 2)
    assert run(samples, fd.red_box_pipeline(), tmp_path, "foreground", state=rank1) is None
    shard = load_records_file(tmp_path / "samples.1.jsonl")
    assert [r["index"] for r in shard] == [1, 3, 5]
    assert not (tmp_path / "metrics.json").exists() and rank1.barriers >= 2
    doc = run(samples, fd.red_box_pipeline(), tmp_path, "foreground", state=FakeState(0, 2))
    assert doc is not None
    assert not list(tmp_path.glob("samples.*.jsonl"))  # merged into samples.jsonl
    assert (tmp_path / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    assert [r["index"] for r in load_records(tmp_path)] == list(range(7))


def test_a_single_process_finishes_an_interrupted_two_process_run(pair_data, uninterrupted, tmp_path):
    samples = pair_data[0]
    run(samples, fd.red_box_pipeline(), tmp_path, "foreground", state=FakeState(1, 2))  # rank 0 never ran
    with (tmp_path / "samples.1.jsonl").open("a") as f:
        f.write('{"index": 7, "id"')  # killed mid-line
    calls = []
    pipeline = fd.red_box_pipeline()
    inner = pipeline.policy.generate
    pipeline.policy.generate = lambda images, *a, **k: calls.append(len(images)) or inner(images, *a, **k)
    run(samples, pipeline, tmp_path, "foreground")
    assert sum(calls) == 4  # indices 0, 2, 4, 6
    assert not (tmp_path / "samples.1.jsonl").exists()
    assert (tmp_path / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()


def load_records_file(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_other_settings_are_refused_unless_overwrite(pair_data, tmp_path):
    samples = pair_data[0][:2]
    run(samples, fd.red_box_pipeline(), tmp_path, "foreground", report_n=0)
    config = EvalConfig("foreground", tmp_path, settings={"dataset": "other"}, progress=False)
    with pytest.raises(SettingsMismatch, match="dataset: 'test' -> 'other'"):
        evaluate(samples, fd.red_box_pipeline(), config, state=FakeState())
    config.overwrite = True
    doc = evaluate(samples, fd.red_box_pipeline(), config, state=FakeState())
    assert doc["settings"] == {"dataset": "other"}
    assert json.loads((tmp_path / "run.json").read_text()) == {"task": "foreground", "dataset": "other"}


def test_a_policy_crash_is_isolated_to_its_sample(pair_data, tmp_path):
    samples = pair_data[0][:4]
    pipeline = fd.red_box_pipeline()
    inner = pipeline.policy.generate

    def flaky(images, *a, **k):  # the batch fails, then the second sample alone fails
        if len(images) > 1:
            raise RuntimeError("batch too big")
        if flaky.n == 1:
            flaky.n += 1
            raise RuntimeError("out of memory on this one")
        flaky.n += 1
        return inner(images, *a, **k)

    flaky.n = 0
    pipeline.policy.generate = flaky
    doc = run(samples, pipeline, tmp_path, "foreground", batch_size=4)
    records = load_records(tmp_path)
    assert [r["reason"] for r in records] == [None, "pipeline error", None, None]
    assert "out of memory" in records[1]["error"] and records[1]["scored"]
    assert doc["failures"] == {"pipeline error": 1}


# ------------------------------------------------------------------------------------------------ files


def test_read_records_skips_truncated_and_bad_lines_and_repair_tail(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(
        '{"index": 0, "id": "a"}\nnot json\n{"index": "x", "id": "b"}\n{"index": 2, "id": "c"}\n{"ind'
    )
    assert sorted(rec_io.read_records([path])) == [0, 2]
    rec_io.repair_tail(path)
    assert path.read_text().endswith('{"index": 2, "id": "c"}\n')
    rec_io.repair_tail(path)  # nothing to do
    assert path.read_text().count("\n") == 4


@pytest.mark.parametrize(
    ("sample_id", "safe"),
    [("0_1", True), ("COD10K-CAM-1", True), ("a/b", False), ("../x", False), ("é", False)],
)
def test_pred_names_are_safe_and_distinct(sample_id, safe):
    name = rec_io.pred_name(sample_id)
    assert name.endswith(".png") and "/" not in name and not name.startswith(".")
    assert (name == f"{sample_id}.png") is safe
    assert rec_io.pred_name("a/b") != rec_io.pred_name("a_b")


def test_report_escapes_everything_model_written():
    from segr1.evaluate.report import render_report

    doc = {"task": "referring", "settings": {"dataset": "<b>x</b>"}, "failures": {"<u>": 1}, "n_total": 1}
    case = {
        "id": '"><img src=x onerror=alert(1)>',
        "index": 0,
        "score": 0.5,
        "text": "<q>",
        "answer": "</div><script>",
        "png": None,
    }
    html = render_report(doc, [("giou", 0.5)], "iou", [case], [])
    assert (
        "<script>" not in html and "<img src=x" not in html and "<b>x</b>" not in html and "<u>" not in html
    )
    assert "&lt;/div&gt;&lt;script&gt;" in html and "&quot;&gt;&lt;img" in html
