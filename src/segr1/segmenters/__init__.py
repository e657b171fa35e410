"""Promptable segmenters: ONE image + MANY prompt sets (boxes, labelled points) -> one mask per prompt set.

Backends (`load_segmenter` spec):

* ``grabcut`` — OpenCV GrabCut seeded by the prompts; CPU, no weights (`segr1.segmenters.grabcut`).
* ``sam2-hf`` / ``sam2-hf:<hub id|local folder>`` — SAM2 via transformers, default
  ``facebook/sam2.1-hiera-large`` (`segr1.segmenters.sam2_hf`).
* ``sam2:<config>@<checkpoint>`` — the official SAM2 package, optional extra ``segr1[sam2]``
  (`segr1.segmenters.sam2_official`).

Every backend follows Seg-R1's rule for a prompt set: one sub-prompt per box holding the points inside it (points
alone when there is no box; `segr1.geometry.split_by_box`), and the mask is the union of the sub-prompt masks.
Heavy packages are imported only when their backend is built; nothing is cached globally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from segr1.answer import SegPrompt

__all__ = ["SPEC_HELP", "Segmenter", "load_segmenter"]

SPEC_HELP = (
    "'grabcut', 'sam2-hf' (= sam2-hf:facebook/sam2.1-hiera-large), 'sam2-hf:<hub id|local folder>', "
    "'sam2:<config>@<checkpoint>'"
)


@runtime_checkable
class Segmenter(Protocol):
    """A promptable segmenter.

    ``segment(image, prompts)`` takes ONE image (PIL or (H, W, 3) uint8 RGB) and MANY prompt sets in the IMAGE
    frame (`SegPrompt`: boxes (N, 4) xyxy, points (M, 2) xy, labels (M,) 1 = foreground) and returns one (H, W)
    bool mask per prompt set at the image's size: the union of its per-box masks, all False for an empty prompt
    set. The image is embedded once per call; calls are safe from several threads.
    """

    name: str

    def segment(self, image: np.ndarray | Image.Image, prompts: Sequence[SegPrompt]) -> list[np.ndarray]: ...


def load_segmenter(
    spec: str = "grabcut",
    device: str | None = None,
    dtype: str | None = None,
    *,
    single_point_multimask: bool = True,
) -> Segmenter:
    """Build a segmenter from a spec string (see `SPEC_HELP`).

    Args:
        spec: ``grabcut``, ``sam2-hf``, ``sam2-hf:<hub id|local folder>`` or ``sam2:<config>@<checkpoint>``.
        device: torch device for the SAM2 backends ("cuda", "cpu", ...); None = CUDA when available.
            Ignored by ``grabcut``.
        dtype: autocast dtype for the SAM2 backends ("bfloat16", "float16", "float32"); None = bfloat16 on
            CUDA, float32 on CPU. Ignored by ``grabcut``.
        single_point_multimask: SAM2 backends: decode a single point without a box into three masks and keep the
            best (True, default) or into one mask (False, as the Seg-R1 release). Ignored by ``grabcut``.

    Raises:
        ValueError: unknown or malformed spec (the message lists the valid forms).
        ImportError: ``sam2:`` without the official package installed (names ``pip install 'segr1[sam2]'``).
    """
    if not isinstance(spec, str):
        raise ValueError(f"segmenter spec must be a string, one of {SPEC_HELP}; got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    rest = rest.strip()
    if kind == "grabcut" and not rest:
        from segr1.segmenters.grabcut import GrabCutSegmenter

        return GrabCutSegmenter()
    if kind == "sam2-hf":
        from segr1.segmenters.sam2_hf import DEFAULT_MODEL_ID, Sam2HFSegmenter

        return Sam2HFSegmenter(
            rest or DEFAULT_MODEL_ID,
            device=device,
            dtype=dtype,
            single_point_multimask=single_point_multimask,
        )
    if kind == "sam2":
        from segr1.segmenters.sam2_official import Sam2OfficialSegmenter, parse_sam2_spec

        config, checkpoint = parse_sam2_spec(rest)
        return Sam2OfficialSegmenter(
            config, checkpoint, device=device, dtype=dtype, single_point_multimask=single_point_multimask
        )
    raise ValueError(f"unknown segmenter spec {spec!r}; valid specs: {SPEC_HELP}")
