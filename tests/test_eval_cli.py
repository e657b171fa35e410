"""`segr1 eval foreground|referring|reasoning` end to end: the tiny policy + GrabCut on datasets in their real
layouts, a fake policy for exact values, resuming, usage errors, and 2 CPU processes under accelerate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fakedata as fd
from segr1.cli import main

TESTS = Path(__file__).resolve().parent
FOREGROUND_KEYS = {"sm", "wfm", "mae", "adp_em", "mean_em", "max_em", "adp_fm", "mean_fm", "max_fm"}
FAST = ["--max-new-tokens", "8", "--batch-size", "2", "--no-progress"]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def check_iou_metrics(out: Path, samples) -> None:
    """gIoU / cIoU of metrics.json recomputed with numpy from the prediction PNGs (ignore regions cleared)."""
    ious, inter, union = [], 0, 0
    for rec in records(out):
        if not rec["scored"]:
            continue
        sample = samples[rec["index"]]
        keep = ~sample.meta["ignore"] if sample.meta.get("ignore") is not None else True
        pred = (np.asarray(Image.open(out / rec["pred"])) > 0) & keep
        gt = sample.mask & keep
        i, u = int((pred & gt).sum()), int((pred | gt).sum())
        ious.append(i / u if u else 1.0)
        inter, union = inter + i, union + u
    doc = metrics(out)
    assert doc["metrics"]["giou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert doc["metrics"]["ciou"] == pytest.approx(inter / union if union else 1.0, abs=1e-12)


def frame_of(out: Path) -> int:
    return records(out)[0]["frame"]


# ------------------------------------------------------------------------------------------------ tiny policy


def test_foreground_benchmark_with_the_tiny_policy_and_grabcut(tmp_path, capsys):
    fd.write_cod10k(tmp_path / "data")
    out = tmp_path / "out"
    argv = [
        "eval",
        "foreground",
        "--dataset",
        "COD10K",
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(out),
    ]
    assert main(argv + FAST) == 0
    printed = capsys.readouterr().out
    assert "segr1 eval foreground: cod10k (test)" in printed and "samples: 3 total" in printed
    doc = metrics(out)
    assert set(doc["metrics"]) == FOREGROUND_KEYS
    assert all(isinstance(v, float) for v in doc["metrics"].values())
    assert doc["n_total"] == 3 and doc["n_scored"] == 3  # the NonCAM image is not part of COD10K's test set
    assert doc["n_ok"] + doc["n_failed"] == 3 and sum(doc["failures"].values()) == doc["n_failed"]
    frame = doc["settings"].pop("frame")  # the tiny checkpoint's own frame (not the 768 task default)
    assert isinstance(frame, int) and frame != 768
    assert doc["settings"] == {
        "dataset": "cod10k",
        "split": "test",
        "model": "default",
        "segmenter": "grabcut",
        "max_new_tokens": 8,
        "prompt_style": "segr1",  # the embedded policy's
        "answer_format": "seg-r1",
        "protocol": "segr1",
    }
    recs = records(out)
    assert [r["id"] for r in recs] == sorted(fd.COD_STEMS)
    for rec in recs:
        assert isinstance(rec["answer"], str) and rec["frame"] == frame
        gt = np.asarray(Image.open(tmp_path / f"data/COD10K-v3/Test/GT_Object/{rec['id']}.png"))
        assert np.asarray(Image.open(out / rec["pred"])).shape == gt.shape
    # Independent check of the suite on the written prediction maps.
    sod = pytest.importorskip("py_sod_metrics")
    sm, mae = sod.Smeasure(), sod.MAE()
    for rec in recs:
        pred = np.asarray(Image.open(out / rec["pred"]))
        gt = np.asarray(Image.open(tmp_path / f"data/COD10K-v3/Test/GT_Object/{rec['id']}.png"))
        sm.step(pred=pred, gt=gt)
        mae.step(pred=pred, gt=gt)
    assert doc["metrics"]["sm"] == pytest.approx(sm.get_results()["sm"], abs=1e-6)
    assert doc["metrics"]["mae"] == pytest.approx(mae.get_results()["mae"], abs=1e-6)
    assert (out / "report.html").stat().st_size > 0


def test_referring_and_reasoning_with_the_tiny_policy(tmp_path):
    from segr1.data.benchmarks import load_benchmark

    fd.write_refcoco(tmp_path / "data")
    fd.write_reasonseg(tmp_path / "data")
    data = ["--data-root", str(tmp_path / "data")]
    assert (
        main(["eval", "referring", "--dataset", "refcoco", *data, "--out", str(tmp_path / "ref"), *FAST]) == 0
    )
    doc = metrics(tmp_path / "ref")
    assert set(doc["metrics"]) == {"giou", "ciou"} and doc["n_total"] == 5 and doc["n_scored"] == 5
    assert doc["settings"]["split"] == "val" and doc["settings"]["frame"] == frame_of(tmp_path / "ref")
    check_iou_metrics(tmp_path / "ref", load_benchmark("refcoco", tmp_path / "data"))

    assert main(["eval", "reasoning", *data, "--out", str(tmp_path / "rs"), *FAST]) == 0
    doc = metrics(tmp_path / "rs")
    assert doc["settings"]["dataset"] == "reasonseg" and doc["n_total"] == 3 and doc["n_scored"] == 2
    assert doc["failures"].get("unreadable sample") == 1
    check_iou_metrics(tmp_path / "rs", load_benchmark("reasonseg", tmp_path / "data"))


# ------------------------------------------------------------------------------------------------ fake policy


@pytest.fixture
def red_box(monkeypatch):
    """`segr1 eval` with RedBoxPolicy + GrabCut instead of the loaded policy (see tests/fakedata.py)."""
    import segr1.commands.eval as eval_command

    def build(task, model, segmenter, *, frame, max_new_tokens, batch_size, device, **kwargs):
        return fd.red_box_pipeline(task, frame or 224, batch_size, **kwargs)

    monkeypatch.setattr(eval_command, "build_pipeline", build)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pair")
    fd.write_folder_pair(root, 7, corrupt=("s3",), no_mask=("s5",))
    return root


def pair_args(pair: Path, out: Path) -> list[str]:
    return [
        "eval",
        "foreground",
        "--images",
        str(pair / "images"),
        "--masks",
        str(pair / "masks"),
        "--out",
        str(out),
    ]


def test_folder_pair_counts_the_corrupt_image_and_resumes(red_box, pair, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(pair_args(pair, full) + ["--no-progress"]) == 0
    doc = metrics(full)
    assert (doc["n_total"], doc["n_ok"], doc["n_failed"], doc["n_scored"]) == (7, 5, 2, 6)
    assert doc["failures"] == {"missing ground truth": 1, "unreadable image": 1}
    by_id = {r["id"]: r for r in records(full)}
    assert by_id["s3"]["reason"] == "unreadable image" and by_id["s3"]["scored"]
    assert not np.asarray(Image.open(full / by_id["s3"]["pred"])).any()
    assert doc["settings"]["dataset"] == f"folder:{(pair / 'images').resolve()}"

    assert main(pair_args(pair, part) + ["--no-progress", "--limit", "3", "--batch-size", "2"]) == 0
    assert metrics(part)["n_total"] == 3
    assert main(pair_args(pair, part) + ["--no-progress"]) == 0
    assert (part / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()


def test_usage_errors(red_box, pair, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")]
    assert main(["eval", "referring", "--dataset", "cod10k", "--data-root", str(tmp_path), *out]) == 2
    assert "segr1 eval foreground" in capsys.readouterr().err
    assert main(["eval", "foreground", *out]) == 2
    assert "exactly one data source" in capsys.readouterr().err
    assert main(["eval", "foreground", "--images", str(pair / "images"), *out]) == 2
    assert main(["eval", "referring", "--dataset", "refcoco", *out]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["eval", "reasoning", "--data-root", str(tmp_path), *out]) == 2  # no ReasonSeg there
    assert main(["eval", "foreground", "--images", "x", "--masks", "y", "--batch-size", "0", *out]) == 2
    assert main(["eval"]) == 2
    # A restart with other settings is refused; --overwrite starts over.
    run = pair_args(pair, tmp_path / "o") + ["--no-progress", "--limit", "1"]
    assert main(run) == 0
    assert main(run + ["--frame", "448"]) == 2
    assert "frame: 224 -> 448" in capsys.readouterr().err
    assert main(run + ["--frame", "448", "--overwrite"]) == 0


# ------------------------------------------------------------------------------------------------ 2 processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``accelerate launch`` of 2 CPU processes (torchrun under --multi_gpu; segr1 picks gloo without GPUs)."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launcher += ["--main_process_port", str(free_port())]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(launcher + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_two_cpu_processes_merge_to_the_single_process_result(red_box, pair, tmp_path):
    single, dist = tmp_path / "single", tmp_path / "dist"
    assert main(pair_args(pair, single) + ["--no-progress"]) == 0
    proc = accelerate_launch([str(TESTS / "fakedata.py"), *pair_args(pair, dist)], cwd=tmp_path)
    assert "2 process(es)" in proc.stderr
    assert (dist / "metrics.json").read_bytes() == (single / "metrics.json").read_bytes()
    assert not list(dist.glob("samples.*.jsonl"))
    strip = ("timings",)
    a = [{k: v for k, v in r.items() if k not in strip} for r in records(single)]
    b = [{k: v for k, v in r.items() if k not in strip} for r in records(dist)]
    assert a == b


@pytest.mark.slow
def test_two_cpu_processes_with_the_tiny_policy_via_segr1_cli(tmp_path):
    fd.write_refcoco(tmp_path / "data")
    args = [
        "eval",
        "referring",
        "--dataset",
        "refcoco",
        "--data-root",
        str(tmp_path / "data"),
        *FAST,
        "--batch-size",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    accelerate_launch(["-m", "segr1.cli", *args, "--out", str(tmp_path / "dist")], cwd=tmp_path, timeout=500)
    assert (tmp_path / "dist/metrics.json").read_bytes() == (tmp_path / "single/metrics.json").read_bytes()
