"""`segr1 segment` end to end through `segr1.cli.main` on PNG files written to tmp_path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.cli import main
from segr1.pipeline import SegR1Pipeline


def make_scene(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Textured background with one red disc in the middle; returns (image uint8 RGB, mask bool)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 150, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    mask = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 <= (0.3 * min(width, height)) ** 2
    image[mask] = (220, 30, 30)
    return image, mask


class RedOraclePolicy:
    """Answers with the box around the red pixels of the model-frame image it is given (model frame)."""

    name = "red-oracle"

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        answers = []
        for im in images:
            arr = np.asarray(im.convert("RGB")).astype(int)
            ys, xs = np.nonzero((arr[..., 0] > 180) & (arr[..., 1] < 90))
            answers.append(
                [
                    f"<think>red</think> <bbox>[{xs.min() - 2},{ys.min() - 2},{xs.max() + 2},{ys.max() + 2}]</bbox>"
                ]
                * num_samples
            )
        return answers


def read_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def save_scene(path: Path, width: int, height: int, seed: int = 0) -> np.ndarray:
    image, mask = make_scene(width, height, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return mask


@pytest.fixture
def oracle_pipeline(monkeypatch):
    """Make `SegR1Pipeline.from_specs` build the red-oracle policy + GrabCut; records the specs asked for."""
    asked: list[dict] = []

    def fake_from_specs(cls, model=None, segmenter="grabcut", task="foreground", device=None, **kwargs):
        from segr1.segmenters import load_segmenter

        asked.append({"model": model, "segmenter": segmenter, "task": task, "device": device, **kwargs})
        return cls(RedOraclePolicy(), load_segmenter(segmenter), task=task, **kwargs)

    monkeypatch.setattr(SegR1Pipeline, "from_specs", classmethod(fake_from_specs))
    return asked


def test_synthetic_images_all_succeed_and_duplicate_stems_do_not_overwrite(tmp_path, oracle_pipeline):
    a = tmp_path / "in" / "scene.png"
    b = tmp_path / "in" / "other" / "scene.png"  # same stem
    c = tmp_path / "in" / "tall.png"
    gts = [save_scene(a, 120, 80), save_scene(b, 64, 64, seed=1), save_scene(c, 50, 110, seed=2)]
    out = tmp_path / "out"

    code = main(["segment", str(a), str(b), str(c), "--out", str(out), "--frame", "256", "--batch-size", "2"])

    assert code == 0
    assert oracle_pipeline == [
        {
            "model": None,
            "segmenter": "grabcut",
            "task": "foreground",
            "device": None,
            "frame": 256,
            "max_new_tokens": None,  # the prompt style's budget
            "batch_size": 2,
            "prompt_style": None,
            "answer_format": None,
            "protocol": None,
        }
    ]
    names = ["scene", "scene-2", "tall"]
    for name, gt in zip(names, gts, strict=True):
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert mask.shape == gt.shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        inter = np.logical_and(mask > 0, gt).sum()
        assert inter / np.logical_or(mask > 0, gt).sum() > 0.8
        overlay = Image.open(out / f"{name}_overlay.png")
        assert overlay.size == (gt.shape[1], gt.shape[0]) and overlay.mode == "RGB"
    lines = read_lines(out)
    assert [line["image"] for line in lines] == [str(a), str(b), str(c)]
    assert [Path(line["mask"]).name for line in lines] == [f"{n}_mask.png" for n in names]
    for line in lines:
        assert line["error"] is None
        assert line["answer"].startswith("<think>")
        assert len(line["prompt"]["boxes"]) == 1
        assert set(line["timings"]) >= {"generate_s", "segment_s"}

    # a second run replaces the line of the image it segments again and keeps the others
    assert main(["segment", str(c), "--out", str(out), "--frame", "256"]) == 0
    again = read_lines(out)
    assert [line["image"] for line in again] == [str(a), str(b), str(c)]
    assert [line["stem"] for line in again] == names


def test_unreadable_image_is_reported_and_the_others_still_run(tmp_path, oracle_pipeline):
    good1, good2 = tmp_path / "good1.png", tmp_path / "good2.png"
    save_scene(good1, 90, 60)
    save_scene(good2, 60, 90, seed=3)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"

    code = main(
        ["segment", str(good1), str(corrupt), str(missing), str(good2), "--out", str(out), "--frame", "192"]
    )

    assert code == 1
    ordered = read_lines(out)
    assert [Path(line["image"]).name for line in ordered] == [
        "good1.png",
        "corrupt.png",
        "missing.png",
        "good2.png",
    ]
    lines = {Path(line["image"]).name: line for line in ordered}
    assert set(ordered[1]) <= set(ordered[0])  # an unreadable image's line has the same keys (as nulls)
    assert lines["good1.png"]["error"] is None and lines["good2.png"]["error"] is None
    assert lines["corrupt.png"]["error"].startswith("unreadable image")
    assert lines["missing.png"]["error"].startswith("unreadable image")
    assert (out / "good1_mask.png").exists() and (out / "good2_overlay.png").exists()
    assert not (out / "corrupt_mask.png").exists()


def test_referring_without_text_is_a_usage_error(tmp_path, capsys, oracle_pipeline):
    image = tmp_path / "x.png"
    save_scene(image, 40, 40)
    assert main(["segment", str(image), "--task", "referring", "--out", str(tmp_path / "o")]) == 2
    assert "--text" in capsys.readouterr().err
    assert (
        main(["segment", str(image), "--task", "reasoning", "--text", "  ", "--out", str(tmp_path / "o")])
        == 2
    )
    assert main(["segment", str(image), "--batch-size", "0", "--out", str(tmp_path / "o")]) == 2
    assert oracle_pipeline == []  # nothing was loaded
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option", [["--model", "./no/such/checkpoint"], ["--segmenter", "bogus"], ["--model", "nope:x"]]
)
def test_bad_model_or_segmenter_spec_is_a_usage_error(tmp_path, capsys, option):
    image = tmp_path / "x.png"
    save_scene(image, 40, 40)
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), *option]) == 2
    assert option[1] in capsys.readouterr().err


def test_referring_text_reaches_the_pipeline(tmp_path, oracle_pipeline):
    image = tmp_path / "x.png"
    save_scene(image, 80, 60)
    out = tmp_path / "o"
    code = main(
        [
            "segment",
            str(image),
            "--task",
            "referring",
            "--text",
            "the red disc",
            "--out",
            str(out),
            "--frame",
            "128",
        ]
    )
    assert code == 0
    (line,) = read_lines(out)
    assert line["text"] == "the red disc" and line["task"] == "referring"


def test_help_says_what_the_default_model_is(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Default model" in text
    assert "geshang/Seg-R1-7B" in text
    assert "sam2-hf:facebook/sam2.1-hiera-large" in text
    assert "synthetic" in text


def test_command_module_imports_nothing_heavy():
    code = (
        "import sys, segr1.commands.segment; "
        "heavy = [m for m in ('torch', 'transformers', 'cv2', 'gradio') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_photo_with_the_default_policy(tmp_path):
    """The embedded default on a real photo: files of the photo's size; the JSON line says what happened."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage_data.coffee()).save(photo)  # 600 x 400
    out = tmp_path / "out"

    code = main(["segment", str(photo), "--out", str(out), "--max-new-tokens", "48"])

    assert code in (0, 1)
    mask = Image.open(out / "coffee_mask.png")
    assert mask.size == (600, 400) and mask.mode == "L"
    assert Image.open(out / "coffee_overlay.png").size == (600, 400)
    (line,) = read_lines(out)
    assert line["image"] == str(photo)
    assert isinstance(line["answer"], str)
    assert line["error"] in (None, "unparsable answer", "truncated answer", "empty mask")
    assert (code == 0) == (line["error"] is None)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_runs_into_one_out_keep_one_line_per_image_and_files_are_not_private(tmp_path, oracle_pipeline):
    paths = [tmp_path / "in" / f"img{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        save_scene(path, 48 + 8 * i, 40, seed=i)
    out = tmp_path / "out"
    for _ in range(3):
        assert main(["segment", *map(str, paths), "--out", str(out), "--frame", "128"]) == 0
    lines = read_lines(out)
    assert [line["image"] for line in lines] == [str(p) for p in paths]  # 3 lines, not 9
    # a run of other images adds theirs; a same-stem image replaces the old line and files
    other = tmp_path / "in" / "sub" / "img1.png"
    save_scene(other, 30, 30, seed=7)
    assert main(["segment", str(other), "--out", str(out), "--frame", "128"]) == 0
    lines = read_lines(out)
    assert [line["image"] for line in lines] == [str(paths[0]), str(paths[2]), str(other)]
    assert Image.open(out / "img1_mask.png").size == (30, 30)
    # an image that has become unreadable leaves no stale mask behind its failed line
    paths[0].write_bytes(b"not a png any more")
    assert main(["segment", str(paths[0]), str(paths[2]), "--out", str(out), "--frame", "128"]) == 1
    by_stem = {line["stem"]: line for line in read_lines(out)}
    assert len(by_stem) == 3 and by_stem["img0"]["error"].startswith("unreadable image")
    assert not (out / "img0_mask.png").exists() and (out / "img2_mask.png").exists()
    expected = 0o666 & ~_umask()
    for name in ("img2_mask.png", "img2_overlay.png", "results.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == expected, name


def test_help_says_what_a_rerun_into_out_does(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one results.jsonl line per image" in text and "replaces" in text


def test_default_out_folder_is_git_ignored():
    lines = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "/segr1-out/" in lines or "segr1-out/" in lines
