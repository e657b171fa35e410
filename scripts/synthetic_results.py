"""Measure the embedded tiny Seg-R1 policy on held-out synthetic scenes and plot its training curves.

For each test family (a dataset folder written by ``segr1 data synth``: ``images/``, ``masks/``,
``manifest.jsonl``) and each method, every scene is segmented with the ``grabcut`` segmenter and scored
against its exact mask:

* policies (``--policy NAME=FOLDER``, e.g. the SFT-only and the SFT+GRPO checkpoints): the full Seg-R1
  pipeline (`segr1.pipeline.SegR1Pipeline`: image -> model frame -> greedy answer -> prompts -> GrabCut),
  with each sample's own task (``foreground`` / ``referring`` / ``reasoning``, the manifest's ``task``) and
  text (its ``text``), and the model frame and system prompt the checkpoint records in its
  ``segr1_policy.json``;
* the non-learned references of `segr1.evaluate.baselines` (``--references``, default every one that
  applies): ``whole-image box``; ``fixed box, 3% margin``; ``best fixed box`` (one image-independent box
  from a grid of centred boxes, halves and quadrants, chosen per family by mean IoU on the VALIDATION folder
  ``--val FAMILY=DIR`` of the same name; without one, the family has no best fixed box) and ``best fixed
  box + centre point``; for multi-object text families (referring, reasoning) the text-blind ``random
  object (GT box + point)`` and ``largest object (GT box + point)``; and the upper reference ``GT box + GT
  points`` (the mask's tight box, 2 foreground and 1 background points sampled from the mask, seeded).

Columns per (family, method): gIoU (= mean IoU), cIoU (sum of intersections / sum of unions), S-measure
(PySODMetrics' definition), format validity (the answer format's `is_complete`; references: n/a), empty
masks, and the share of positive (label 1) points inside the target mask over all positive points of the
family, plus the share of answers with at least one positive point, all of them inside. An unparsable answer
gives an empty mask, scored like any prediction (IoU 0). Each family's table ends with the margin of every
policy over the best image-independent prompt (the best on the test set of the image-independent references
present: whole-image, 3% margin, best fixed box, best fixed box + centre point) and, for text families, over
the best text-blind baseline.

Writes ``--out-json`` (settings, including each chosen fixed box and its validation IoU, and every number;
per-scene scores with ``--per-scene``), ``--out-md`` (markdown tables) and, with ``--grid PNG``, a picture
grid of the first ``--grid-k`` test cases per family of one policy (``--grid-policy``, default the first).
With ``--log NAME=log.jsonl`` (the ``log.jsonl`` that ``segr1 train`` writes in its ``output_dir``) it also
plots the curves (SFT loss / token accuracy; GRPO reward, mask IoU and format reward per step) into
``--curves`` (PNG, matplotlib). Either part may be run alone.

  python scripts/synthetic_results.py \\
      --test salient-hard=runs/embedded/data/salient-hard-test \\
      --val salient-hard=runs/embedded/data/salient-hard-val \\
      --test reasoning=runs/embedded/data/reasoning-test --val reasoning=runs/embedded/data/reasoning-val \\
      --policy "SFT only=runs/embedded/sft" --policy "SFT + GRPO=src/segr1/assets/tiny-policy" \\
      --workers 2 --out-json docs/results.json --out-md docs/results_table.md --grid docs/results_grid.png \\
      --log sft=runs/embedded/sft/log.jsonl --log grpo=runs/embedded/grpo/log.jsonl \\
      --curves docs/results_curves.png
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segr1.evaluate.baselines import (
    BEST_FIXED,
    BEST_FIXED_CENTRE,
    FIXED_BOX,
    FIXED_MARGIN,
    GT_PROMPT,
    IMAGE_INDEPENDENT,
    LARGEST_OBJECT,
    RANDOM_OBJECT,
    REFERENCES,
    TEXT_BLIND,
    WHOLE_IMAGE,
    Cell,
    applicable_references,
    choose_fixed_box,
    run_references,
    score_scene,
)

logger = logging.getLogger("synthetic_results")

__all__ = ["BEST_FIXED", "BEST_FIXED_CENTRE", "FIXED_BOX", "FIXED_MARGIN", "GT_PROMPT", "LARGEST_OBJECT",
           "RANDOM_OBJECT", "REFERENCES", "WHOLE_IMAGE", "main"]  # fmt: skip
MARGIN_IMAGE_INDEPENDENT = "margin over best image-independent prompt"
MARGIN_TEXT_BLIND = "margin over best text-blind baseline"


def _pairs(text: Sequence[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in text:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must be NAME=VALUE, got {item!r}")
        out.append((name, value))
    return out


def load_family(folder: str | os.PathLike[str], limit: int | None) -> list[Any]:
    """The samples of a ``segr1 data synth`` folder (its ``manifest.jsonl``), at most ``limit``."""
    from segr1.data.folders import read_manifest

    manifest = Path(folder) / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest.jsonl in {str(folder)!r}; write it with `segr1 data synth`")
    samples = read_manifest(manifest)
    return samples[:limit] if limit else samples


def recorded_system(meta: dict[str, Any]) -> str | None:
    """See `segr1.policies.recorded_system_prompt`."""
    from segr1.policies import recorded_system_prompt

    return recorded_system_prompt(meta)


class PolicyRunner:
    """One checkpoint (loaded once) behind one `SegR1Pipeline` per task, built when first needed, each with
    the checkpoint's frame and, for ``system="recorded"``, the system turn it records (``"default"``:
    the prompt style's system prompt instead)."""

    def __init__(self, folder: str, *, max_new_tokens: int, batch_size: int, system: str = "recorded"):
        from segr1.policies import load_policy
        from segr1.segmenters import load_segmenter

        self.folder = folder
        self.policy = load_policy(folder, device="cpu")
        self.segmenter = load_segmenter("grabcut")
        meta = getattr(self.policy, "metadata", {}) or {}
        self.system = recorded_system(meta) if system == "recorded" else None
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._pipelines: dict[str, Any] = {}
        logger.info("policy %s: frame %s, system %r", folder, self.policy.frame, self.system)

    def pipeline(self, task: str) -> Any:
        from segr1.pipeline import SegR1Pipeline

        if task not in self._pipelines:
            self._pipelines[task] = SegR1Pipeline(
                self.policy,
                self.segmenter,
                task=task,
                system=self.system,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
            )
        return self._pipelines[task]


def policy_pipeline(folder: str, *, max_new_tokens: int, batch_size: int, system: str = "recorded") -> Any:
    """The foreground `SegR1Pipeline` of the checkpoint in ``folder`` (see `PolicyRunner`)."""
    runner = PolicyRunner(folder, max_new_tokens=max_new_tokens, batch_size=batch_size, system=system)
    return runner.pipeline("foreground")


def score(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(S-measure, IoU) of a (H, W) bool prediction against the (H, W) bool ground truth."""
    scores = score_scene(pred, gt, None)
    return scores["s"], scores["iou"]


def run_policy(
    runner: PolicyRunner, samples: list[Any], cell: Cell, label: str, keep: int = 0
) -> list[dict[str, Any]]:
    """Score ``runner`` on ``samples`` into ``cell``, each sample with its own task and text; return the
    first ``keep`` cases (image, masks, image-frame prompt, text, IoU) in sample order, for the grid."""
    from segr1.data.io import read_image, read_mask

    by_task: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_task.setdefault(s.task or "foreground", []).append(i)
    outcomes: dict[int, tuple[dict[str, Any], bool, Any]] = {}
    kept: dict[int, dict[str, Any]] = {}
    for task, idx in by_task.items():
        pipeline = runner.pipeline(task)
        step = pipeline.batch_size * 4
        for start in range(0, len(idx), step):
            chunk = idx[start : start + step]
            images = [read_image(samples[i].image) for i in chunk]
            texts = [samples[i].text for i in chunk]  # foreground: an optional cue (segr1 data synth --text)
            results = pipeline(images, texts)
            for i, image, res in zip(chunk, images, results, strict=True):
                gt = read_mask(samples[i].mask)
                scores = score_scene(res.mask, gt, res.prompt)
                valid = pipeline.answer_format.parse(res.answer).validity.is_complete()
                outcomes[i] = (scores, valid, res)
                if i < keep:
                    kept[i] = {"image": image, "mask": res.mask, "gt": gt, "prompt": res.prompt,
                               "text": samples[i].text, "iou": scores["iou"], "answer": res.answer}  # fmt: skip
            logger.info("%s (%s): %d/%d", label, task, len(outcomes), len(samples))
    for i, s in enumerate(samples):
        scores, valid, res = outcomes[i]
        cell.add(s.id, scores, valid)
        cell.per_scene[-1]["answer"] = res.answer
    return [kept[i] for i in sorted(kept)]


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Every (family, method) cell: ``{"settings", "results": {family: {method: summary}}, "per_scene",
    "grid_cases"}`` (the last: the kept cases of the grid policy, not JSON, removed before writing)."""
    from segr1.segmenters import load_segmenter

    families = _pairs(args.test, "--test")
    policies = _pairs(args.policy, "--policy")
    vals = dict(_pairs(args.val, "--val"))
    unknown = set(vals) - {f for f, _ in families}
    if unknown:
        raise ValueError(f"--val names families with no --test: {sorted(unknown)}")
    wanted = list(REFERENCES) if args.references is None else [r.strip() for r in args.references]
    if args.no_references:
        wanted = []
    data = {name: load_family(folder, args.n) for name, folder in families}
    grid_policy = getattr(args, "grid_policy", None) or (policies[0][0] if policies else None)
    keep = args.grid_k if getattr(args, "grid", None) else 0
    if keep and grid_policy not in dict(policies):
        raise ValueError(f"--grid-policy {grid_policy!r} is not one of the --policy names")
    results: dict[str, dict[str, Any]] = {name: {} for name in data}
    per_scene: dict[str, dict[str, Any]] = {name: {} for name in data}
    grid_cases: dict[str, list[dict[str, Any]]] = {}
    for method, folder in policies:
        runner = PolicyRunner(
            folder, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, system=args.system
        )
        for family, samples in data.items():
            cell = Cell(valid=0)
            t0 = time.perf_counter()
            kept = run_policy(
                runner, samples, cell, f"{method} / {family}", keep if method == grid_policy else 0
            )
            if method == grid_policy and keep:
                grid_cases[family] = kept
            cell.seconds = time.perf_counter() - t0
            results[family][method] = cell.summary()
            per_scene[family][method] = cell.per_scene
            logger.info("%s / %s: %s", method, family, results[family][method])
    segmenter = load_segmenter("grabcut")
    fixed: dict[str, Any] = {}
    references: dict[str, list[str]] = {}
    reused: dict[str, str] = {}
    earlier = _read_reuse(getattr(args, "reuse", None))
    for family, samples in data.items():
        names = applicable_references(samples, wanted, has_validation=family in vals)
        references[family] = names
        test_folder, val_folder = dict(families)[family], vals.get(family)
        if _reusable(earlier, family, test_folder, val_folder, len(samples), names, args.seed, args.val_n):
            # the same test folder, scenes, validation folder, seed and references: the same numbers
            results[family].update({m: earlier["results"][family][m] for m in names})
            if (earlier.get("per_scene") or {}).get(family):
                per_scene[family].update({m: earlier["per_scene"][family].get(m) for m in names})
            if family in earlier["settings"].get("fixed_boxes", {}):
                fixed[family] = earlier["settings"]["fixed_boxes"][family]
            reused[family] = args.reuse
            logger.info("%s: references reused from %s", family, args.reuse)
            continue
        box = None
        if any(n in (BEST_FIXED, BEST_FIXED_CENTRE) for n in names):
            t0 = time.perf_counter()
            val_samples = load_family(vals[family], args.val_n)
            fixed[family] = choose_fixed_box(val_samples, segmenter, workers=args.workers)
            fixed[family].update(val=vals[family], seconds=round(time.perf_counter() - t0, 2))
            box = fixed[family]["box"]
            logger.info("%s: fixed box %s (validation IoU %.3f)", family, fixed[family]["name"],
                        fixed[family]["val_mean_iou"])  # fmt: skip
        if not names:
            continue
        t0 = time.perf_counter()
        cells = run_references(names, samples, segmenter, seed=args.seed, fixed_box=box, workers=args.workers)
        logger.info("references / %s: %.1f s", family, time.perf_counter() - t0)
        for name, cell in cells.items():
            results[family][name] = cell.summary()
            per_scene[family][name] = cell.per_scene
    settings = {
        "test": dict(families),
        "val": vals,
        "val_n": args.val_n,
        "policies": dict(policies),
        "references": references,
        "fixed_boxes": fixed,
        "references_reused_from": reused,
        "n_per_family": {f: len(s) for f, s in data.items()},
        "tasks": {f: sorted({s.task for s in samples}) for f, samples in data.items()},
        "segmenter": "grabcut",
        "decoding": "greedy",
        "max_new_tokens": args.max_new_tokens,
        "system": args.system,
        "reference_seed": args.seed,
        "workers": args.workers,
        "torch_threads": _torch_threads(),
    }
    report = {"settings": settings, "results": results, "per_scene": per_scene if args.per_scene else None}
    report["margins"] = margins(report)
    report["grid_cases"] = grid_cases
    return report


def _read_reuse(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    report = json.loads(Path(path).read_text())
    if not isinstance(report, dict) or "settings" not in report or "results" not in report:
        raise ValueError(f"--reuse {path!r} is not a report written by --out-json")
    return report


def _reusable(
    earlier: dict[str, Any] | None,
    family: str,
    folder: str,
    val: str | None,
    n: int,
    names: list[str],
    seed: int,
    val_n: int | None,
) -> bool:
    """True when the earlier report measured every reference of ``names`` on the same test folder, number
    of scenes, validation folder (and its scene limit) and reference seed as this run asks for ``family``."""
    if earlier is None or not names:
        return False
    st = earlier["settings"]
    return (
        st.get("test", {}).get(family) == folder
        and st.get("n_per_family", {}).get(family) == n
        and st.get("val", {}).get(family) == val
        and st.get("reference_seed") == seed
        and st.get("val_n") == val_n
        and all(m in earlier["results"].get(family, {}) for m in names)
    )


def margins(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per family and policy: gIoU minus the best (on these scenes) image-independent reference present, and,
    where text-blind baselines were run, minus the best of them: ``{family: {policy: {kind: {"margin",
    "versus"}}}}``."""
    policies = list(report["settings"].get("policies", {}))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for family, methods in report["results"].items():
        fam: dict[str, dict[str, Any]] = {}
        for kind, group in ((MARGIN_IMAGE_INDEPENDENT, IMAGE_INDEPENDENT), (MARGIN_TEXT_BLIND, TEXT_BLIND)):
            present = [m for m in group if m in methods]
            if not present:
                continue
            best = max(present, key=lambda m: methods[m]["giou"])
            for p in policies:
                if p in methods:
                    fam.setdefault(p, {})[kind] = {
                        "margin": methods[p]["giou"] - methods[best]["giou"],
                        "versus": best,
                    }
        out[family] = fam
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def markdown_table(report: dict[str, Any]) -> str:
    """A summary table (gIoU, one column per family) and one detailed table per family, each ending with the
    margin rows of every policy."""
    results = report["results"]
    settings = report["settings"]
    families = list(results)
    methods: list[str] = []
    for fam in families:
        methods += [m for m in results[fam] if m not in methods]
    rows = [
        "| method | " + " | ".join(f"{f} gIoU" for f in families) + " |",
        "|---|" + "---:|" * len(families),
    ]
    for m in methods:
        rows.append(
            f"| {m} | " + " | ".join(_fmt(results[f].get(m, {}).get("giou")) for f in families) + " |"
        )
    marg = report.get("margins") or margins(report)
    for kind in (MARGIN_IMAGE_INDEPENDENT, MARGIN_TEXT_BLIND):
        for p in settings.get("policies", {}):
            cells = [marg.get(f, {}).get(p, {}).get(kind) for f in families]
            if any(cells):
                rows.append(f"| {kind} ({p}) | " + " | ".join(
                    "n/a" if c is None else _signed(c["margin"]) for c in cells) + " |")  # fmt: skip
    head = ("| method | n | gIoU | cIoU | S-measure | format valid | empty masks | pos. points in target | "
            "answers with all pos. points in target |")  # fmt: skip
    for fam in families:
        rows += ["", f"### {fam}", ""]
        fixed = settings.get("fixed_boxes", {}).get(fam)
        if fixed:
            box = ", ".join(f"{v:g}" for v in fixed["box"])
            rows += [f"Best fixed box: {fixed['name']} ([{box}] of the image), validation mean IoU "
                     f"{fixed['val_mean_iou']:.3f} on {fixed['val_n']} scenes of {fixed['val']}.", ""]  # fmt: skip
        rows += [head, "|---|" + "---:|" * 8]
        for m, r in results[fam].items():
            cells = [str(r["n"]), _fmt(r["giou"]), _fmt(r["ciou"]), _fmt(r["s_measure"]),
                     _fmt(r["format_validity"]), str(r["empty_masks"]), _fmt(r["pos_points_in_target"]),
                     _fmt(r["answers_all_pos_in_target"])]  # fmt: skip
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
        for p, kinds in marg.get(fam, {}).items():
            for kind, c in kinds.items():
                rows.append(f"| {kind} ({p}; vs {c['versus']}) | | {_signed(c['margin'])} |" + " |" * 6)
    n = ", ".join(f"{f}: {k}" for f, k in settings["n_per_family"].items())
    rows += ["", f"Scenes per family: {n}. Segmenter: grabcut. Policies decode greedily. Margins are gIoU "
             "differences; the best reference of each group is taken on these scenes."]  # fmt: skip
    return "\n".join(rows) + "\n"


def write_grid(report: dict[str, Any], out: str | os.PathLike[str], k: int) -> Path:
    """The picture grid of the kept cases (`segr1.evaluate.picture_grid`), one row per family."""
    from segr1.evaluate.picture_grid import Case, picture_grid
    from segr1.evaluate.picture_grid import write_grid as write_png

    rows = []
    for family, cases in report["grid_cases"].items():
        rows.append(
            (family, [Case(c["image"], c["mask"], c["gt"], c["prompt"], c["text"], c["iou"]) for c in cases])
        )
    if not rows:
        raise ValueError("--grid needs a --policy to draw")
    return write_png(picture_grid(rows, k), out)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and "train_runtime" not in r:
            steps.append(int(r["step"]))
            values.append(float(v))
    return steps, values


def _smooth(values: list[float], k: int) -> np.ndarray:
    if k <= 1 or len(values) < k:
        return np.asarray(values)
    kernel = np.ones(k) / k
    padded = np.concatenate([np.full(k // 2, values[0]), values, np.full(k - 1 - k // 2, values[-1])])
    return np.convolve(padded, kernel, mode="valid")


def plot_curves(logs: list[tuple[str, str]], out: str | os.PathLike[str], smooth: int = 5) -> Path:
    """Plot the SFT (loss, token accuracy) and GRPO (reward, mask IoU, format) curves of ``logs`` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segr1.train.callbacks import read_log

    panels: list[tuple[str, str, list[tuple[str, str]]]] = []
    for name, path in logs:
        records = read_log(path)
        keys = {k for r in records for k in r}
        if "reward" in keys:
            iou_key = next((k for k in sorted(keys) if k.endswith("/mask_iou")), None)
            seg_key = next(
                (k for k in sorted(keys) if k.startswith("rewards/segmentation") and k.endswith("/mean")),
                None,
            )
            fmt_key = next(
                (k for k in sorted(keys) if k.startswith("rewards/format") and k.endswith("/mean")), None
            )
            series = [("total reward", "reward")]
            series += [
                (s, k)
                for s, k in (
                    ("segmentation reward", seg_key),
                    ("format reward", fmt_key),
                    ("mask IoU (sampled)", iou_key),
                )
                if k
            ]
            panels.append((name, path, series))
        else:
            series = [
                (s, k) for s, k in (("loss", "loss"), ("token accuracy", "mean_token_accuracy")) if k in keys
            ]
            panels.append((name, path, series))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (name, path, series) in zip(axes[0], panels, strict=True):
        records = read_log(path)
        for label, key in series:
            steps, values = _series(records, key)
            if not steps:
                continue
            line = ax.plot(steps, values, alpha=0.3)[0]
            ax.plot(steps, _smooth(values, smooth), label=label, color=line.get_color())
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _write_atomic(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="FAMILY=DIR",
        help="a held-out test folder written by `segr1 data synth` (repeat per family)",
    )
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="a policy checkpoint folder to measure (repeat)",
    )
    parser.add_argument(
        "--system",
        choices=("recorded", "default"),
        default="recorded",
        help="system turn of the policies: the one each checkpoint records (default), or Seg-R1's system prompt",
    )
    parser.add_argument(
        "--val",
        action="append",
        default=[],
        metavar="FAMILY=DIR",
        help="the validation folder of a test family (same name): the best fixed box is chosen on it",
    )
    parser.add_argument("--val-n", type=int, default=None, help="at most this many validation scenes")
    parser.add_argument(
        "--references",
        type=lambda text: [t for t in text.split(",") if t.strip()],
        default=None,
        metavar="NAME,NAME",
        help=f"comma-separated references to run (default: every one that applies): {', '.join(REFERENCES).replace('%', '%%')}",
    )
    parser.add_argument("--no-references", action="store_true", help="measure the policies only")
    parser.add_argument(
        "--reuse",
        default=None,
        metavar="REPORT.json",
        help="take the references' numbers (and chosen fixed boxes) of a family from an earlier --out-json "
        "when it measured them on the same test folder, scenes, validation folder and seed",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="scenes segmented in parallel by the references"
    )
    parser.add_argument("--grid", default=None, help="PNG picture grid of held-out cases of one policy")
    parser.add_argument("--grid-k", type=int, default=4, help="cases per family in the grid (the first K)")
    parser.add_argument("--grid-policy", default=None, help="the --policy NAME drawn (default: the first)")
    parser.add_argument("--n", type=int, default=None, help="at most this many scenes per family")
    parser.add_argument("--seed", type=int, default=0, help="seed of the GT points of the upper reference")
    parser.add_argument("--batch-size", type=int, default=16, help="images per policy call")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer budget of the policies")
    parser.add_argument("--out-json", default=None, help="write every number here")
    parser.add_argument("--out-md", default=None, help="write the markdown table here")
    parser.add_argument("--per-scene", action="store_true", help="keep per-scene scores in the JSON")
    parser.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="NAME=LOG.jsonl",
        help="a training log.jsonl to plot (repeat: SFT, GRPO)",
    )
    parser.add_argument("--curves", default=None, help="PNG the training curves are plotted into")
    parser.add_argument("--smooth", type=int, default=5, help="moving-average window of the curves")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.grid_k < 1:
        parser.error("--workers and --grid-k must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.log:
            if not args.curves:
                parser.error("--log needs --curves PNG")
            print(f"curves: {plot_curves(_pairs(args.log, '--log'), args.curves, args.smooth)}")
        if args.test:
            t0 = time.perf_counter()
            report = evaluate(args)
            report["settings"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
            if args.grid:
                print(f"grid: {write_grid(report, args.grid, args.grid_k)}")
            report.pop("grid_cases", None)
            table = markdown_table(report)
            print(table)
            if args.out_json:
                _write_atomic(args.out_json, json.dumps(report, indent=2) + "\n")
            if args.out_md:
                _write_atomic(args.out_md, table)
        elif not args.log:
            parser.error(
                "nothing to do: give --test (and --policy) to measure, or --log and --curves to plot"
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"synthetic_results: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
