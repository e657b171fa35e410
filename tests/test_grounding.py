"""segr1.train.grounding: the training-only attention and place terms of ``segr1 train sft``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segr1.train import grounding as g

REPO = Path(__file__).resolve().parents[1]


def test_cell_targets_are_the_named_objects_share_of_each_cell_in_raster_order():
    mask = np.zeros((224, 224), dtype=bool)
    mask[56:84, 84:112] = True  # exactly cell (row 2, column 3)
    mask[0:14, 0:28] = True  # the top half of cell (0, 0)
    cells = g.cell_targets(mask, 224)
    assert cells.shape == (64,)
    assert cells[2 * 8 + 3] == 1.0 and cells[0] == 0.5
    assert np.count_nonzero(cells) == 2
    # masks of another size are resized to the frame first, as the images are
    big = np.kron(mask, np.ones((2, 1), dtype=bool))  # 448 x 224
    np.testing.assert_allclose(g.cell_targets(big, 224), cells)


def test_pre_coordinate_queries_stop_before_the_first_digit_of_the_answer():
    import torch

    # prompt: ids 5 5 5; answer: 7 ("<think>") 8 ("[") 1 ("1", a digit) 9 ("]")
    input_ids = torch.tensor([[5, 5, 5, 7, 8, 1, 9], [5, 5, 7, 9, 9, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, 7, 8, 1, 9], [-100, -100, 7, 9, 9, -100, -100]])
    queries = g.pre_coordinate_queries(input_ids, labels, {1})
    # row 0: position 2 (the last prompt token) predicts "<think>", 3 predicts "[", 4 the digit; the digit's own
    # position 5 (it has seen the digit) and later ones are left out
    assert queries[0].tolist() == [False, False, True, True, True, False, False]
    # row 1 has no digit: every position that predicts an answer token (1, 2, 3)
    assert queries[1].tolist() == [False, True, True, True, False, False, False]
    assert not g.pre_coordinate_queries(input_ids, torch.full_like(labels, -100), {1}).any()


def test_attention_loss_is_least_when_the_head_attends_as_the_coverage():
    import torch

    is_image = torch.tensor([[False, True, True, True, True, False]])
    queries = torch.tensor([[False, False, False, False, False, True]])
    coverage = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # the object covers the 2nd and 3rd image tokens

    def loss_for(row):
        weights = torch.zeros(1, 6, 6)
        weights[0, 5] = torch.tensor(row)
        return float(g.attention_loss(weights, is_image, queries, coverage))

    on = loss_for([0.0, 0.0, 0.5, 0.5, 0.0, 0.0])
    off = loss_for([0.0, 0.5, 0.0, 0.0, 0.5, 0.0])
    spread = loss_for([0.0, 0.25, 0.25, 0.25, 0.25, 0.0])
    assert on == pytest.approx(np.log(2)) and on < spread < off
    with pytest.raises(ValueError, match="image tokens"):
        g.attention_loss(torch.zeros(1, 6, 6), is_image, queries, torch.ones(1, 3))


def test_place_loss_is_zero_for_a_probe_that_reads_the_grid_and_positive_otherwise():
    import torch

    side = 3
    grid = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    where = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(1, -1, 2)  # raster (col, row)
    tokens = torch.cat([where, torch.randn(1, side * side, 3)], dim=-1).expand(2, -1, -1)  # hidden 5
    probe = torch.nn.Linear(5, 2, bias=False)
    with torch.no_grad():
        probe.weight.zero_()
        probe.weight[0, 0] = probe.weight[1, 1] = 1.0  # reads the first two features: column, row
    assert g.place_loss(probe, tokens).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        probe.weight[[0, 1]] = probe.weight[[1, 0]].clone()  # column and row swapped
    assert g.place_loss(probe, tokens).item() > 0.01
    with pytest.raises(ValueError, match="square"):
        g.place_loss(probe, tokens[:, :8])


def test_the_frame_must_be_whole_cells():
    with pytest.raises(ValueError, match="whole number"):
        g.cell_targets(np.ones((10, 10), dtype=bool), 230)


def test_sft_rows_carry_the_targets_cells_for_the_grounding_tasks_only(tmp_path):
    from segr1.data.folders import read_manifest
    from segr1.data.synthetic import write_scenes
    from segr1.data.trl import to_sft_dataset

    write_scenes("referring-colour", 2, tmp_path / "r", seed=1, min_size=160, max_size=200, progress=False)
    write_scenes("salient", 2, tmp_path / "s", seed=1, min_size=160, max_size=200, progress=False)
    samples = [
        *read_manifest(tmp_path / "r" / "manifest.jsonl"),
        *read_manifest(tmp_path / "s" / "manifest.jsonl"),
    ]
    kw = dict(frame=224, system=None, n_pos=1, n_neg=0, think="object", style="segr1-task-line")
    rows = to_sft_dataset(samples, grounding_tasks={"referring"}, **kw)[:4]
    cells = {t: np.asarray(c) for t, c in zip(rows["task"], rows[g.CELLS_COLUMN], strict=True)}
    assert cells["referring"].shape == (64,) and cells["referring"].sum() > 0
    assert not cells["foreground"].any()  # a task the terms leave out
    every = to_sft_dataset(samples, grounding_tasks=(), **kw)[:4]
    from segr1.data.io import read_mask

    for sample, row in zip(samples, every[g.CELLS_COLUMN], strict=True):  # every task: each row its own mask
        np.testing.assert_allclose(row, g.cell_targets(read_mask(sample.mask), 224))
    assert g.CELLS_COLUMN not in to_sft_dataset(samples, **kw)[:1]


def test_the_cells_collator_fills_rows_without_targets_with_zeros():
    import torch

    from segr1.train.sft import _CellsCollator

    seen = []
    collate = _CellsCollator(
        lambda rows: seen.append(rows) or {"input_ids": torch.zeros(3, 1)}, g.CELLS_COLUMN
    )
    batch = collate([{"a": 1, g.CELLS_COLUMN: [0.5, 1.0]}, {"a": 2, g.CELLS_COLUMN: None}, {"a": 3}])
    assert batch[g.CELLS_COLUMN].tolist() == [[0.5, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert seen == [[{"a": 1}, {"a": 2}, {"a": 3}]]  # TRL's collator never sees the column


def test_the_attention_hook_asks_for_eager_attention():
    import torch
    from transformers import AutoModelForImageTextToText

    from segr1.policies.tiny import tiny_model_dir

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir(), attn_implementation="sdpa")
    terms = g.GroundingTerms(hidden_size=model.config.get_text_config().hidden_size,
                             image_token_id=model.config.image_token_id, digit_ids={1}, attn_weight=1.0)  # fmt: skip
    terms.attach(model)
    with pytest.raises(RuntimeError, match="eager"):
        model(input_ids=torch.tensor([[1, 2, 3]]))
    terms.detach()
    model(input_ids=torch.tensor([[1, 2, 3]]))  # the hooks are gone
    with pytest.raises(ValueError, match="no decoder layer 9"):
        g.GroundingTerms(hidden_size=8, image_token_id=0, digit_ids=(), attn_layer=9, attn_weight=1.0).attach(
            model
        )


def test_segr1_train_sft_with_the_grounding_terms_trains_them_and_saves_an_ordinary_checkpoint(tmp_path):
    """A short real run: both terms are logged, the attention term falls, and the probe is not saved."""
    from segr1.cli import main
    from segr1.policies import load_policy
    from segr1.train.callbacks import read_log

    out = tmp_path / "sft"
    data = [{"synthetic": {"kind": "referring-colour", "n": 16, "seed": 0, "min_size": 160, "max_size": 200}}]
    args = ["train", "sft", "--config", str(REPO / "recipes" / "tiny" / "sft.yaml"), "--task", "referring",
            "--train_data", json.dumps(data), "--data_cache_dir", str(tmp_path / "synth"), "--output_dir", str(out),
            "--prompt_style", "segr1-task-line", "--sft_points_pos", "1", "--sft_points_neg", "0",
            "--sft_think", "object", "--max_steps", "16", "--per_device_train_batch_size", "4",
            "--learning_rate", "3e-3", "--warmup_steps", "2", "--logging_steps", "1", "--save_strategy", "no",
            "--grounding_attn_weight", "1", "--grounding_place_weight", "1"]  # fmt: skip
    assert main(args) == 0
    rows = [r for r in read_log(out / "log.jsonl") if "grounding_attention" in r]
    assert len(rows) == 16 and all(r["grounding_place"] > 0 for r in rows)
    first, last = (np.mean([r["grounding_attention"] for r in part]) for part in (rows[:4], rows[-4:]))
    assert last < first - 0.1, (first, last)
    assert np.log(64 / 9) < last  # not below a sharp spread over a 3 x 3-cell object: still learning
    meta = json.loads((out / "segr1_policy.json").read_text())
    assert meta["segr1_args"]["grounding_attn_weight"] == 1.0 and meta["prompt_style"] == "segr1-task-line"
    policy = load_policy(f"hf:{out}", device="cpu")
    assert not any("probe" in k for k in policy.model.state_dict())
    assert policy.model.config._attn_implementation != "eager"  # eager was for training only


def test_grounding_options_are_validated():
    from segr1.train.common import parse_recipe

    sft = str(REPO / "recipes" / "tiny" / "sft.yaml")
    with pytest.raises(ValueError, match="unknown tasks"):
        parse_recipe("sft", ["--config", sft, "--grounding_tasks", "referring,nonsense"])
    with pytest.raises(ValueError, match=">= 0"):
        parse_recipe("sft", ["--config", sft, "--grounding_place_weight", "-1"])
    script, _, _ = parse_recipe("sft", ["--config", sft, "--grounding_tasks", "referring, reasoning"])
    assert script.grounding_task_set == {"referring", "reasoning"} and not script.grounding
