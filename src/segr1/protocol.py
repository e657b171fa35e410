"""Release-protocol switches: every place where segr1 by default runs differently from the Seg-R1 release.

One :class:`Protocol` holds all the switches, each named after what it does and documented (with the row of
``ORIGIN.md`` it answers and the test that proves it) in ``docs/fidelity.md``. Two presets:

* ``segr1`` (the default): segr1's own choices, where the release is wrong or weaker;
* ``seg-r1``: the release's choices for every switch that is not an ``ablation_*`` one. Its model-input
  switches follow the stage: ``eval`` (evaluation, ``segr1 segment``) takes the release's evaluation scripts'
  chain (bicubic squash, JPEG round trip, qwen-vl-utils rounding), ``demo`` its demo's (bilinear squash, JPEG,
  rounding, the typed prompt verbatim) and ``train`` its training scripts' (bilinear squash, nothing else).

The ``ablation_*`` switches reproduce two mistakes of the release (SAM2 fed a channel-swapped squashed image;
an S-measure term that is an area penalty). No preset sets them — ``seg-r1`` does not include them — they are
only ever on when asked for by name, e.g. ``--protocol seg-r1,ablation_bgr_to_sam=true``.

A protocol is given as a spec string: a preset name, optionally followed by ``,switch=value`` overrides
(``--protocol segr1,jpeg_round_trip=true``; booleans as true/false/1/0/yes/no). The prompt style (texts,
frames, budgets) is chosen separately (``--prompt-style``, :mod:`segr1.styles`).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

PRESETS: tuple[str, ...] = ("segr1", "seg-r1")
STAGES: tuple[str, ...] = ("train", "eval", "demo")
QWEN_FACTOR = 28  # Qwen2/2.5-VL: patch 14 x merge 2; what qwen-vl-utils rounds image sides to
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28  # qwen-vl-utils' defaults

_CHOICES: dict[str, tuple[str, ...]] = {
    "labels_mismatch": ("foreground", "drop_points"),
    "reasoning_boxes": ("all", "first"),
    "frame_filter": ("bicubic", "bilinear"),
    "refcoco_sentences": ("all", "one_per_image"),
    "reasonseg_query": ("first", "random"),
    "reasonseg_ignore": ("exclude", "background"),
    "demo_prompt": ("task", "release"),
}


def _switch(default: Any, row: str, help: str) -> Any:
    return field(default=default, metadata={"row": row, "help": help})


@dataclass(frozen=True)
class Protocol:
    """The release-protocol switches (module docstring). ``name``: the preset it came from (with overrides,
    the spec it was parsed from)."""

    name: str = "segr1"
    # --- answer handling
    labels_mismatch: str = _switch(
        "foreground", "5", "points whose labels are missing or of the wrong length: 'foreground' keeps them as "
        "foreground points (segr1), 'drop_points' drops points and labels and keeps the boxes (release)"
    )  # fmt: skip
    reasoning_boxes: str = _switch(
        "all", "6", "reasoning answers: 'all' unites every box, each with the points inside it (segr1); 'first' "
        "keeps the first box with ALL the points (release)"
    )  # fmt: skip
    single_point_multimask: bool = _switch(
        True,
        "13",
        "a single point and no box: decode 3 masks and keep the best (segr1) or one mask (release)",
    )
    sam_fp32: bool = _switch(
        False, "14", "run SAM2 in fp32 (release) instead of bf16 autocast on CUDA (segr1)"
    )
    # --- the reward
    reward_requires_complete: bool = _switch(
        False, "7", "the segmentation reward is 0 unless box, points and labels all parse (pre-RL: points and "
        "labels) (release); segr1 pays for any non-empty prompt"
    )  # fmt: skip
    # --- what the policy sees
    frame_filter: str = _switch(
        "bicubic", "12", "filter of the squash to the model frame: 'bicubic' (segr1; PIL, as the release's eval "
        "scripts) or 'bilinear' (the release's training and demo, torchvision)"
    )  # fmt: skip
    jpeg_round_trip: bool = _switch(
        False, "12", "JPEG-encode (PIL defaults, quality 75) and decode the model-frame image, as the release's "
        "eval scripts and demo did through a base64 data URI"
    )  # fmt: skip
    qwen_vl_utils_rounding: bool = _switch(
        False, "12", "resize the model-frame image (PIL bicubic) to qwen-vl-utils' multiple of 28 (768 -> 756, "
        "1024 -> 1036) before the processor, as the release did, instead of the processor's own resize"
    )  # fmt: skip
    # --- which samples an evaluation scores
    refcoco_sentences: str = _switch(
        "all", "11", "RefCOCO family: 'all' sentences (segr1, LISA's protocol) or 'one_per_image' drawn with "
        "sample_seed (the release drew one, unseeded)"
    )  # fmt: skip
    reasonseg_query: str = _switch(
        "first", "11", "ReasonSeg: the 'first' query of each image (segr1) or a 'random' one drawn with "
        "sample_seed (the release drew one, unseeded)"
    )  # fmt: skip
    reasonseg_ignore: str = _switch(
        "exclude", "11", "ReasonSeg ignore regions: 'exclude' them from the scores (segr1, LISA) or count them "
        "as 'background' (release)"
    )  # fmt: skip
    sample_seed: int = _switch(0, "11", "seed of the draws of refcoco_sentences / reasonseg_query")
    # --- the demo
    demo_prompt: str = _switch(
        "task", "1", "'task': the demo builds each task's instruction; 'release': the release demo's rule (the "
        "typed text verbatim, 'segment'/'mask' switch the system prompt, 1024 frame and budget)"
    )  # fmt: skip
    # --- ablations of the release's mistakes: never in a preset
    ablation_bgr_to_sam: bool = _switch(
        False, "4", "ABLATION: hand SAM2 the image with its channels swapped, the release's cv2.COLOR_BGR2RGB "
        "applied to an RGB image"
    )  # fmt: skip
    ablation_sam_on_model_frame: bool = _switch(
        False, "4", "ABLATION: segment the squashed model-frame image (bilinear) with the model-frame prompt and "
        "resize the mask back bilinearly (> 128), as the release; segr1 segments the original image"
    )  # fmt: skip
    ablation_area_penalty_s_measure: bool = _switch(
        False, "10", "ABLATION: the reward's S-measure term becomes 1 - mean(prediction), what the release's "
        "re-thresholded 0/1 ground truth computed"
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"protocol switch {name} must be one of {choices}; got {getattr(self, name)!r}"
                )
        for f in fields(self):
            if f.type in (bool, "bool") and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"protocol switch {f.name} must be true or false; got {getattr(self, f.name)!r}"
                )
        if not isinstance(self.sample_seed, int) or isinstance(self.sample_seed, bool):
            raise ValueError(f"protocol switch sample_seed must be an int; got {self.sample_seed!r}")

    @property
    def ablations(self) -> tuple[str, ...]:
        """The ``ablation_*`` switches that are on."""
        return tuple(f.name for f in fields(self) if f.name.startswith("ablation_") and getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        """Every switch by name (JSON-serialisable; recorded in eval settings and checkpoints)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


SWITCHES: tuple[str, ...] = tuple(f.name for f in fields(Protocol) if f.name != "name")


def preset(name: str = "segr1", stage: str = "eval") -> Protocol:
    """The preset ``name`` (``segr1`` or ``seg-r1``) for ``stage`` (``train``, ``eval``, ``demo``)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown protocol preset {name!r}; known presets: {', '.join(PRESETS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if key == "segr1":
        return Protocol()
    return Protocol(
        name="seg-r1",
        labels_mismatch="drop_points",
        reasoning_boxes="first",
        single_point_multimask=False,
        sam_fp32=True,
        reward_requires_complete=True,
        frame_filter="bicubic" if stage == "eval" else "bilinear",
        jpeg_round_trip=stage != "train",
        qwen_vl_utils_rounding=stage != "train",
        refcoco_sentences="one_per_image",
        reasonseg_query="random",
        reasonseg_ignore="background",
        demo_prompt="release",
    )


def _value(name: str, raw: str) -> Any:
    kind = next(f.type for f in fields(Protocol) if f.name == name)
    text = raw.strip()
    if kind in (bool, "bool"):
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"protocol switch {name} takes true or false; got {raw!r}")
    if kind in (int, "int"):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"protocol switch {name} takes an int; got {raw!r}") from None
    return text


def get_protocol(spec: str | Protocol | None = None, stage: str = "eval") -> Protocol:
    """A protocol from a spec: None -> the ``segr1`` preset; ``"<preset>[,switch=value...]"``; a
    :class:`Protocol` is returned as is. ValueError names an unknown preset, switch or value."""
    if isinstance(spec, Protocol):
        return spec
    if spec is None or not str(spec).strip():
        return preset("segr1", stage)
    if not isinstance(spec, str):
        raise TypeError(f"protocol must be a spec string or a Protocol; got {type(spec).__name__}")
    head, *overrides = [part.strip() for part in spec.split(",")]
    if "=" in head:  # only overrides: on top of segr1
        head, overrides = "segr1", [head, *overrides]
    protocol = preset(head, stage)
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in SWITCHES:
            raise ValueError(
                f"protocol override {item!r} must be switch=value with a switch among: {', '.join(SWITCHES)}"
            )
        changes[key] = _value(key, raw)
    if changes:
        protocol = replace(protocol, name=spec.strip(), **changes)
    if protocol.ablations:
        logger.warning(
            "protocol %r turns on ablations of the release's mistakes: %s",
            spec,
            ", ".join(protocol.ablations),
        )
    return protocol


# ------------------------------------------------------------------------------ applying the switches


def qwen_rounded(side: int, factor: int = QWEN_FACTOR) -> int:
    """The side qwen-vl-utils' ``smart_resize`` gives a square image of ``side`` pixels (768 -> 756, 1024 ->
    1036, 224 -> 224): the nearest multiple of ``factor``, within its default pixel bounds."""
    rounded = max(factor, round(side / factor) * factor)
    if rounded * rounded > QWEN_MAX_PIXELS:
        rounded = int((QWEN_MAX_PIXELS**0.5) // factor) * factor
    elif rounded * rounded < QWEN_MIN_PIXELS:
        rounded = -(-int(QWEN_MIN_PIXELS**0.5) // factor) * factor
    return rounded


def model_image(rgb: np.ndarray, frame: int, protocol: Protocol | None = None) -> Image.Image:
    """The image the policy sees: the (H, W, 3) uint8 RGB image squashed to ``frame x frame``.

    Default (``segr1``): `segr1.geometry.resize_to_frame` (PIL bicubic). The ``frame_filter``,
    ``jpeg_round_trip`` and ``qwen_vl_utils_rounding`` switches reproduce the release's chain; with rounding
    the returned image is ``qwen_rounded(frame)`` pixels wide while answer coordinates stay in the frame.
    """
    from PIL import Image

    from segr1.geometry import resize_to_frame

    protocol = protocol or Protocol()
    image = Image.fromarray(rgb)
    if protocol.frame_filter == "bicubic":
        out = resize_to_frame(image, frame)
    else:
        out = image.resize((frame, frame), Image.Resampling.BILINEAR)
    if protocol.jpeg_round_trip:
        buf = io.BytesIO()
        out.save(buf, format="JPEG")
        buf.seek(0)
        with Image.open(buf) as decoded:
            out = decoded.convert("RGB")
    if protocol.qwen_vl_utils_rounding:
        side = qwen_rounded(frame)
        if side != frame:
            out = out.resize((side, side), Image.Resampling.BICUBIC)
    return out


def for_style(protocol: Protocol, style: Any) -> Protocol:
    """``protocol`` with the prompt style's own resize filter when the style fixes one (``style.frame_filter``:
    the Seg-Zero / VisionReasoner styles resize with PIL bilinear, as their scripts do, whatever the preset
    says); ``protocol`` itself otherwise."""
    fixed = getattr(style, "frame_filter", None)
    if fixed is None or fixed == protocol.frame_filter:
        return protocol
    if fixed not in _CHOICES["frame_filter"]:
        raise ValueError(
            f"style {getattr(style, 'name', style)!r} asks for an unknown frame filter {fixed!r}"
        )
    return replace(protocol, frame_filter=fixed)


def adjust_prompt(prompt: SegPrompt, task: str, protocol: Protocol | None = None) -> SegPrompt:
    """Apply the answer-handling switches to a parsed prompt (any frame): ``labels_mismatch`` (drop points
    whose labels did not parse) and ``reasoning_boxes`` (first box, all points). Returns ``prompt`` itself when
    nothing changes."""
    protocol = protocol or Protocol()
    if protocol.labels_mismatch == "drop_points" and prompt.points.shape[0] and not prompt.validity.labels:
        prompt = replace(prompt, points=np.zeros((0, 2)), labels=np.zeros((0,), dtype=np.int64))
    if task == "reasoning" and protocol.reasoning_boxes == "first" and prompt.boxes.shape[0]:
        prompt = replace(prompt, boxes=prompt.boxes[:1].copy(), point_assignment="all")
    return prompt


def segmenter_options(protocol: Protocol | None = None) -> dict[str, Any]:
    """``segr1.segmenters.load_segmenter`` keyword arguments the protocol asks for (``dtype``,
    ``single_point_multimask``); ``{}`` for the defaults."""
    protocol = protocol or Protocol()
    options: dict[str, Any] = {}
    if protocol.sam_fp32:
        options["dtype"] = "float32"
    if not protocol.single_point_multimask:
        options["single_point_multimask"] = False
    return options


def describe(protocol: Protocol) -> str:
    """One line for logs: the preset and the switches that differ from ``segr1``."""
    base = Protocol()
    changed = [f"{k}={v}" for k, v in protocol.to_dict().items() if k != "name" and getattr(base, k) != v]
    return f"{protocol.name}" + (f" ({', '.join(changed)})" if changed else "")
