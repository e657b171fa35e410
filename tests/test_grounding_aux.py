"""scripts/grounding_aux.py: SFT with a training-only probe that marks the named object's image cells."""

from __future__ import annotations

import json

import pytest

import fakedata as fd


@pytest.fixture(scope="module")
def aux():
    return fd.load_script("grounding_aux", register=True)


@pytest.mark.parametrize("weight", ["1.0", "0"])
def test_a_short_run_saves_an_ordinary_checkpoint(aux, tmp_path, weight):
    from segr1.data.synthetic import write_scenes
    from segr1.policies import load_policy
    from segr1.policies.tiny import tiny_model_dir

    scenes = tmp_path / "scenes"
    write_scenes("referring-colour", 6, scenes, seed=1, min_size=160, max_size=200, progress=False)
    out = tmp_path / "out"
    argv = ["--init", str(tiny_model_dir()), "--train", str(scenes), "--out", str(out)]
    short = weight == "0"  # the control run also tries the task-line prompt and the scoring on scenes
    extra = ["--task-line-only", "--val", str(scenes), "--val-n", "3"] if short else []
    assert (
        aux.main([*argv, "--steps", "2", "--batch", "2", "--aux-weight", weight, "--threads", "1", *extra])
        == 0
    )
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert (
        meta["prompt_style"] == ("segr1-task-line" if short else "segr1-text-first")
        and meta["task"] == "referring"
    )
    if short:
        row = json.loads((out / "val.json").read_text())
        assert row["n"] == 3 and {"gain", "text_gain", "box_iou", "named"} <= set(row)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and (rows[-1]["aux"] > 0) == (weight != "0")
    policy = load_policy(f"hf:{out}", device="cpu")  # loads as a plain Qwen2.5-VL: the probe is not saved
    assert not any("probe" in k for k in policy.model.state_dict())


def test_the_task_line_style_keeps_only_the_phrase_line_before_the_image():
    from segr1.styles import get_style

    style = get_style("segr1-task-line")
    full = get_style("segr1-text-first").user("referring", "the red shape", frame=224)
    short = style.user("referring", "the red shape", frame=224)
    assert short == full.splitlines()[0] and "the red shape" in short and "\n" not in short
    assert len(short) < len(full) / 3
    content = style.messages("IMAGE", short)[-1]["content"]
    assert [part["type"] for part in content] == ["text", "image"] and style.image_first is False
    assert style.user("foreground", frame=224) == "Identify and segment all the primary objects in the image."
    query = style.user("reasoning", "which shape is largest?", frame=224)
    assert query == "which shape is largest?\nIdentify and segment the object that answers this."
    with pytest.raises(ValueError, match="needs text"):
        style.user("referring", "  ", frame=224)


def test_box_cells_are_the_cells_a_box_covers_by_more_than_the_share(aux):
    size = (448, 224)  # (width, height): the frame halves x and keeps y
    cells = aux.box_cells([112, 56, 224, 112], size, 224).reshape(8, 8)  # frame box x 56..112, y 56..112
    assert cells.dtype == bool and cells.sum() == 4
    assert cells[2:4, 2:4].all()
    # a box that covers a fifth of a cell does not count it
    assert not aux.box_cells([0, 0, 11, 5], size, 224).any()


def test_the_attention_place_and_box_terms_train_and_are_not_saved(aux, tmp_path):
    from segr1.data.synthetic import write_scenes
    from segr1.policies import load_policy
    from segr1.policies.tiny import tiny_model_dir

    scenes = tmp_path / "scenes"
    write_scenes("referring-colour", 6, scenes, seed=1, min_size=160, max_size=200, progress=False)
    out = tmp_path / "out"
    argv = ["--init", str(tiny_model_dir()), "--train", str(scenes), "--out", str(out), "--steps", "2",
            "--batch", "2", "--aux-weight", "0", "--attn-weight", "1", "--pos-weight", "1", "--box-weight", "1",
            "--threads", "1", "--task-line-only", "--val", str(scenes), "--val-n", "3"]  # fmt: skip
    assert aux.main(argv) == 0
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert last["attn"] > 0 and last["place"] > 0 and last["box"] > 0
    row = json.loads((out / "val.json").read_text())
    assert row["attention_scenes"] > 0 and 0 <= row["attention_share_own"] <= 1
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert meta["prompt_style"] == "segr1-task-line" and meta["grounding_aux"]["attn_weight"] == "1.0"
    policy = load_policy(f"hf:{out}", device="cpu")
    assert not any("probe" in k for k in policy.model.state_dict())


def test_phrase_templates_hide_the_colour_and_shape_words(aux):
    objects = [{"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "square"}]
    assert aux.phrase_template("the red circle on the left", objects) == "the C S on the left"
    assert aux.phrase_template("the blue one", objects) == "the C one"
    assert aux.phrase_template(None, objects) == "none"
    kinds = {"the C S on the left": "position", "the leftmost object": "position", "the smaller C S": "size",
             "the C S": "colour + shape", "the C one": "colour", "the S": "shape", "none": "none",
             "Which shape is the largest?": "other"}  # fmt: skip
    assert {t: aux.phrase_kind(t) for t in kinds} == kinds


def test_diagnose_reports_where_the_head_looks_per_template(aux, tmp_path, capsys):
    from segr1.data.synthetic import write_scenes
    from segr1.policies.tiny import tiny_model_dir

    scenes = tmp_path / "scenes"
    write_scenes("referring-seen", 6, scenes, seed=1, min_size=160, max_size=200, progress=False)
    assert aux.main(["--init", str(tiny_model_dir()), "--diagnose", str(scenes), "--val-n", "6"]) == 0
    report = json.loads(capsys.readouterr().out)[str(scenes)]
    overall = report["all"]
    assert 0 < overall["n"] <= 6 and 0 <= overall["share"] <= 1 and 0 < overall["chance"] < 1
    assert set(report) == {"all", "by kind", "by colour", "by template"}
    for groups in report.values():
        if "n" not in groups:  # a grouping: its groups split the scenes
            assert sum(g["n"] for g in groups.values()) == overall["n"]
    with pytest.raises(SystemExit):
        aux.main(["--init", str(tiny_model_dir())])  # neither training folders nor --diagnose
