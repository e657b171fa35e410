"""Does a policy look at the image? Two checks on held-out scenes, for any hf-backend checkpoint.

1. **Shuffled-image loss.** The teacher-forced loss (mean cross-entropy per answer token) of each scene's SFT
   target (`segr1.data.trl.sft_target`: GT box + the interior foreground point (``--point-mode``), the think
   text given by ``--think``) when the policy sees the scene's own image, and when it sees another scene's
   image (a cyclic shift of the batch). A policy that uses the image has a lower loss on its own image;
   ``gain`` is the difference (shuffled - own). A gain near 0 means the answer does not depend on the image.
   For a folder with a manifest whose scenes carry a text (referring phrases, reasoning questions), each
   scene is prompted with its own task and text, and the same is done with another scene's text and the
   own image (``text_gain``): a policy that reads the phrase has a lower loss with its own.
2. **Greedy boxes.** The box of the greedy answer, mapped to the image frame, against the GT box (box IoU),
   the number of distinct boxes it writes (in the model frame), and the same box IoU for a fixed box inset by
   3% of each side (the image-independent reference of scripts/synthetic_results.py).

The prompt (system turn, instruction, model frame) is the one `segr1.pipeline.SegR1Pipeline` builds for the
checkpoint, so the numbers describe the policy as `segr1 segment` runs it.

  python scripts/image_use.py --test salient=runs/embedded/data/salient-test \\
      --test camouflaged=runs/embedded/data/camouflaged-test \\
      --policy "SFT only=runs/embedded/sft" --policy "SFT + GRPO=src/segr1/assets/tiny-policy" --n 128

Prints one JSON object per (policy, family) line and a markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FIXED_MARGIN = 0.03


class _NoSegmenter:
    """Empty masks: only the policy's answers are measured here."""

    def segment(self, image, prompts):
        return [np.zeros(np.asarray(image).shape[:2], dtype=bool) for _ in prompts]


def _pipeline(folder: str, batch_size: int, task: str = "foreground", max_new_tokens: int = 128):
    from segr1.pipeline import SegR1Pipeline
    from segr1.policies import load_policy

    policy = load_policy(folder, device="cpu")
    if not hasattr(policy, "model") or not hasattr(policy, "processor"):
        raise SystemExit(f"{folder}: the shuffled-image loss needs an hf-backend policy")
    return SegR1Pipeline(
        policy, _NoSegmenter(), task=task, max_new_tokens=max_new_tokens, batch_size=batch_size
    )


def prompt_text(pipe, image, text: str | None) -> str:
    """The chat-template prompt ``pipe`` gives the policy for ``image`` and the scene's ``text``."""
    user = pipe.style.user(pipe.task, text, frame=pipe.frame, stage=pipe.stage)
    messages = pipe.style.messages(image, user, pipe.system_for(user), stage=pipe.stage)
    return pipe.policy.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answer_batch(processor, prompts: list[str], images: list, targets: list[str]):
    """Processor inputs for each prompt + its target answer + the end token, and labels that score only the
    answer (and end) tokens. The tokenizer must pad on the right: the prompt starts each row."""
    end = processor.tokenizer.eos_token or ""
    lengths = [
        len(processor(text=[p], images=[im])["input_ids"][0]) for p, im in zip(prompts, images, strict=True)
    ]
    enc = processor(
        text=[p + t + end for p, t in zip(prompts, targets, strict=True)],
        images=images, padding=True, return_tensors="pt",
    )  # fmt: skip
    labels = enc["input_ids"].clone()
    for row, n in enumerate(lengths):
        labels[row, :n] = -100
    labels[enc["attention_mask"] == 0] = -100
    return enc, labels


def shuffled_loss(
    pipe,
    images,
    masks,
    think: str,
    batch: int,
    texts: list | None = None,
    point_mode: str = "interior",
    metas: list | None = None,
) -> dict[str, float]:
    """Mean per-token answer loss with the own image and with another scene's image; for scenes with a text
    (referring / reasoning), also with the own image and another scene's text (``loss_shuffled_text``,
    ``text_gain``)."""
    import torch
    from PIL import Image

    from segr1.data.trl import SCENE_THINK_FALLBACK, SCENE_THINKS, scene_think, sft_target
    from segr1.geometry import mask_to_box, resize_to_frame

    policy, frame = pipe.policy, pipe.frame
    model, processor = policy.model, policy.processor
    texts = list(texts) if texts is not None else [None] * len(images)
    frames = [resize_to_frame(Image.fromarray(im), frame) for im in images]
    metas = list(metas) if metas is not None else [None] * len(images)
    thinks = [
        ((scene_think(meta, frame, centres=think == "scene-centres",
                      target_box=mask_to_box(resize_to_frame(masks[i], frame))) if texts[i] else None)
         or SCENE_THINK_FALLBACK) if think in SCENE_THINKS else think
        for i, meta in enumerate(metas)
    ]  # fmt: skip
    targets = [sft_target(m, frame=frame, rng=i, n_pos=1, n_neg=0, think=t, point_mode=point_mode)
               for i, (m, t) in enumerate(zip(masks, thinks, strict=True))]  # fmt: skip

    def mean_loss(shown: list, shown_texts: list) -> float:
        per_scene = []
        for s in range(0, len(shown), batch):
            ims = shown[s : s + batch]
            prompts = [
                prompt_text(pipe, im, tx) for im, tx in zip(ims, shown_texts[s : s + batch], strict=True)
            ]
            enc, labels = answer_batch(processor, prompts, ims, targets[s : s + batch])
            with torch.no_grad():
                logits = model(**enc).logits[:, :-1].float()
            ce = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
            )
            per_scene += (ce.sum(1) / (labels[:, 1:] != -100).sum(1)).tolist()
        return float(np.mean(per_scene))

    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "right"  # the prompt mask below assumes the prompt starts each row
    try:
        own = mean_loss(frames, texts)
        shifted = mean_loss(frames[1:] + frames[:1], texts)
        out = {"loss_own_image": own, "loss_shuffled_image": shifted, "gain": shifted - own}
        if any(t is not None for t in texts):
            other = mean_loss(frames, texts[1:] + texts[:1])
            out.update(loss_shuffled_text=other, text_gain=other - own)
    finally:
        processor.tokenizer.padding_side = side
    return out


def greedy_boxes(
    pipe, images, masks, texts: list | None = None, metas: list | None = None
) -> dict[str, float]:
    """Greedy answers' box IoU with the target, a fixed box's, the distinct boxes; for scenes whose metadata lists
    the objects and the target (`segr1 data synth`), ``named``: the share of answers whose box overlaps the
    target more than every other object (a text-blind policy that boxes one object gets 1 / objects)."""
    from segr1.geometry import box_iou, mask_to_box

    results = pipe(list(images), texts=texts) if texts is not None and any(texts) else pipe(list(images))
    metas = list(metas) if metas is not None else [None] * len(results)
    ious, fixed, boxes, named = [], [], set(), []
    for res, gt, meta in zip(results, masks, metas, strict=True):
        h, w = gt.shape
        g = mask_to_box(gt)
        b = res.prompt.boxes[0] if len(res.prompt.boxes) else None
        ious.append(box_iou(b, g))
        objects, target = (meta or {}).get("objects"), (meta or {}).get("target")
        if isinstance(objects, list) and len(objects) > 1 and isinstance(target, int):
            overlaps = [box_iou(b, o["box"]) if b is not None else 0.0 for o in objects]
            others = max(v for k, v in enumerate(overlaps) if k != target)
            named.append(overlaps[target] > others)
        m = FIXED_MARGIN
        fixed.append(box_iou([m * w, m * h, (1 - m) * w, (1 - m) * h], g))
        if len(res.prompt_model_frame.boxes):
            boxes.add(tuple(int(v) for v in res.prompt_model_frame.boxes[0]))
    out = {
        "box_iou": float(np.mean(ious)),
        "fixed_box_iou": float(np.mean(fixed)),
        "distinct_boxes": len(boxes),
    }
    if named:
        out["named"] = float(np.mean(named))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", action="append", required=True, help="NAME=FOLDER (repeatable)")
    ap.add_argument("--test", action="append", required=True, help="FAMILY=FOLDER with images/ and masks/")
    ap.add_argument("--n", type=int, default=128, help="scenes per family (first N by name)")
    ap.add_argument("--think", default="object",
                    help="think text of the teacher-forced targets ('scene': each scene's object list)")  # fmt: skip
    ap.add_argument("--point-mode", default="interior", choices=("interior", "random"),
                    help="foreground point of the teacher-forced targets (the embedded SFT's: interior)")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128, help="answer budget of the greedy answers")
    args = ap.parse_args(argv)

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image, read_mask

    families = {}
    for spec in args.test:
        name, _, folder = spec.partition("=")
        manifest = Path(folder) / "manifest.jsonl"
        if manifest.is_file():  # the scenes' own task and text (referring phrases, reasoning questions)
            samples = sorted(read_manifest(manifest), key=lambda s: Path(s.image).name)[: args.n]
            files = [Path(s.image) for s in samples]
            masks = [Path(s.mask) for s in samples]
            task, texts = samples[0].task if samples else "foreground", [s.text for s in samples]
            metas = [s.meta for s in samples]
        else:
            files = sorted((Path(folder) / "images").glob("*.png"))[: args.n]
            masks = [Path(folder) / "masks" / f.name for f in files]
            task, texts = "foreground", [None] * len(files)
            metas = [None] * len(files)
        if not files:
            raise SystemExit(f"--test {spec}: no images under {folder}/images")
        families[name] = ([read_image(f) for f in files], [read_mask(m) for m in masks], task, texts, metas)
    rows = []
    for spec in args.policy:
        label, _, folder = spec.partition("=")
        pipes = {}
        for fam, (images, masks, task, texts, metas) in families.items():
            if task not in pipes:
                pipes[task] = _pipeline(folder, args.batch_size, task, args.max_new_tokens)
            pipe = pipes[task]
            row = {"policy": label, "family": fam, "n": len(images)}
            row.update(
                shuffled_loss(pipe, images, masks, args.think, args.batch_size, texts, args.point_mode, metas)
            )
            row.update(greedy_boxes(pipe, images, masks, texts, metas))
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(
        "| policy | family | loss, own image | loss, shuffled image | gain | loss, shuffled text | text gain "
        "| greedy box IoU | fixed box IoU | distinct boxes | named object boxed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        text = f"{r['loss_shuffled_text']:.4f} | {r['text_gain']:+.4f}" if "text_gain" in r else "n/a | n/a"
        named = f"{r['named']:.3f}" if "named" in r else "n/a"
        print(
            f"| {r['policy']} | {r['family']} | {r['loss_own_image']:.4f} | {r['loss_shuffled_image']:.4f} | "
            f"{r['gain']:+.4f} | {text} | {r['box_iou']:.3f} | {r['fixed_box_iou']:.3f} | "
            f"{r['distinct_boxes']} / {r['n']} | {named} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
