"""Pretrain a tiny policy's vision tower to say what is on each image-token cell: the object's shape and colour.

Qwen2.5-VL's vision encoder comes pretrained; the embedded tiny policy's does not, and SFT on answers (with
or without the grounding terms) leaves its image tokens blind to shape (``scripts/token_probe.py``: shape
0.27-0.30 against 0.16-0.19 for the majority class). This script is the tiny model's stand-in for that
pretraining. It trains the vision tower (patch embedding, blocks and merger) of a checkpoint, with two linear
heads of its own, to classify each 28 x 28 cell of the frame (one merged image token) by the shape and the
colour of the object on it, or as background, on synthetic scenes whose meta lists their objects (``segr1 data
synth --kind referring-seen``, ``reasoning``, ``salient-hard``, ``camouflaged-hard``). A cell is labelled
with an object when that object's box covers more than half of it or the object's centre lies in it (and no
other object's does), as background when no box touches it, and is left out otherwise.

No phrase and no answer is seen: the language model's weights are copied unchanged, the heads are dropped,
and the result is an ordinary Qwen2.5-VL checkpoint to fine-tune with ``segr1 train sft``. The accuracy of
both heads on the object cells of held-out scenes (``--val``) is printed before and after.

    python scripts/vision_pretrain.py --init runs/static/init-vis128x4 --out runs/static/init-vis128x4-pre \\
        --scenes $D/referring-seen-train --scenes $D/reasoning-train --val $D/referring-seen-val --steps 1500
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from segr1.train.grounding import box_cover, object_cells

IGNORE = -100
BACKGROUND = "background"


def cell_labels(meta: dict, frame: int) -> dict[int, int]:
    """Cell (raster order) -> index of the object it shows, for the cells that show one object; cells no
    object's box touches map to -1 (background). Other cells are absent."""
    g = frame // 28
    w, h = meta["size"]
    objects = meta.get("objects") or []
    labels = object_cells(meta, frame, 0.5)
    centres: dict[int, int | None] = {}
    for k, o in enumerate(objects):
        x, y = o["centre"]
        c = min(int(y * frame / h) // 28, g - 1) * g + min(int(x * frame / w) // 28, g - 1)
        centres[c] = None if c in centres else k  # two centres in one cell: neither
    for c, k in centres.items():
        if k is None or (c in labels and labels[c] != k):
            labels.pop(c, None)
        else:
            labels[c] = k
    touched = np.zeros(g * g, dtype=bool)
    for o in objects:
        touched |= box_cover(o["box"], meta["size"], frame) > 0
    for c in np.flatnonzero(~touched):
        labels[int(c)] = -1
    return labels


def encode_scenes(folders: list[Path], processor, frame: int, n: int | None):
    """Pixel values (float16, per scene) and per-cell (shape, colour) label names of the scenes of the folders
    that list objects."""
    from PIL import Image

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image
    from segr1.geometry import resize_to_frame

    pixels, names = [], []
    grid = None
    for folder in folders:
        samples = sorted(read_manifest(folder / "manifest.jsonl"), key=lambda s: Path(s.image).name)
        for s in samples[:n]:
            meta = s.meta if isinstance(s.meta, dict) else {}
            if not meta.get("objects"):
                continue
            image = resize_to_frame(Image.fromarray(read_image(s.image)), frame)
            enc = processor.image_processor(images=[image], return_tensors="pt")
            if grid is None:
                grid = enc["image_grid_thw"][0].tolist()
            elif enc["image_grid_thw"][0].tolist() != grid:
                raise ValueError(f"{s.image}: image grid {enc['image_grid_thw'][0].tolist()} != {grid}")
            cells = cell_labels(meta, frame)
            row = {}
            for c, k in cells.items():
                if k < 0:
                    row[c] = (BACKGROUND, BACKGROUND)
                else:
                    o = meta["objects"][k]
                    row[c] = (str(o.get("shape")), None if o.get("colour") is None else str(o["colour"]))
            pixels.append(enc["pixel_values"].half())
            names.append(row)
    if not pixels:
        raise SystemExit(f"{[str(f) for f in folders]}: no scene lists its objects")
    return pixels, names, grid


def label_arrays(names: list[dict], classes: dict[str, list[str]], cells: int):
    """(scenes, cells) int64 arrays of shape and colour class indices (IGNORE where unlabelled or unknown)."""
    out = {a: np.full((len(names), cells), IGNORE, dtype=np.int64) for a in classes}
    index = {a: {c: i for i, c in enumerate(v)} for a, v in classes.items()}
    for i, row in enumerate(names):
        for c, (shape, colour) in row.items():
            for a, v in (("shape", shape), ("colour", colour)):
                if v is not None and v in index[a]:
                    out[a][i, c] = index[a][v]
    return out


def accuracy(model, heads, pixels, labels, grid, batch: int) -> dict:
    """Per attribute, accuracy on the object cells (background cells left out) and on all labelled cells."""
    import torch

    hits = {a: [0, 0, 0, 0] for a in heads}
    with torch.no_grad():
        for start in range(0, len(pixels), batch):
            feats = tower_tokens(model, pixels[start : start + batch], grid)
            for a, head in heads.items():
                y = torch.from_numpy(labels[a][start : start + batch].reshape(-1))
                pred = head(feats).argmax(-1)
                known = y != IGNORE
                obj = known & (y != 0)
                hits[a][0] += int((pred[obj] == y[obj]).sum())
                hits[a][1] += int(obj.sum())
                hits[a][2] += int((pred[known] == y[known]).sum())
                hits[a][3] += int(known.sum())
    return {
        a: {
            "objects": round(h[0] / max(h[1], 1), 3),
            "all": round(h[2] / max(h[3], 1), 3),
            "object_cells": h[1],
        }
        for a, h in hits.items()
    }


def tower_tokens(model, pixels: list, grid: list[int]):
    """The vision tower's merged tokens (scenes x cells, out width) for a list of scenes' pixel values."""
    import torch

    visual = model.model.visual
    pv = torch.cat(pixels).to(visual.dtype)
    thw = torch.tensor([grid] * len(pixels))
    return visual(pv, grid_thw=thw).pooler_output


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="tiny checkpoint folder whose vision tower is trained")
    ap.add_argument("--out", type=Path, required=True, help="new checkpoint folder")
    ap.add_argument("--scenes", type=Path, action="append", required=True, help="training scene folder(s)")
    ap.add_argument("--val", type=Path, required=True, help="held-out scene folder for the accuracies")
    ap.add_argument("--n", type=int, default=None, help="scenes per training folder (default all)")
    ap.add_argument("--val-n", type=int, default=300)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from segr1.policies import read_policy_metadata

    if args.out.resolve() == Path(args.init).resolve():
        raise SystemExit("--out must differ from --init")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    frame = int(read_policy_metadata(args.init).get("frame", 224))
    processor = AutoProcessor.from_pretrained(args.init)
    model = AutoModelForImageTextToText.from_pretrained(args.init, dtype=torch.float32)
    t0 = time.time()
    pixels, names, grid = encode_scenes(args.scenes, processor, frame, args.n)
    val_pixels, val_names, val_grid = encode_scenes([args.val], processor, frame, args.val_n)
    if val_grid != grid:
        raise SystemExit(f"validation image grid {val_grid} != training grid {grid}")
    classes = {
        a: [BACKGROUND]
        + sorted({v[i] for row in names for v in row.values() if v[i] not in (None, BACKGROUND)})
        for i, a in enumerate(("shape", "colour"))
    }
    cells = (grid[1] // 2) * (grid[2] // 2)
    labels = label_arrays(names, classes, cells)
    val_labels = label_arrays(val_names, classes, cells)
    width = model.config.vision_config.out_hidden_size
    heads = {a: torch.nn.Linear(width, len(v)) for a, v in classes.items()}
    visual = model.model.visual
    params = list(visual.parameters()) + [p for h in heads.values() for p in h.parameters()]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps)),
    )
    log = {
        "scenes": len(pixels),
        "val_scenes": len(val_pixels),
        "classes": classes,
        "encode_seconds": round(time.time() - t0, 1),
    }
    model.eval()
    log["before"] = accuracy(model, heads, val_pixels, val_labels, grid, args.batch)
    print(json.dumps(log), flush=True)
    visual.train()
    ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    t1 = time.time()
    for step in range(1, args.steps + 1):
        idx = rng.choice(len(pixels), size=min(args.batch, len(pixels)), replace=False)
        feats = tower_tokens(model, [pixels[i] for i in idx], grid)
        loss = sum(ce(h(feats), torch.from_numpy(labels[a][idx].reshape(-1))) for a, h in heads.items())
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            print(
                json.dumps(
                    {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - t1, 1)}
                ),
                flush=True,
            )
    model.eval()
    log["after"] = accuracy(model, heads, val_pixels, val_labels, grid, args.batch)
    log["train_seconds"] = round(time.time() - t1, 1)
    print(json.dumps({"before": log["before"], "after": log["after"]}), flush=True)

    shutil.copytree(args.init, args.out, dirs_exist_ok=True)
    model.save_pretrained(args.out)
    meta_path = args.out / "segr1_policy.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["vision_pretrain"] = {
        "init": str(args.init),
        "scenes": [str(s) for s in args.scenes],
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "val": str(args.val),
        "before": log["before"],
        "after": log["after"],
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "vision_pretrain.json").write_text(json.dumps(log, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
