"""A picture grid of held-out cases: one row per family, one cell per case.

Each cell is the scene with the predicted mask tinted (`segr1.overlay.draw_overlay`), the ground truth's
outline in magenta, the predicted boxes (yellow) and points (positive green, negative red) on top, letterboxed
into a ``cell`` x ``cell`` square; under it a strip with the case's IoU and its text (phrase or question), when
it has one. The family's name fills a label column on the left. Pure numpy / OpenCV, RGB uint8.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

GT_COLOR = (255, 0, 255)  # RGB, the ground truth's outline
BACKGROUND = (40, 40, 40)
TEXT_COLOR = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Case:
    """One cell: image (H, W, 3) uint8 RGB, predicted and true (H, W) bool masks, the image-frame prompt."""

    image: np.ndarray
    mask: np.ndarray
    gt: np.ndarray
    prompt: Any = None
    text: str | None = None
    iou: float | None = None


def grid_size(n_rows: int, k: int, *, cell: int = 224, strip: int = 44, label: int = 120) -> tuple[int, int]:
    """(height, width) in pixels of a grid of ``n_rows`` families x ``k`` cases."""
    return n_rows * (cell + strip), label + k * cell


def _letterbox(image: np.ndarray, cell: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = cell / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full((cell, cell, 3), BACKGROUND, dtype=np.uint8)
    y0, x0 = (cell - nh) // 2, (cell - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out


def _put_lines(canvas: np.ndarray, lines: Sequence[str], x: int, y: int, scale: float = 0.38) -> None:
    step = max(10, round(26 * scale + 4))
    for i, line in enumerate(lines):
        ascii_line = line.encode("ascii", "replace").decode("ascii")
        cv2.putText(canvas, ascii_line, (x, y + i * step), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)


def draw_case(case: Case, *, cell: int = 224, strip: int = 44) -> np.ndarray:
    """(cell + strip, cell, 3) uint8 RGB: the case drawn and letterboxed, its IoU and text under it."""
    from segr1.overlay import _line_width, draw_overlay

    image = np.ascontiguousarray(case.image)
    drawn = draw_overlay(image, np.asarray(case.mask, dtype=bool))
    gt = np.asarray(case.gt, dtype=np.uint8)
    contours, _ = cv2.findContours(gt, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(drawn, contours, -1, GT_COLOR, _line_width(*gt.shape), lineType=cv2.LINE_AA)
    if case.prompt is not None:  # on top of both outlines
        drawn = draw_overlay(drawn, np.zeros(gt.shape, dtype=bool), case.prompt)
    out = np.full((cell + strip, cell, 3), BACKGROUND, dtype=np.uint8)
    out[:cell] = _letterbox(drawn, cell)
    head = "IoU n/a" if case.iou is None else f"IoU {case.iou:.2f}"
    body = textwrap.wrap(case.text or "", width=max(8, cell // 7))
    _put_lines(out, [head, *body][:3], 4, cell + 12)
    return out


def picture_grid(
    rows: Sequence[tuple[str, Sequence[Case]]], k: int, *, cell: int = 224, strip: int = 44, label: int = 120
) -> np.ndarray:
    """(H, W, 3) uint8 RGB grid (`grid_size`): row ``i`` is family ``rows[i][0]`` with up to ``k`` cases
    (missing ones left blank)."""
    if not rows or k < 1:
        raise ValueError("a picture grid needs at least one family and k >= 1")
    height, width = grid_size(len(rows), k, cell=cell, strip=strip, label=label)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    for r, (family, cases) in enumerate(rows):
        y = r * (cell + strip)
        _put_lines(canvas, textwrap.wrap(family, width=max(6, label // 9)), 6, y + cell // 2, scale=0.45)
        for c, case in enumerate(list(cases)[:k]):
            x = label + c * cell
            canvas[y : y + cell + strip, x : x + cell] = draw_case(case, cell=cell, strip=strip)
    return canvas


def write_grid(canvas: np.ndarray, path: str | Path) -> Path:
    """Write an RGB grid as PNG (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    tmp.replace(path)
    return path
