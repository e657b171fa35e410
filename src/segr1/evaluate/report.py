"""A self-contained HTML page for an evaluation run: metric table, failure counts, best and worst cases.

The page has no external resources: pictures are embedded as base64 PNG thumbnails (long side at most
``max_side`` pixels), so its size is bounded by the number of cases shown. Every string that comes from a
dataset or a model (ids, queries, answers, errors) is escaped with :func:`html.escape` — model output is
untrusted — and long texts are cut.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segr1.answer import SegPrompt

logger = logging.getLogger(__name__)

GT_COLOR = (0, 230, 0)  # RGB, ground-truth contour
IGNORE_COLOR = (255, 0, 255)  # RGB, ignore-region contour
MAX_TEXT = 600  # characters of a query / answer / error shown


def thumbnail_png(
    image: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    prompt: SegPrompt | None = None,
    max_side: int = 256,
) -> bytes:
    """PNG bytes of the overlay of one case, resized so its long side is ``max_side`` pixels.

    Args:
        image: (H, W, 3) uint8 RGB, at the ground truth's size.
        pred: (H, W) bool prediction (tinted and outlined, see :func:`segr1.overlay.draw_overlay`).
        gt: (H, W) bool ground truth (green contour).
        ignore: (H, W) bool ignore region (magenta contour), or None.
        prompt: the answer's boxes and points in the IMAGE frame, drawn on top, or None.
    """
    import cv2
    from PIL import Image

    from segr1.overlay import draw_overlay

    canvas = draw_overlay(image, pred, prompt)
    width = max(1, round(min(image.shape[:2]) / 250))
    for mask, color in ((gt, GT_COLOR), (ignore, IGNORE_COLOR)):
        if mask is not None and mask.any():
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(canvas, contours, -1, color, width)
    h, w = canvas.shape[:2]
    scale = max_side / max(h, w)
    if scale != 1.0:  # small images are enlarged (nearest) so every thumbnail is legible
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    """Escaped, length-bounded text of ``value`` ("" for None)."""
    if value is None:
        return ""
    s = str(value)
    if len(s) > limit:
        s = s[:limit] + f" … [{len(s) - limit} more characters]"
    return html.escape(s, quote=True)


def _number(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.4f}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.cases{display:flex;flex-wrap:wrap;gap:12px}
.case{border:1px solid #ddd;padding:6px;width:270px;font-size:12px;overflow-wrap:anywhere}
.case img{display:block;max-width:256px;max-height:256px;margin-bottom:4px}
.answer{font-family:monospace;white-space:pre-wrap;background:#f7f7f7;max-height:9em;overflow:auto}
.error{color:#b00}.legend span{display:inline-block;margin-right:1em}
"""


def _case_html(case: dict[str, Any], rank_key: str) -> str:
    parts = ['<div class="case">']
    if case.get("png"):
        data = base64.b64encode(case["png"]).decode("ascii")
        parts.append(f'<img alt="{_text(case.get("id"), 200)}" src="data:image/png;base64,{data}">')
    parts.append(f"<b>{_text(case.get('id'), 200)}</b> (#{int(case.get('index', -1))})<br>")
    scores = [f"{rank_key} {_number(case.get('score'))}"]
    if rank_key != "iou" and case.get("iou") is not None:
        scores.append(f"IoU {_number(case.get('iou'))}")
    parts.append(" · ".join(scores) + "<br>")
    if case.get("text"):
        parts.append(f"<i>{_text(case['text'])}</i><br>")
    if case.get("answer") is not None:
        parts.append(f'<div class="answer">{_text(case["answer"])}</div>')
    if case.get("error"):
        parts.append(f'<div class="error">{_text(case["error"])}</div>')
    parts.append("</div>")
    return "".join(parts)


def _failed_html(failed: Sequence[dict[str, Any]], n_failed: int) -> str:
    if not failed:
        return ""
    rows = "".join(
        f"<tr><td>{_text(r.get('id'), 200)}</td><td>{_text(r.get('reason'))}</td><td>{_text(r.get('error'), 300)}</td></tr>"
        for r in failed
    )
    return (
        f"<details><summary>{len(failed)} of {n_failed} failed samples</summary>"
        f"<table><tr><th>id</th><th>reason</th><th>error</th></tr>{rows}</table></details>"
    )


def render_report(
    doc: dict[str, Any],
    metrics: Sequence[tuple[str, float | None]],
    rank_key: str,
    best: Sequence[dict[str, Any]],
    worst: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]] = (),
) -> str:
    """The HTML page of a run.

    Args:
        doc: the ``metrics.json`` document (task, settings, counts, failures).
        metrics: (name, value) rows of the metric table, in display order.
        rank_key: the per-sample score the cases are ordered by (``iou`` or ``sm``).
        best, worst: cases, each a dict with ``id, index, score, text, answer, error, iou`` and ``png``
            (thumbnail bytes or None).
        failed: some failed samples' records (``id, index, reason, error``), listed as text.
    """
    settings = doc.get("settings", {})
    title = f"segr1 eval {doc.get('task', '')}: {settings.get('dataset', '')}"
    rows = "".join(f"<tr><td>{_text(k)}</td><td>{_number(v)}</td></tr>" for k, v in metrics)
    setting_rows = "".join(f"<tr><td>{_text(k)}</td><td>{_text(v)}</td></tr>" for k, v in settings.items())
    fails = "".join(
        f"<tr><td>{_text(k)}</td><td>{int(v)}</td></tr>" for k, v in doc.get("failures", {}).items()
    )
    counts = (
        f"{int(doc.get('n_total', 0))} samples: {int(doc.get('n_ok', 0))} ok, {int(doc.get('n_failed', 0))} "
        f"failed, {int(doc.get('n_scored', 0))} scored"
    )
    legend = (
        '<p class="legend"><span style="color:#1e90ff">■ prediction</span>'
        '<span style="color:#00e600">□ ground truth</span><span style="color:#f0f">□ ignore region</span>'
        '<span style="color:#ffd700">□ answer box</span><span>● points (green fg, red bg)</span></p>'
    )
    body = [
        f"<h1>{_text(title)}</h1>",
        f"<table><tr><th>setting</th><th>value</th></tr>{setting_rows}</table>",
        f"<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>",
        f"<p>{_text(counts)}</p>",
        f"<h2>Failures by reason</h2><table><tr><th>reason</th><th>samples</th></tr>{fails}</table>"
        if fails
        else "<h2>Failures by reason</h2><p>none</p>",
        f"<p>{_text(doc.get('scoring', ''), 2000)}</p>",
        _failed_html(failed, int(doc.get("n_failed", 0))),
        legend,
        f"<h2>Best {len(best)} by {_text(rank_key)}</h2>",
        '<div class="cases">' + "".join(_case_html(c, rank_key) for c in best) + "</div>",
        f"<h2>Worst {len(worst)} by {_text(rank_key)}</h2>",
        '<div class="cases">' + "".join(_case_html(c, rank_key) for c in worst) + "</div>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
