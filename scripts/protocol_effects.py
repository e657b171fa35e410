"""How each difference between segr1's evaluation protocol and the Seg-R1 release's moves the numbers, measured
on synthetic data (docs/evaluation.md, "The release's protocol").

    python scripts/protocol_effects.py --out runs/protocol-effects          # about 10 minutes on 2 CPU cores

Three synthetic benchmarks are written under --out (all offline, from segr1's scene generator):

* foreground: salient + camouflaged scenes (image/mask folder pair), evaluated with the embedded tiny policy
  and GrabCut (a real, if small, model);
* referring: referring scenes in RefCOCO's refer layout, one ref per object, 1-3 sentences per ref;
* reasoning: the same scenes in ReasonSeg's layout, two queries per image naming the target (the scene's
  phrase, then its colour and shape), an "ignore" ring of ambiguous pixels around the target.

Referring and reasoning are evaluated with a colour-detector stand-in policy (it finds the objects of the colour
the text names, answers one box + centre point per object, largest first, in the model frame) and GrabCut: the
protocol differences measured there are about which samples are scored and how, not about a model.

Each protocol is run as ``--protocol`` would run it: ``segr1`` (the default), ``seg-r1`` (the release's every
switch), and every release switch on its own. Two differences of the release that are not reproducible as a
switch are simulated on the ``segr1`` records: COD/SOD failures reusing the previous image's prediction, and
ReasonSeg's sampling of images with replacement (200 seeded resamples); for the first, a seeded 10% of the
images are also made to fail, since the embedded policy rarely fails on these scenes. Writes OUT/effects.json.
Running it again resumes the finished evaluations (segr1 eval's resume) and recomputes the rest.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

VARIANTS = {
    "foreground": ["segr1", "seg-r1", "segr1,jpeg_round_trip=true", "segr1,qwen_vl_utils_rounding=true",
                   "segr1,labels_mismatch=drop_points"],
    "referring": ["segr1", "seg-r1", "segr1,refcoco_sentences=one_per_image", "segr1,jpeg_round_trip=true",
                  "segr1,qwen_vl_utils_rounding=true"],
    "reasoning": ["segr1", "seg-r1", "segr1,reasonseg_query=random", "segr1,reasonseg_ignore=background",
                  "segr1,reasoning_boxes=first", "segr1,jpeg_round_trip=true"],
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ data


def _object_masks(scene: Any) -> list[np.ndarray]:
    """(H, W) bool masks of every object of a referring scene: the target's exact mask, the others' pixels
    near their colour inside their box (largest connected part)."""
    import cv2

    from segr1.data.synthetic import COLOURS

    masks = [scene.mask]
    img = scene.image.astype(int)
    for obj in scene.meta["objects"][1:]:
        x0, y0, x1, y1 = obj["box"]
        near = np.linalg.norm(img - np.array(COLOURS[obj["colour"]]), axis=2) < 70
        box = np.zeros_like(near)
        box[y0:y1, x0:x1] = True
        n, labels = cv2.connectedComponents((near & box & ~scene.mask).astype(np.uint8))
        if n > 1:
            sizes = np.bincount(labels.ravel())[1:]
            masks.append(labels == 1 + int(sizes.argmax()))
    return masks


def _sentences(obj: dict, rng: np.random.Generator, first: str | None) -> list[str]:
    forms = [f"the {obj['colour']} {obj['shape']}", f"{obj['colour']} {obj['shape']}",
             f"the {obj['shape']} that is {obj['colour']}"]  # fmt: skip
    chosen = [forms[i] for i in rng.permutation(3)[: int(rng.integers(1, 4))]]
    return [first, *chosen[:2]] if first else chosen


def write_refer(root: Path, scenes: list[Any], seed: int) -> None:
    """RefCOCO's refer layout under root: refs(unc).p, instances.json, COCO-named images."""
    from segr1.data.io import write_image

    rng = np.random.default_rng(seed)
    folder, images_dir = root / "Refer_Segm" / "refcoco", root / "Refer_Segm" / "coco_2014" / "train2014"
    folder.mkdir(parents=True, exist_ok=True)
    images, anns, refs, sent_id = [], [], [], 0
    for i, scene in enumerate(scenes):
        name = f"COCO_train2014_{i:012d}.jpg"
        write_image(scene.image, images_dir / name)
        h, w = scene.mask.shape
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        for j, (mask, obj) in enumerate(zip(_object_masks(scene), scene.meta["objects"], strict=False)):
            ann_id = i * 10 + j
            anns.append({"id": ann_id, "image_id": i, "category_id": 1, "segmentation": _rle(mask)})
            sents = _sentences(obj, rng, scene.text if j == 0 else None)
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": i, "split": "val", "category_id": 1,
                         "sent_ids": list(range(sent_id, sent_id + len(sents))), "file_name": name,
                         "sentences": [{"sent": s, "raw": s, "tokens": s.split(), "sent_id": sent_id + k}
                                       for k, s in enumerate(sents)]})  # fmt: skip
            sent_id += len(sents)
    (folder / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": []})
    )
    with open(folder / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": list(mask.shape)}


def write_reasonseg(root: Path, scenes: list[Any]) -> None:
    """ReasonSeg's layout under root/ReasonSeg/val: X.jpg + X.json with a target polygon, an ignore ring
    (the target's outline grown by 3 px, drawn first so the target overwrites its inside) and two queries."""
    import cv2

    from segr1.data.io import write_image

    val = root / "ReasonSeg" / "val"
    val.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(scenes):
        stem = f"scene_{i:03d}"
        write_image(scene.image, val / f"{stem}.jpg")
        m = scene.mask.astype(np.uint8)
        grown = cv2.dilate(m, np.ones((7, 7), np.uint8))
        shapes = []
        for label, mask in (("ignore", grown), ("target", m)):
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for c in contours:
                if len(c) >= 3:
                    shapes.append({"label": label, "points": c[:, 0, :].astype(float).tolist(),
                                   "shape_type": "polygon"})  # fmt: skip
        target = scene.meta["objects"][0]
        texts = [f"Which object is {scene.text}?", f"Where is the {target['colour']} {target['shape']}?"]
        (val / f"{stem}.json").write_text(json.dumps({"text": texts, "is_sentence": True, "shapes": shapes}))


# -------------------------------------------------------------------------------------- stand-in policy


class ColourPolicy:
    """Finds the connected regions of the colour the instruction names (in the image it is shown) and answers
    one box + centre point per region, largest first, in the ``frame`` coordinates (as a model trained on
    that frame would, whatever size the processor shows it)."""

    name = "colour-detector"
    metadata: dict[str, Any] = {}

    def __init__(self, frame: int) -> None:
        self.frame = frame

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        return [
            [self._answer(np.asarray(im.convert("RGB")), text)] * num_samples
            for im, text in zip(images, instructions, strict=True)
        ]

    def _answer(self, arr: np.ndarray, text: str) -> str:
        import cv2

        from segr1.data.synthetic import COLOURS

        colour = next((c for c in COLOURS if c in text.lower()), None)
        if colour is None:
            return "<think>no colour named</think>"
        near = (np.linalg.norm(arr.astype(int) - np.array(COLOURS[colour]), axis=2) < 70).astype(np.uint8)
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(near)
        s = self.frame / arr.shape[1]
        parts = sorted(range(1, n), key=lambda k: -stats[k, cv2.CC_STAT_AREA])
        parts = [k for k in parts if stats[k, cv2.CC_STAT_AREA] >= 20][:4]
        if not parts:
            return f"<think>no {colour} object</think>"
        boxes = "".join(
            f"<bbox>[{round(stats[k, 0] * s)},{round(stats[k, 1] * s)},"
            f"{round((stats[k, 0] + stats[k, 2]) * s)},{round((stats[k, 1] + stats[k, 3]) * s)}]</bbox>"
            for k in parts
        )
        points = ",".join(f"[{round(centroids[k][0] * s)},{round(centroids[k][1] * s)}]" for k in parts)
        labels_txt = ",".join("1" for _ in parts)
        return f"<think>the {colour} object</think> {boxes}, <points>[{points}]</points>, <labels>[{labels_txt}]</labels>"


# --------------------------------------------------------------------------------------------- running


def run_eval(task: str, samples_kwargs: dict, pipeline: Any, protocol: str, out: Path) -> dict:
    from segr1.evaluate import EvalConfig, evaluate, load_eval_samples
    from segr1.protocol import get_protocol

    p = get_protocol(protocol)
    samples, settings = load_eval_samples(task, protocol=p, **samples_kwargs)
    config = EvalConfig(task=task, out_dir=out, batch_size=8, report_n=0, settings=settings, overwrite=False,
                        progress=False, ignore_regions=p.reasonseg_ignore == "exclude")  # fmt: skip
    return evaluate(samples, pipeline, config, state=_SingleProcess())


class _SingleProcess:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        return None


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]


def failures_scored(out: Path, samples: Any, rate: float = 0.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """Foreground metrics of a run's predictions when its failed samples — plus, with ``rate``, a seeded
    ``rate`` fraction of the others, made to fail — are scored as segr1 does (an empty prediction) and as the
    release did (the previous sample's prediction)."""
    from PIL import Image

    from segr1.evaluate.tasks import read_ground_truth
    from segr1.metrics import ForegroundMeter

    recs = sorted(_records(out), key=lambda r: r["index"])
    forced = set(np.flatnonzero(np.random.default_rng(seed).random(len(recs)) < rate).tolist())
    empty, reuse, previous = ForegroundMeter(), ForegroundMeter(), None
    for i, rec in enumerate(recs):
        gt = read_ground_truth(samples[rec["index"]]).mask
        pred = np.asarray(Image.open(out / rec["pred"])) > 0
        failed = bool(rec["error"]) or i in forced
        mine = np.zeros_like(gt) if failed else pred
        theirs = pred
        if failed and previous is not None:
            theirs = np.asarray(Image.fromarray(previous.astype(np.uint8) * 255).resize(gt.shape[::-1])) > 127
        elif failed:
            theirs = np.zeros_like(gt)
        previous = theirs
        empty.update(mine.astype(np.uint8) * 255, gt)
        reuse.update(theirs.astype(np.uint8) * 255, gt)
    keys = ("sm", "wfm", "mae")
    return {"failed": len(forced | {i for i, r in enumerate(recs) if r["error"]}),
            "as empty (segr1)": {k: empty.compute()[k] for k in keys},
            "previous prediction (release)": {k: reuse.compute()[k] for k in keys}}  # fmt: skip


def resample_with_replacement(out: Path, n_draws: int = 200, seed: int = 0) -> dict[str, float]:
    """Mean and standard deviation of gIoU / cIoU over seeded resamples of the images with replacement."""
    recs = [r for r in _records(out) if r["scored"]]
    iou = np.array([r["iou"] for r in recs])
    inter, union = np.array([r["intersection"] for r in recs]), np.array([r["union"] for r in recs])
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(recs), len(recs)) for _ in range(n_draws)]
    giou = [iou[d].mean() for d in draws]
    ciou = [inter[d].sum() / max(union[d].sum(), 1) for d in draws]
    return {"giou": float(np.mean(giou)), "giou_sd": float(np.std(giou)),
            "ciou": float(np.mean(ciou)), "ciou_sd": float(np.std(ciou))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/protocol-effects"))
    parser.add_argument("--n", type=int, default=60, help="images per benchmark (default 60)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from segr1.data.synthetic import scene_at, write_scenes
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import load_policy
    from segr1.segmenters import load_segmenter

    t0 = time.time()
    data = args.out / "data"
    fg = data / "foreground"
    if not (fg / "images").is_dir():
        for kind in ("salient", "camouflaged"):
            write_scenes(kind, args.n // 2, fg / kind, seed=7000, min_size=160, max_size=320, progress=False)
    scenes = [scene_at("referring", 7100, i, min_size=160, max_size=320) for i in range(args.n)]
    if not (data / "Refer_Segm").is_dir():
        write_refer(data, scenes, seed=7100)
        write_reasonseg(data, scenes)
    grabcut = load_segmenter("grabcut")
    embedded = load_policy(None, device="cpu")
    results: dict[str, Any] = {}
    for task, variants in VARIANTS.items():
        for spec in variants:
            out = args.out / task / spec.replace(",", "+").replace("=", "-")
            if task == "foreground":
                pipe = SegR1Pipeline(embedded, grabcut, protocol=spec, batch_size=8)
                kinds = [
                    {"images": fg / k / "images", "masks": fg / k / "masks"}
                    for k in ("salient", "camouflaged")
                ]
                metrics = {}
                for k, kw in zip(("salient", "camouflaged"), kinds, strict=True):
                    doc = run_eval(task, kw, pipe, spec, out / k)
                    metrics[k] = {m: doc["metrics"][m] for m in ("sm", "wfm", "mae")} | {
                        "n_failed": doc["n_failed"]
                    }
            else:
                pipe = SegR1Pipeline(ColourPolicy(1024), grabcut, task=task, protocol=spec, batch_size=8)
                kw = {"dataset": "refcoco" if task == "referring" else "reasonseg", "data_root": data}
                doc = run_eval(task, kw, pipe, spec, out)
                metrics = {**doc["metrics"], "n_total": doc["n_total"]}
            results.setdefault(task, {})[spec] = metrics
            print(f"{task:10s} {spec:45s} {json.dumps(metrics)}", flush=True)
    from segr1.evaluate import load_eval_samples

    for k in ("salient", "camouflaged"):
        samples, _ = load_eval_samples("foreground", images=fg / k / "images", masks=fg / k / "masks")
        for rate in (0.0, 0.1):
            sim = failures_scored(args.out / "foreground" / "segr1" / k, samples, rate=rate)
            results["foreground"].setdefault(f"simulated: failures, {rate:.0%} more made to fail", {})[k] = (
                sim
            )
    refcoco_seeds = []
    for seed in range(10):
        out = args.out / "referring" / f"one-per-image-seed{seed}"
        pipe = SegR1Pipeline(ColourPolicy(1024), grabcut, task="referring", batch_size=8)
        spec = f"segr1,refcoco_sentences=one_per_image,sample_seed={seed}"
        refcoco_seeds.append(
            run_eval("referring", {"dataset": "refcoco", "data_root": data}, pipe, spec, out)["metrics"]
        )
    results["referring"]["one sentence per image, seeds 0-9"] = {
        key: {
            "mean": float(np.mean([m[key] for m in refcoco_seeds])),
            "sd": float(np.std([m[key] for m in refcoco_seeds])),
        }
        for key in ("giou", "ciou")
    }
    results["reasoning"]["simulated: images sampled with replacement"] = resample_with_replacement(
        args.out / "reasoning" / "segr1"
    )
    results["seconds"] = round(time.time() - t0, 1)
    (args.out / "effects.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
