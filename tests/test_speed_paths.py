"""The fast generation path (segr1.policies.fast + HFPolicy(fast=...)) and the GPU speed benchmarks' CPU modes.

The fast path must give the same greedy tokens as the eager path (tiny model, fp32), pad batches to buckets
without changing the number or order of outputs, reuse its static caches, and the benchmarks must run end to
end in their ``--device cpu --tiny`` mode.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1 import prompts
from segr1.policies.fast import (
    FastGeneration,
    StaticCachePool,
    bucket_size,
    compile_kwargs,
    enable_compiled_decoding,
)
from segr1.policies.hf import HFPolicy
from segr1.policies.tiny import tiny_model_dir

FRAME = 224
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
INSTRUCTIONS = [
    prompts.build_instruction("foreground", frame=FRAME),
    "Short.",
    prompts.build_instruction("referring", "the small red circle in the upper left corner", frame=FRAME),
    "Segment the star.",
    "a",
]
NEW_TOKENS = 8


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (FRAME, FRAME, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def eager(tiny_dir) -> HFPolicy:
    return HFPolicy(tiny_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(eager) -> list[list[str]]:
    """Eager greedy answers for the five (image, instruction) pairs, generated one by one."""
    return [
        eager.generate([im], [ins], max_new_tokens=NEW_TOKENS)[0]
        for im, ins in zip(images(5), INSTRUCTIONS, strict=True)
    ]


@pytest.fixture(scope="module")
def fast(eager) -> HFPolicy:
    """Fast path without compilation, sharing the eager policy's model."""
    return HFPolicy.from_model(eager.model, eager.processor, fast=FastGeneration(compile=False))


# --- pure helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16), (32, 32), (33, 64)]
)
def test_bucket_size(n, expected):
    assert bucket_size(n) == expected


def test_bucket_size_custom_and_bad():
    assert bucket_size(7, (3, 6)) == 12
    with pytest.raises(ValueError, match="batch size"):
        bucket_size(0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_buckets": ()}, "batch_buckets"),
        ({"batch_buckets": (4, 2)}, "batch_buckets"),
        ({"batch_buckets": (0, 2)}, "batch_buckets"),
        ({"cache_multiple": 0}, "cache_multiple"),
        ({"compile": "yes"}, "compile"),
        ({"compile_options": {"fullgraf": True}}, "fullgraf"),
    ],
)
def test_fast_generation_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastGeneration(**kwargs)


def test_fast_and_cache_implementation_are_exclusive(eager):
    with pytest.raises(ValueError, match="cache_implementation"):
        HFPolicy.from_model(eager.model, eager.processor, fast=True, cache_implementation="static")
    with pytest.raises(TypeError, match="fast"):
        HFPolicy.from_model(eager.model, eager.processor, fast="yes")


def test_compile_kwargs():
    assert compile_kwargs(FastGeneration(compile=False), "cuda") == {"disable_compile": True}
    assert compile_kwargs(FastGeneration(), "cpu") == {}  # transformers does not compile on CPU by itself
    on_gpu = compile_kwargs(FastGeneration(), "cuda")["compile_config"]
    assert on_gpu.dynamic is False and on_gpu.mode == "reduce-overhead"
    forced = compile_kwargs(FastGeneration(compile=True, compile_options={"mode": "default"}), "cpu")
    assert forced["compile_config"]._compile_all_devices and forced["compile_config"].mode == "default"


def test_static_cache_pool_reuses_and_grows(eager):
    pool = StaticCachePool(eager.model.config, multiple=256)
    first = pool.get(4, 100)
    assert pool.get(4, 200) is first and pool.lengths() == {4: 256}
    longer = pool.get(4, 300)
    assert longer is not first and pool.lengths() == {4: 512}
    assert pool.get(4, 10) is longer  # a shorter request reuses the longer cache
    pool.get(2, 10)
    assert pool.lengths() == {4: 512, 2: 256}
    pool.clear()
    assert pool.lengths() == {}


# --- fast path == eager path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 5])  # 3 and 5 are padded to the buckets 4 and 8
def test_fast_greedy_equals_eager(fast, reference, n):
    out = fast.generate(images(n), INSTRUCTIONS[:n], max_new_tokens=NEW_TOKENS)
    assert out == reference[:n]


def test_bucket_padding_keeps_count_and_order(fast, reference):
    order = [4, 0, 2]  # a non-bucket batch (3 -> 4), in a different order
    out = fast.generate([images(5)[i] for i in order], [INSTRUCTIONS[i] for i in order], num_samples=2,
                        max_new_tokens=NEW_TOKENS)  # fmt: skip
    assert out == [reference[i] * 2 for i in order]
    sampled = fast.generate(images(3), INSTRUCTIONS[:3], num_samples=2, temperature=1.0, max_new_tokens=2)
    assert [len(row) for row in sampled] == [2, 2, 2]
    assert all(isinstance(t, str) for row in sampled for t in row)


def test_fast_reuses_one_cache_per_bucket(eager):
    policy = HFPolicy.from_model(eager.model, eager.processor, fast=FastGeneration(compile=False))
    policy.generate(images(3), INSTRUCTIONS[:3], max_new_tokens=4)
    cache = policy._caches._held[4][1]
    policy.generate(images(4), INSTRUCTIONS[:4], max_new_tokens=4)  # same bucket: same cache object
    assert policy._caches._held[4][1] is cache
    assert set(policy._caches.lengths()) == {4}


def test_fast_compiled_greedy_equals_eager(eager, reference):
    """Dynamo traces the decoding step (backend "eager": the graph logic without inductor's code generation,
    which takes minutes on CPU); across buckets it recompiles and still matches the eager tokens."""
    fast = FastGeneration(compile=True, compile_options={"backend": "eager"})
    policy = HFPolicy.from_model(eager.model, eager.processor, fast=fast)
    for n in (3, 2):
        assert policy.generate(images(n), INSTRUCTIONS[:n], max_new_tokens=NEW_TOKENS) == reference[:n]


@pytest.mark.slow
def test_fast_inductor_compiled_greedy_equals_eager(eager, reference):
    """The full path as on GPU (inductor code generation), forced on CPU."""
    policy = HFPolicy.from_model(eager.model, eager.processor, fast=FastGeneration(compile=True))
    for n in (2, 2):
        assert policy.generate(images(n), INSTRUCTIONS[:n], max_new_tokens=NEW_TOKENS) == reference[:n]


@pytest.mark.gpu
def test_cuda_compiled_fast_path_greedy_equals_eager(tiny_dir):
    """On CUDA the fast path compiles by default (inductor + CUDA graphs); fp32 greedy tokens must match."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    eager = HFPolicy(tiny_dir, device="cuda", dtype="float32")
    fast = HFPolicy.from_model(eager.model, eager.processor, fast=True)
    for n in (1, 2, 3, 3):  # 3 is padded to 4; the repeat replays the captured graphs
        ims, ins = images(n), INSTRUCTIONS[:n]
        assert fast.generate(ims, ins, max_new_tokens=NEW_TOKENS) == eager.generate(
            ims, ins, max_new_tokens=NEW_TOKENS
        )


def test_enable_compiled_decoding_on_trl_style_config(eager, reference):
    """TRL's GRPOTrainer builds GenerationConfig(..., cache_implementation=..., disable_compile=True) and calls
    model.generate with it; enable_compiled_decoding switches compilation back on, same greedy tokens."""
    import torch
    from transformers import GenerationConfig

    from segr1.prompts import build_messages

    config = GenerationConfig(
        max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=eager._pad_token_id,
        eos_token_id=eager._eos_token_ids, cache_implementation="static", disable_compile=True,
    )  # fmt: skip
    enable_compiled_decoding(config, {"backend": "eager"}, max_cache_len=512, all_devices=True)
    assert config.disable_compile is False and config.compile_config.backend == "eager"
    assert config.max_cache_len == 512
    image = images(1)[0]
    text = eager.processor.apply_chat_template(
        build_messages(image, INSTRUCTIONS[0]), add_generation_prompt=True, tokenize=False
    )
    inputs = eager.processor(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        out = eager.model.generate(**inputs, generation_config=config)
    decoded = eager.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert decoded == reference[0]
    with pytest.raises(ValueError, match="static"):
        enable_compiled_decoding(GenerationConfig(cache_implementation=None))


def test_warmup_runs_each_batch_size_and_restores_kwargs(eager):
    policy = HFPolicy.from_model(eager.model, eager.processor, fast=FastGeneration(compile=False),
                                 generate_kwargs={"top_k": 0})  # fmt: skip
    seconds = policy.warmup(FRAME, [1, 3], max_new_tokens=8)
    assert sorted(seconds) == [1, 3] and all(s > 0 for s in seconds.values())
    assert policy.generate_kwargs == {"top_k": 0}
    assert set(policy._caches.lengths()) == {1, 4}


def test_from_model_records_frame_and_name(eager):
    policy = HFPolicy.from_model(eager.model, eager.processor, name="hf:x", frame=FRAME)
    assert policy.name == "hf:x" and policy.frame == FRAME and policy.fast is None
    assert policy.device == "cpu"


# --- benchmark helpers and CPU smoke runs --------------------------------------------------------------------


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def test_shapes_match_published_parameter_counts(bench):
    import torch
    from transformers import AutoModelForImageTextToText, Sam2Model

    shapes = bench("_shapes")
    for shape, params in shapes.QWEN25VL_PARAMETERS.items():
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(
                shapes.qwen25vl_config(shape), dtype=torch.bfloat16
            )
        assert shapes.count_parameters(model) == params, shape
        if shape == "7b":
            assert shapes.decode_weight_bytes(model) == 14_141_238_272  # 15.2 GB minus the input embedding
            assert shapes.kv_bytes_per_token(model) == 2 * 28 * 4 * 128 * 2
    with torch.device("meta"):
        sam = Sam2Model(shapes.sam2_config("large"))
    assert shapes.count_parameters(sam) == shapes.SAM21_LARGE_PARAMETERS


def test_released_shape_build_path_on_scaled_down_sizes(bench, monkeypatch):
    """build_qwen25vl's path for the released shapes (tiny processor with Qwen's pixel limits, token ids
    remapped, ``from_config`` on the device), with the sizes scaled down so it runs on CPU: a 768x768 image
    gives Qwen2.5-VL's 729 vision tokens and the policy wrapper generates."""
    import torch

    shapes = bench("_shapes")
    small = {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": 1024, "tie_word_embeddings": True, "max_window_layers": 1}  # fmt: skip
    monkeypatch.setitem(shapes.QWEN25VL_SHAPES, "mini", small)
    monkeypatch.setattr(shapes, "_QWEN25VL_VISION", {**shapes._QWEN25VL_VISION, "depth": 2, "hidden_size": 32,
                        "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [1]})  # fmt: skip
    model, processor = shapes.build_qwen25vl("mini", "cpu", torch.float32)
    image = shapes.random_images(1, 768)[0]
    inputs = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>x"], images=[image], return_tensors="pt"
    )
    assert inputs["image_grid_thw"].tolist() == [[1, 54, 54]]  # 756x756 -> 27x27 = 729 merged tokens
    policy = HFPolicy.from_model(
        model, processor, fast=FastGeneration(compile=False), generate_kwargs={"min_new_tokens": 3}
    )
    out = policy.generate([image], ["Find it."], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0][0], str)
    assert shapes.decode_weight_bytes(model) > 0 and shapes.kv_bytes_per_token(model) == 2 * 1 * 1 * 128 * 4


def test_rollout_decode_cpu_smoke(bench, capsys):
    rows = bench("rollout_decode").main(
        ["--device", "cpu", "--tiny", "--batch-sizes", "3", "--variants", "eager,fast", "--new-tokens", "2"]
    )
    assert [(r["variant"], r["batch"]) for r in rows] == [("eager", 3), ("fast", 3)]
    assert all(r["prefill ms"] > 0 and r["floor ms"] > 0 for r in rows)
    assert "| shape | variant |" in capsys.readouterr().out


def test_segment_latency_cpu_smoke(bench, capsys):
    rows = bench("segment_latency").main(["--device", "cpu", "--tiny", "--new-tokens", "2"])
    stages = [r["stage"] for r in rows]
    assert stages == [
        "first call",
        "prefill",
        "decode (2 tokens)",
        "decode per token",
        "segmentation",
        "pipeline",
    ]
    assert all(
        r["eager ms"] > 0 and r["fast ms"] > 0 for r in rows if r["stage"] in ("prefill", "segmentation")
    )
    assert "segr1 segment latency" in capsys.readouterr().out


def test_reward_throughput_cpu_smoke(bench, tmp_path, capsys):
    out = tmp_path / "rows.json"
    rows = bench("reward_throughput").main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--batch",
            "2",
            "--group",
            "2",
            "--image-size",
            "64",
            "--json",
            str(out),
        ]
    )
    assert [r["scheme"] for r in rows] == ["original", "load once", "encode per image", "segr1 (bf16)"]
    assert all(r["completions/s"] > 0 for r in rows) and rows[0]["x original"] == 1.0
    assert out.is_file() and "completions/s" in capsys.readouterr().out
