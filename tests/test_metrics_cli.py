"""`segr1 metrics`, end to end on small folders."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segr1.cli import main
from segr1.metrics import ForegroundMeter

COLUMNS = ["S", "wF", "meanF", "meanE", "maxE", "MAE", "maxF", "adpE", "adpF"]
KEYS = ["sm", "wfm", "mean_fm", "mean_em", "max_em", "mae", "max_fm", "adp_em", "adp_fm"]


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((h, w), np.uint8)
    cv2.ellipse(gt, (w // 2, h // 2), (w // 4, h // 3), float(rng.uniform(0, 90)), 0, 360, 255, -1)
    pred = cv2.GaussianBlur(np.roll(gt, int(rng.integers(-3, 4)), axis=1), (0, 0), 1.5)
    return pred, gt


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """gt/{a,b,c}.png; good/ complete (a.png, b.jpg, c.bmp); bad/ with c missing, d extra, b wrongly sized."""
    rng = np.random.default_rng(0)
    gt_dir, good, bad = tmp_path / "gt", tmp_path / "good", tmp_path / "bad"
    for stem, (h, w) in {"a": (24, 32), "b": (31, 17), "c": (20, 20)}.items():
        pred, gt = _pair(rng, h, w)
        _save(gt_dir / f"{stem}.png", gt)
        _save(good / f"{stem}{ {'a': '.png', 'b': '.jpg', 'c': '.bmp'}[stem] }", pred)
        if stem == "a":
            _save(bad / "a.png", pred)
        if stem == "b":
            _save(bad / "b.png", cv2.resize(pred, (w + 3, h)))
    _save(bad / "d.png", np.zeros((5, 5), np.uint8))
    (bad / "notes.txt").write_text("not an image")
    return {"gt": gt_dir, "good": good, "bad": bad}


def _expected(pred_dir: Path, gt_dir: Path, stems: list[str]) -> dict[str, float]:
    meter = ForegroundMeter()
    for stem in stems:
        pred_path = next(p for p in pred_dir.iterdir() if p.stem == stem)
        pred = np.asarray(Image.open(pred_path).convert("L"))
        meter.update(pred, np.asarray(Image.open(gt_dir / f"{stem}.png").convert("L")))
    return meter.compute()


def test_complete_folder_scores_every_pair(folders, capsys):
    assert (
        main(["metrics", "--pred", str(folders["good"]), "--gt", str(folders["gt"]), "--format", "json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    (row,) = out["results"]
    assert row["n"] == 3 and not any(row["problems"].values())
    expected = _expected(folders["good"], folders["gt"], ["a", "b", "c"])
    for column, key in zip(COLUMNS, KEYS, strict=True):
        assert row["scores"][column] == pytest.approx(expected[key], abs=1e-12)


def test_problems_are_counted_reported_and_exit_1(folders, capsys, tmp_path):
    out_file = tmp_path / "report" / "table.md"
    argv = [
        "metrics",
        "--pred",
        str(folders["good"]),
        "--pred",
        str(folders["bad"]),
        "--gt",
        str(folders["gt"]),
    ]
    assert main([*argv, "--out", str(out_file)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].split("|")[1:-1] == [f" {c} " for c in ["pred", "n", *COLUMNS]]
    assert len(lines) == 4  # header, rule, one row per prediction folder
    good_row, bad_row = (line.split("|")[1:-1] for line in lines[2:])
    assert good_row[1].strip() == "3" and bad_row[1].strip() == "1"
    expected_bad = _expected(folders["bad"], folders["gt"], ["a"])
    assert float(bad_row[2]) == pytest.approx(expected_bad["sm"], abs=5e-4)  # 3 decimals
    assert f"{folders['bad']}: 1 missing: c" in captured.err
    assert f"{folders['bad']}: 1 mismatched: b.png 20x31 vs 17x31" in captured.err
    assert f"{folders['bad']}: 1 extra: d" in captured.err
    assert out_file.read_text() == captured.out


def test_resize_scores_wrongly_sized_predictions(folders, capsys):
    argv = [
        "metrics",
        "--pred",
        str(folders["bad"]),
        "--gt",
        str(folders["gt"]),
        "--resize",
        "--format",
        "csv",
    ]
    assert main(argv) == 1  # c is still missing
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["n"] == "2" and rows[0]["resized"] == "1" and rows[0]["missing"] == "1"
    assert rows[0]["extra"] == "1" and rows[0]["mismatched"] == "0"
    assert 0 <= float(rows[0]["S"]) <= 1


def test_boundary_columns_and_zero_one_masks(tmp_path, capsys):
    rng = np.random.default_rng(1)
    pred, gt = _pair(rng, 40, 50)
    _save(tmp_path / "gt" / "x.png", (gt > 128).astype(np.uint8))  # a 0/1 mask, taken as binary
    _save(tmp_path / "pred" / "x.png", pred)
    argv = ["metrics", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--boundary"]
    assert main([*argv, "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert set(row["scores"]) == {*COLUMNS, "HCE", "mBA", "maxBIoU", "meanBIoU"}
    meter = ForegroundMeter()
    meter.update(pred, gt > 128)
    assert row["scores"]["S"] == pytest.approx(meter.compute()["sm"], abs=1e-12)
    assert row["scores"]["S"] > 0.8


def test_ambiguous_and_unreadable_files(tmp_path, capsys):
    rng = np.random.default_rng(2)
    pred, gt = _pair(rng, 20, 20)
    for stem in ("p", "q", "r"):
        _save(tmp_path / "gt" / f"{stem}.png", gt)
    _save(tmp_path / "pred" / "p.png", pred)
    _save(tmp_path / "pred" / "p.jpg", pred)  # two candidates for p
    (tmp_path / "pred" / "q.png").write_bytes(b"not a png")
    _save(tmp_path / "pred" / "r.png", pred)
    assert (
        main(["metrics", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--format", "json"])
        == 1
    )
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["n"] == 1
    assert row["problems"]["ambiguous"] == ["p"] and row["problems"]["unreadable"] == ["q.png"]
    assert row["problems"]["missing"] == []


def test_nothing_scored_prints_dashes(tmp_path, capsys):
    _save(tmp_path / "gt" / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "pred").mkdir()
    assert main(["metrics", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 1
    row = capsys.readouterr().out.strip().splitlines()[2]
    assert row.count(" - ") == len(COLUMNS)


def test_usage_errors_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "gt" / "a.png", np.zeros((4, 4), np.uint8))
    assert main(["metrics", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path / "gt")]) == 2
    assert main(["metrics", "--pred", str(tmp_path / "gt"), "--gt", str(tmp_path / "empty")]) == 2
    both = ["--pred", str(tmp_path / "gt")] * 2
    assert main(["metrics", *both, "--gt", str(tmp_path / "gt")]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "--gt", str(tmp_path / "gt")])  # --pred is required
    assert exc.value.code == 2
