"""How well a policy trained with the ``scene`` think (`segr1.data.trl.scene_think`) names the scene's objects.

For each scene of a manifest folder (its records list their objects, as `segr1 data synth` writes), the greedy
answer's think list is compared, entry by entry in reading order, with the scene's own list: the share of
scenes whose list has the right number of entries, the share of entries with the right colour and shape, and the
mean distance (model-frame pixels) between listed and true centres (box centres for ``scene`` lists). Also how
often the answer's box is the listed entry whose colour and shape the phrase names (the copy step), and how
often it boxes the named object (as scripts/image_use.py).

  python scripts/scene_naming.py --test runs/embedded-capacity/data/referring-colour-val --policy runs/tf/colour-warm-tf-scene --n 64
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ENTRY = re.compile(r"([a-z]+) ([a-z]+) (?:\[(\d+),(\d+),(\d+),(\d+)\]|(\d+),(\d+))")


def parse_list(think: str) -> list[tuple[str, str, float, float]]:
    """(colour, shape, x, y) per entry of a ``scene`` / ``scene-centres`` think text (bounded by its length)."""
    out = []
    for m in ENTRY.finditer(think[:2000]):
        if m.group(3) is not None:
            x1, y1, x2, y2 = (int(m.group(k)) for k in range(3, 7))
            out.append((m.group(1), m.group(2), (x1 + x2) / 2, (y1 + y2) / 2))
        else:
            out.append((m.group(1), m.group(2), float(m.group(7)), float(m.group(8))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", required=True, help="folder with manifest.jsonl")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    from image_use import _NoSegmenter

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image
    from segr1.data.trl import scene_think
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import load_policy

    samples = sorted(read_manifest(Path(args.test) / "manifest.jsonl"), key=lambda s: Path(s.image).name)[
        : args.n
    ]
    pipe = SegR1Pipeline(load_policy(args.policy, device="cpu"), _NoSegmenter(), task=samples[0].task,
                         max_new_tokens=160, batch_size=16)  # fmt: skip
    results = pipe([read_image(s.image) for s in samples], texts=[s.text for s in samples])
    count_ok, names, dists, copied = [], [], [], []
    for s, r in zip(samples, results, strict=True):
        truth = parse_list(scene_think(s.meta, pipe.frame) or "")
        got = parse_list(r.prompt_model_frame.think or "") if r.prompt_model_frame is not None else []
        count_ok.append(len(got) == len(truth))
        for (tc, ts, tx, ty), (gc, gs, gx, gy) in zip(truth, got, strict=False):
            names.append(tc == gc and ts == gs)
            dists.append(float(np.hypot(tx - gx, ty - gy)))
        target = s.meta["objects"][s.meta["target"]]
        named = [e for e in got if e[0] == target["colour"] and e[1] == target["shape"]]
        boxes = r.prompt_model_frame.boxes if r.prompt_model_frame is not None else []
        if len(named) == 1 and len(boxes):
            b = boxes[0]
            copied.append(
                bool(np.hypot((b[0] + b[2]) / 2 - named[0][2], (b[1] + b[3]) / 2 - named[0][3]) < 3)
            )
    row = {
        "policy": args.policy,
        "scenes": len(samples),
        "right_count": float(np.mean(count_ok)),
        "entries_named_right": float(np.mean(names)) if names else 0.0,
        "centre_error_px": float(np.median(dists)) if dists else None,
        "box_is_the_named_entry": float(np.mean(copied)) if copied else 0.0,
        "scenes_with_one_named_entry": len(copied),
    }
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
