"""`sam2`: the official SAM2 package (``pip install 'segr1[sam2]'``) behind the `Segmenter` protocol.

Spec ``sam2:<config>@<checkpoint>``, e.g. ``sam2:configs/sam2.1/sam2.1_hiera_l.yaml@/ckpt/sam2.1_hiera_large.pt``.
``<config>`` is either a config packaged with sam2 (``configs/sam2.1/sam2.1_hiera_l.yaml``; the short form
``sam2.1_hiera_l`` is expanded to it) loaded with ``sam2.build_sam.build_sam2``, or the path of a YAML file of the
same layout, which is instantiated directly with the same post-processing settings ``build_sam2`` applies
(the official builder only finds configs inside the package). ``<checkpoint>`` is a ``.pt`` file holding
``{"model": state_dict}``.

Per call: ``SAM2ImagePredictor.set_image`` once, then batched ``predict`` calls on that embedding, one per group
of sub-prompts of the same structure (has a box, number of points), as in `segr1.segmenters.sam2_hf`; a single
point with no box is decoded with three masks and the one with the highest predicted IoU is kept (one mask with
``single_point_multimask=False``, as the Seg-R1 release). bf16 autocast
on CUDA by default. The predictor holds the image state, so calls are serialised with a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segr1.answer import SegPrompt
from segr1.segmenters._common import autocast, group_indices, start_segment, torch_device_and_autocast

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'segr1[sam2]'"
_POSTPROCESSING = {  # what sam2.build_sam.build_sam2(apply_postprocessing=True) sets
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}
_RESULT_PIXELS = 1 << 26  # float32 pixels the predictor may return at once (it returns full-size masks)


def parse_sam2_spec(rest: str) -> tuple[str, str]:
    """Split ``<config>@<checkpoint>`` (the part after ``sam2:``) into (config, checkpoint).

    The last ``@`` separates them (a config name has none). Raises ValueError naming the expected form.
    """
    config, sep, checkpoint = rest.rpartition("@")
    if not sep or not config.strip() or not checkpoint.strip():
        raise ValueError(
            f"sam2 spec must be 'sam2:<config>@<checkpoint>', e.g. "
            f"'sam2:configs/sam2.1/sam2.1_hiera_l.yaml@sam2.1_hiera_large.pt'; got 'sam2:{rest}'"
        )
    return config.strip(), checkpoint.strip()


def packaged_config_name(config: str) -> str:
    """Expand a short packaged config name: ``sam2.1_hiera_l`` -> ``configs/sam2.1/sam2.1_hiera_l.yaml``."""
    name = config if config.endswith(".yaml") else f"{config}.yaml"
    if "/" not in name:
        family = "sam2.1" if name.startswith("sam2.1") else "sam2"
        name = f"configs/{family}/{name}"
    return name


def _import_sam2() -> Any:
    try:
        import sam2.build_sam  # noqa: F401  (registers the package's hydra configs)
        import sam2.sam2_image_predictor
    except ImportError as exc:
        raise ImportError(
            f"the 'sam2' segmenter needs the official SAM2 package: {INSTALL_HINT} ({exc})"
        ) from exc
    return sam2


def build_sam2_model(config: str, checkpoint: str | Path, device: str = "cpu") -> Any:
    """Build an official ``SAM2Base`` from a packaged config name or a YAML path, load ``checkpoint`` (strict),
    move it to ``device`` and set eval mode."""
    sam2 = _import_sam2()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {str(checkpoint)!r} (give a .pt file path)")
    if not Path(config).is_file():
        name = packaged_config_name(config)
        try:
            return sam2.build_sam.build_sam2(name, str(checkpoint), device=device)
        except Exception as exc:  # hydra's MissingConfigException and friends
            if type(exc).__name__ != "MissingConfigException":
                raise
            raise ValueError(
                f"unknown SAM2 config {config!r}: give a packaged name such as 'configs/sam2.1/sam2.1_hiera_l.yaml' "
                "or the path of a YAML file"
            ) from exc
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config)
    for key, value in _POSTPROCESSING.items():
        OmegaConf.update(cfg, f"model.sam_mask_decoder_extra_args.{key}", value, force_add=True)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state), strict=True)
    return model.to(device).eval()


class Sam2OfficialSegmenter:
    """The official SAM2 image predictor behind the `Segmenter` protocol.

    Args:
        config: packaged config name or YAML path (see the module docstring).
        checkpoint: ``.pt`` checkpoint path.
        device: "cuda", "cpu", ...; None picks CUDA when available.
        dtype: autocast dtype "bfloat16" | "float16" | "float32"; None = bfloat16 on CUDA, float32 on CPU.
        max_decode_batch: most sub-prompts per ``predict`` call.
        mask_threshold: logit threshold for the binary masks.
        single_point_multimask: three masks (best kept) for a lone point without a box (default), or one.
    """

    def __init__(
        self,
        config: str,
        checkpoint: str | Path,
        device: str | None = None,
        dtype: str | None = None,
        *,
        max_decode_batch: int = 64,
        mask_threshold: float = 0.0,
        single_point_multimask: bool = True,
    ) -> None:
        if max_decode_batch < 1:
            raise ValueError(f"max_decode_batch must be >= 1; got {max_decode_batch}")
        sam2 = _import_sam2()
        self.name = f"sam2:{config}@{checkpoint}"
        self.device, self.autocast_dtype = torch_device_and_autocast(device, dtype)
        self.max_decode_batch = max_decode_batch
        self.single_point_multimask = single_point_multimask
        model = build_sam2_model(config, checkpoint, device=str(self.device))
        self.predictor = sam2.sam2_image_predictor.SAM2ImagePredictor(model, mask_threshold=mask_threshold)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sam2OfficialSegmenter({self.name!r}, device={self.device}, autocast={self.autocast_dtype})"

    def segment(self, image: np.ndarray | Image.Image, prompts: Sequence[SegPrompt]) -> list[np.ndarray]:
        """Segment ONE image with MANY prompt sets; the image is embedded once (``set_image``).

        Args:
            image: PIL image or (H, W, 3) uint8 RGB array.
            prompts: prompt sets in the IMAGE frame (boxes (N, 4) xyxy, points (M, 2) xy, labels (M,) 1 = fg).

        Returns:
            One (H, W) bool mask per prompt set: the union of its per-box masks; all False for an empty prompt.
        """
        import torch

        rgb, subs, masks = start_segment(image, prompts)
        if not subs.items:
            return masks
        h, w = rgb.shape[:2]
        keys = [(s.boxes.shape[0] > 0, s.points.shape[0]) for s in subs.items]
        with self._lock, torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            self.predictor.set_image(rgb)
            try:
                for (has_box, n_points), idx in group_indices(keys).items():
                    multimask = self.single_point_multimask and not has_box and n_points == 1
                    step = max(
                        1, min(self.max_decode_batch, _RESULT_PIXELS // (h * w * (3 if multimask else 1)))
                    )
                    for start in range(0, len(idx), step):
                        chunk = [subs.items[i] for i in idx[start : start + step]]
                        for i, m in zip(
                            idx[start : start + step], self._predict(chunk, multimask, (h, w)), strict=True
                        ):
                            masks[subs.owner[i]] |= m
            finally:
                self.predictor.reset_predictor()
        return masks

    def _predict(self, subs: list[SegPrompt], multimask: bool, size: tuple[int, int]) -> np.ndarray:
        """(P, H, W) bool masks for P sub-prompts of the same structure."""
        n = len(subs)
        kwargs: dict[str, Any] = {"multimask_output": multimask}
        if subs[0].boxes.shape[0]:
            kwargs["box"] = np.stack([s.boxes[0] for s in subs])
        if subs[0].points.shape[0]:
            kwargs["point_coords"] = np.stack([s.points for s in subs])
            kwargs["point_labels"] = np.stack([s.labels for s in subs])
        masks, ious, _ = self.predictor.predict(**kwargs)
        masks = np.asarray(masks).reshape(n, -1, *size)  # predict() squeezes a batch of one
        if multimask:
            best = np.asarray(ious).reshape(n, -1).argmax(axis=1)
            return masks[np.arange(n), best] > 0
        return masks[:, 0] > 0


_TINY_OVERRIDES = {  # shrink the packaged Hiera-T config; image size stays 1024 (the predictor assumes it)
    "image_encoder.trunk.embed_dim": 8,
    "image_encoder.trunk.stages": [1, 1, 2, 1],
    "image_encoder.trunk.global_att_blocks": [3],
    "image_encoder.trunk.window_pos_embed_bkg_spatial_size": [4, 4],
    "image_encoder.trunk.window_spec": [8, 4, 4, 2],
    "image_encoder.neck.d_model": 32,
    "image_encoder.neck.backbone_channel_list": [64, 32, 16, 8],
    "image_encoder.neck.position_encoding.num_pos_feats": 32,
    "memory_attention.d_model": 32,
    "memory_attention.num_layers": 1,
    "memory_attention.layer.d_model": 32,
    "memory_attention.layer.dim_feedforward": 32,
    "memory_attention.layer.self_attention.embedding_dim": 32,
    "memory_attention.layer.cross_attention.embedding_dim": 32,
    "memory_attention.layer.cross_attention.kv_in_dim": 16,
    "memory_encoder.out_dim": 16,
    "memory_encoder.in_dim": 32,
    "memory_encoder.position_encoding.num_pos_feats": 16,
    "memory_encoder.mask_downsampler.embed_dim": 32,
    "memory_encoder.fuser.layer.dim": 32,
    "memory_encoder.fuser.num_layers": 1,
}


def build_tiny_sam2_official(out_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random-weight official SAM2 (about 0.65 M parameters, 1024 px input) for tests.

    Returns (config YAML path, checkpoint path), usable as ``sam2:<config>@<checkpoint>``. Needs the sam2 package.
    """
    sam2 = _import_sam2()
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(sam2.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml")
    for key, value in _TINY_OVERRIDES.items():
        OmegaConf.update(cfg, f"model.{key}", value, force_add=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path, ckpt_path = out / "tiny_sam2.yaml", out / "tiny_sam2.pt"
    OmegaConf.save(cfg, config_path)
    torch.manual_seed(seed)
    model = instantiate(cfg.model, _recursive_=True)
    torch.save({"model": model.state_dict()}, ckpt_path)
    return config_path, ckpt_path
