"""A tiny random Qwen2.5-VL checkpoint built fully offline.

The folder written by :func:`build_tiny_qwen25vl` is an ordinary Hugging Face checkpoint: ``config.json`` +
``model.safetensors`` (a Qwen2.5-VL with a few layers and a small hidden size), a byte-level BPE tokenizer
trained here with the ``tokenizers`` library, Qwen's chat template, a ``Qwen2VLImageProcessor``, a
``Qwen2VLVideoProcessor`` and a ``Qwen2_5_VLProcessor``. ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained`` load it without network access, and TRL's ``SFTTrainer``/``GRPOTrainer``
accept it like a released Qwen2.5-VL.

The tokenizer is lossless on any text (byte-level alphabet) and cheap on Seg-R1 answers: every digit,
``[``, ``]``, ``,`` and a space before a non-letter are single tokens, and ``<think>``, ``</think>``,
``<bbox>``, ``</bbox>``, ``<points>``, ``</points>``, ``<labels>``, ``</labels>`` are whole (non-special)
tokens, so an answer such as ``<bbox>[12,40,200,180]</bbox>`` costs one token per character of its numbers.

The image processor is set so that a ``frame`` x ``frame`` image (``frame`` a multiple of 28, default 224)
passes through without resizing and gives ``(frame / 28) ** 2`` vision tokens (64 at 224).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segr1.policies import POLICY_METADATA_FILE, write_policy_metadata

logger = logging.getLogger(__name__)

#: Bump when anything that changes the built folder changes; it keys the cache directory.
TINY_VERSION = "2"


# Qwen2/2.5-VL special tokens, in Qwen's order; the processor and chat template need the first ones.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Seg-R1 answer tags, added as whole non-special tokens (kept when decoding with skip_special_tokens).
ANSWER_TAGS = ("<think>", "</think>", "<bbox>", "</bbox>", "<points>", "</points>", "<labels>", "</labels>")

# Pre-tokenisation: a word with its leading space; each digit alone; each other symbol alone; whitespace
# runs keep their last space for the next word. So digits, brackets and commas never merge.
_PRETOKENIZE_REGEX = r"\s?\p{L}+|\p{N}|\s+(?!\S)|\s|[^\s\p{L}\p{N}]"

# Corpus the BPE merges are learnt from: the vocabulary of segmentation instructions, reasoning and
# referring phrases. Any other text still encodes (byte fallback), only in more tokens.
_CORPUS = """
You are a helpful assistant. Please find the camouflaged object in the image and segment it.
Find the salient object, the most noticeable and important object, in this image and output its bounding box
and points. Output the thinking process in <think> </think> and the final answer in <bbox> </bbox>,
<points> </points> and <labels> </labels> tags. The image size is 224 by 224 pixels. Give the bounding box
as [x1,y1,x2,y2] and the points as [[x,y],[x,y]] with labels 1 for foreground and 0 for background.
Please segment the object referred to by the expression. Segment what the question asks about and explain
your reasoning. Think step by step about where the target is, then answer with a box and key points.
The object is hidden in the background because its texture and colour are similar to the surroundings.
The target blends into the scene; look at its edges, shape and shadow. The animal is on the left side,
the right side, the top, the bottom, in the center, near the middle, next to, behind, in front of, above,
below, between, inside, outside, small, large, big, tiny, round, square, circle, triangle, star, ellipse,
rectangle, polygon, blob, shape, region, mask, red, green, blue, yellow, orange, purple, pink, brown,
black, white, gray, grey, dark, light, bright, striped, dotted, textured, smooth, first, second, third,
one, two, three, left, right, top, bottom, upper, lower, corner, leftmost, rightmost, topmost, largest,
smallest, which, what, where, who, that, this, these, those, there, here, is, are, was, were, be, a, an,
of, to, in, on, at, by, for, with, from, and, or, not, it, its, the, object, objects, image, picture,
photo, scene, person, people, man, woman, dog, cat, bird, fish, insect, frog, snake, car, tree, grass.
I think the object is located around the center. The bounding box covers the whole object, and the
positive points lie inside it while negative points lie on the background.
"""


def training_corpus() -> list[str]:
    """Lines the tiny BPE is trained on: :data:`_CORPUS` plus segr1's own prompt templates (if importable).

    Deterministic for a given segr1 version; its hash is part of the cache key of :func:`tiny_model_dir`.
    """
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    try:
        from segr1 import prompts
    except ImportError:  # pragma: no cover - prompts is part of the package
        return lines
    texts = [prompts.SYSTEM_PROMPT]
    for task in prompts.TASKS:
        for frame in (224, 448, 768, 1024):
            example = "the blue star on the left" if task == "referring" else "Which object is hidden?"
            texts.append(prompts.build_instruction(task, example, frame=frame))
    lines += [line for text in texts for line in text.splitlines() if line.strip()]
    return lines


#: Default sizes (text hidden 128, 4 layers; vision hidden 64, depth 2) -> 1.28 M parameters, 5.1 MB fp32.
DEFAULT_SIZES: dict[str, Any] = {
    "frame": 224,
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 10.0,
    "static_rope_pairs": 0,
    "vision_hidden_size": 64,
    "vision_intermediate_size": 128,
    "vision_depth": 2,
    "vision_num_heads": 4,
}

# Qwen-style chat template: a default system turn, images as <|vision_start|><|image_pad|><|vision_end|>,
# assistant turns wrapped in {% generation %} so transformers/TRL can build assistant-only loss masks.
# Every tag strips surrounding template whitespace; newlines are emitted explicitly with {{ nl }}.
CHAT_TEMPLATE = """
{%- set nl = '\\n' -%}
{%- set image_count = namespace(value=0) -%}
{%- for message in messages -%}
  {%- if loop.first and message['role'] != 'system' -%}
    {{- '<|im_start|>system' + nl + 'You are a helpful assistant.<|im_end|>' + nl -}}
  {%- endif -%}
  {{- '<|im_start|>' + message['role'] + nl -}}
  {%- if message['role'] == 'assistant' -%}
    {%- generation -%}
      {%- if message['content'] is string -%}
        {{- message['content'] -}}
      {%- else -%}
        {%- for content in message['content'] -%}
          {%- if 'text' in content -%}{{- content['text'] -}}{%- endif -%}
        {%- endfor -%}
      {%- endif -%}
      {{- '<|im_end|>' -}}
    {%- endgeneration -%}
  {%- elif message['content'] is string -%}
    {{- message['content'] + '<|im_end|>' -}}
  {%- else -%}
    {%- for content in message['content'] -%}
      {%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}
        {%- set image_count.value = image_count.value + 1 -%}
        {%- if add_vision_id -%}{{- 'Picture ' + image_count.value|string + ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
      {%- elif content['type'] == 'video' or 'video' in content -%}
        {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
      {%- elif 'text' in content -%}
        {{- content['text'] -}}
      {%- endif -%}
    {%- endfor -%}
    {{- '<|im_end|>' -}}
  {%- endif -%}
  {{- nl -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant' + nl -}}
{%- endif -%}
"""


def _resolve_sizes(size_overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(size_overrides) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown size override(s) {sorted(unknown)}; valid keys: {sorted(DEFAULT_SIZES)}")
    sizes = {**DEFAULT_SIZES, **size_overrides}
    if sizes["frame"] % 28 != 0 or sizes["frame"] <= 0:
        raise ValueError(
            f"frame must be a positive multiple of 28 (patch 14 x merge 2), got {sizes['frame']}"
        )
    head_dim, rem = divmod(sizes["hidden_size"], sizes["num_attention_heads"])
    if rem or head_dim % 4:
        raise ValueError(
            f"hidden_size {sizes['hidden_size']} / num_attention_heads {sizes['num_attention_heads']} "
            "must give an integer head_dim divisible by 4 (M-RoPE sections)"
        )
    if sizes["num_attention_heads"] % sizes["num_key_value_heads"]:
        raise ValueError(
            f"num_attention_heads {sizes['num_attention_heads']} must be a multiple of "
            f"num_key_value_heads {sizes['num_key_value_heads']}"
        )
    if (sizes["vision_hidden_size"] // sizes["vision_num_heads"]) % 4:
        raise ValueError("vision_hidden_size / vision_num_heads must be divisible by 4 (2-D rotary)")
    return sizes


def build_tokenizer(vocab_size: int = 1024, model_max_length: int = 4096):
    """Train the tiny byte-level BPE and wrap it as a transformers fast tokenizer (deterministic).

    ``vocab_size`` is an upper bound: BPE stops when the corpus has no pair left to merge (911 tokens with
    the default corpus, special tokens and answer tags included).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(ANSWER_TAGS),
        min_frequency=1,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in ANSWER_TAGS])

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


#: The rotary frequency given to the pairs that ``static_rope_pairs`` makes position-free (radians per position).
STATIC_ROPE_FREQUENCY = 1e-6


def _rope_parameters(sizes: dict[str, Any], mrope: list[int]) -> dict[str, Any]:
    """The text model's ``rope_parameters``: plain RoPE, or with its first pairs made (nearly) static.

    ``static_rope_pairs`` k > 0 divides the k fastest rotary frequencies by a large factor, through
    transformers' ``longrope`` per-pair ``short_factor`` (``original_max_position_embeddings`` is the model's
    maximum, so the long factors never apply and the attention scale stays 1). Those k pairs belong to
    M-RoPE's temporal section, which is constant over one image's tokens, so image rows and columns keep
    their fast frequencies while every token gains k position-free pairs: a channel in which a query can
    match a key's content at any distance (docs/results_multitask.md, "the rotary frequencies").
    """
    theta = float(sizes["rope_theta"])
    k = int(sizes["static_rope_pairs"])
    if k == 0:
        return {"rope_type": "default", "rope_theta": theta, "mrope_section": mrope}
    if not 0 < k <= mrope[0]:
        raise ValueError(f"static_rope_pairs must be in 0..{mrope[0]} (the temporal section), got {k}")
    half = sum(mrope)
    # longrope divides pair i's frequency theta**(-2i/d) by factor i; pick the factors that land on
    # STATIC_ROPE_FREQUENCY exactly, so the static pairs do not depend on theta.
    factors = [float(theta ** (-i / half) / STATIC_ROPE_FREQUENCY) if i < k else 1.0 for i in range(half)]
    return {
        "rope_type": "longrope",
        "rope_theta": theta,
        "mrope_section": mrope,
        "short_factor": factors,
        "long_factor": factors,
        "factor": 1.0,
        "original_max_position_embeddings": int(sizes["max_position_embeddings"]),
    }


def with_static_rope_pairs(src: str | os.PathLike, dst: str | os.PathLike, pairs: int) -> Path:
    """Copy the checkpoint folder ``src`` to ``dst`` with ``pairs`` static rotary pairs (see above).

    The weights are unchanged, so this is a warm start: a trained tiny policy keeps what it learnt and
    gains a position-free channel that fine-tuning can use. ``pairs`` 0 restores plain RoPE.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() != dst.resolve():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    config_path = dst / "config.json"
    config = json.loads(config_path.read_text())
    text = config.get("text_config", config)
    rope = text.get("rope_parameters") or {}
    sizes = {
        "rope_theta": rope.get("rope_theta", 10.0),
        "static_rope_pairs": pairs,
        "max_position_embeddings": text["max_position_embeddings"],
    }
    text["rope_parameters"] = _rope_parameters(sizes, [int(v) for v in rope["mrope_section"]])
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return dst


def with_vision_tower(
    src: str | os.PathLike, dst: str | os.PathLike, seed: int = 0, **vision_sizes: Any
) -> Path:
    """Copy the tiny checkpoint ``src`` to ``dst`` with a new random vision tower of other sizes
    (``vision_hidden_size``, ``vision_intermediate_size``, ``vision_depth``, ``vision_num_heads``), keeping
    the language model's trained weights and the rest of its config (rotary pairs included).

    The tower's output width stays the language model's hidden size, so the decoder reads it unchanged;
    what the new tower's image tokens encode has to be learnt again by fine-tuning.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    unknown = set(vision_sizes) - {k for k in DEFAULT_SIZES if k.startswith("vision_")}
    if unknown:
        raise ValueError(f"not vision sizes: {sorted(unknown)}")
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError("with_vision_tower writes a new folder; dst must differ from src")
    config = json.loads((src / "config.json").read_text())
    vision = config["vision_config"]
    sizes = {
        "vision_hidden_size": vision["hidden_size"],
        "vision_intermediate_size": vision["intermediate_size"],
        "vision_depth": vision["depth"],
        "vision_num_heads": vision["num_heads"],
        **vision_sizes,
    }
    _resolve_sizes(sizes)  # the same checks as for a new tiny model
    trained = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    vision.update(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        depth=sizes["vision_depth"],
        num_heads=sizes["vision_num_heads"],
        fullatt_block_indexes=[sizes["vision_depth"] - 1],
    )
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(seed)
    fresh = AutoModelForImageTextToText.from_config(type(trained.config).from_pretrained(dst))
    kept = {k: v for k, v in trained.state_dict().items() if ".visual." not in f".{k}"}
    missing, unexpected = fresh.load_state_dict(kept, strict=False)
    if unexpected or any(".visual." not in f".{k}" for k in missing):
        raise RuntimeError(f"weights do not match the new config: missing {missing}, unexpected {unexpected}")
    fresh.save_pretrained(dst)
    return dst


def build_tiny_qwen25vl(out_dir: str | os.PathLike, seed: int = 0, **size_overrides: Any) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint folder to ``out_dir`` and return its path.

    Offline and deterministic for a given ``seed`` and sizes. ``size_overrides`` take the keys of
    :data:`DEFAULT_SIZES` (``frame`` is the square image side, a multiple of 28, that the image processor
    keeps unchanged; larger images are downscaled to at most ``frame**2`` pixels). The folder also holds
    ``segr1_policy.json`` with ``{"frame": ..., "trained": false, ...}``.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.generation import GenerationConfig

    sizes = _resolve_sizes(size_overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(sizes["vocab_size"], sizes["max_position_embeddings"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    frame = sizes["frame"]
    head_dim = sizes["hidden_size"] // sizes["num_attention_heads"]
    half = head_dim // 2  # M-RoPE splits the rotary half-dim into (temporal, height, width) = (1/4, 3/8, 3/8)
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": sizes["hidden_size"],
        "intermediate_size": sizes["intermediate_size"],
        "num_hidden_layers": sizes["num_hidden_layers"],
        "num_attention_heads": sizes["num_attention_heads"],
        "num_key_value_heads": sizes["num_key_value_heads"],
        "max_position_embeddings": sizes["max_position_embeddings"],
        "max_window_layers": sizes["num_hidden_layers"],
        "rope_parameters": _rope_parameters(sizes, mrope),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": sizes["vision_depth"],
        "hidden_size": sizes["vision_hidden_size"],
        "intermediate_size": sizes["vision_intermediate_size"],
        "num_heads": sizes["vision_num_heads"],
        "out_hidden_size": sizes["hidden_size"],
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,  # 112 px = 4 merged units: windows of 4x4 merged patches
        "fullatt_block_indexes": [sizes["vision_depth"] - 1],
        "tokens_per_second": 2,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out, safe_serialization=True)

    pixel_limits = {"shortest_edge": 28 * 28, "longest_edge": frame * frame}
    image_processor = Qwen2VLImageProcessor(
        size=pixel_limits, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        size=pixel_limits, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    # Name the generic fast-tokenizer class (transformers 5 maps it to TokenizersBackend; 4.x knows it too).
    tok_config_path = out / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "format": "segr1-policy",
        "version": TINY_VERSION,
        "frame": frame,
        "trained": False,
        "seed": seed,
        "sizes": sizes,
        "parameters": n_params,
        "description": f"untrained random tiny Qwen2.5-VL ({n_params / 1e6:.2f} M parameters, frame {frame})",
    }
    write_policy_metadata(out, meta)
    logger.info("built tiny Qwen2.5-VL (%d parameters) in %s", n_params, out)
    return out


def cache_root() -> Path:
    """segr1's cache directory: ``$SEGR1_CACHE`` or ``~/.cache/segr1`` (created on demand)."""
    root = Path(os.environ.get("SEGR1_CACHE") or Path.home() / ".cache" / "segr1")
    root.mkdir(parents=True, exist_ok=True)
    return root


def tiny_model_dir() -> Path:
    """Path of the default-size untrained tiny checkpoint, built once into the cache (seed 0).

    Safe under concurrent callers (pytest workers): each builds into a private temporary folder and
    atomically renames it into place; a loser of the race discards its copy and uses the winner's.
    """
    corpus_hash = hashlib.sha256("\n".join(training_corpus()).encode()).hexdigest()[:10]
    target = cache_root() / f"tiny-policy-untrained-v{TINY_VERSION}-{corpus_hash}"
    if (target / POLICY_METADATA_FILE).is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=target.parent))
    try:
        build_tiny_qwen25vl(tmp, seed=0)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / POLICY_METADATA_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
