"""What do a policy's image tokens encode? Linear probes for the colour and the shape of the object on each cell.

A head can only attend to "the red circle" if the image tokens it reads (the input of its decoder layer) say
"red" and "circle" on that object's cells. This script takes the image tokens of a checkpoint at the input of
decoder layer ``--layer`` (``hidden_states[layer]``: 0 is the vision tower's merged output, before any
decoder layer) on the scenes of a folder whose meta lists the objects (``segr1 data synth --kind
referring-seen`` and the like), labels each 28 x 28 cell that one object covers by more than ``--share`` with
that object's colour and shape, and fits a multinomial logistic regression (scikit-learn) per attribute on
the cells of the first scenes; the accuracy on the cells of the other scenes is printed next to the majority
class's. The split is by scene, so a probe cannot memorise a scene.

    python scripts/token_probe.py --model runs/embedded-grounded/sft \\
        --scenes runs/embedded-multitask/data/referring-seen-train --n 1200 --layer 0 --layer 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from segr1.train.grounding import object_cells


def image_tokens(model_dir: str, folder: Path, n: int, layers: list[int]):
    """Per layer, the (cells, hidden) image tokens of the labelled cells of the first ``n`` scenes, with the
    scene index and the colour and shape labels of each cell."""
    import torch
    from PIL import Image

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image
    from segr1.geometry import resize_to_frame
    from segr1.policies import load_policy, read_policy_metadata

    policy = load_policy(f"hf:{model_dir}", device="cpu")
    model, processor = policy.model, policy.processor
    frame = int(read_policy_metadata(model_dir).get("frame", 224))
    feats: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    scene, colour, shape = [], [], []
    samples = sorted(read_manifest(folder / "manifest.jsonl"), key=lambda s: Path(s.image).name)[:n]
    for i, s in enumerate(samples):
        meta = s.meta if isinstance(s.meta, dict) else {}
        if not meta.get("objects"):
            continue
        cells = object_cells(meta, frame, 0.5)
        if not cells:
            continue
        image = resize_to_frame(Image.fromarray(read_image(s.image)), frame)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        where = enc["input_ids"][0] == model.config.image_token_id
        keys = sorted(cells)
        for layer in layers:
            feats[layer].append(hidden[layer][0][where][keys].numpy())
        for c in keys:
            o = meta["objects"][cells[c]]
            scene.append(i)
            colour.append(str(o.get("colour")))
            shape.append(str(o.get("shape")))
    return (
        {k: np.concatenate(v) for k, v in feats.items()},
        np.array(scene),
        np.array(colour),
        np.array(shape),
    )


def probe_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> dict:
    """Held-out accuracy of a logistic-regression probe fitted on the ``train`` rows, and the majority
    class's accuracy on the same held-out rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x[train]), y[train])
    test = ~train
    values, counts = np.unique(y[train], return_counts=True)
    majority = values[np.argmax(counts)]
    return {
        "probe": round(float((clf.predict(scaler.transform(x[test])) == y[test]).mean()), 3),
        "majority": round(float((y[test] == majority).mean()), 3),
        "classes": int(len(values)),
        "cells_train": int(train.sum()),
        "cells_test": int(test.sum()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint folder (hf backend)")
    ap.add_argument("--scenes", type=Path, required=True, help="scene folder whose meta lists the objects")
    ap.add_argument("--n", type=int, default=1000, help="scenes to read")
    ap.add_argument("--train-share", type=float, default=0.75, help="share of the scenes the probes fit on")
    ap.add_argument(
        "--layer", type=int, action="append", help="decoder layer input(s) to probe (default 0 1)"
    )
    args = ap.parse_args(argv)
    layers = args.layer or [0, 1]
    feats, scene, colour, shape = image_tokens(args.model, args.scenes, args.n, layers)
    if len(scene) == 0:
        raise SystemExit(f"{args.scenes}: no scene with objects whose cells could be labelled")
    train = scene < np.quantile(scene, args.train_share)
    report = {
        f"layer {layer}": {
            "colour": probe_accuracy(feats[layer], colour, train),
            "shape": probe_accuracy(feats[layer], shape, train),
        }  # fmt: skip
        for layer in layers
    }
    print(json.dumps({"model": args.model, "scenes": str(args.scenes), **report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
