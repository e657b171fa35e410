"""FCoT (the release's SFT data): a small dataset written with `datasets` in FCoT's parquet layout loads the way
the real ``geshang/FCoT`` does, row validation, and the SFT rows and recipe source built from it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.data.fcot import MAX_FIELD_CHARS, fcot_target, load_fcot


def _png(w: int, h: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_fcot(root: Path, rows: list[dict], *, with_system: bool = False) -> Path:
    """An FCoT-layout dataset: ``root/data/train-00000-of-00001.parquet`` written by `datasets`."""
    import datasets

    columns = {
        "image": [{"bytes": r["image"], "path": None} for r in rows],
        "thinking": [r["thinking"] for r in rows],
        "problem": [r["problem"] for r in rows],
        "solution": [r["solution"] for r in rows],
    }
    features = {
        "image": datasets.Image(),
        "thinking": datasets.Value("string"),
        "problem": datasets.Value("string"),
        "solution": datasets.Value("string"),
    }
    if with_system:
        columns["system"] = [r.get("system") for r in rows]
        features["system"] = datasets.Value("string")
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    (root / "data").mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


ROWS = [
    {"image": _png(40, 30, 10), "problem": "Segment the salient object.", "thinking": "<think>a cup</think>",
     "solution": "<bbox>[1,2,30,20]</bbox>, <points>[[5,6]]</points>, <labels>[1]</labels>"},
    {"image": _jpeg(20, 24), "problem": "Segment the camouflaged animal.", "thinking": "<think>an owl</think>",
     "solution": "<bbox>[0,0,10,10]</bbox>", "system": "You segment things."},
]  # fmt: skip


def test_fcot_target_is_thinking_space_solution():
    assert (
        fcot_target("<think>x</think>", "<bbox>[1,2,3,4]</bbox>") == "<think>x</think> <bbox>[1,2,3,4]</bbox>"
    )


def test_load_fcot_from_a_local_copy(tmp_path):
    root = write_fcot(tmp_path / "FCoT", ROWS, with_system=True)
    samples = load_fcot(root, cache_dir=tmp_path / "cache")
    assert [s.id for s in samples] == ["FCoT/00000", "FCoT/00001"]
    first, second = samples
    assert first.text == ROWS[0]["problem"] and first.mask is None and first.task == "foreground"
    assert first.meta["target"] == f"{ROWS[0]['thinking']} {ROWS[0]['solution']}"
    assert first.meta["system"] is None and second.meta["system"] == "You segment things."
    # the original encoded bytes, not a re-encoding
    assert Path(first.image).read_bytes() == ROWS[0]["image"] and Path(first.image).suffix == ".png"
    assert Path(second.image).read_bytes() == ROWS[1]["image"] and Path(second.image).suffix == ".jpg"
    again = load_fcot(
        root, cache_dir=tmp_path / "cache", task="referring"
    )  # cached: same files, task as asked
    assert [s.image for s in again] == [s.image for s in samples] and again[0].task == "referring"


def test_load_fcot_without_the_optional_system_column(tmp_path):
    root = write_fcot(tmp_path / "fcot-copy", ROWS[:1])
    (sample,) = load_fcot(root, cache_dir=tmp_path / "cache", name="mine")
    assert sample.id == "mine/00000" and sample.meta["system"] is None


def test_invalid_rows_are_left_out_and_counted(tmp_path, caplog):
    bad = [
        dict(ROWS[0], problem="x" * (MAX_FIELD_CHARS + 1)),
        dict(ROWS[0], image=b"not an image"),
        ROWS[0],
    ]
    root = write_fcot(tmp_path / "f", bad)
    samples = load_fcot(root, cache_dir=tmp_path / "cache")
    assert [s.meta["row"] for s in samples] == [2]
    assert "left out 2 invalid rows" in caplog.text
    with pytest.raises(ValueError, match="no valid row"):
        load_fcot(write_fcot(tmp_path / "g", bad[:2]), cache_dir=tmp_path / "cache")


def test_wrong_layout_and_missing_source_name_the_fix(tmp_path):
    import datasets

    (tmp_path / "other" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": ["a"], "question": ["q"]}).to_parquet(
        str(tmp_path / "other" / "data" / "train-00000-of-00001.parquet")
    )
    with pytest.raises(ValueError, match="missing columns"):
        load_fcot(tmp_path / "other", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="geshang/FCoT"):
        load_fcot(tmp_path / "nowhere", cache_dir=tmp_path / "cache")


def test_manifest_is_plain_json(tmp_path):
    root = write_fcot(tmp_path / "FCoT", ROWS[:1])
    load_fcot(root, cache_dir=tmp_path / "cache")
    (manifest,) = (tmp_path / "cache").glob("*/manifest.jsonl")
    record = json.loads(manifest.read_text().splitlines()[0])
    assert record["meta"]["target"].startswith("<think>a cup</think> <bbox>")
