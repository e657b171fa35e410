"""segr1.policies: the tiny offline Qwen2.5-VL builder, the hf backend on it, and load_policy's specs."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1 import prompts
from segr1.answer import SegPrompt, format_answer, parse_answer
from segr1.policies import (
    DEFAULT_POLICY_DESCRIPTION,
    default_policy_path,
    load_policy,
    parse_policy_spec,
    read_policy_metadata,
    shipped_policy_available,
    write_policy_metadata,
)
from segr1.policies.hf import HFPolicy
from segr1.policies.tiny import ANSWER_TAGS, QWEN_SPECIAL_TOKENS, build_tiny_qwen25vl, tiny_model_dir

FRAME = 224


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def processor(tiny_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def policy(tiny_dir) -> HFPolicy:
    return HFPolicy(tiny_dir, device="cpu", dtype="float32")


def images(n: int, seed: int = 0, size: int = FRAME) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


# --- the tiny checkpoint ---------------------------------------------------------------------------------


def test_tiny_folder_loads_offline_with_auto_classes(tiny_dir, processor, monkeypatch):
    from transformers import AutoModelForImageTextToText

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert sum(p.stat().st_size for p in tiny_dir.iterdir()) < 20e6
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert model.config.model_type == "qwen2_5_vl"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok)
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    meta = json.loads((tiny_dir / "segr1_policy.json").read_text())
    assert meta["frame"] == FRAME and meta["trained"] is False


def test_tiny_build_is_deterministic_and_matches_cache(tiny_dir, tmp_path):
    out = build_tiny_qwen25vl(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (tiny_dir / name).read_bytes(), (
            f"{name} differs: bump TINY_VERSION?"
        )
    # config.json also records the transformers version that wrote it: the cache may predate an upgrade
    fresh, cached = (json.loads((d / "config.json").read_text()) for d in (out, tiny_dir))
    fresh.pop("transformers_version", None), cached.pop("transformers_version", None)
    assert fresh == cached, "config.json differs: bump TINY_VERSION?"


def test_tiny_size_overrides_are_validated(tmp_path):
    with pytest.raises(ValueError, match="frame"):
        build_tiny_qwen25vl(tmp_path / "a", frame=100)
    with pytest.raises(ValueError, match="unknown size override"):
        build_tiny_qwen25vl(tmp_path / "b", hidden=64)


def test_tiny_rope_theta_override_reaches_the_config(tmp_path):
    import json

    out = build_tiny_qwen25vl(tmp_path / "t1e6", rope_theta=1e6)
    rope = json.loads((out / "config.json").read_text())["text_config"]["rope_parameters"]
    assert rope["rope_theta"] == 1e6 and sum(rope["mrope_section"]) * 2 == 128 // 4
    default = json.loads((tiny_model_dir() / "config.json").read_text())["text_config"]["rope_parameters"]
    assert default["rope_theta"] == 10.0  # usable rotary angles across the 8x8 image grid (docs/results.md)


def test_static_rope_pairs_make_the_temporal_pairs_position_free_in_transformers(tmp_path):
    import json

    import torch
    from transformers import AutoModelForImageTextToText

    from segr1.policies.tiny import STATIC_ROPE_FREQUENCY, with_static_rope_pairs

    out = build_tiny_qwen25vl(tmp_path / "s4", static_rope_pairs=4)
    rope = json.loads((out / "config.json").read_text())["text_config"]["rope_parameters"]
    assert rope["rope_type"] == "longrope" and rope["mrope_section"] == [4, 6, 6]
    model = AutoModelForImageTextToText.from_pretrained(out)
    rotary = model.model.language_model.rotary_emb
    plain = 1.0 / (10.0 ** (torch.arange(0, 32, 2).float() / 32))
    torch.testing.assert_close(
        rotary.inv_freq[:4], torch.full((4,), STATIC_ROPE_FREQUENCY), rtol=1e-4, atol=0
    )
    torch.testing.assert_close(rotary.inv_freq[4:], plain[4:])
    assert rotary.attention_scaling == 1.0
    # Past the model's maximum length the long factors (the same) would apply: still the same frequencies.
    ids = torch.zeros(1, 5, dtype=torch.long)
    model(input_ids=ids)  # runs

    # A trained checkpoint gains the pairs with its weights untouched, and loses them again.
    warm = with_static_rope_pairs(tiny_model_dir(), tmp_path / "warm", 2)
    assert (warm / "model.safetensors").read_bytes() == (tiny_model_dir() / "model.safetensors").read_bytes()
    factors = json.loads((warm / "config.json").read_text())["text_config"]["rope_parameters"]["short_factor"]
    assert [f > 1e4 for f in factors] == [True, True] + [False] * 14
    back = with_static_rope_pairs(warm, warm, 0)
    assert json.loads((back / "config.json").read_text())["text_config"]["rope_parameters"] == {
        "rope_type": "default",
        "rope_theta": 10.0,
        "mrope_section": [4, 6, 6],
    }
    with pytest.raises(ValueError, match="temporal section"):
        build_tiny_qwen25vl(tmp_path / "s5", static_rope_pairs=5)


def test_a_new_vision_tower_keeps_the_language_model_and_runs(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText

    from segr1.policies import load_policy
    from segr1.policies.tiny import with_vision_tower

    out = with_vision_tower(tiny_model_dir(), tmp_path / "big", vision_hidden_size=128, vision_depth=3)
    vision = json.loads((out / "config.json").read_text())["vision_config"]
    assert (vision["hidden_size"], vision["depth"], vision["fullatt_block_indexes"]) == (128, 3, [2])
    old = AutoModelForImageTextToText.from_pretrained(tiny_model_dir()).state_dict()
    new = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    language = [k for k in old if ".visual." not in f".{k}"]
    assert language and all(torch.equal(old[k], new[k]) for k in language)
    assert new["model.visual.patch_embed.proj.weight"].shape[0] == 128
    policy = load_policy(
        f"hf:{out}", device="cpu"
    )  # a loadable policy: the processor and metadata came along
    image = Image.fromarray(np.zeros((224, 224, 3), dtype=np.uint8))
    (row,) = policy.generate([image], ["segment it"], num_samples=2, max_new_tokens=4)
    assert len(row) == 2 and all(isinstance(text, str) for text in row)
    with pytest.raises(ValueError, match="not vision sizes"):
        with_vision_tower(tiny_model_dir(), tmp_path / "x", hidden_size=64)
    with pytest.raises(ValueError, match="dst must differ"):
        with_vision_tower(out, out)


def test_tiny_model_dir_concurrent_builds_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGR1_CACHE", str(tmp_path))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(tiny_model_dir())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert (results[0] / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]  # no temporary build folders left


# --- tokenizer, chat template, image processor ------------------------------------------------------------


ANSWERS = [
    "<think>The blue star is on the left.</think> <bbox>[12,40,200,180]</bbox>, "
    "<points>[[30,50],[100,120]]</points>, <labels>[1,0]</labels>",
    "<think>\n  two objects\n</think>\n<bbox>[0,0,223,223]</bbox><bbox>[5.5,6,7,8]</bbox>, <points>[[1,2]]</points>",
    'Ünïcödé ✓ 😀\ttabs  and   spaces, \\escapes\\ {"json": [1, -2.5e3]} <|not a token|>',
]


@pytest.mark.parametrize("text", ANSWERS)
def test_tokenizer_round_trips_losslessly(processor, text):
    tok = processor.tokenizer
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_round_trips_formatted_answers(processor):
    tok = processor.tokenizer
    rng = np.random.default_rng(0)
    for i in range(20):
        points = rng.integers(0, FRAME, (i % 5 + 1, 2)).astype(float)
        boxes = np.sort(rng.integers(0, FRAME, (i % 3, 2, 2)), axis=1).reshape(-1, 4).astype(float)
        prompt = SegPrompt(boxes=boxes, points=points, labels=rng.integers(0, 2, len(points)))
        text = format_answer(prompt, think=f"reasoning {i}")
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
        np.testing.assert_array_equal(parse_answer(text).points, points)


def test_digits_brackets_and_tags_are_single_tokens(processor):
    tok = processor.tokenizer
    pieces = tok.tokenize("<bbox>[12,40,200,180]</bbox>, <points>[[3,5]]</points>")
    assert pieces == [
        "<bbox>", "[", "1", "2", ",", "4", "0", ",", "2", "0", "0", ",", "1", "8", "0", "]", "</bbox>", ",", "Ġ",
        "<points>", "[", "[", "3", ",", "5", "]", "]", "</points>",
    ]  # fmt: skip
    for token in (*QWEN_SPECIAL_TOKENS, *ANSWER_TAGS, *"0123456789[],"):
        assert len(tok.encode(token, add_special_tokens=False)) == 1, token
    # answer tags survive skip_special_tokens; Qwen's special tokens do not
    ids = tok.encode("<|im_start|><think>a</think><|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "<think>a</think>"


def test_chat_template_renders_qwen_format(processor):
    image = images(1)[0]
    messages = prompts.build_messages(image, "Find it.", system="Sys.")
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nSys.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "Find it.<|im_end|>\n<|im_start|>assistant\n"
    )
    default = processor.apply_chat_template(prompts.build_messages(image, "Find it."), tokenize=False)
    assert default.startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    )
    # TRL's path: tokenize=True with the images inside the messages; 224x224 -> 16x16 patches -> 64 tokens
    batch = processor.apply_chat_template(
        [messages, messages], add_generation_prompt=True, tokenize=True, return_dict=True, padding=True
    )
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert [list(row).count(image_id) for row in batch["input_ids"]] == [64, 64]
    assert batch["image_grid_thw"].tolist() == [[1, 16, 16], [1, 16, 16]]


def test_chat_template_marks_assistant_tokens_for_sft(processor):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<bbox>[1,2,3,4]</bbox>"}]},
    ]
    out = processor.tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert processor.tokenizer.decode(ids) == "<bbox>[1,2,3,4]</bbox><|im_end|>"


def test_image_processor_keeps_frame_and_bounds_larger_images(processor):
    grid = processor.image_processor(images=images(1, size=FRAME))["image_grid_thw"].tolist()
    assert grid == [[1, FRAME // 14, FRAME // 14]]
    big = processor.image_processor(images=images(1, size=FRAME * 2))["image_grid_thw"][0]
    assert int(big[1] * big[2]) * 14 * 14 <= FRAME * FRAME


# --- the hf backend ----------------------------------------------------------------------------------------


def test_generate_shapes_with_sampling(policy):
    out = policy.generate(images(2), ["Find it.", "Segment the red star."], num_samples=3, temperature=1.0,
                          max_new_tokens=8)  # fmt: skip
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    assert all(isinstance(text, str) for row in out for text in row)


def test_greedy_is_deterministic_and_replicated(policy):
    imgs, ins = images(2, seed=1), ["Find it.", "Find it."]
    first = policy.generate(imgs, ins, num_samples=3, max_new_tokens=12)
    assert first == policy.generate(imgs, ins, num_samples=3, max_new_tokens=12)
    assert all(len(set(row)) == 1 and len(row) == 3 for row in first)


def test_batched_greedy_equals_one_by_one(policy):
    imgs = images(3, seed=2)
    instructions = [  # different lengths -> left padding in the batch
        prompts.build_instruction("foreground", frame=FRAME),
        "Short.",
        prompts.build_instruction("referring", "the small red circle in the upper left corner", frame=FRAME),
    ]
    batched = policy.generate(imgs, instructions, max_new_tokens=16, system=prompts.SYSTEM_PROMPT)
    single = [
        policy.generate([im], [ins], max_new_tokens=16, system=prompts.SYSTEM_PROMPT)[0]
        for im, ins in zip(imgs, instructions, strict=True)
    ]
    assert batched == single


def test_max_batch_size_chunks_give_same_result(tiny_dir, policy):
    imgs, ins = images(3, seed=3), ["a", "bb bb", "ccc ccc ccc"]
    chunked = HFPolicy(tiny_dir, device="cpu", dtype="float32", max_batch_size=2)
    assert chunked.generate(imgs, ins, max_new_tokens=6) == policy.generate(imgs, ins, max_new_tokens=6)
    assert chunked.frame == FRAME and chunked.name.startswith("hf:")


def test_static_cache_greedy_equals_eager(tiny_dir, policy):
    imgs, ins = images(2, seed=4), [prompts.build_instruction("foreground", frame=FRAME), "Short."]
    static = HFPolicy(tiny_dir, device="cpu", dtype="float32", cache_implementation="static")
    assert static.generate(imgs, ins, max_new_tokens=12) == policy.generate(imgs, ins, max_new_tokens=12)


@pytest.mark.gpu
def test_cuda_defaults_to_bf16_and_generates(tiny_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pol = HFPolicy(tiny_dir)
    assert pol.device == "cuda" and pol.dtype == torch.bfloat16
    out = pol.generate(images(2), ["a", "b"], num_samples=2, temperature=1.0, max_new_tokens=8)
    assert [len(row) for row in out] == [2, 2]
    greedy = pol.generate(images(2), ["a", "bb bb bb"], max_new_tokens=8)
    assert greedy == pol.generate(images(2), ["a", "bb bb bb"], max_new_tokens=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"instructions": ["a", "b"]}, "instructions"),
        ({"num_samples": 0}, "num_samples"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 10**6}, "max_new_tokens"),
    ],
)
def test_generate_rejects_bad_arguments(policy, kwargs, match):
    call = {"images": images(1), "instructions": ["a"], **kwargs}
    with pytest.raises(ValueError, match=match):
        policy.generate(**call)


def test_generate_rejects_non_images(policy):
    with pytest.raises(TypeError, match="PIL"):
        policy.generate(["not an image"], ["a"])


# --- load_policy -------------------------------------------------------------------------------------------


def test_load_policy_default_works(caplog):
    with caplog.at_level(logging.WARNING, logger="segr1.policies"):
        pol = load_policy(None, device="cpu")
    if not shipped_policy_available():
        assert "UNTRAINED" in caplog.text
        assert default_policy_path() == tiny_model_dir()
    out = pol.generate(images(1), [prompts.build_instruction("foreground", frame=FRAME)], max_new_tokens=4)
    assert len(out) == 1 and len(out[0]) == 1
    assert "tiny" in DEFAULT_POLICY_DESCRIPTION


def test_parse_policy_spec(tiny_dir):
    assert parse_policy_spec(None) == ("auto", None)
    assert parse_policy_spec("default") == ("auto", None)
    assert parse_policy_spec("hf:default") == ("hf", None)
    assert parse_policy_spec("native:default") == ("native", None)
    assert parse_policy_spec("geshang/Seg-R1-7B") == ("hf", "geshang/Seg-R1-7B")
    assert parse_policy_spec("hf:Qwen/Qwen2.5-VL-7B-Instruct") == ("hf", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert parse_policy_spec("vllm:geshang/Seg-R1-7B") == ("vllm", "geshang/Seg-R1-7B")
    assert parse_policy_spec(str(tiny_dir)) == ("hf", str(tiny_dir))
    assert parse_policy_spec(f"hf:{tiny_dir}") == ("hf", str(tiny_dir))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("foo:bar", "unknown policy backend 'foo'"),
        ("hf:", "names no model"),
        ("/no/such/folder", "neither an existing folder nor a hub id"),
        ("./missing", "neither an existing folder nor a hub id"),
        ("bad id with spaces", "neither an existing folder nor a hub id"),
    ],
)
def test_load_policy_bad_spec_is_clear(spec, match):
    with pytest.raises(ValueError, match=match):
        load_policy(spec)


def test_load_policy_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_policy(str(tmp_path))


def test_load_policy_vllm_without_vllm_names_the_extra():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"segr1\[vllm\]"):
            load_policy("vllm:geshang/Seg-R1-7B")
    else:
        pytest.skip("vllm is installed")


def test_policy_metadata_round_trip(tmp_path):
    assert read_policy_metadata(tmp_path) == {}
    write_policy_metadata(tmp_path, {"frame": 448, "trained": True})
    assert read_policy_metadata(tmp_path) == {"frame": 448, "trained": True}
    with pytest.raises(ValueError, match="frame"):
        write_policy_metadata(tmp_path, {"frame": "448"})
    (tmp_path / "segr1_policy.json").write_text("{not json")
    assert read_policy_metadata(tmp_path) == {}
