"""The outcome of segmenting one image: `SegResult` (answer, prompts, per-instance masks, their union, overlay).

Returned by `segr1.pipeline.SegR1Pipeline` (and re-exported there); pure data plus a JSON summary.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)


@dataclass
class SegResult:
    """The outcome for one image.

    Attributes:
        answer: the policy's raw completion text (answers in the MODEL frame).
        prompt: the parsed prompt in the IMAGE frame: boxes (N, 4) xyxy, points (M, 2) xy, labels (M,).
        prompt_model_frame: the same prompt as parsed, in the square MODEL frame (``frame`` x ``frame``).
        mask: (H, W) bool at the original image size: the union of ``instances``; all False when ``error`` is set.
        overlay: (H, W, 3) uint8 RGB: the image with the mask, boxes and points drawn (each instance in its own
            colour when there are several, `segr1.overlay.draw_instance_overlay`).
        timings: seconds: ``generate_s`` (this image's share of the batched policy call), ``segment_s``.
        error: None on success, else why no usable mask came out ("unparsable answer", "truncated answer",
            "empty mask", ...).
        frame: side of the square model frame the policy saw.
        truncated: the answer used the whole ``max_new_tokens`` budget without finishing (when the policy
            backend says so; see `segr1.policies.generate_with_info`).
        instances: one (H, W) bool mask per object of the answer, in answer order (an object's mask may be
            empty); ``[]`` when the answer held no object. Left empty by a caller, it becomes ``[mask]`` for a
            non-empty mask.
        instance_prompts: the prompt of each instance, IMAGE frame (same order and length as ``instances``).
    """

    answer: str
    prompt: SegPrompt
    prompt_model_frame: SegPrompt
    mask: np.ndarray
    overlay: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    frame: int = 0
    truncated: bool = False
    instances: list[np.ndarray] = field(default_factory=list)
    instance_prompts: list[SegPrompt] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.instances and not self.instance_prompts and np.any(self.mask):
            self.instances, self.instance_prompts = [self.mask], [self.prompt]
        if len(self.instances) != len(self.instance_prompts):
            raise ValueError(
                f"got {len(self.instances)} instance masks for {len(self.instance_prompts)} instance prompts"
            )

    @property
    def n_instances(self) -> int:
        """Objects in the answer (``len(instances)``)."""
        return len(self.instances)

    @property
    def ok(self) -> bool:
        """True when the answer parsed and gave a non-empty mask."""
        return self.error is None

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the original image."""
        return int(self.mask.shape[1]), int(self.mask.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no pixel arrays): answer, prompts in both frames, area, the instances
        (``boxes``, ``points``, ``labels`` in the image frame and ``mask_area`` of each), error, timings."""
        return {
            "answer": self.answer,
            "prompt": self.prompt.to_dict(),
            "prompt_model_frame": self.prompt_model_frame.to_dict(),
            "frame": self.frame,
            "image_size": list(self.image_size),
            "mask_area": int(np.count_nonzero(self.mask)),
            "n_instances": self.n_instances,
            "instances": [
                {
                    "boxes": p.boxes.tolist(),
                    "points": p.points.tolist(),
                    "labels": p.labels.tolist(),
                    "mask_area": int(np.count_nonzero(m)),
                }
                for m, p in zip(self.instances, self.instance_prompts, strict=True)
            ],
            "error": self.error,
            "truncated": self.truncated,
            "timings": {k: round(float(v), 6) for k, v in self.timings.items()},
        }

    def to_json(self, **extra: Any) -> str:
        """One JSON line (no newline) of :meth:`to_dict` plus ``extra`` keys (e.g. ``image=path``)."""
        return json.dumps({**extra, **self.to_dict()}, ensure_ascii=False)
