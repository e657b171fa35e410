"""The end of a run: metrics recomputed from the records and prediction files, counts, table, report.

Everything here reads only ``samples.jsonl``'s records, the ``pred/*.png`` files and the dataset's ground
truth, in dataset order, so the result does not depend on how the run was split into processes or resumed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segr1.data.records import Sample
from segr1.evaluate import records as rec_io
from segr1.evaluate.tasks import Scorer, read_ground_truth, read_sample_image

logger = logging.getLogger(__name__)

MAX_FAILED_LISTED = 50  # failed samples listed (as text) in the report


def compute_metrics(
    samples: Sequence[Sample],
    records: list[dict[str, Any]],
    scorer: Scorer,
    out_dir: Path,
    progress: bool = True,
) -> dict[str, float | None]:
    """Dataset metrics over the scored ``records`` (in the given order): each prediction file against the
    sample's ground truth. All values are None when no sample could be scored.

    Raises:
        RuntimeError: a record's id differs from the dataset's sample at its index (the dataset changed
            since the run started), or a prediction's size differs from its ground truth's.
    """
    from tqdm.auto import tqdm

    from segr1.data.io import read_mask

    scored = [r for r in records if r.get("scored")]
    if not scored:
        return dict.fromkeys(scorer.metric_keys)
    meter = scorer.new_meter()
    for rec in tqdm(scored, desc="score", unit="sample", disable=not progress):
        sample = samples[rec["index"]]
        if str(sample.id) != rec["id"]:
            raise RuntimeError(
                f"record {rec['index']} is for sample {rec['id']!r} but the dataset now has {sample.id!r} there; "
                "the dataset changed since this run started: use a new --out folder or --overwrite"
            )
        gt = read_ground_truth(sample)
        pred = read_mask(out_dir / rec["pred"])
        if pred.shape != gt.mask.shape:
            raise RuntimeError(
                f"prediction {rec['pred']} has shape {pred.shape}, the ground truth {gt.mask.shape}"
            )
        scorer.update(meter, pred, gt)
    values = meter.compute()
    return {k: None if v is None else float(v) for k, v in values.items()}


def count(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``n_total``, ``n_ok``, ``n_failed``, ``n_scored``, ``failures`` (reason -> count, by reason) and
    ``n_resized`` (predictions resized because the ground truth's size differs from the image's)."""
    reasons = Counter(r.get("reason") or "unknown" for r in records if r.get("error"))
    n_ok = sum(1 for r in records if not r.get("error"))
    return {
        "n_total": len(records),
        "n_ok": n_ok,
        "n_failed": len(records) - n_ok,
        "n_scored": sum(1 for r in records if r.get("scored")),
        "failures": dict(sorted(reasons.items())),
        "n_resized": sum(1 for r in records if r.get("resized_from")),
    }


def ordered_metrics(metrics: dict[str, float | None], keys: Sequence[str]) -> list[tuple[str, float | None]]:
    """``metrics`` items with ``keys`` first (in that order), then any others."""
    return [(k, metrics[k]) for k in keys if k in metrics] + [
        (k, v) for k, v in metrics.items() if k not in keys
    ]


def format_table(doc: dict[str, Any], keys: Sequence[str]) -> str:
    """The metric table and counts of a ``metrics.json`` document, as plain text."""
    settings = doc.get("settings", {})
    where = settings.get("dataset") or "?"
    if settings.get("split"):
        where += f" ({settings['split']})"
    rows = ordered_metrics(doc["metrics"], keys)
    width = max([len(k) for k, _ in rows] + [6])
    lines = [f"segr1 eval {doc['task']}: {where}", f"{'metric':<{width}}  value"]
    lines += [f"{k:<{width}}  {'n/a' if v is None else f'{v:.4f}'}" for k, v in rows]
    failures = ", ".join(f"{k}: {v}" for k, v in doc["failures"].items())
    lines.append(
        f"samples: {doc['n_total']} total, {doc['n_ok']} ok, {doc['n_failed']} failed"
        + (f" ({failures})" if failures else "")
        + f"; {doc['n_scored']} scored"
        + (
            f"; {doc['n_resized']} predictions resized to a ground truth of another size than its image"
            if doc.get("n_resized")
            else ""
        )
    )
    return "\n".join(lines)


def summarize(
    samples: Sequence[Sample], records: dict[int, dict[str, Any]], n: int, scorer: Scorer, config: Any
) -> dict[str, Any]:
    """Write ``metrics.json`` (atomically), print the table, write ``report.html``; return the document.

    Raises:
        RuntimeError: some of the first ``n`` samples have no record (a process did not finish).
    """
    from segr1.evaluate.runner import SCORING_NOTE

    missing = [i for i in range(n) if i not in records]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {n} samples have no record (first: index {missing[0]}); run the same command "
            "again to finish them"
        )
    recs = [records[i] for i in range(n)]
    out = config.out_dir
    metrics = compute_metrics(samples, recs, scorer, out, progress=config.progress)
    if getattr(config, "per_instance", False):
        from segr1.evaluate.instances import instance_metrics

        metrics.update(instance_metrics(recs))
    doc = {
        "task": config.task,
        "settings": config.settings,
        "limit": config.limit,
        "metrics": metrics,
        **count(recs),
        "scoring": SCORING_NOTE,
    }
    rec_io.atomic_write_json(out / rec_io.METRICS_FILE, doc)
    print(format_table(doc, scorer.metric_keys), flush=True)
    if config.report_n:
        try:
            write_run_report(samples, recs, doc, scorer, out, config.report_n)
        except Exception:  # the metrics are written; a report problem must not fail the run
            logger.exception("could not write %s", out / rec_io.REPORT_FILE)
    logger.info("wrote %s", out / rec_io.METRICS_FILE)
    return doc


def pick_cases(
    records: list[dict[str, Any]], key: str, n: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``n`` best (highest ``key`` first) and ``n`` worst (lowest first) scored records; ties by index; no
    record in both lists (with fewer than ``2 n`` records the best half and the worst half)."""
    scored = [r for r in records if r.get("scored") and isinstance(r.get(key), int | float)]
    n_best = min(n, (len(scored) + 1) // 2)  # with fewer than 2n records, split them between the two lists
    best = sorted(scored, key=lambda r: (-r[key], r["index"]))[:n_best]
    taken = {r["index"] for r in best}
    worst = [r for r in sorted(scored, key=lambda r: (r[key], r["index"])) if r["index"] not in taken][:n]
    return best, worst


def _case(samples: Sequence[Sample], rec: dict[str, Any], key: str, out: Path) -> dict[str, Any]:
    """What the report shows of one record: scores, text, answer, error and an overlay thumbnail."""
    from segr1.answer import SegPrompt
    from segr1.data.io import read_mask
    from segr1.evaluate.report import thumbnail_png

    case = {k: rec.get(k) for k in ("index", "id", "text", "answer", "error", "iou", "sm")}
    case["score"] = rec.get(key)
    try:
        sample = samples[rec["index"]]
        gt = read_ground_truth(sample)
        pred = read_mask(out / rec["pred"])
        try:
            image = read_sample_image(sample)
            if image.shape[:2] != gt.mask.shape:
                import cv2

                image = cv2.resize(image, (gt.mask.shape[1], gt.mask.shape[0]), interpolation=cv2.INTER_AREA)
        except (OSError, ValueError):
            image = np.full((*gt.mask.shape, 3), 64, dtype=np.uint8)
        prompt = SegPrompt.from_dict(rec["prompt"]) if rec.get("prompt") else None
        case["png"] = thumbnail_png(image, pred, gt.mask, gt.ignore, prompt)
    except Exception as exc:  # a broken case is shown without its picture
        logger.warning("report: no picture for %r: %s", rec.get("id"), exc)
        case["png"] = None
    return case


def write_run_report(
    samples: Sequence[Sample],
    records: list[dict[str, Any]],
    doc: dict[str, Any],
    scorer: Scorer,
    out: Path,
    n: int,
) -> Path:
    """Write ``report.html`` with the metric table, failure counts and the ``n`` best / worst cases."""
    from segr1.evaluate.report import render_report

    best, worst = pick_cases(records, scorer.rank_key, n)
    html = render_report(
        doc,
        ordered_metrics(doc["metrics"], scorer.metric_keys),
        scorer.rank_key,
        [_case(samples, r, scorer.rank_key, out) for r in best],
        [_case(samples, r, scorer.rank_key, out) for r in worst],
        [r for r in records if r.get("error")][:MAX_FAILED_LISTED],
    )
    return rec_io.atomic_write_text(out / rec_io.REPORT_FILE, html)
