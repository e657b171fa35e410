"""Evaluation inputs found by a hostile-input probe: a corrupt prediction behind a complete record, a ground
truth of another size than its image, unsafe or hostile refer pickles. Each test failed before its fix."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fakedata as fd
from segr1.cli import main
from segr1.data.safe_pickle import safe_loads
from segr1.evaluate import EvalConfig, evaluate, load_eval_samples


class FakeState:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


def run(samples, out: Path) -> dict:
    config = EvalConfig(
        task="foreground", out_dir=out, settings={"dataset": "t"}, progress=False, batch_size=2
    )
    return evaluate(samples, fd.red_box_pipeline(), config, state=FakeState())


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    fd.write_folder_pair(root, 4)
    samples, _ = load_eval_samples("foreground", images=root / "images", masks=root / "masks")
    full = tmp_path_factory.mktemp("full")
    run(samples, full)
    return samples, full


def test_a_corrupt_prediction_behind_a_complete_record_is_run_again(pairs, tmp_path):
    samples, full = pairs
    run(samples, tmp_path)
    record = json.loads((tmp_path / "samples.jsonl").read_text().splitlines()[2])
    pred = tmp_path / record["pred"]
    pred.write_bytes(pred.read_bytes()[:30])  # a damaged file under a complete record
    run(samples, tmp_path)  # raised (unreadable prediction) on every resume before
    assert (tmp_path / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()
    assert Image.open(pred).size == Image.open(full / record["pred"]).size


def test_a_ground_truth_of_another_size_is_counted_and_recorded(tmp_path, capsys):
    root = tmp_path / "data"
    fd.write_folder_pair(root, 3)
    mask = Image.open(root / "masks" / "s1.png")
    mask.resize((mask.width // 2, mask.height // 2), Image.NEAREST).save(root / "masks" / "s1.png")
    samples, _ = load_eval_samples("foreground", images=root / "images", masks=root / "masks")
    doc = run(samples, tmp_path / "out")
    assert doc["n_resized"] == 1
    records = {
        json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()
    }
    image = Image.open(root / "images" / "s1.png")
    assert records["s1"]["resized_from"] == [image.width, image.height]
    assert "resized_from" not in records["s0"]
    assert "1 predictions resized" in capsys.readouterr().out


def _refcoco_with_pickle(root: Path, data: bytes) -> None:
    fd.write_refcoco(root)
    (root / "Refer_Segm" / "refcoco" / "refs(unc).p").write_bytes(data)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps([Evil()], protocol=2),
        b"\x80\x05\x96" + struct.pack("<Q", 2**60) + b"x",  # BYTEARRAY8 of 2**60 bytes: MemoryError
        b"\x80\x04\x8e" + struct.pack("<Q", 2**63 - 1) + b"x",  # BINBYTES8: OverflowError
    ],
    ids=["reduce", "huge-bytearray", "huge-bytes"],
)
def test_eval_refuses_a_bad_refer_pickle_in_one_line(tmp_path, capsys, data):
    _refcoco_with_pickle(tmp_path, data)
    args = ["eval", "referring", "--dataset", "refcoco", "--split", "val", "--data-root", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("segr1 eval")]
    assert len(lines) == 1 and "refs(unc).p" in lines[0], err
    assert "Traceback" not in err


def test_hostile_length_fields_are_unpickling_errors():
    for data in (
        b"\x80\x05\x96" + struct.pack("<Q", 2**60) + b"x",
        b"\x80\x04\x8e" + struct.pack("<Q", 2**63 - 1),
    ):
        with pytest.raises(pickle.UnpicklingError, match="too large"):
            safe_loads(data)
    assert safe_loads(pickle.dumps([{"a": np.int64(1).item()}], protocol=2)) == [{"a": 1}]
