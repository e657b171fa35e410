"""The files of an evaluation run: per-sample JSON-lines records, atomic writes, prediction file names.

An output folder holds::

    OUT/run.json              the run's settings (task, dataset, split, model, segmenter, ...); a restart with
                              other settings is refused
    OUT/samples.jsonl         one record per sample, in dataset order (merged at the end of a run)
    OUT/samples.<rank>.jsonl  per-process records while a distributed run is going (merged, then removed)
    OUT/pred/<id>.png         prediction masks, 0/255, at the ground-truth size
    OUT/metrics.json          the metrics and counts (written last, atomically)
    OUT/report.html           best and worst cases

Records are appended one line at a time and flushed, so a killed run leaves at most one truncated last line;
:func:`read_records` skips such a line and :func:`repair_tail` cuts it off before a restarted run appends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
PRED_DIR = "pred"
_SHARD_RE = re.compile(r"^samples\.(\d+)\.jsonl$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+#-]{0,150}$")


def shard_file(out_dir: Path, rank: int, world_size: int) -> Path:
    """The records file process ``rank`` appends to: ``samples.jsonl`` alone, ``samples.<rank>.jsonl`` when
    several processes run."""
    return out_dir / (SAMPLES_FILE if world_size == 1 else f"samples.{rank}.jsonl")


def record_files(out_dir: Path) -> list[Path]:
    """``samples.jsonl`` (if present) then every ``samples.<rank>.jsonl``, by rank."""
    shards = sorted(
        (int(m.group(1)), p) for p in out_dir.glob("samples.*.jsonl") if (m := _SHARD_RE.match(p.name))
    )
    main = out_dir / SAMPLES_FILE
    return ([main] if main.is_file() else []) + [p for _, p in shards]


def pred_name(sample_id: str) -> str:
    """File name of a sample's prediction PNG: ``<id>.png`` when the id is a safe file name, else a sanitised
    id plus a short hash of the real one (ids may hold ``/`` or other characters)."""
    if _SAFE_ID.match(sample_id) and not sample_id.endswith("."):
        return f"{sample_id}.png"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._")[:100] or "sample"
    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}.png"


def read_records(paths: Iterable[Path]) -> dict[int, dict[str, Any]]:
    """Records by sample index from the given JSONL files (later files and lines win on a repeated index).

    A last line without its newline (a killed writer) and lines that are not JSON objects with an int
    ``index`` and a str ``id`` are skipped with a warning, so such samples are simply run again.
    """
    records: dict[int, dict[str, Any]] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        lines = data.split(b"\n")
        if lines and lines[-1]:
            logger.warning("%s: ignoring a truncated last line (%d bytes)", path, len(lines[-1]))
        bad = 0
        for raw in lines[:-1]:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                bad += 1
                continue
            if (
                not isinstance(rec, dict)
                or not isinstance(rec.get("index"), int)
                or not isinstance(rec.get("id"), str)
            ):
                bad += 1
                continue
            records[rec["index"]] = rec
        if bad:
            logger.warning("%s: skipped %d malformed line(s)", path, bad)
    return records


def repair_tail(path: Path) -> None:
    """Cut a truncated last line (no trailing newline) off ``path`` so appended lines stay whole."""
    if not path.is_file():
        return
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        chunk, pos = 1 << 16, size
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        f.truncate(keep)
    logger.warning("%s: removed a truncated last line left by an interrupted run", path)


def to_json_line(record: dict[str, Any]) -> str:
    """One JSON line (with its newline); non-finite floats become null so every line is strict JSON."""
    return json.dumps(_finite(record), ensure_ascii=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file next to ``path``, then ``os.replace`` it onto ``path``
    (``segr1.data.io.atomic_write_text``: fsynced, with the user's umask)."""
    from segr1.data.io import atomic_write_text as write

    return write(path, text)


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically (see :func:`atomic_write_text`)."""
    return atomic_write_text(
        path, json.dumps(_finite(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def merge_records(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Merge ``samples.jsonl`` and every ``samples.<rank>.jsonl`` into ``samples.jsonl`` (sorted by index,
    written atomically), remove the per-rank files and return the records by index."""
    files = record_files(out_dir)
    records = read_records(files)
    atomic_write_text(out_dir / SAMPLES_FILE, "".join(to_json_line(records[i]) for i in sorted(records)))
    for path in files:
        if path.name != SAMPLES_FILE:
            path.unlink(missing_ok=True)
    return records


class SettingsMismatch(ValueError):
    """``OUT/run.json`` records a run with other settings than the one asked for."""


def check_settings(out_dir: Path, settings: dict[str, Any], write: bool = True) -> None:
    """Refuse to resume a run whose ``run.json`` holds other ``settings``; write them (when ``write``) if there
    is none yet.

    Raises:
        SettingsMismatch: ``OUT/run.json`` records different settings (the message lists the differences).
    """
    path = out_dir / RUN_FILE
    wanted = json.loads(json.dumps(settings))  # normalise tuples, paths
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            stored = None
        if isinstance(stored, dict) and stored != wanted:
            keys = sorted(set(stored) | set(wanted))
            diff = "; ".join(
                f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in keys if stored.get(k) != wanted.get(k)
            )
            raise SettingsMismatch(
                f"{str(out_dir)!r} holds a run with other settings ({diff}); pass a new --out folder, "
                "or --overwrite to discard the old results"
            )
        if isinstance(stored, dict):
            return
    if write:
        atomic_write_json(path, wanted)


def clear_outputs(out_dir: Path) -> None:
    """Delete the files of a previous run in ``out_dir`` (records, predictions, metrics, report, run.json)."""
    for path in [*record_files(out_dir), *(out_dir / n for n in (RUN_FILE, METRICS_FILE, REPORT_FILE))]:
        path.unlink(missing_ok=True)
    pred = out_dir / PRED_DIR
    if pred.is_dir():
        for p in pred.glob("*.png"):
            p.unlink(missing_ok=True)
