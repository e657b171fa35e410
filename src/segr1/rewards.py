"""Reward functions for GRPO, in TRL's shape: ``reward(completions, **dataset_columns) -> list[float]``.

TRL's ``GRPOTrainer`` calls each reward with the batch's ``prompts``, ``completions`` (conversational: a list of
``{"role": "assistant", "content": ...}`` messages per completion; plain text: a str), ``completion_ids``,
``trainer_state``, ``log_metric`` and every dataset column (``image``, ``mask``, ...), one list entry per
completion. Completions are untrusted model output: every reward here parses them with
`segr1.answer.parse_answer` (bounded, never evaluates, never raises) and scores a broken one 0.0.

* `format_reward` / `points_format_reward`: 1.0 when the answer is complete (think + box + points + labels; the
  points-only variant for the pre-RL stage drops the box), else 0.0.
* `SegmentationReward`: ``iou_weight * IoU + s_weight * S-measure`` (0.7 / 0.3 in Seg-R1) of the mask the
  segmenter makes from the completion's prompts against the ground-truth mask. Built once around a `Segmenter`;
  each call segments every distinct image once with all its completions' prompts.
* `length_reward`: Seg-R1's point-count shaping, ``exp(-(n - 8)^2 / (2 * 2^2))`` for ``n`` parsed points (0.0
  without points). The original defined it but did not enable it; neither do our recipes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from segr1.answer import SegPrompt, parse_answer
from segr1.geometry import to_image_frame

logger = logging.getLogger(__name__)

REWARD_NAMES = ("format", "format_points", "segmentation", "length")
S_MEASURE_MODES = ("true", "area_penalty")  # SegmentationReward(s_measure=...): "area_penalty" is an ablation
MASK_THRESHOLD = (
    128  # 8-bit GT maps: foreground is > 128 (PySODMetrics); bool and 0/1 masks are used as they are
)


def completion_text(completion: Any) -> str:
    """The text of one completion as TRL passes it.

    Accepts a str (standard format), a list of messages ``[{"role": "assistant", "content": ...}]``
    (conversational format; the assistant turns are joined) whose content is a str or a list of
    ``{"type": "text", "text": ...}`` blocks, or a single message dict. Anything else gives "".
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    parts: list[str] = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, (list, tuple)):
            parts.extend(
                str(block.get("text") or "")
                for block in content
                if isinstance(block, dict) and block.get("type", "text") == "text"
            )
    return "".join(parts)


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion whose answer has a think block and a valid box, points and labels, else 0.0."""
    return [1.0 if parse_answer(completion_text(c)).validity.is_complete() else 0.0 for c in completions]


format_reward.__name__ = "format"


def points_format_reward(
    completions: Sequence[Any], *, require_think: bool = True, **kwargs: Any
) -> list[float]:
    """The pre-RL (points-only) format reward: 1.0 when think, points and labels are valid (no box needed).

    ``require_think=False``: points and labels alone, as the Seg-R1 release's pre-RL format reward (its pre-RL
    prompt, the seg-r1 style's, asks for no ``<think>`` block)."""
    rewards = []
    for c in completions:
        v = parse_answer(completion_text(c)).validity
        ok = v.is_complete(points_only=True) if require_think else (v.points and v.labels)
        rewards.append(1.0 if ok else 0.0)
    return rewards


points_format_reward.__name__ = "format_points"


def length_reward(
    completions: Sequence[Any], *, ideal_points: int = 8, sigma: float = 2.0, **kwargs: Any
) -> list[float]:
    """Seg-R1's point-count shaping: ``exp(-(n - ideal_points)^2 / (2 sigma^2))`` for ``n >= 1`` parsed points,
    0.0 when the completion has no valid points. Off in every recipe (as in the original)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    rewards = []
    for c in completions:
        prompt = parse_answer(completion_text(c))
        n = prompt.points.shape[0] if prompt.validity.points else 0
        rewards.append(math.exp(-((n - ideal_points) ** 2) / (2.0 * sigma**2)) if n > 0 else 0.0)
    return rewards


length_reward.__name__ = "length"


def decode_mask(value: Any) -> np.ndarray:
    """Ground truth as an (H, W) bool mask from what a dataset column holds.

    Accepts a file path (read with `segr1.data.io.read_mask`: first channel ``> 128``), PNG/JPEG bytes, a
    ``{"bytes": ..., "path": ...}`` dict (a 🤗 datasets ``Image`` cell), a PIL image, or an array. Bool arrays
    and arrays whose values are all in {0, 1} are used as they are (never thresholded at 128); other 8-bit maps
    are foreground where ``> 128``. Raises ValueError/OSError on anything unreadable.
    """
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (str, os.PathLike)):
        from segr1.data.io import read_mask

        return read_mask(value, threshold=MASK_THRESHOLD)
    if isinstance(value, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(value))) as im:
            im.load()
            value = im.copy()
    if isinstance(value, Image.Image):
        if value.mode == "1":
            return np.asarray(value, dtype=bool).copy()
        value = np.asarray(value if value.mode in ("L", "RGB", "RGBA", "LA") else value.convert("L"))
    if not isinstance(value, np.ndarray):
        raise ValueError(f"cannot read a ground-truth mask from a {type(value).__name__}")
    arr = value
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"ground-truth mask must have shape (H, W); got {value.shape}")
    if arr.dtype == bool:
        return arr
    if float(np.nanmax(arr)) <= 1.0 and float(np.nanmin(arr)) >= 0.0:
        return arr >= 0.5 if np.issubdtype(arr.dtype, np.floating) else arr > 0
    return arr > MASK_THRESHOLD


def _image_array(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image, an array or a path."""
    if isinstance(image, (str, os.PathLike)):
        from segr1.data.io import read_image

        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB; got {arr.dtype} {arr.shape}")
    return arr[:, :, :3]


def _digest(arr: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.digest()


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a bool (h, w) mask to ``shape`` (H, W) with nearest-neighbour sampling."""
    if mask.shape == shape:
        return mask
    h, w = mask.shape
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h / shape[0], h - 1).astype(np.intp)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w / shape[1], w - 1).astype(np.intp)
    return mask[rows[:, None], cols[None, :]]


class SegmentationReward:
    """``iou_weight * IoU + s_weight * S-measure`` of the segmenter's mask against the ground truth.

    Built once around a `segr1.segmenters.Segmenter`, or a spec for `segr1.segmenters.load_segmenter`
    (with ``device``/``dtype``) that is loaded on first use, once. Per call it:

    1. parses every completion (model frame, a ``frame x frame`` square) into a `SegPrompt`; with
       ``points_only`` (pre-RL) boxes are ignored;
    2. groups completions by image (identical pixels -> one group, whatever the Python object);
    3. maps each group's prompts to the image frame with `segr1.geometry.to_image_frame` using that image's
       (W, H), and calls ``segmenter.segment(image, prompts)`` ONCE per distinct image;
    4. scores each mask against its completion's own ground truth (``mask_column``; a path, PNG bytes, a PIL
       image or an array, see `decode_mask`). A prediction at another resolution than the ground truth is
       resized (nearest) to the ground truth's, so scores are always taken against the real binary mask.

    Release-protocol options (`segr1.protocol`): ``requires_complete`` scores 0.0 unless the box, points and
    labels all parse (with ``points_only``: points and labels), as the release's reward did; ``s_measure=
    "area_penalty"`` is an ABLATION that replaces the S-measure term by ``1 - mean(prediction)``, what the
    release's reward computed by thresholding its 0/1 ground truth at 128 again (an all-background target).

    An unparsable or empty answer scores 0.0; a segmenter or ground-truth failure scores the affected
    completions 0.0 and is counted (``last_stats["errors"]``), never raised. After each call ``last_stats``
    holds the batch means (``mask_iou``, ``s_measure``, ``empty``) and ``last_mean_iou`` the mean IoU
    (empty answers count as IoU 0); when TRL passes ``log_metric`` they are logged as
    ``<name>/mask_iou`` etc. ``num_workers > 1`` segments distinct images in a thread pool (segmenters are
    thread-safe).
    """

    def __init__(
        self,
        segmenter: Any = "grabcut",
        *,
        frame: int = 768,
        iou_weight: float = 0.7,
        s_weight: float = 0.3,
        points_only: bool = False,
        mask_column: str = "mask",
        num_workers: int = 1,
        name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        requires_complete: bool = False,
        s_measure: str = "true",
        single_point_multimask: bool = True,
    ) -> None:
        if s_measure not in S_MEASURE_MODES:
            raise ValueError(f"s_measure must be one of {S_MEASURE_MODES}; got {s_measure!r}")
        if not isinstance(frame, int) or frame <= 0:
            raise ValueError(f"frame must be a positive int (the model frame side, e.g. 768); got {frame!r}")
        if iou_weight < 0 or s_weight < 0 or iou_weight + s_weight <= 0:
            raise ValueError(
                f"iou_weight and s_weight must be >= 0 with a positive sum; got {iou_weight}, {s_weight}"
            )
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1; got {num_workers}")
        self._segmenter = segmenter
        self._segmenter_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        if not single_point_multimask:
            self._segmenter_kwargs["single_point_multimask"] = False
        self.requires_complete = requires_complete
        self.s_measure = s_measure
        self.frame = frame
        self.iou_weight = float(iou_weight)
        self.s_weight = float(s_weight)
        self.points_only = points_only
        self.mask_column = mask_column
        self.num_workers = num_workers
        self.__name__ = name or ("segmentation_points" if points_only else "segmentation")
        self.last_stats: dict[str, float] = {}
        self.last_mean_iou: float | None = None
        self.segment_calls = 0  # total segmenter calls made (one per distinct image per batch)
        self._last_calls = 0
        self._load_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_load_lock"]  # locks do not pickle; the copy gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    @property
    def segmenter(self) -> Any:
        """The segmenter, loaded from its spec on first use."""
        with self._load_lock:
            if isinstance(self._segmenter, str):
                from segr1.segmenters import load_segmenter

                logger.info("loading segmenter %r for %s", self._segmenter, self.__name__)
                self._segmenter = load_segmenter(self._segmenter, **self._segmenter_kwargs)
        return self._segmenter

    def __repr__(self) -> str:
        return (
            f"SegmentationReward(name={self.__name__!r}, frame={self.frame}, iou_weight={self.iou_weight}, "
            f"s_weight={self.s_weight}, points_only={self.points_only})"
        )

    def _parse(self, completion: Any) -> SegPrompt:
        prompt = parse_answer(completion_text(completion))
        if self.requires_complete:
            v = prompt.validity
            if not (v.points and v.labels and (self.points_only or v.bbox)):
                return SegPrompt(validity=v)  # scores 0, as an empty answer
        if self.points_only and prompt.boxes.shape[0]:
            prompt = replace(prompt, boxes=np.zeros((0, 4)))
        return prompt

    def _segment_group(self, image: np.ndarray, prompts: list[SegPrompt]) -> list[np.ndarray] | None:
        h, w = image.shape[:2]
        try:
            in_image = [to_image_frame(p, (w, h), self.frame) for p in prompts]
            masks = self.segmenter.segment(image, in_image)
            if len(masks) != len(prompts):
                raise ValueError(f"segmenter returned {len(masks)} masks for {len(prompts)} prompt sets")
            return [np.asarray(m, dtype=bool) for m in masks]
        except Exception:  # a reward must never stop training; the failure is logged and counted
            logger.exception(
                "segmenter failed on a %dx%d image; scoring %d completions 0", w, h, len(prompts)
            )
            return None

    def _columns(self, n: int, kwargs: dict[str, Any]) -> tuple[Sequence[Any], Sequence[Any]]:
        images, gts = kwargs.get("image"), kwargs.get(self.mask_column)
        if images is None or gts is None or len(images) != n or len(gts) != n:
            raise ValueError(
                f"{self.__name__} needs dataset columns 'image' and {self.mask_column!r} with one entry per "
                f"completion; got image={None if images is None else len(images)}, "
                f"{self.mask_column}={None if gts is None else len(gts)} for {n} completions"
            )
        return images, gts

    def _segment_all(
        self, images: Sequence[Any], prompts: list[SegPrompt]
    ) -> tuple[dict[int, np.ndarray], int]:
        """Masks of the non-empty prompts, by completion index, with one segmenter call per distinct image;
        and the number of completions that could not be segmented."""
        groups: dict[bytes, tuple[np.ndarray, list[int]]] = {}
        by_object: dict[int, bytes] = {}  # fast path: the same Python object is the same image
        errors = 0
        for i, prompt in enumerate(prompts):
            if prompt.is_empty:
                continue
            try:
                key = by_object.get(id(images[i]))
                if key is None:
                    arr = _image_array(images[i])
                    key = by_object[id(images[i])] = _digest(arr)
                    groups.setdefault(key, (arr, []))
                groups[key][1].append(i)
            except Exception:  # a reward must never stop training
                logger.exception("unreadable image for completion %d; scoring it 0", i)
                errors += 1
        jobs = list(groups.values())

        def run(job: tuple[np.ndarray, list[int]]) -> list[np.ndarray] | None:
            return self._segment_group(job[0], [prompts[i] for i in job[1]])

        if self.num_workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(jobs))) as pool:
                results = list(pool.map(run, jobs))
        else:
            results = [run(job) for job in jobs]
        self.segment_calls += len(jobs)
        self._last_calls = len(jobs)
        masks: dict[int, np.ndarray] = {}
        for (_, idx), got in zip(jobs, results, strict=True):
            if got is None:
                errors += len(idx)
            else:
                masks.update(zip(idx, got, strict=True))
        return masks, errors

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """One reward per completion (see the class docstring); ``image`` and the mask column come from the
        dataset, ``log_metric`` from TRL."""
        from segr1.metrics import iou as mask_iou
        from segr1.metrics import s_measure

        n = len(completions)
        images, gts = self._columns(n, kwargs)
        prompts = [self._parse(c) for c in completions]
        masks, errors = self._segment_all(images, prompts)
        rewards, ious, sms = [0.0] * n, [0.0] * n, [0.0] * n
        gt_cache: dict[Any, np.ndarray] = {}
        for i, pred in sorted(masks.items()):
            try:
                key = gts[i] if isinstance(gts[i], (str, bytes)) else id(gts[i])
                if key not in gt_cache:
                    gt_cache[key] = decode_mask(gts[i])
                gt = gt_cache[key]
                pred = _resize_nearest(pred, gt.shape)
                ious[i] = float(mask_iou(pred, gt))
                if self.s_measure == "area_penalty":  # ABLATION: the release's S-measure on a 0/1 GT > 128
                    sms[i] = 1.0 - float(pred.mean())
                else:
                    sms[i] = min(1.0, max(0.0, float(s_measure(pred, gt))))
                rewards[i] = self.iou_weight * ious[i] + self.s_weight * sms[i]
            except Exception:  # a broken ground truth must not stop training either
                logger.exception("could not score completion %d against its ground truth; scoring it 0", i)
                errors += 1
                ious[i] = sms[i] = rewards[i] = 0.0

        self.last_mean_iou = float(np.mean(ious)) if n else None
        self.last_stats = {
            "mask_iou": self.last_mean_iou or 0.0,
            "s_measure": float(np.mean(sms)) if n else 0.0,
            "empty": float(np.mean([p.is_empty for p in prompts])) if n else 0.0,
            "errors": float(errors),
            "segment_calls": float(self._last_calls),
        }
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is not None and n:
            for key in ("mask_iou", "s_measure", "empty"):
                log_metric(f"{self.__name__}/{key}", self.last_stats[key])
        return rewards
