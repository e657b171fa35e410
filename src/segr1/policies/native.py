"""The ``native`` policy backend: segr1's own Qwen2.5-VL forward pass, in plain torch, for small checkpoints on CPU.

Why it exists: importing transformers' Qwen2.5-VL model and processor costs about 2.5 s on the project's
machines (its model module imports ``torch._dynamo``, ``torch.distributed.tensor`` and SciPy, its image
utilities import torchvision), while the embedded 1.3 M-parameter policy answers in a fraction of that. The
embedded default therefore runs here, and every other checkpoint on the ``hf`` backend (transformers). The
``native`` backend reads the same checkpoint folder (``config.json``, ``model.safetensors``,
``tokenizer.json``, the chat template, ``preprocessor`` / ``processor_config.json``,
``generation_config.json``) with ``safetensors``, ``tokenizers`` and ``jinja2`` only.

What it computes is transformers' ``Qwen2_5_VLForConditionalGeneration`` in float32, step by step:

* **image**: Qwen's ``smart_resize`` (sides rounded to multiples of ``patch_size x merge_size``, area within
  ``[min_pixels, max_pixels]``; an image already at such a size, e.g. a 224 x 224 model frame, is not
  resized — others are resized with PIL's bicubic filter, which may differ from torchvision's by a grey level),
  rescale + normalise, the frame repeated ``temporal_patch_size`` times, patches ordered in
  ``merge_size x merge_size`` blocks;
* **vision tower**: the patch embedding (a 3-D convolution), 2-D axial rotary positions, windowed attention
  (``window_size`` pixels) except in the ``fullatt_block_indexes`` blocks, RMSNorm + gated-SiLU blocks, the
  patch merger; its window reordering and the reverse permutation;
* **prompt**: the checkpoint's chat template rendered in a sandboxed jinja2 environment (with the
  ``{% generation %}`` tag of transformers' templates), each ``<|image_pad|>`` expanded to the image's number
  of merged patches, tokenised with the checkpoint's ``tokenizer.json``;
* **language model**: multimodal rotary positions (temporal / height / width sections, ``mrope_section``) for
  the image tokens and 1-D positions for text, grouped-query attention with a key/value cache, RMSNorm +
  gated-SiLU decoder layers, the LM head; decoding greedy or sampled (repetition penalty, temperature,
  top-k, top-p in transformers' order) until an end-of-sequence id or ``max_new_tokens``.

Greedy answers are the ``hf`` backend's, token for token: ``tests/test_native_policy.py`` checks the logits
and the answers against transformers on random checkpoints of several shapes (square and non-square images,
windowed and full attention), and the shipped policy's recorded answers (``tests/data/embedded_answers.json``,
recorded with transformers) are checked on this backend. Sampled answers follow torch's global random state,
not transformers' exact sampling stream.

Scope: ``model_type: qwen2_5_vl`` checkpoints, float32, on CPU (:func:`native_unsupported` says why a
folder or an option is not served; :func:`segr1.policies.load_policy` then uses the ``hf`` backend). Rows are
decoded one at a time with one intra-op thread: right for models of a few million parameters, wrong for a 7B.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segr1.devices import SMALL_MODEL_PARAMS
from segr1.policies import DetailedPolicy, Generation, policy_metadata
from segr1.prompts import build_messages

logger = logging.getLogger(__name__)

#: Options of :class:`NativePolicy` besides the model folder (anything else goes to the ``hf`` backend).
NATIVE_OPTIONS = ("min_pixels", "max_pixels", "top_p", "top_k", "repetition_penalty", "max_batch_size")
MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses more extreme images

_WEIGHTS = "model.safetensors"
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class NativeUnsupported(ValueError):
    """The folder or the options are outside what the native backend computes."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NativeUnsupported(f"{path.name} cannot be read as JSON: {err}") from err
    if not isinstance(data, dict):
        raise NativeUnsupported(f"{path.name} does not hold a JSON object")
    return data


def _positive_int(cfg: dict[str, Any], key: str, where: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise NativeUnsupported(f"{where}.{key} must be a positive int, got {value!r}")
    return value


def _static_longrope(rope: dict[str, Any], cfg: dict[str, Any]) -> bool:
    """A ``longrope`` that only rescales frequencies per pair (segr1's static rotary pairs): no attention
    scale, and the long factors never in use (``original_max_position_embeddings`` is the maximum)."""
    short = rope.get("short_factor")
    return (
        isinstance(short, list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in short)
        and rope.get("attention_factor") in (None, 1, 1.0)
        and rope.get("factor") in (None, 1, 1.0)
        and rope.get("original_max_position_embeddings") == cfg.get("max_position_embeddings")
    )


def _rope(cfg: dict[str, Any], where: str, kind: str) -> dict[str, Any]:
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise NativeUnsupported(f"{where}.rope_parameters must be an object")
    rope_type = rope.get("rope_type", rope.get("type", kind))
    if kind == "default" and rope_type == "longrope" and _static_longrope(rope, cfg):
        return rope
    if rope_type not in (kind, "mrope") or (kind == "axial" and rope_type != "axial"):
        raise NativeUnsupported(f"{where} uses rope_type {rope_type!r}; the native backend computes {kind!r}")
    return rope


class _Config:
    """The fields of a Qwen2.5-VL ``config.json`` the forward pass uses, validated."""

    def __init__(self, raw: dict[str, Any]) -> None:
        if raw.get("model_type") != "qwen2_5_vl":
            raise NativeUnsupported(f"model_type {raw.get('model_type')!r} is not qwen2_5_vl")
        text = raw.get("text_config") or raw
        vision = raw.get("vision_config")
        if not isinstance(text, dict) or not isinstance(vision, dict):
            raise NativeUnsupported("config.json has no text_config / vision_config objects")
        for key in ("hidden_act",):
            if text.get(key, "silu") != "silu" or vision.get(key, "silu") != "silu":
                raise NativeUnsupported(f"{key} must be silu")
        if text.get("use_sliding_window"):
            raise NativeUnsupported("sliding-window attention is not computed natively")
        layer_types = text.get("layer_types")
        if layer_types is not None and any(t != "full_attention" for t in layer_types):
            raise NativeUnsupported("only full_attention decoder layers are computed natively")
        self.hidden = _positive_int(text, "hidden_size", "text_config")
        self.layers = _positive_int(text, "num_hidden_layers", "text_config")
        self.heads = _positive_int(text, "num_attention_heads", "text_config")
        self.kv_heads = _positive_int(text, "num_key_value_heads", "text_config")
        self.vocab = _positive_int(text, "vocab_size", "text_config")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise NativeUnsupported("hidden_size / heads / key-value heads do not divide")
        self.head_dim = self.hidden // self.heads
        self.eps = float(text.get("rms_norm_eps", 1e-6))
        rope = _rope(text, "text_config", "default")
        self.rope_theta = float(rope.get("rope_theta", text.get("rope_theta", 1_000_000.0)))
        self.mrope_section = [int(s) for s in rope.get("mrope_section", [16, 24, 24])]
        if len(self.mrope_section) != 3 or sum(self.mrope_section) * 2 != self.head_dim:
            raise NativeUnsupported(
                f"mrope_section {self.mrope_section} does not cover head_dim {self.head_dim}"
            )
        # Per-pair frequency divisors (1 for plain RoPE; a static-pairs longrope's short_factor).
        self.rope_factors = [float(v) for v in rope.get("short_factor", [1.0] * (self.head_dim // 2))]
        if len(self.rope_factors) != self.head_dim // 2:
            raise NativeUnsupported(f"short_factor has {len(self.rope_factors)} entries, not head_dim / 2")
        self.tie = bool(raw.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
        self.image_token_id = _positive_int(raw, "image_token_id", "config")

        self.v_hidden = _positive_int(vision, "hidden_size", "vision_config")
        self.v_depth = _positive_int(vision, "depth", "vision_config")
        self.v_heads = _positive_int(vision, "num_heads", "vision_config")
        self.v_out = _positive_int(vision, "out_hidden_size", "vision_config")
        self.patch = _positive_int(vision, "patch_size", "vision_config")
        self.merge = _positive_int(vision, "spatial_merge_size", "vision_config")
        self.temporal = _positive_int(vision, "temporal_patch_size", "vision_config")
        self.in_channels = _positive_int(vision, "in_channels", "vision_config")
        self.window = _positive_int(vision, "window_size", "vision_config")
        self.fullatt = {int(i) for i in vision.get("fullatt_block_indexes", [])}
        if self.v_hidden % self.v_heads or (self.v_hidden // self.v_heads) % 4:
            raise NativeUnsupported("vision head_dim must be divisible by 4 (2-D rotary)")
        if self.v_out != self.hidden:
            raise NativeUnsupported("vision out_hidden_size must equal the text hidden_size")
        v_rope = _rope(vision, "vision_config", "axial")
        self.v_rope_theta = float(v_rope.get("rope_theta", 10000.0))


class _ImageProcessor:
    """Qwen2-VL's image preprocessing: smart_resize, rescale, normalise, patchify (module docstring)."""

    def __init__(self, folder: Path, min_pixels: int | None, max_pixels: int | None) -> None:
        raw: dict[str, Any] = {}
        for name in _PROCESSOR_FILES:
            if (folder / name).is_file():
                data = _read_json(folder / name)
                raw = data.get("image_processor", data)
                break
        else:
            raise NativeUnsupported("no preprocessor_config.json / processor_config.json")
        if not isinstance(raw, dict):
            raise NativeUnsupported("the image processor settings are not an object")
        size = raw.get("size") or {}
        self.min_pixels = int(min_pixels or raw.get("min_pixels") or size.get("shortest_edge") or 56 * 56)
        self.max_pixels = int(
            max_pixels or raw.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280
        )
        self.patch = int(raw.get("patch_size", 14))
        self.merge = int(raw.get("merge_size", 2))
        self.temporal = int(raw.get("temporal_patch_size", 2))
        self.mean = np.asarray(raw.get("image_mean", [0.48145466, 0.4578275, 0.40821073]), np.float32)
        self.std = np.asarray(raw.get("image_std", [0.26862954, 0.26130258, 0.27577711]), np.float32)
        self.rescale = float(raw.get("rescale_factor", 1 / 255))
        if (
            not raw.get("do_rescale", True)
            or not raw.get("do_normalize", True)
            or not raw.get("do_resize", True)
        ):
            raise NativeUnsupported("do_rescale / do_normalize / do_resize switched off")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Qwen's smart_resize: (height, width) rounded to the patch grid, area within the pixel limits."""
        factor = self.patch * self.merge
        if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
            raise ValueError(f"image aspect ratio above {MAX_ASPECT_RATIO}: {width}x{height}")
        h_bar = round(height / factor) * factor
        w_bar = round(width / factor) * factor
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt((height * width) / self.max_pixels)
            h_bar = max(factor, math.floor(height / beta / factor) * factor)
            w_bar = max(factor, math.floor(width / beta / factor) * factor)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return h_bar, w_bar

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(patches of shape (t*h*w, C*T*P*P), grid (t, h, w) in patches)."""
        height, width = self.target_size(image.height, image.width)
        if (width, height) != image.size:
            image = image.resize((width, height), Image.BICUBIC)
        pixels = np.asarray(image, dtype=np.float32) * np.float32(self.rescale)
        pixels = ((pixels - self.mean) / self.std).transpose(2, 0, 1)  # (C, H, W)
        frames = np.broadcast_to(pixels, (self.temporal, *pixels.shape))  # one image = T identical frames
        p, m, t = self.patch, self.merge, self.temporal
        gh, gw = height // p, width // p
        channels = pixels.shape[0]
        patches = frames.reshape(1, t, channels, gh // m, m, p, gw // m, m, p)
        patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        flat = np.ascontiguousarray(patches).reshape(gh * gw, channels * t * p * p)
        return torch.from_numpy(flat), (1, gh, gw)


class _GenerationTag:
    """jinja2 extension for transformers' ``{% generation %}...{% endgeneration %}`` (renders the body)."""

    @staticmethod
    def build():
        import jinja2.ext
        import jinja2.nodes

        class GenerationTag(jinja2.ext.Extension):
            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(
                    lineno
                )

            def _render(self, caller):
                return caller()

        return GenerationTag


def _compile_template(source: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag.build(), jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def _read_template(folder: Path) -> str:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        template = _read_json(folder / "chat_template.json").get("chat_template")
        if isinstance(template, str):
            return template
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = _read_json(config).get("chat_template")
        if isinstance(template, str):
            return template
    raise NativeUnsupported("the folder has no chat template")


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Model:
    """The weights and the forward passes (vision tower, language model with a KV cache)."""

    def __init__(self, folder: Path, cfg: _Config) -> None:
        from safetensors.torch import load_file

        path = folder / _WEIGHTS
        if not path.is_file():
            raise NativeUnsupported(f"no {_WEIGHTS} (sharded or other weight files load with the hf backend)")
        weights = load_file(str(path))
        self.cfg = cfg
        self.w: dict[str, torch.Tensor] = {}
        for key, tensor in weights.items():
            if tensor.dtype != torch.float32:
                tensor = tensor.float()
            self.w[key.removeprefix("model.")] = tensor
        if cfg.tie and "lm_head.weight" not in self.w:
            self.w["lm_head.weight"] = self.w["embed_tokens.weight"]
        self._check_shapes()
        self.parameters = sum(t.numel() for t in weights.values())
        head = cfg.head_dim
        self.inv_freq = 1.0 / (
            torch.tensor(cfg.rope_factors, dtype=torch.float)
            * cfg.rope_theta ** (torch.arange(0, head, 2, dtype=torch.float) / head)
        )
        spatial = (cfg.v_hidden // cfg.v_heads) // 2
        self.v_inv_freq = 1.0 / (
            cfg.v_rope_theta ** (torch.arange(0, spatial, 2, dtype=torch.float) / spatial)
        )

    def _check_shapes(self) -> None:
        cfg = self.cfg
        expected = {
            "embed_tokens.weight": (cfg.vocab, cfg.hidden),
            "lm_head.weight": (cfg.vocab, cfg.hidden),
            "norm.weight": (cfg.hidden,),
            "visual.merger.mlp.2.weight": (cfg.hidden, cfg.v_hidden * cfg.merge**2),
        }
        for i in range(cfg.layers):
            expected[f"layers.{i}.self_attn.q_proj.weight"] = (cfg.hidden, cfg.hidden)
            expected[f"layers.{i}.self_attn.k_proj.weight"] = (cfg.kv_heads * cfg.head_dim, cfg.hidden)
        for i in range(cfg.v_depth):
            expected[f"visual.blocks.{i}.attn.qkv.weight"] = (3 * cfg.v_hidden, cfg.v_hidden)
        for key, shape in expected.items():
            if key not in self.w:
                raise NativeUnsupported(f"weight {key} is missing")
            if tuple(self.w[key].shape) != shape:
                raise NativeUnsupported(
                    f"weight {key} has shape {tuple(self.w[key].shape)}, expected {shape}"
                )

    # --- vision tower -------------------------------------------------------------------------------------

    def _window_index(self, grid: tuple[int, int, int]) -> tuple[torch.Tensor, list[int]]:
        t, h, w = grid
        cfg = self.cfg
        size = cfg.window // cfg.merge // cfg.patch
        lh, lw = h // cfg.merge, w // cfg.merge
        index = torch.arange(t * lh * lw).reshape(t, lh, lw)
        pad_h, pad_w = size - lh % size, size - lw % size
        nh, nw = (lh + pad_h) // size, (lw + pad_w) // size
        padded = F.pad(index, (0, pad_w, 0, pad_h), "constant", -100)
        padded = padded.reshape(t, nh, size, nw, size).permute(0, 1, 3, 2, 4).reshape(t, nh * nw, size, size)
        lengths = (padded != -100).sum([2, 3]).reshape(-1)
        flat = padded.reshape(-1)
        order = flat[flat != -100]
        bounds = [0]
        for n in (lengths * cfg.merge**2).tolist():
            if n:
                bounds.append(bounds[-1] + n)
        return order, bounds

    def _vision_rotary(self, grid: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = grid
        m = self.cfg.merge
        hpos, wpos = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        shape = (h // m, m, w // m, m)
        hpos = hpos.reshape(shape).transpose(1, 2).flatten()
        wpos = wpos.reshape(shape).transpose(1, 2).flatten()
        pos = torch.stack([hpos, wpos], dim=-1).repeat(t, 1)  # (N, 2)
        freqs = pos[..., None].float() * self.v_inv_freq  # (N, 2, spatial/2)
        hw = torch.cat([freqs[:, 0], freqs[:, 1]], dim=-1)
        return torch.cat([hw, hw], dim=-1)  # (N, head_dim)

    def vision(self, patches: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Merged image features, one row per image token, in the image's raster order."""
        cfg, w = self.cfg, self.w
        unit = cfg.merge**2
        x = patches.view(-1, cfg.in_channels, cfg.temporal, cfg.patch, cfg.patch)
        x = F.conv3d(x, w["visual.patch_embed.proj.weight"], stride=(cfg.temporal, cfg.patch, cfg.patch))
        x = x.view(-1, cfg.v_hidden)
        n = x.shape[0]
        order, window_bounds = self._window_index(grid)
        x = x.reshape(n // unit, unit, -1)[order].reshape(n, -1)
        angles = self._vision_rotary(grid)
        angles = angles.reshape(n // unit, unit, -1)[order].reshape(n, -1)
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
        full_bounds = [0, n]
        heads, head_dim = cfg.v_heads, cfg.v_hidden // cfg.v_heads
        for i in range(cfg.v_depth):
            p = f"visual.blocks.{i}."
            bounds = full_bounds if i in cfg.fullatt else window_bounds
            h = _rms_norm(x, w[p + "norm1.weight"], 1e-6)
            qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
            q, k, v = qkv.reshape(n, 3, heads, head_dim).permute(1, 0, 2, 3).unbind(0)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # (1, heads, n, head_dim)
            chunks = []
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                out = F.scaled_dot_product_attention(
                    q[:, :, start:end], k[:, :, start:end], v[:, :, start:end]
                )
                chunks.append(out.transpose(1, 2))
            attn = torch.cat(chunks, dim=1).reshape(n, -1)
            x = x + F.linear(attn, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
            h = _rms_norm(x, w[p + "norm2.weight"], 1e-6)
            gate = F.linear(h, w[p + "mlp.gate_proj.weight"], w[p + "mlp.gate_proj.bias"])
            up = F.linear(h, w[p + "mlp.up_proj.weight"], w[p + "mlp.up_proj.bias"])
            x = x + F.linear(F.silu(gate) * up, w[p + "mlp.down_proj.weight"], w[p + "mlp.down_proj.bias"])
        h = _rms_norm(x, w["visual.merger.ln_q.weight"], 1e-6).view(-1, cfg.v_hidden * unit)
        h = F.gelu(F.linear(h, w["visual.merger.mlp.0.weight"], w["visual.merger.mlp.0.bias"]))
        h = F.linear(h, w["visual.merger.mlp.2.weight"], w["visual.merger.mlp.2.bias"])
        return h[torch.argsort(order)]

    # --- language model -----------------------------------------------------------------------------------

    def positions(self, ids: list[int], grids: Sequence[tuple[int, int, int]]) -> tuple[torch.Tensor, int]:
        """Multimodal rotary positions (3, L) of a prompt and the offset of the positions after it."""
        m = self.cfg.merge
        image_id = self.cfg.image_token_id
        rows: list[torch.Tensor] = []
        pos, i, n_images = 0, 0, 0
        while i < len(ids):
            if ids[i] != image_id:
                j = i
                while j < len(ids) and ids[j] != image_id:
                    j += 1
                rows.append(torch.arange(j - i).view(1, -1).expand(3, -1) + pos)
                pos += j - i
                i = j
                continue
            if n_images >= len(grids):
                raise ValueError("the prompt has more image tokens than images")
            t, h, w = grids[n_images]
            lh, lw = h // m, w // m
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(lh), torch.arange(lw), indexing="ij")
            block = torch.stack([tt + pos, hh + pos, ww + pos]).reshape(3, -1)
            rows.append(block)
            i += block.shape[1]
            pos += max(lh, lw)
            n_images += 1
        positions = torch.cat(rows, dim=1)
        return positions, int(positions.max()) + 1 - len(ids)

    def _angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq  # (3, L, head_dim/2)
        parts = freqs.split(self.cfg.mrope_section, dim=-1)
        half = torch.cat([part[i % 3] for i, part in enumerate(parts)], dim=-1)
        angles = torch.cat([half, half], dim=-1)  # (L, head_dim)
        return angles.cos()[None, None], angles.sin()[None, None]

    def decoder(
        self, x: torch.Tensor, positions: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """Hidden states (1, L, hidden) through the decoder layers, extending ``cache``; last row's logits."""
        cfg, w = self.cfg, self.w
        cos, sin = self._angles(positions)
        length = x.shape[1]
        groups = cfg.heads // cfg.kv_heads
        for i in range(cfg.layers):
            p = f"layers.{i}."
            h = _rms_norm(x, w[p + "input_layernorm.weight"], cfg.eps)
            q = F.linear(h, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"])
            k = F.linear(h, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"])
            v = F.linear(h, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])
            q = q.view(1, length, cfg.heads, cfg.head_dim).transpose(1, 2)
            k = k.view(1, length, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
            v = v.view(1, length, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if len(cache) > i:
                k = torch.cat([cache[i][0], k], dim=2)
                v = torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
            else:
                cache.append((k, v))
            keys = k.repeat_interleave(groups, dim=1) if groups > 1 else k
            values = v.repeat_interleave(groups, dim=1) if groups > 1 else v
            attn = F.scaled_dot_product_attention(q, keys, values, is_causal=length > 1)
            attn = attn.transpose(1, 2).reshape(1, length, -1)
            x = x + F.linear(attn, w[p + "self_attn.o_proj.weight"])
            h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.eps)
            gate = F.linear(h, w[p + "mlp.gate_proj.weight"])
            up = F.linear(h, w[p + "mlp.up_proj.weight"])
            x = x + F.linear(F.silu(gate) * up, w[p + "mlp.down_proj.weight"])
        x = _rms_norm(x[:, -1:], w["norm.weight"], cfg.eps)
        return F.linear(x, w["lm_head.weight"])[0, -1]

    def embed(self, ids: torch.Tensor, image_features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.w["embed_tokens.weight"][ids].clone()
        mask = ids == self.cfg.image_token_id
        features = torch.cat(list(image_features)) if image_features else x[:0]
        if int(mask.sum()) != features.shape[0]:
            raise ValueError(f"{int(mask.sum())} image tokens but {features.shape[0]} image features")
        x[mask] = features
        return x[None]


def _generation_settings(folder: Path, tokenizer: Any) -> tuple[list[int], float]:
    """(end-of-sequence ids, repetition penalty) from generation_config.json (eos falls back to the tokenizer's)."""
    gen = (
        _read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    )
    ids: Any = gen.get("eos_token_id")
    if ids is None and (folder / "tokenizer_config.json").is_file():
        token = _read_json(folder / "tokenizer_config.json").get("eos_token")
        token = token.get("content") if isinstance(token, dict) else token
        ids = tokenizer.token_to_id(token) if isinstance(token, str) else None
    if ids is None:
        raise NativeUnsupported("no eos_token_id in generation_config.json or tokenizer_config.json")
    ids = [ids] if isinstance(ids, int) else list(ids)
    if not ids or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in ids):
        raise NativeUnsupported(f"bad eos_token_id {ids!r}")
    penalty = gen.get("repetition_penalty")
    ok = isinstance(penalty, (int, float)) and not isinstance(penalty, bool) and penalty > 0
    return ids, float(penalty) if ok else 1.0


def native_unsupported(
    source: str | Path, device: str | None = None, dtype: Any = None, options: dict[str, Any] | None = None
) -> str | None:
    """Why ``source`` (with these arguments) is not served by the native backend, or None when it is.

    Cheap: reads ``config.json`` only. The reasons: not a local folder, not Qwen2.5-VL, too large
    (:data:`SMALL_MODEL_PARAMS`, estimated from the weight file's size), a device other than the CPU, a dtype
    other than float32, or an option the backend does not have (:data:`NATIVE_OPTIONS`).
    """
    folder = Path(source).expanduser()
    if not (folder / "config.json").is_file():
        return "not a local checkpoint folder"
    if device not in (None, "cpu"):
        return f"device {device!r} (the native backend runs on the CPU)"
    if device is None and torch.cuda.is_available():
        return "a CUDA device is available (the hf backend uses it)"
    if dtype is not None and str(dtype).lower().removeprefix("torch.") not in ("float32", "fp32", "float"):
        return f"dtype {dtype!r} (the native backend computes in float32)"
    unknown = sorted(set(options or {}) - set(NATIVE_OPTIONS))
    if unknown:
        return f"options {unknown} are hf-backend options"
    try:
        _Config(_read_json(folder / "config.json"))
    except NativeUnsupported as err:
        return str(err)
    weights = folder / _WEIGHTS
    if not weights.is_file():
        return f"no {_WEIGHTS}"
    if weights.stat().st_size > SMALL_MODEL_PARAMS * 4:
        return "a model above the native backend's size limit"
    return None


class NativePolicy(DetailedPolicy):
    """A small Qwen2.5-VL checkpoint folder run by segr1's own forward pass on the CPU (module docstring).

    Same constructor options as :class:`segr1.policies.hf.HFPolicy` where they apply (``min_pixels``,
    ``max_pixels``, ``top_p``, ``top_k``, ``repetition_penalty``, ``max_batch_size``: accepted, rows are
    decoded one at a time anyway) and the same ``generate`` / ``generate_detailed``. Attributes: ``name``
    (``"native:<folder>"``), ``frame``, ``metadata``, ``device`` (``"cpu"``), ``dtype`` (float32),
    ``parameters``, ``cpu_threads`` (1).
    """

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        dtype: Any = None,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        from segr1.policies.hf import _check_options

        _check_options(top_p=top_p, top_k=top_k, max_batch_size=max_batch_size)
        folder = Path(model).expanduser()
        reason = native_unsupported(folder, device, dtype)
        if reason is not None:
            raise NativeUnsupported(f"the native backend cannot run {str(model)!r}: {reason}")
        cfg = _Config(_read_json(folder / "config.json"))
        self.model = _Model(folder, cfg)
        self.images = _ImageProcessor(folder, min_pixels, max_pixels)
        if (self.images.patch, self.images.merge, self.images.temporal) != (
            cfg.patch,
            cfg.merge,
            cfg.temporal,
        ):
            raise NativeUnsupported(
                "the image processor's patch / merge / temporal sizes differ from the model's"
            )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.template = _compile_template(_read_template(folder))
        self.image_token = self.tokenizer.id_to_token(cfg.image_token_id)
        if self.image_token is None:
            raise NativeUnsupported(f"image_token_id {cfg.image_token_id} is not in the tokenizer")
        self.eos_token_ids, recorded_penalty = _generation_settings(folder, self.tokenizer)
        self.repetition_penalty = (
            float(repetition_penalty) if repetition_penalty is not None else recorded_penalty
        )
        self.top_p, self.top_k = float(top_p), int(top_k)
        self.max_batch_size = max_batch_size
        self.name = f"native:{folder}"
        self.metadata = policy_metadata(folder)
        frame = self.metadata.get("frame")
        self.frame: int | None = frame if isinstance(frame, int) and not isinstance(frame, bool) else None
        self.device, self.dtype = "cpu", torch.float32
        self.parameters = self.model.parameters
        self.cpu_threads = 1
        logger.info("loaded %s natively (%d parameters, CPU, float32)", self.name, self.parameters)

    def prompt_ids(
        self, image: Image.Image, instruction: str, system: str | None = None, image_first: bool = True
    ) -> tuple[list[int], torch.Tensor, tuple[int, int, int]]:
        """Token ids of one prompt (image tokens expanded), the image's patches and its patch grid."""
        patches, grid = self.images(image)
        messages = build_messages(image, instruction, system, image_first=image_first)
        text = self.template.render(messages=messages, add_generation_prompt=True)
        n_tokens = grid[0] * grid[1] * grid[2] // self.model.cfg.merge**2
        if text.count(self.image_token) != 1:
            raise ValueError(
                f"the chat template wrote {text.count(self.image_token)} image tokens, expected 1"
            )
        text = text.replace(self.image_token, self.image_token * n_tokens)
        return self.tokenizer.encode(text).ids, patches, grid

    def generate_detailed(
        self,
        images: Sequence[Image.Image],
        instructions: Sequence[str],
        num_samples: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        system: str | None = None,
        image_first: bool = True,
    ) -> Generation:
        """:meth:`generate` plus which completions stopped at ``max_new_tokens`` unfinished."""
        from segr1.devices import intra_op_threads
        from segr1.policies.hf import _as_rgb, check_generate_args

        check_generate_args(images, instructions, num_samples, temperature, max_new_tokens)
        texts: list[list[str]] = []
        truncated: list[list[bool]] = []
        with torch.inference_mode(), intra_op_threads(self.cpu_threads):
            for index, (image, instruction) in enumerate(zip(images, instructions, strict=True)):
                ids, patches, grid = self.prompt_ids(_as_rgb(image, index), instruction, system, image_first)
                features = self.model.vision(patches, grid)
                positions, delta = self.model.positions(ids, [grid])
                prompt = torch.tensor(ids)
                cache: list[tuple[torch.Tensor, torch.Tensor]] = []
                logits = self.model.decoder(self.model.embed(prompt, [features]), positions, cache)
                rows = num_samples if temperature > 0 else 1
                outputs = []
                for row in range(rows):
                    row_cache = cache if row == rows - 1 else list(cache)
                    outputs.append(
                        self._decode(prompt, logits, row_cache, delta, temperature, max_new_tokens)
                    )
                if rows == 1:
                    outputs = outputs * num_samples
                texts.append([text for text, _ in outputs])
                truncated.append([cut for _, cut in outputs])
        return Generation(texts=texts, truncated=truncated)

    def _next_token(self, logits: torch.Tensor, seen: torch.Tensor, temperature: float) -> int:
        scores = logits.clone()
        if self.repetition_penalty != 1.0:
            taken = scores[seen]
            scores[seen] = torch.where(
                taken < 0, taken * self.repetition_penalty, taken / self.repetition_penalty
            )
        if temperature <= 0:
            return int(torch.argmax(scores))
        scores = scores / temperature
        if self.top_k > 0:
            kth = torch.topk(scores, min(self.top_k, scores.numel())).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - self.top_p)
            remove[-1] = False  # keep at least one token
            scores = scores.masked_fill(remove.scatter(0, order, remove), float("-inf"))
        return int(torch.multinomial(scores.softmax(dim=-1), 1))

    def _decode(
        self,
        prompt: torch.Tensor,
        logits: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        delta: int,
        temperature: float,
        max_new_tokens: int,
    ) -> tuple[str, bool]:
        seen = prompt.clone()
        new: list[int] = []
        finished = False
        while True:
            token = self._next_token(logits, seen, temperature)
            new.append(token)
            if token in self.eos_token_ids:
                finished = True
                break
            if len(new) >= max_new_tokens:
                break
            seen = torch.cat([seen, torch.tensor([token])])
            position = torch.full((3, 1), len(seen) - 1 + delta)
            x = self.model.w["embed_tokens.weight"][torch.tensor([[token]])]
            logits = self.model.decoder(x, position, cache)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, (not finished and len(new) >= max_new_tokens)
