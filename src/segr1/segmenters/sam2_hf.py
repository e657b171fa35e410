"""`sam2-hf`: SAM2 through transformers (`Sam2Model` + `Sam2Processor`), one image embedding per call.

`Sam2HFSegmenter.segment(image, prompts)` embeds the image once, splits every prompt set into sub-prompts (one
per box, holding the points inside it; points alone when there is no box: `geometry.split_by_box`), decodes
all sub-prompts in batched mask-decoder calls on that shared embedding, upsamples the low-resolution logits to
the image size (bilinear, threshold ``mask_threshold``) and unites the sub-prompt masks of each prompt set.

Batching. The decoder takes one tensor of prompts per call, so sub-prompts that differ in structure cannot
share a call as they are: by default they are grouped by (has a box, number of points) and each group is one
call (chunked at ``max_decode_batch``); results are then identical to decoding the prompt sets one by one.
With ``pad_points=True`` sub-prompts with and without a box still go to separate calls, but point lists of
different lengths are padded to a common length with label -10 (transformers' padding convention), so there
are at most three calls. Padded tokens still take part in the decoder's attention, which moves the logits
slightly; masks can then differ from one-by-one decoding in a few pixels.

Mask choice: a single point with no box is ambiguous (part vs whole), so it is decoded with
``multimask_output=True`` and the mask with the highest predicted IoU is kept (as in SAM's demos); all other
sub-prompts are decoded with ``multimask_output=False`` (SAM2's single-mask token, with its stability fallback).
``single_point_multimask=False`` decodes the single point with one mask too, as the Seg-R1 release did.

Precision: bf16 autocast on CUDA and fp32 on CPU by default (weights stay fp32, as in the official predictor).
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

DEFAULT_MODEL_ID = "facebook/sam2.1-hiera-large"
POINT_PAD_LABEL = -10  # transformers' Sam2Processor.point_pad_value: label of a padding point
_UPSAMPLE_PIXELS = 1 << 27  # pixels (float32) upsampled at once: bounds memory on large images


class Sam2HFSegmenter:
    """SAM2 (transformers) behind the `Segmenter` protocol.

    Args:
        model: hub id (default ``facebook/sam2.1-hiera-large``) or local folder holding a saved `Sam2Model` and
            `Sam2Processor`.
        device: "cuda", "cuda:1", "cpu", ...; None picks CUDA when available.
        dtype: autocast dtype "bfloat16" | "float16" | "float32"; None = bfloat16 on CUDA, float32 on CPU.
        pad_points: merge sub-prompts with different point counts into one decoder call by padding (faster on
            GPU, masks may differ slightly from one-by-one decoding); see the module docstring.
        max_decode_batch: most sub-prompts per mask-decoder call.
        mask_threshold: logit threshold for the binary masks.
        local_files_only: passed to ``from_pretrained`` (no hub requests).
        single_point_multimask: decode a lone point (no box) into three masks and keep the best (default), or
            into one (the release's ``multimask_output=False``).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL_ID,
        device: str | None = None,
        dtype: str | None = None,
        *,
        pad_points: bool = False,
        max_decode_batch: int = 64,
        mask_threshold: float = 0.0,
        local_files_only: bool = False,
        single_point_multimask: bool = True,
    ) -> None:
        from segr1.hub import check_model_source, load_error, progress_only_on_a_terminal

        if max_decode_batch < 1:
            raise ValueError(f"max_decode_batch must be >= 1; got {max_decode_batch}")
        self.name = f"sam2-hf:{model}"
        self.device, self.autocast_dtype = torch_device_and_autocast(device, dtype)
        self.pad_points = pad_points
        self.max_decode_batch = max_decode_batch
        self.mask_threshold = mask_threshold
        self.single_point_multimask = single_point_multimask
        example = "sam2-hf:facebook/sam2.1-hiera-large, or sam2-hf:/path/to/folder"
        source, local_only = check_model_source(str(model), "SAM2", example)  # before any weights are read
        local_files_only = local_files_only or local_only
        from transformers import Sam2Model, Sam2Processor

        try:
            with progress_only_on_a_terminal():  # no "Loading weights" bar in logs and pipes
                self.processor = Sam2Processor.from_pretrained(source, local_files_only=local_files_only)
                self.model = Sam2Model.from_pretrained(source, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:  # missing files, unreachable hub, malformed repo id
            raise load_error(exc, "SAM2", source, example) from exc
        self.model.to(self.device).eval()
        # prompts are given to the model in this square frame (the processor's resize target)
        self.target_size = int(self.processor.target_size)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sam2HFSegmenter({self.name!r}, device={self.device}, autocast={self.autocast_dtype})"

    def segment(self, image: np.ndarray | Image.Image, prompts: Sequence[SegPrompt]) -> list[np.ndarray]:
        """Segment ONE image with MANY prompt sets; the image is embedded once.

        Args:
            image: PIL image or (H, W, 3) uint8 RGB array.
            prompts: prompt sets in the IMAGE frame (boxes (N, 4) xyxy, points (M, 2) xy, labels (M,) 1 = fg).

        Returns:
            One (H, W) bool mask per prompt set, at the image's size: the union of its per-box masks; all False
            for an empty prompt set.
        """
        import torch

        rgb, subs, masks = start_segment(image, prompts)
        if not subs.items:
            return masks
        h, w = rgb.shape[:2]
        with self._lock, torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            pixels = self.processor.image_processor(images=[rgb], return_tensors="pt", device=self.device)
            embeddings = self.model.get_image_embeddings(pixels["pixel_values"].to(self.device))
            union = torch.zeros((len(prompts), h, w), dtype=torch.bool, device=self.device)
            for idx in self._groups(subs.items):
                for start in range(0, len(idx), self.max_decode_batch):
                    chunk = idx[start : start + self.max_decode_batch]
                    masks = self._decode(embeddings, [subs.items[i] for i in chunk], (w, h))
                    for j, i in enumerate(chunk):
                        union[subs.owner[i]] |= masks[j]
            return list(union.cpu().numpy())

    def _groups(self, items: list[SegPrompt]) -> list[list[int]]:
        """Indices of sub-prompts that can share one decoder call."""
        keys = []
        for sub in items:
            has_box = sub.boxes.shape[0] > 0
            n = sub.points.shape[0]
            multimask = self.single_point_multimask and not has_box and n == 1
            keys.append((has_box, multimask, None if self.pad_points and not multimask else n))
        return list(group_indices(keys).values())

    def _decode(self, embeddings: list[Any], subs: list[SegPrompt], image_size: tuple[int, int]) -> Any:
        """Masks (P, H, W) bool (on the model's device) for P sub-prompts of one group."""
        import torch

        w, h = image_size
        scale = np.array([self.target_size / w, self.target_size / h])
        has_box = subs[0].boxes.shape[0] > 0
        n_points = max(s.points.shape[0] for s in subs)
        multimask = (
            self.single_point_multimask
            and not has_box
            and n_points == 1
            and all(s.points.shape[0] == 1 for s in subs)
        )
        boxes = points = labels = None
        if has_box:
            boxes = np.stack([s.boxes[0].reshape(2, 2) * scale for s in subs]).reshape(1, len(subs), 4)
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        if n_points:
            pts = np.full((1, len(subs), n_points, 2), float(POINT_PAD_LABEL))
            lbl = np.full((1, len(subs), n_points), POINT_PAD_LABEL, dtype=np.int64)
            for j, s in enumerate(subs):
                m = s.points.shape[0]
                pts[0, j, :m] = s.points * scale
                lbl[0, j, :m] = s.labels
            points = torch.as_tensor(pts, dtype=torch.float32, device=self.device)
            labels = torch.as_tensor(lbl, device=self.device)
        out = self.model(
            image_embeddings=embeddings,
            input_points=points,
            input_labels=labels,
            input_boxes=boxes,
            multimask_output=multimask,
        )
        logits = out.pred_masks[0]  # (P, C, h', w'): C = 3 with multimask_output, else 1
        if multimask:
            best = out.iou_scores[0].argmax(dim=-1)  # (P,)
            logits = logits[torch.arange(logits.shape[0], device=logits.device), best]
        else:
            logits = logits[:, 0]
        return self._upsample(logits, h, w)

    def _upsample(self, logits: Any, height: int, width: int) -> Any:
        """Low-res logits (P, h', w') -> (P, H, W) bool, bilinear like `Sam2Processor.post_process_masks`."""
        import torch
        import torch.nn.functional as F

        step = max(1, _UPSAMPLE_PIXELS // (height * width))
        parts = []
        for start in range(0, logits.shape[0], step):
            part = logits[start : start + step, None].float()
            up = F.interpolate(part, (height, width), mode="bilinear", align_corners=False)
            parts.append(up[:, 0] > self.mask_threshold)
        return torch.cat(parts)


def build_tiny_sam2(out_dir: str | Path, seed: int = 0, image_size: int = 256) -> Path:
    """Build and save a tiny random-weight SAM2 (about 0.35 M parameters) that `Sam2HFSegmenter` loads offline.

    The folder holds a `Sam2Model` (Hiera backbone with 5 blocks and widths 16-128, 32-wide FPN, prompt encoder
    and mask decoder) and a `Sam2Processor` whose image processor resizes to ``image_size`` (a multiple of 64).
    Its masks mean nothing; it exercises the real code paths (shapes, batching, loading) in tests.

    Returns:
        ``Path(out_dir)``.
    """
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    if image_size < 64 or image_size % 64:
        raise ValueError(f"image_size must be a positive multiple of 64; got {image_size}")
    s = image_size
    backbone = Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[s, s],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[3],  # not a stage's first (pooling) block
        window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        fpn_hidden_size=32,
    )
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=32, image_size=s, patch_size=16, mask_input_channels=8
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    image_processor = Sam2ImageProcessor(
        size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4}
    )
    Sam2Processor(image_processor=image_processor).save_pretrained(out)
    return out
