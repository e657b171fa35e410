"""segr1's own Qwen2.5-VL forward pass (segr1.policies.native) computes what transformers computes.

Random tiny checkpoints of three shapes (the default; one with three vision blocks, grouped-query attention
with one key/value head and a non-square 252 x 196 image whose merged grid does not fill the attention
windows; one with as many key/value heads as query heads; one with static rotary pairs, a ``longrope``
config), built offline, are run through both backends:
same prompt ids, same pixel patches, same image features and logits (to float32 rounding), same greedy
answers and truncation flags; also with a system turn and a repetition penalty. Then the backend's own
behaviour: sampling, options, what it refuses and why, and how ``load_policy`` picks it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segr1 import prompts
from segr1.policies import load_policy
from segr1.policies.native import NativePolicy, NativeUnsupported, native_unsupported
from segr1.prompts import build_messages

SHAPES = {
    "default": ({}, (224, 224)),
    "gqa-1kv-3blocks-nonsquare": (
        {"frame": 336, "vision_depth": 3, "num_attention_heads": 4, "num_key_value_heads": 1},
        (252, 196),
    ),
    "static-rope-pairs": ({"static_rope_pairs": 4}, (224, 224)),
    "mha-wide-vision": (
        {
            "hidden_size": 96,
            "intermediate_size": 192,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "num_hidden_layers": 2,
            "vision_hidden_size": 96,
            "vision_num_heads": 3,
        },
        (168, 280),
    ),
}


@pytest.fixture(scope="module", params=sorted(SHAPES))
def shape(request, tmp_path_factory):
    from segr1.policies.tiny import build_tiny_qwen25vl, tiny_model_dir

    sizes, image_size = SHAPES[request.param]
    folder = (
        tiny_model_dir()
        if not sizes
        else build_tiny_qwen25vl(tmp_path_factory.mktemp(request.param), seed=3, **sizes)
    )
    return folder, image_size


@pytest.fixture(scope="module")
def pair(shape):
    from segr1.policies.hf import HFPolicy

    folder, image_size = shape
    return NativePolicy(folder), HFPolicy(folder, device="cpu"), image_size


def _images(size: tuple[int, int], n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[: size[1] // 2, : size[0] // (i + 2)] = (
            200,
            40 * i,
            30,
        )  # some structure, different per image
        out.append(Image.fromarray(pixels))
    return out


def _hf_inputs(hf, image, instruction, system=None, image_first=True):
    text = hf.processor.apply_chat_template(
        build_messages(image, instruction, system, image_first=image_first),
        add_generation_prompt=True,
        tokenize=False,
    )
    return hf.processor(text=[text], images=[image], return_tensors="pt")


@pytest.mark.parametrize("image_first", [True, False], ids=["image-first", "text-first"])
@pytest.mark.parametrize("system", [None, "You find objects."])
def test_prompt_ids_and_patches_match_the_processor(pair, system, image_first):
    native, hf, size = pair
    image = _images(size, 1)[0]
    instruction = prompts.build_instruction("referring", "the red square", frame=224)
    ids, patches, grid = native.prompt_ids(image, instruction, system, image_first)
    inputs = _hf_inputs(hf, image, instruction, system, image_first)
    assert ids == inputs["input_ids"][0].tolist()
    assert list(grid) == inputs["image_grid_thw"][0].tolist()
    torch.testing.assert_close(patches, inputs["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("image_first", [True, False], ids=["image-first", "text-first"])
def test_image_features_and_logits_match_transformers(pair, image_first):
    native, hf, size = pair
    image = _images(size, 1)[0]
    instruction = prompts.build_instruction("foreground", frame=224)
    inputs = _hf_inputs(hf, image, instruction, image_first=image_first)
    ids, patches, grid = native.prompt_ids(image, instruction, image_first=image_first)
    with torch.no_grad():
        want_features = hf.model.model.get_image_features(
            inputs["pixel_values"], inputs["image_grid_thw"]
        ).pooler_output[0]
        want_logits = hf.model(**inputs).logits[0, -1]
        features = native.model.vision(patches, grid)
        positions, _ = native.model.positions(ids, [grid])
        logits = native.model.decoder(native.model.embed(torch.tensor(ids), [features]), positions, [])
    torch.testing.assert_close(features, want_features, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, want_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("image_first", [True, False], ids=["image-first", "text-first"])
def test_greedy_answers_and_truncation_match_transformers(pair, image_first):
    native, hf, size = pair
    images = _images(size)
    instructions = [prompts.build_instruction("foreground", frame=224)] * len(images)
    for budget in (3, 24):
        got = native.generate_detailed(images, instructions, max_new_tokens=budget, image_first=image_first)
        want = hf.generate_detailed(images, instructions, max_new_tokens=budget, image_first=image_first)
        assert got.texts == want.texts
        assert got.truncated == want.truncated


def test_repetition_penalty_matches_transformers(shape):
    from segr1.policies.hf import HFPolicy

    folder, size = shape
    native = NativePolicy(folder, repetition_penalty=1.5)
    hf = HFPolicy(folder, device="cpu", repetition_penalty=1.5)
    images = _images(size, 2)
    instructions = [prompts.build_instruction("reasoning", "which one is largest?", frame=224)] * 2
    assert native.generate(images, instructions, max_new_tokens=16) == hf.generate(
        images, instructions, max_new_tokens=16
    )


def test_sampling_follows_torch_random_state_and_top_k_1_is_greedy(pair):
    native, _, size = pair
    image = _images(size, 1)
    instruction = [prompts.build_instruction("foreground", frame=224)]
    torch.manual_seed(0)
    first = native.generate(image, instruction, num_samples=4, temperature=1.0, max_new_tokens=12)
    torch.manual_seed(0)
    again = native.generate(image, instruction, num_samples=4, temperature=1.0, max_new_tokens=12)
    assert first == again and len(first) == 1 and len(first[0]) == 4
    assert len(set(first[0])) > 1  # a random model's samples differ
    greedy = native.generate(image, instruction, max_new_tokens=12)[0][0]
    native.top_k = 1
    try:
        assert native.generate(image, instruction, num_samples=2, temperature=1.0, max_new_tokens=12) == [
            [greedy, greedy]
        ]
    finally:
        native.top_k = 0


def test_top_p_keeps_the_most_likely_tokens():
    from segr1.policies.native import NativePolicy as P

    policy = P.__new__(P)
    policy.repetition_penalty, policy.top_k, policy.top_p = 1.0, 0, 0.5
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])  # p ~ (0.004, 0.52, 0.47, 0.0002): top-p 0.5 keeps token 1
    seen = torch.tensor([0])
    torch.manual_seed(0)
    assert {policy._next_token(logits, seen, 1.0) for _ in range(50)} == {1}
    policy.top_p = 0.9
    assert {policy._next_token(logits, seen, 1.0) for _ in range(200)} == {1, 2}


def test_generate_checks_its_arguments(pair):
    native, _, size = pair
    with pytest.raises(TypeError, match="PIL"):
        native.generate(["not an image"], ["a"])
    with pytest.raises(ValueError, match="instructions"):
        native.generate(_images(size, 2), ["a"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        native.generate(_images(size, 1), ["a"], max_new_tokens=0)


def test_images_of_other_sizes_are_resized_to_the_patch_grid(pair):
    native, _, _ = pair
    patches, grid = native.images(Image.new("RGB", (230, 101), (9, 9, 9)))
    factor = native.images.patch * native.images.merge
    assert grid[1] * 14 % factor == 0 and grid[2] * 14 % factor == 0
    assert patches.shape == (grid[1] * grid[2], 3 * 2 * 14 * 14)
    with pytest.raises(ValueError, match="aspect ratio"):
        native.images(Image.new("RGB", (2000, 4)))


def test_what_the_native_backend_refuses(tmp_path, shape):
    folder, _ = shape
    assert native_unsupported(folder, "cpu") is None
    assert "local checkpoint folder" in native_unsupported("geshang/Seg-R1-7B")
    assert "device" in native_unsupported(folder, "cuda")
    assert "float32" in native_unsupported(folder, "cpu", "bfloat16")
    assert native_unsupported(folder, "cpu", torch.float32) is None
    assert "hf-backend options" in native_unsupported(folder, "cpu", options={"fast": True})
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "qwen3_vl"}')
    assert "qwen2_5_vl" in native_unsupported(other, "cpu")
    config = json.loads((folder / "config.json").read_text())
    rope = config["text_config"]["rope_parameters"]
    scaled = {**rope, "rope_type": "longrope", "short_factor": [1.0] * 16, "long_factor": [1.0] * 16}
    for bad in ({"factor": 4.0}, {"attention_factor": 1.2}, {"original_max_position_embeddings": 128}):
        config["text_config"]["rope_parameters"] = {**scaled, "original_max_position_embeddings": 4096, **bad}
        (other / "config.json").write_text(json.dumps(config))
        assert "longrope" in native_unsupported(other, "cpu")
    (other / "config.json").write_text("{not json")
    assert "JSON" in native_unsupported(other, "cpu")
    with pytest.raises(NativeUnsupported, match="qwen2_5_vl|JSON"):
        NativePolicy(other)


def test_load_policy_picks_the_backend(tiny_dir_native):
    default = load_policy(None, device="cpu")
    assert default.name.startswith("native:") and default.cpu_threads == 1
    assert load_policy("hf:default", device="cpu").name.startswith("hf:")
    assert load_policy(None, device="cpu", dtype="bfloat16").name.startswith("hf:")  # not float32
    assert load_policy(None, device="cpu", fast=True).name.startswith("hf:")  # an hf-only option
    explicit = load_policy(f"native:{tiny_dir_native}")
    assert explicit.name == f"native:{tiny_dir_native}" and explicit.frame == 224
    with pytest.raises(ValueError, match="local checkpoint folder"):
        load_policy("native:geshang/Seg-R1-7B")


@pytest.fixture
def tiny_dir_native():
    from segr1.policies.tiny import tiny_model_dir

    return tiny_model_dir()


def test_the_pipeline_on_the_default_gives_the_hf_backend_result():
    from segr1.data.synthetic import scene_at
    from segr1.pipeline import SegR1Pipeline
    from segr1.segmenters import load_segmenter

    scene = scene_at("salient", 5000, 0, min_size=160, max_size=320)
    seg = load_segmenter("grabcut")
    native = SegR1Pipeline(load_policy(None, device="cpu"), seg, system="", max_new_tokens=64)(scene.image)
    hf = SegR1Pipeline(load_policy("hf:default", device="cpu"), seg, system="", max_new_tokens=64)(
        scene.image
    )
    assert native.answer == hf.answer
    assert np.array_equal(native.mask, hf.mask)
