"""The evaluation loop shared by every task: batched, resumable, sharded across processes.

:func:`evaluate` runs a :class:`segr1.pipeline.SegR1Pipeline` over a sequence of samples and writes, into
``config.out_dir`` (file layout in :mod:`segr1.evaluate.records`):

1. for every sample, the prediction mask ``pred/<id>.png`` (0/255, at the ground-truth size) and one JSON
   line of ``samples.jsonl``: ``index, id, text, image, answer, prompt`` (image frame), ``frame, pred,
   scored``, the per-sample scores (``iou``; ``sm`` for foreground; ``intersection, union`` for
   referring/reasoning), ``error`` and ``reason`` (null on success) and ``timings``;
2. at the end, on the main process, ``metrics.json`` (atomically) and ``report.html``.

**Failures** never stop the run and are never dropped; each is recorded with its ``reason``:

* ``unreadable image``, ``missing text``, ``unparsable answer``, ``empty mask``, ``segmentation failed``,
  ``pipeline error``: the prediction is all zeros (or the empty mask the pipeline returned) and it IS scored:
  it counts with IoU 0 in gIoU and with its ground-truth area in cIoU's union; for foreground its all-zero map
  enters every metric (S-measure, MAE, ...).
* ``missing ground truth``, ``unreadable ground truth``, ``unreadable sample`` (the dataset could not build
  the sample, e.g. a malformed annotation): nothing to score against; the sample is counted in ``n_failed``
  but not in the metrics (``n_scored`` says how many were).

**Resuming.** Samples whose record is complete (and whose prediction file is a readable PNG) are skipped. The metrics
are then recomputed from all records and prediction files in dataset order, so a resumed run writes the
same ``metrics.json`` as an uninterrupted one.

**Several processes** (``accelerate launch``): process ``r`` of ``n`` takes the samples whose index ``i``
has ``i % n == r`` and appends to ``samples.<r>.jsonl``; after ``wait_for_everyone`` the main process merges
the records into ``samples.jsonl`` and computes the metrics from all of them, exactly as a single process
would. Progress (tqdm) is shown on the main process only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segr1.data.records import Sample
from segr1.evaluate import records as rec_io
from segr1.evaluate.tasks import (
    GroundTruth,
    MissingGroundTruth,
    Scorer,
    make_scorer,
    read_ground_truth,
    read_sample_image,
)

logger = logging.getLogger(__name__)

# Failure reasons, as counted in metrics.json["failures"].
UNREADABLE_SAMPLE = "unreadable sample"
MISSING_GT = "missing ground truth"
UNREADABLE_GT = "unreadable ground truth"
UNREADABLE_IMAGE = "unreadable image"
MISSING_TEXT = "missing text"
PIPELINE_ERROR = "pipeline error"
UNSCORED_REASONS = (UNREADABLE_SAMPLE, MISSING_GT, UNREADABLE_GT)

SCORING_NOTE = (
    "Failed samples with a ground truth are scored with the prediction they got (all zeros when no mask was "
    "produced): IoU 0 in gIoU and their ground-truth area in cIoU's union; an all-zero map in the foreground "
    "metrics. Samples without a usable ground truth (reasons: " + ", ".join(UNSCORED_REASONS) + ") are "
    "counted in n_failed but cannot be scored (n_scored excludes them)."
)


class ProcessState(Protocol):
    """What the loop needs from ``accelerate.PartialState``."""

    process_index: int
    num_processes: int
    is_main_process: bool

    def wait_for_everyone(self) -> None: ...


@dataclass
class EvalConfig:
    """Settings of one evaluation run.

    Attributes:
        task: ``foreground``, ``referring`` or ``reasoning``.
        out_dir: output folder (created).
        limit: evaluate only the first ``limit`` samples (None: all).
        batch_size: samples per pipeline call.
        report_n: number of best and of worst cases shown in ``report.html`` (0: no report).
        settings: what identifies the run (dataset, split, model, segmenter, frame, ...): stored in
            ``run.json`` (a restart with other settings is refused) and in ``metrics.json``.
        overwrite: discard the results of a previous run in ``out_dir`` instead of resuming it.
        progress: show a tqdm bar (main process only).
        boundary: foreground only: also compute the DIS boundary metrics (HCE, mBA, boundary IoU).
        ignore_regions: leave ReasonSeg's ignore pixels out of the scores (True, LISA's protocol) or score
            them as background (False, the Seg-R1 release's).
        per_instance: also match predicted and ground-truth objects and report the per-instance metrics
            (`segr1.evaluate.instances`) beside the union's.
    """

    task: str
    out_dir: Path
    limit: int | None = None
    batch_size: int = 4
    report_n: int = 8
    settings: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    progress: bool = True
    boundary: bool = False
    ignore_regions: bool = True
    per_instance: bool = False

    def __post_init__(self) -> None:
        make_scorer(self.task)  # validates the task
        self.out_dir = Path(self.out_dir)
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.report_n < 0:
            raise ValueError(f"report_n must be >= 0, got {self.report_n}")


def default_state(device: str | None = None) -> ProcessState:
    """``accelerate.PartialState`` of this process (one process unless started by ``accelerate launch`` or
    ``torchrun``); CPU processes use the gloo backend when no accelerator is available or ``device='cpu'``."""
    import torch
    from accelerate import PartialState

    accel = getattr(torch, "accelerator", None)
    has_accel = accel.is_available() if accel is not None else torch.cuda.is_available()
    return PartialState(cpu=device == "cpu" or not has_accel)


@dataclass
class _Item:
    """One sample on its way through a batch."""

    index: int
    id: str
    sample: Sample | None = None
    gt: GroundTruth | None = None
    image: np.ndarray | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)


def evaluate(
    samples: Sequence[Sample], pipeline: Any, config: EvalConfig, state: ProcessState | None = None
) -> dict[str, Any] | None:
    """Evaluate ``pipeline`` on ``samples``; returns the ``metrics.json`` content on the main process, None on
    the others. See the module docstring for the files, failures, resuming and sharding."""
    scorer = make_scorer(config.task, boundary=config.boundary, ignore_regions=config.ignore_regions)
    state = state if state is not None else default_state()
    out = config.out_dir
    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    out.mkdir(parents=True, exist_ok=True)
    if main and config.overwrite:
        rec_io.clear_outputs(out)
    state.wait_for_everyone()
    rec_io.check_settings(out, {"task": config.task, **config.settings}, write=main)
    n = len(samples) if config.limit is None else min(config.limit, len(samples))
    done = _finished(out, n)
    todo = [i for i in range(rank, n, world) if i not in done]
    if main:
        logger.info(
            "%d samples, %d already done, %d to run on %d process(es)", n, len(done), len(todo), world
        )
    (out / rec_io.PRED_DIR).mkdir(parents=True, exist_ok=True)
    own = rec_io.shard_file(out, rank, world)
    rec_io.repair_tail(own)
    from tqdm.auto import tqdm

    with (
        own.open("a", encoding="utf-8") as log,
        tqdm(
            total=len(todo), desc=f"eval {config.task}", unit="sample", disable=not (main and config.progress)
        ) as bar,
    ):
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            for record in _run_batch(samples, batch, pipeline, scorer, out, config.per_instance):
                log.write(rec_io.to_json_line(record))
                log.flush()
                bar.update(1)
    state.wait_for_everyone()
    result = None
    if main:
        from segr1.evaluate.summary import summarize

        records = rec_io.merge_records(out)
        result = summarize(samples, records, n, scorer, config)
    state.wait_for_everyone()
    return result


def _finished(out: Path, n: int) -> set[int]:
    """Indices below ``n`` with a complete record whose prediction file (if any) is a readable PNG; a
    missing, truncated or corrupt prediction (a killed writer, a damaged disk) makes the sample run again."""
    done = set()
    for i, rec in rec_io.read_records(rec_io.record_files(out)).items():
        pred = rec.get("pred")
        if i < n and (pred is None or _readable_png(out / pred)):
            done.add(i)
    return done


def _readable_png(path: Path) -> bool:
    """True when ``path`` is a PNG whose chunks and checksums are intact (Pillow's ``verify``)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # missing, truncated, corrupt, not a PNG
        if path.exists():
            logger.warning("prediction %s is unreadable (%s); its sample runs again", path, exc)
        return False
    return True


def _prepare(samples: Sequence[Sample], index: int, task: str) -> _Item:
    """Build sample ``index`` and read its ground truth and image, recording what fails."""
    try:
        sample = samples[index]
    except Exception as exc:  # a dataset that cannot build one sample (malformed annotation, ...)
        logger.warning("sample %d cannot be built: %s", index, exc)
        return _Item(index, f"#{index}", errors=[(UNREADABLE_SAMPLE, f"{type(exc).__name__}: {exc}")])
    item = _Item(index, str(sample.id), sample)
    try:
        item.gt = read_ground_truth(sample)
    except MissingGroundTruth as exc:
        item.errors.append((MISSING_GT, str(exc)))
    except (OSError, ValueError, TypeError) as exc:
        item.errors.append((UNREADABLE_GT, f"{type(exc).__name__}: {exc}"))
    try:
        item.image = read_sample_image(sample)
    except (OSError, ValueError, TypeError) as exc:
        item.errors.append((UNREADABLE_IMAGE, f"{type(exc).__name__}: {exc}"))
    if task != "foreground" and not (sample.text and sample.text.strip()):
        item.errors.append((MISSING_TEXT, f"sample {sample.id!r} has no {task} text"))
    return item


def _predict(pipeline: Any, items: list[_Item], task: str) -> list[Any]:
    """Pipeline results for ``items`` (None where it raised); a failing batch is retried one by one."""
    if not items:
        return []
    texts = None if task == "foreground" else [it.sample.text for it in items]  # type: ignore[union-attr]
    kinds = [_query_kind(it.sample) for it in items] if task == "reasoning" else []
    try:
        if any(kinds):  # ReasonSeg's sentence / phrase queries (styles template them differently)
            return list(pipeline([it.image for it in items], texts, kinds))
        return list(pipeline([it.image for it in items], texts))
    except Exception:
        if len(items) == 1:
            raise
        logger.exception("pipeline failed on a batch of %d; retrying one by one", len(items))
    results: list[Any] = []
    for it in items:
        try:
            results.extend(_predict(pipeline, [it], task))
        except Exception as exc:  # one bad sample must not stop the run
            logger.exception("pipeline failed on sample %r", it.id)
            it.errors.append((PIPELINE_ERROR, f"{type(exc).__name__}: {exc}"))
            results.append(None)
    return results


def _query_kind(sample: Sample | None) -> str | None:
    """ "sentence" / "phrase" from a ReasonSeg sample's ``meta["is_sentence"]``, else None."""
    meta = sample.meta if sample is not None and isinstance(sample.meta, dict) else {}
    if "is_sentence" not in meta:
        return None
    return "sentence" if meta["is_sentence"] else "phrase"


def _reason(error: str) -> str:
    """Reason category of a pipeline error string ("segmentation failed: X" -> "segmentation failed")."""
    return error.split(":", 1)[0].strip() or PIPELINE_ERROR


def _fit(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` (H, W) bool resized (nearest) to ``size`` (W, H) when it differs."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    import cv2

    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def _run_batch(
    samples: Sequence[Sample],
    indices: list[int],
    pipeline: Any,
    scorer: Scorer,
    out: Path,
    per_instance: bool = False,
) -> list[dict[str, Any]]:
    """Run one batch; write its prediction PNGs; return its records (in ``indices`` order)."""
    items = [_prepare(samples, i, scorer.task) for i in indices]
    runnable = [it for it in items if it.image is not None and all(r != MISSING_TEXT for r, _ in it.errors)]
    t0 = time.perf_counter()
    results = _predict(pipeline, runnable, scorer.task)
    by_index = dict(zip((it.index for it in runnable), results, strict=True))
    batch_s = time.perf_counter() - t0
    return [_finish(it, by_index.get(it.index), scorer, out, batch_s, per_instance) for it in items]


def _finish(
    it: _Item, result: Any, scorer: Scorer, out: Path, batch_s: float, per_instance: bool = False
) -> dict[str, Any]:
    """Write one sample's prediction PNG (at the ground-truth size, else the image size) and build its record."""
    from segr1.data.io import write_mask_png

    size = it.gt.size if it.gt is not None else None
    if size is None and it.image is not None:
        size = (it.image.shape[1], it.image.shape[0])
    if result is not None and result.error:
        it.errors.append((_reason(result.error), result.error))
    sample = it.sample
    record: dict[str, Any] = {
        "index": it.index,
        "id": it.id,
        "text": sample.text if sample is not None else None,
        "image": None if sample is None or isinstance(sample.image, np.ndarray) else str(sample.image),
        "answer": result.answer if result is not None else None,
        "prompt": result.prompt.to_dict() if result is not None else None,  # IMAGE frame
        "frame": result.frame if result is not None else None,
        "pred": None,
        "scored": False,
    }
    if size is not None:
        mask = result.mask if result is not None else np.zeros((size[1], size[0]), dtype=bool)
        if it.gt is not None and it.image is not None and (it.image.shape[1], it.image.shape[0]) != size:
            # the mask is predicted on the image and resized (nearest) to the ground truth: say so
            record["resized_from"] = [int(it.image.shape[1]), int(it.image.shape[0])]
            logger.warning(
                "sample %r: ground truth %dx%d differs from its image %dx%d; the prediction is resized to it",
                it.id,
                size[0],
                size[1],
                it.image.shape[1],
                it.image.shape[0],
            )
        pred = _fit(np.asarray(mask, dtype=bool), size)
        record["pred"] = f"{rec_io.PRED_DIR}/{rec_io.pred_name(it.id)}"
        write_mask_png(pred, out / record["pred"])
        if it.gt is not None:
            record.update(scorer.sample_scores(pred, it.gt), scored=True)
            if per_instance:
                _score_instances(record, it, result, size)
    record["error"] = "; ".join(msg for _, msg in it.errors) or None
    record["reason"] = it.errors[0][0] if it.errors else None
    record["timings"] = dict(result.timings) if result is not None else {"batch_s": round(batch_s, 6)}
    return record


def _score_instances(record: dict[str, Any], it: _Item, result: Any, size: tuple[int, int]) -> None:
    """Add the sample's per-instance scores (`segr1.evaluate.instances`) to its record; an unreadable instance
    map is recorded under ``instances_error`` (the union is still scored)."""
    from segr1.evaluate.instances import ground_truth_instances, instance_scores

    try:
        gt = ground_truth_instances(it.sample, it.gt.mask)  # type: ignore[arg-type, union-attr]
    except (OSError, ValueError) as exc:
        logger.warning("sample %r: no per-instance scores: %s", it.id, exc)
        record["instances_error"] = f"{type(exc).__name__}: {exc}"
        return
    pred = [_fit(np.asarray(m, dtype=bool), size) for m in getattr(result, "instances", None) or []]
    record["instances"] = instance_scores(pred, gt)
