"""Convert `Sample` records into the conversational vision datasets TRL's trainers take.

GRPO (`to_grpo_dataset`) rows, as the trainer and the rewards see them::

    {"prompt": [<system turn>?, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}],
     "image": PIL.Image (frame x frame RGB, the model frame),
     "mask": str path | bytes (PNG) -- the ground truth at its own (image-frame) resolution,
     "id": str, "task": str, "text": str | None,
     # only when some sample has per-instance ground truth in its meta (`segr1.gt_columns`), else absent:
     "boxes": str | None (JSON (N, 4), image frame), "points": str | None (JSON (N, 2) or (N, K, 2)),
     "instances": str path | bytes (PNG) | None -- the instance map}

SFT (`to_sft_dataset`) rows have ``prompt``, ``image``, ``id`` and ``completion`` = ``[{"role": "assistant",
"content": <target>}]``, the target rendered by `segr1.answer.format_answer` from the ground-truth mask in the
model frame: the mask's tight box (`segr1.geometry.mask_to_box`), ``n_pos`` foreground and ``n_neg`` background
points (`segr1.geometry.sample_points`; background points inside the box when there is one, so they survive the
segmenter's point-to-box assignment) and a short think text describing where the object is.

A sample with per-instance ground truth (``meta["instances"]``) or a format other than Seg-R1's tags
(``answer_format``) gets one object per instance in its target instead, written in that format
(`segr1.data.sft_objects.object_target`).

The prompt is built by a prompt style (`segr1.styles`; ``segr1`` unless told otherwise): its ``train`` stage
texts for GRPO, its ``sft`` stage texts and message order for SFT. Its image block is left as an empty
``{"type": "image"}`` placeholder because TRL fills placeholders from the ``image`` column (a block that already
holds an image would not be counted and TRL would refuse the row).

Samples that carry a ready SFT target (``meta["target"]``, e.g. FCoT rows from `segr1.data.fcot`) need no mask:
their completion is that target, their user text is the sample's text verbatim, their system turn the sample's
own (``meta["system"]``) when it has one (with ``system="default"``), and their image is used at its stored size
(the target's coordinates refer to it), as the release's SFT did.

Storage is a flat Arrow table of paths (or PNG bytes for in-memory arrays); images are read and resized to the
frame lazily, when a row is indexed, by a ``with_transform`` formatter, so a 10 000-image training set costs no
preprocessing and no disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from segr1.answer import SegPrompt, format_answer
from segr1.data.records import Sample
from segr1.geometry import mask_to_box, resize_to_frame, sample_points
from segr1.styles import TASKS, get_style
from segr1.train.grounding import CELLS_COLUMN

logger = logging.getLogger(__name__)

THINK_MODES = ("describe", "none")
_COLUMNS = ("id", "image_path", "image_png", "mask_path", "mask_png", "text", "task", "target", "row_system",
            "boxes", "points", "instances_path", "instances_png")  # fmt: skip
#: GRPO columns the box / point rewards read (`segr1.gt_columns`), from ``Sample.meta``.
GT_META_COLUMNS = ("boxes", "points", "instances")


def _png_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _target_of(sample: Sample) -> tuple[str | None, str | None]:
    """A sample's ready SFT target and its own system turn (``meta["target"]``, ``meta["system"]``), if any."""
    meta = sample.meta if isinstance(sample.meta, dict) else {}
    target, system = meta.get("target"), meta.get("system")
    return (target if isinstance(target, str) else None), (system if isinstance(system, str) else None)


def _raw_rows(
    samples: Iterable[Sample], *, need_mask: bool, allow_targets: bool = False
) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    skipped = 0
    for s in samples:
        target, row_system = _target_of(s) if allow_targets else (None, None)
        if need_mask and s.mask is None and target is None:
            skipped += 1
            continue
        rows["id"].append(str(s.id))
        is_array = isinstance(s.image, np.ndarray)
        rows["image_path"].append(None if is_array else str(s.image))
        rows["image_png"].append(_png_bytes(s.image) if is_array else None)
        mask_is_array = isinstance(s.mask, np.ndarray)
        rows["mask_path"].append(None if s.mask is None or mask_is_array else str(s.mask))
        rows["mask_png"].append(_png_bytes(np.asarray(s.mask, dtype=bool)) if mask_is_array else None)
        rows["text"].append(s.text)
        rows["task"].append(s.task)
        rows["target"].append(target)
        rows["row_system"].append(row_system)
        meta = s.meta if isinstance(s.meta, dict) else {}
        for key in ("boxes", "points"):
            rows[key].append(_json_or_none(meta.get(key), f"sample {s.id!r}: meta.{key}"))
        instances = meta.get("instances")
        inst_is_array = isinstance(instances, np.ndarray)
        rows["instances_path"].append(str(instances) if isinstance(instances, (str, os.PathLike)) else None)
        rows["instances_png"].append(_png_bytes(instances.astype(np.uint8)) if inst_is_array else None)
    if skipped:
        what = (
            "a ground-truth mask or an SFT target"
            if allow_targets
            else "a ground-truth mask (training needs one)"
        )
        logger.warning("left out %d samples without %s", skipped, what)
    if not rows["id"]:
        raise ValueError("no usable samples: every sample lacks a ground-truth mask, or none were given")
    return rows


def _json_or_none(value: Any, what: str) -> str | None:
    """A meta array (list / array / JSON string) as a JSON string for the Arrow table, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(np.asarray(value, dtype=np.float64).tolist())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers; got {value!r:.200}") from exc


def _read_mask(path: str | None, png: bytes | None) -> np.ndarray:
    """(H, W) bool ground truth from a mask file (8-bit first channel > 128) or the PNG bytes we wrote."""
    from segr1.data.io import read_mask

    if path is not None:
        return read_mask(path)
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("L")) > 128


def describe_mask(mask: np.ndarray) -> str:
    """A short think text for a (H, W) bool mask: size and position, e.g. ``"a small object at the top left"``."""
    box = mask_to_box(mask)
    if box is None:
        return "no object is visible"
    h, w = mask.shape
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    area = float(mask.mean())
    size = "small" if area < 0.05 else "large" if area > 0.3 else "medium"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    where = " ".join(p for p in (row, col) if p) or "center"
    return f"a {size} object at the {where}" if where != "center" else f"a {size} object in the center"


SFT_POINT_MODES = ("random", "interior")

#: ``think`` values of `to_sft_dataset` that list the scene's objects (`scene_think`): with their boxes, with
#: their centres.
SCENE_THINKS = ("scene", "scene-centres")
#: Think text of the samples `scene_think` has no list for (foreground scenes, records without objects).
SCENE_THINK_FALLBACK = "object"
_MAX_SCENE_OBJECTS = 8


def scene_think(meta: Any, frame: int, *, centres: bool = False, target_box: Any = None) -> str | None:
    """The ``scene`` think text of a synthetic scene: each object's colour, shape and box in the model frame, in
    reading order (top to bottom by centre, then left to right), e.g.
    ``" red square [150,14,190,54]; green circle [100,120,150,170]"`` (``centres=True``: ``" red square 170,34"``).

    It decomposes a referring answer into steps the embedded miniature can learn: *name* what is where (read
    the image into words, one object at a time), then *match* the phrase's words against that list and copy the
    entry it names into the answer's box. The leading space makes each colour the same token as in the phrase
    ("the green shape" -> ``Ġgreen``). ``meta``: a record's ``meta`` with ``size`` ``[W, H]``, ``objects``
    (``colour``, ``shape``, ``centre``, ``box`` with exclusive ends) and ``target`` (an index), as
    `segr1 data synth` writes. ``target_box``: the box the answer will carry (the target mask's tight box in the
    frame), written as the target's entry so that the copy is exact. None when the record has no such list
    (missing or malformed fields give None too: dataset files are untrusted).
    """
    if not isinstance(meta, dict):
        return None
    size, objects, target = meta.get("size"), meta.get("objects"), meta.get("target")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and isinstance(objects, list) and objects):
        return None
    try:
        w, h = float(size[0]), float(size[1])
        if not (w > 0 and h > 0):
            return None
        sx, sy = frame / w, frame / h
        entries = []
        for k, obj in enumerate(objects[:_MAX_SCENE_OBJECTS]):
            colour, shape, (cx, cy) = str(obj["colour"]), str(obj["shape"]), obj["centre"]
            if not (colour.isalpha() and shape.isalpha()):
                return None
            x, y = (min(max(round(float(v) * f), 0), frame - 1) for v, f in ((cx, sx), (cy, sy)))
            if centres:
                where = f"{x},{y}"
            else:
                if k == target and target_box is not None:
                    box = [round(float(v)) for v in target_box]
                else:
                    x1, y1, x2, y2 = (float(v) for v in obj["box"])
                    box = [round(x1 * sx), round(y1 * sy), round(x2 * sx) - 1, round(y2 * sy) - 1]
                where = "[" + ",".join(str(min(max(v, 0), frame - 1)) for v in box) + "]"
            entries.append((y, x, f"{colour} {shape} {where}"))
    except (KeyError, TypeError, ValueError):
        return None
    return " " + "; ".join(text for _, _, text in sorted(entries))


def sft_target(
    mask: np.ndarray,
    *,
    frame: int,
    rng: np.random.Generator | int | None = None,
    n_pos: int = 2,
    n_neg: int = 1,
    points_only: bool = False,
    think: str = "describe",
    point_mode: str = "random",
) -> str:
    """The SFT answer for a ground-truth (H, W) bool mask (image frame), in the ``frame x frame`` model frame.

    The mask is resized to the frame (nearest); the answer has its tight box (unless ``points_only``),
    ``n_pos`` points inside and ``n_neg`` outside it (inside the box when there is one), integer pixels, and a
    think block: ``think="describe"`` -> `describe_mask`, ``"none"`` -> an empty block, any other string is used
    verbatim. An empty mask gives a think block only. ``point_mode="interior"``: the first positive point is
    the mask pixel farthest from its boundary (`segr1.geometry.interior_point`), a deterministic target inside
    the object; the others are sampled as with ``"random"``.
    """
    if point_mode not in SFT_POINT_MODES:
        raise ValueError(f"point_mode must be one of {SFT_POINT_MODES}; got {point_mode!r}")
    small = resize_to_frame(np.asarray(mask, dtype=bool), frame)
    if not small.any() and np.asarray(mask).any():  # object thinner than a frame pixel: keep it visible
        ys, xs = np.nonzero(mask)
        small[(ys * frame // mask.shape[0]), (xs * frame // mask.shape[1])] = True
    box = None if points_only else mask_to_box(small)
    points, labels = sample_points(small, n_pos, n_neg, rng, margin=0.1 if box is None else 0.0)
    if point_mode == "interior" and n_pos > 0 and labels.size and labels[0] == 1:
        from segr1.geometry import interior_point

        points[0] = interior_point(small)
    prompt = SegPrompt(
        boxes=np.zeros((0, 4)) if box is None else box[None, :],
        points=np.round(points),
        labels=labels,
    )
    text = describe_mask(small) if think == "describe" else "" if think == "none" else think
    return format_answer(prompt, think=text)


class _Rows:
    """``with_transform`` formatter: Arrow columns -> trainer rows (picklable; small LRU of decoded images)."""

    def __init__(
        self,
        *,
        task: str | None,
        frame: int | None,
        system: str | None,
        sft: dict[str, Any] | None,
        cache_size: int,
        style: str = "segr1",
        protocol: Any = None,
        answer_format: str | None = None,
        gt_columns: bool = False,
        grounding_tasks: frozenset[str] | None = None,
    ) -> None:
        from segr1.formats import format_for

        self.task = task
        self.frame = frame
        self.system = system
        self.sft = sft
        self.cache_size = cache_size
        self.style_name = get_style(style).name
        self.format_name = format_for(None, answer_format, get_style(style)).name
        self.protocol = protocol
        self.gt_columns = gt_columns
        self.grounding_tasks = grounding_tasks
        self._cache: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()

    @property
    def style(self) -> Any:
        return get_style(self.style_name)

    @property
    def answer_format(self) -> Any:
        from segr1.formats import get_format

        return get_format(self.format_name)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def _frame_for(self, task: str) -> int:
        return self.frame if self.frame is not None else self.style.frame(task, "train")

    def _image(self, key: str, path: str | None, png: bytes | None, frame: int | None) -> Image.Image:
        """The row's image squashed to ``frame`` (`segr1.protocol.model_image`), or as stored when None."""
        cached = self._cache.get((key, frame or 0))
        if cached is not None:
            self._cache.move_to_end((key, frame or 0))
            return cached
        if path is not None:
            from segr1.data.io import read_image

            arr = read_image(path)
        else:
            with Image.open(io.BytesIO(png)) as im:
                arr = np.asarray(im.convert("RGB"))
        if frame is None:
            image = Image.fromarray(arr)
        else:
            from segr1.protocol import for_style, get_protocol, model_image

            image = model_image(arr, frame, for_style(get_protocol(self.protocol, "train"), self.style))
        self._cache[(key, frame or 0)] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image

    def _system(self, task: str, stage: str, user: str, row_system: str | None = None) -> str | None:
        if self.system != "default":
            return self.system
        return row_system if row_system is not None else self.style.system(task, stage, user)

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"prompt": [], "image": [], "id": [], "task": []}
        if self.sft is None:
            out.update(mask=[], text=[])
            if self.gt_columns:
                out.update({key: [] for key in GT_META_COLUMNS})
        else:
            out["completion"] = []
            if self.grounding_tasks is not None:
                out[CELLS_COLUMN] = []
        stage = "train" if self.sft is None else "sft"
        style = self.style
        for i, sid in enumerate(batch["id"]):
            task = self.task or batch["task"][i]
            target = batch["target"][i] if self.sft is not None else None
            frame = None if target is not None else self._frame_for(task)  # targets: the image as stored
            image_key = batch["image_path"][i] or f"png:{_stable_hash(batch['image_png'][i])}"
            image = self._image(image_key, batch["image_path"][i], batch["image_png"][i], frame)
            if target is not None:
                user = batch["text"][i] or ""  # the record's own instruction, verbatim
            else:
                user = style.user(task, batch["text"][i], frame=frame, stage=stage)
            system = self._system(task, stage, user, batch["row_system"][i] if target is not None else None)
            out["prompt"].append(style.messages(None, user, system, stage=stage))  # image placeholder for TRL
            out["image"].append(image)
            out["id"].append(sid)
            out["task"].append(task)
            mask = batch["mask_path"][i] if batch["mask_path"][i] is not None else batch["mask_png"][i]
            instances = batch["instances_path"][i] or batch["instances_png"][i]
            if self.sft is None:
                out["mask"].append(mask)
                out["text"].append(batch["text"][i])
                if self.gt_columns:
                    out["boxes"].append(batch["boxes"][i])
                    out["points"].append(batch["points"][i])
                    out["instances"].append(instances)
            elif target is not None:
                out["completion"].append([{"role": "assistant", "content": target}])
                if self.grounding_tasks is not None:
                    out[CELLS_COLUMN].append(None)  # a ready target: no mask in the frame to point at
            else:
                mask = _read_mask(batch["mask_path"][i], batch["mask_png"][i])
                target = self._sft_target(batch, i, sid, task, frame, instances, mask)
                out["completion"].append([{"role": "assistant", "content": target}])
                if self.grounding_tasks is not None:
                    out[CELLS_COLUMN].append(self._cells(mask, task, frame))
        return out

    def _cells(self, mask: np.ndarray, task: str, frame: int) -> list[float]:
        """The target mask's share of each image-token cell (`segr1.train.grounding.cell_targets`); all zero
        for a task the grounding terms leave out."""
        from segr1.train.grounding import cell_targets

        assert self.grounding_tasks is not None
        cells = cell_targets(mask, frame)
        return (cells if not self.grounding_tasks or task in self.grounding_tasks else 0 * cells).tolist()

    def _sft_target(
        self,
        batch: dict[str, list[Any]],
        i: int,
        sid: str,
        task: str,
        frame: int,
        instances: Any,
        mask: np.ndarray,
    ) -> str:
        """Seg-R1's union-mask target (`sft_target`) for a tags format without instance ground truth, else one
        object per instance in the answer format (`segr1.data.sft_objects.object_target`). ``mask``: the row's
        mask, read once by the caller."""
        from segr1.formats import DEFAULT_FORMAT

        assert self.sft is not None
        rng = np.random.default_rng([self.sft["seed"], _stable_hash(sid)])
        think = self.sft["think"]
        if think in SCENE_THINKS:  # the scene's list, its target entry written with the answer's own box
            scene = json.loads(batch["scene"][i]) if batch["scene"][i] else None
            small = resize_to_frame(np.asarray(mask, dtype=bool), frame)
            listed = scene_think(
                scene, frame, centres=think == "scene-centres", target_box=mask_to_box(small)
            )
            think = listed or SCENE_THINK_FALLBACK
        if self.format_name == DEFAULT_FORMAT and instances is None:
            return sft_target(mask, frame=frame, rng=rng, n_pos=self.sft["n_pos"], n_neg=self.sft["n_neg"],
                              points_only=task == "prerl", think=think,
                              point_mode=self.sft.get("point_mode", "random"))  # fmt: skip
        from segr1.data.sft_objects import object_target

        if instances is not None:
            from segr1.instances import decode_instance_map, instance_masks

            masks = instance_masks(decode_instance_map(instances))[1]
        else:
            masks = [mask] if mask.any() else []
        return object_target(masks, self.answer_format, frame=frame, rng=rng, n_pos=self.sft["n_pos"],
                             n_neg=self.sft["n_neg"], think=think)  # fmt: skip


def _stable_hash(data: str | bytes) -> int:
    raw = data.encode() if isinstance(data, str) else data
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _check(task: str | None, frame: int | None, system: str | None) -> None:
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if frame is not None and (not isinstance(frame, int) or frame <= 0):
        raise ValueError(
            f"frame must be a positive int (e.g. 768) or None for the task default; got {frame!r}"
        )
    if system is not None and not isinstance(system, str):
        raise TypeError(
            f"system must be 'default', a system prompt text, or None; got {type(system).__name__}"
        )


def to_grpo_dataset(
    samples: Iterable[Sample],
    *,
    task: str | None = None,
    frame: int | None = None,
    system: str | None = "default",
    cache_size: int = 64,
    style: str = "segr1",
    protocol: Any = None,
    answer_format: str | None = None,
):
    """A 🤗 ``datasets.Dataset`` of GRPO rows (see the module docstring) for TRL's ``GRPOTrainer``.

    ``task`` overrides each sample's task (e.g. ``"prerl"`` for the points-only stage); ``frame`` is the model
    frame side (default: the style's training frame for the task) -- the reward must use the same. ``system``:
    ``"default"`` -> the style's training system turn, None -> no system turn, other text -> that text.
    ``style``: the prompt style of the texts (`segr1.styles`); ``protocol``: its image switches
    (`segr1.protocol.model_image`, ``train`` stage). Samples without a mask are left out (counted in a
    warning). The ``mask`` column holds the path (or PNG bytes) of the ground truth at its original
    resolution; `segr1.rewards.decode_mask` reads it. When some sample's meta has ``boxes``, ``points`` or
    ``instances`` (the synthetic multi-object scenes), rows also carry those columns (None where a sample has
    none) for the box / point rewards. ``answer_format`` is recorded for symmetry with `to_sft_dataset`.
    """
    import datasets

    _check(task, frame, system)
    raw = _raw_rows(samples, need_mask=True)
    has_gt = any(
        v is not None for key in ("boxes", "points", "instances_path", "instances_png") for v in raw[key]
    )
    table = datasets.Dataset.from_dict(raw)
    rows = _Rows(task=task, frame=frame, system=system, sft=None, cache_size=cache_size, style=style,
                 protocol=protocol, answer_format=answer_format, gt_columns=has_gt)  # fmt: skip
    return table.with_transform(rows)


def to_sft_dataset(
    samples: Iterable[Sample],
    *,
    task: str | None = None,
    frame: int | None = None,
    system: str | None = "default",
    n_pos: int = 2,
    n_neg: int = 1,
    think: str = "describe",
    point_mode: str = "random",
    seed: int = 0,
    cache_size: int = 64,
    style: str = "segr1",
    protocol: Any = None,
    answer_format: str | None = None,
    grounding_tasks: Iterable[str] | None = None,
):
    """A 🤗 ``datasets.Dataset`` of SFT rows (prompt, completion, image) for TRL's ``SFTTrainer``.

    Targets come from `sft_target` (box unless the task is ``prerl``, ``n_pos``/``n_neg`` points, ``think``
    mode); the points of a row are drawn from a generator seeded by ``(seed, hash(id))``, so a row's target is
    the same on every epoch, process and resume. Samples with a ready target (FCoT) use it instead (module
    docstring). The prompt uses the style's ``sft`` stage (the seg-r1 style puts the text before the image, as
    the release's SFT). ``answer_format``: the format of the targets (default: the style's); samples with
    instance ground truth, or a format other than Seg-R1's tags, get one object per instance (module
    docstring). ``grounding_tasks``: when given, rows also carry ``grounding_cells``, the target mask's share of
    each image-token cell for the grounding terms of `segr1.train.grounding` (an empty collection: every task;
    rows of other tasks get zeros, rows with a ready target None). Other arguments as in `to_grpo_dataset`.
    """
    import datasets

    _check(task, frame, system)
    if n_pos < 0 or n_neg < 0 or n_pos + n_neg == 0:
        raise ValueError(f"n_pos and n_neg must be >= 0 with at least one point; got {n_pos}, {n_neg}")
    if not isinstance(think, str):
        raise TypeError(f"think must be 'describe', 'none' or a literal text; got {type(think).__name__}")
    samples = list(samples)
    raw = _raw_rows(samples, need_mask=True, allow_targets=True)
    if think in SCENE_THINKS:  # the object lists of text-task records, for `scene_think` (module docstring)
        from segr1.styles import TEXT_TASKS

        raw["scene"] = [
            json.dumps({key: s.meta.get(key) for key in ("size", "objects", "target")}, default=str)
            if isinstance(s.meta, dict) and (task or s.task) in TEXT_TASKS and s.meta.get("objects")
            else None
            for s in samples
        ]
    table = datasets.Dataset.from_dict(raw)
    if point_mode not in SFT_POINT_MODES:
        raise ValueError(f"point_mode must be one of {SFT_POINT_MODES}; got {point_mode!r}")
    sft = {"n_pos": n_pos, "n_neg": n_neg, "think": think, "seed": seed, "point_mode": point_mode}
    rows = _Rows(task=task, frame=frame, system=system, sft=sft, cache_size=cache_size, style=style,
                 protocol=protocol, answer_format=answer_format,
                 grounding_tasks=None if grounding_tasks is None else frozenset(grounding_tasks))  # fmt: skip
    return table.with_transform(rows)
