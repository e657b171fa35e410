"""SFT with an auxiliary grounding loss: do image tokens that are told which object the phrase names help?

The referring runs in docs/results_multitask.md never learnt to select an object by the phrase. This script
runs the same SFT (the answer's next-token loss on the embedded targets) and adds one training-only term: a
linear probe on the hidden states of the 64 image tokens after decoder layer ``--layer`` predicts, per
28 x 28 cell of the 224 x 224 frame, the share of the cell covered by the *named* object (binary cross-
entropy, weight ``--aux-weight``). In a text-first prompt the image tokens come after the phrase, so the
probe asks them to mark the object the phrase names; the answer can then box the marked object as it boxes
a salient one. The probe is dropped when the model is saved: the checkpoint is an ordinary Qwen2.5-VL.
``--aux-weight 0`` is the same loop without the term, the control.

``--attn-weight W`` adds a second training-only term that works on the step the answer needs: head
``--attn-head`` of decoder layer ``--attn-layer`` is taught, at the answer positions before the first box digit
(``pre_coordinate_queries``), to put its attention
on the image tokens of the named object (cross-entropy between the named object's cell coverage, normalised
to a distribution over the 64 image tokens, and the head's attention weights on them). Its query can only
pick the named object if it carries the phrase's word, which earlier layers must fetch; so the term asks for
the phrase-to-object match directly instead of through the answer's digits. It needs eager attention (set
here), and adds no parameters.

What the head returns is a mix of the named object's image-token values, which says *which* object but
not *where* unless those values hold their token's place. ``--pos-weight`` adds a training-only linear
probe that reads each image token's (column, row) in the 8 x 8 grid from the input of the taught layer
(mean squared error on coordinates in [0, 1]); ``--box-weight`` a probe that reads the named object's box
(x1, y1, x2, y2 over the frame) from the output of the taught layer at the pre-coordinate positions. Both
probes are dropped when the model is saved.

    python scripts/grounding_aux.py --init runs/static/init --train runs/embedded-capacity/data/referring-colour-train \\
        --steps 1000 --aux-weight 1.0 --out runs/grounding/aux

Evaluate the result with scripts/image_use.py (its ``named object boxed`` column).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np

from segr1.train.grounding import (  # the terms `segr1 train sft` adds; this script is where they were found
    attention_loss,
    box_cover,
    cell_targets,
    digit_token_ids,
    place_loss,
    pre_coordinate_queries,
)


def evaluate(pipe, val: Path, n: int) -> dict:
    """scripts/image_use.py's shuffled-image / shuffled-text losses and greedy boxes for ``pipe`` (its policy,
    its prompt style) on the first ``n`` scenes of ``val``."""
    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image, read_mask

    image_use = _image_use()
    samples = sorted(read_manifest(val / "manifest.jsonl"), key=lambda s: Path(s.image).name)[:n]
    images = [read_image(s.image) for s in samples]
    masks = [read_mask(s.mask) for s in samples]
    texts, metas = [s.text for s in samples], [s.meta for s in samples]
    row = {
        "n": len(images),
        **image_use.shuffled_loss(pipe, images, masks, "object", 8, texts, "interior", metas),
    }
    row.update(image_use.greedy_boxes(pipe, images, masks, texts, metas))
    return row


def box_cells(box, size, frame: int, share: float = 0.3) -> np.ndarray:
    """Cells (raster order) that an object's box ``[x1, y1, x2, y2]`` in an image of ``size`` (w, h) covers by
    more than ``share`` once mapped to the frame."""
    return box_cover(box, size, frame) > share


def head_image_attention(pipe, image, text: str | None, mask, layer: int, head: int, digit_ids) -> np.ndarray:
    """Mean attention of head ``head`` of decoder layer ``layer`` over the image tokens, at the positions
    before the first coordinate digit of the teacher-forced GT answer (the embedded SFT's target for
    ``mask``) to ``pipe``'s prompt for ``image`` (frame-sized) and ``text``. The model must run eager
    attention and the tokenizer pad on the right."""
    import torch

    from segr1.data.trl import sft_target

    image_use = _image_use()
    model, processor = pipe.policy.model, pipe.policy.processor
    answer = sft_target(
        mask, frame=pipe.frame, rng=0, n_pos=1, n_neg=0, think="object", point_mode="interior"
    )
    enc, labels = image_use.answer_batch(
        processor, [image_use.prompt_text(pipe, image, text)], [image], [answer]
    )
    with torch.no_grad():
        weights = model(**enc, output_attentions=True).attentions[layer][0, head]
    queries = pre_coordinate_queries(enc["input_ids"], labels, digit_ids)[0]
    return weights[queries][:, enc["input_ids"][0] == model.config.image_token_id].mean(0).numpy()


def attention_share(pipe, val: Path, n: int, layer: int, head: int) -> dict:
    """Of the attention that head ``head`` of decoder layer ``layer`` gives the two objects' image tokens at
    the pre-coordinate answer positions (teacher-forced GT answer), the share on the named object: with the
    scene's own phrase, and with the phrase naming the other object's colour. A head that selects by the
    phrase moves with it (own high, swapped low); an image-only cue gives both the same share. Two-object
    scenes whose phrase names the target's colour only."""
    from PIL import Image

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image, read_mask
    from segr1.geometry import resize_to_frame

    model, processor, frame = pipe.policy.model, pipe.policy.processor, pipe.frame
    model.set_attn_implementation("eager")
    side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "right"
    digit_ids = digit_token_ids(processor.tokenizer)
    shares = {"own": [], "swapped": []}
    for s in sorted(read_manifest(val / "manifest.jsonl"), key=lambda s: Path(s.image).name)[:n]:
        objects, t = s.meta["objects"], s.meta["target"]
        if len(objects) != 2 or objects[t]["colour"] not in s.text:
            continue
        other = objects[1 - t]
        image = resize_to_frame(Image.fromarray(read_image(s.image)), frame)
        mask = read_mask(s.mask)
        named, rest = (box_cells(o["box"], s.meta["size"], frame) for o in (objects[t], other))
        for kind, text in (
            ("own", s.text),
            ("swapped", s.text.replace(objects[t]["colour"], other["colour"])),
        ):
            w = head_image_attention(pipe, image, text, mask, layer, head, digit_ids)
            shares[kind].append(float(w[named].sum() / max(w[named].sum() + w[rest].sum(), 1e-9)))
    processor.tokenizer.padding_side = side
    return {f"attention_share_{k}": round(float(np.mean(v)), 4) for k, v in shares.items()} | {
        "attention_scenes": len(shares["own"])
    }


def phrase_template(text: str | None, objects: list[dict]) -> str:
    """A referring phrase with its colour and shape words replaced by C and S ("the C S on the left"); the
    scene kind's questions and the foreground scenes (no text) keep their own text or "none"."""
    if not text:
        return "none"
    for o in objects:
        for key, letter in (("colour", "C"), ("shape", "S")):
            if o.get(key):
                text = text.replace(o[key], letter)
    return text


POSITION_WORDS = ("left", "right", "top", "bottom", "lowest", "highest")
SIZE_WORDS = ("small", "little", "large", "big", "bigger", "smaller", "larger")


def phrase_kind(template: str) -> str:
    """The word a phrase template selects by: ``position`` (left, topmost, ...), ``size`` (smaller, big,
    ...), else ``colour + shape``, ``colour``, ``shape`` or ``other`` by its C / S slots; ``none`` without
    text."""
    words = template.replace("most", "").split()
    if template == "none":
        return "none"
    if any(w in POSITION_WORDS for w in words):
        return "position"
    if any(w in SIZE_WORDS for w in words):
        return "size"
    slots = ("C" in words, "S" in words)
    return {(True, True): "colour + shape", (True, False): "colour", (False, True): "shape"}.get(
        slots, "other"
    )


def target_attention(pipe, folder: Path, n: int, layer: int, head: int) -> dict:
    """Where head ``head`` of decoder layer ``layer`` looks at the pre-coordinate answer positions (teacher-
    forced GT answer), on the first ``n`` scenes of ``folder`` whose meta lists the objects and the target:
    ``share``, the head's attention on the target's cells over its attention on all objects' cells (cells a
    box covers, `box_cells`); ``chance``, the target's share of those cells (a head that spreads over the
    objects); ``picks``, how often the target's cells get more attention per cell than every other object's.
    Overall and per phrase template (`phrase_template`)."""
    from PIL import Image

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image, read_mask
    from segr1.geometry import resize_to_frame

    model, processor, frame = pipe.policy.model, pipe.policy.processor, pipe.frame
    model.set_attn_implementation("eager")
    side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "right"
    digit_ids, task = digit_token_ids(processor.tokenizer), pipe.task
    rows = []
    for s in sorted(read_manifest(folder / "manifest.jsonl"), key=lambda s: Path(s.image).name)[:n]:
        meta = s.meta if isinstance(s.meta, dict) else {}
        objects, t = meta.get("objects") or [], meta.get("target")
        if len(objects) < 2 or not isinstance(t, int):
            continue
        pipe.task = s.task or task
        image = resize_to_frame(Image.fromarray(read_image(s.image)), frame)
        cells = [box_cells(o["box"], meta["size"], frame) for o in objects]
        own = cells[t]
        others = [c & ~own for i, c in enumerate(cells) if i != t]
        if not own.any() or not any(c.any() for c in others):
            continue
        w = head_image_attention(pipe, image, s.text, read_mask(s.mask), layer, head, digit_ids)
        union = own | np.logical_or.reduce(others)
        colour = objects[t].get("colour")
        named = bool(s.text and colour and colour in s.text)
        shared = sum(o.get("colour") == colour for o in objects) > 1
        rows.append({
            "template": phrase_template(s.text, objects),
            "kind": phrase_kind(phrase_template(s.text, objects)),
            "colour": "no colour word" if not named else "colour shared" if shared else "colour unique",
            "share": float(w[own].sum() / max(w[union].sum(), 1e-9)),
            "chance": float(own.sum() / union.sum()),
            "picks": float(all(w[own].mean() > w[c].mean() for c in others if c.any())),
        })  # fmt: skip
    pipe.task = task
    processor.tokenizer.padding_side = side

    def summary(group):
        return {
            key: round(float(np.mean([r[key] for r in group])), 4) for key in ("share", "chance", "picks")
        } | {"n": len(group)}

    if not rows:
        return {}
    report = {"all": summary(rows)}
    for key in ("kind", "colour", "template"):
        groups = sorted({r[key] for r in rows}, key=lambda g: -sum(r[key] == g for r in rows))
        report[f"by {key}"] = {g: summary([r for r in rows if r[key] == g]) for g in groups}
    return report


def _image_use():
    """The sibling script scripts/image_use.py as a module (the one already imported, if any)."""
    import importlib.util
    import sys

    if "image_use" in sys.modules:
        return sys.modules["image_use"]
    spec = importlib.util.spec_from_file_location("image_use", Path(__file__).with_name("image_use.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["image_use"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="checkpoint folder to start from")
    ap.add_argument("--train", help="scene folder with manifest.jsonl (referring scenes)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--prompt-style", default="segr1-text-first")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--aux-weight", type=float, default=1.0)
    ap.add_argument(
        "--layer", type=int, default=2, help="decoder layer whose output the probe reads (1..layers)"
    )
    ap.add_argument("--attn-weight", type=float, default=0.0, help="weight of the attention term (0: none)")
    ap.add_argument("--attn-layer", type=int, default=1, help="decoder layer (0-based) of the taught head")
    ap.add_argument("--attn-head", type=int, default=0, help="the taught head")
    ap.add_argument("--pos-weight", type=float, default=0.0, help="weight of the image-token place probe")
    ap.add_argument("--box-weight", type=float, default=0.0, help="weight of the named-box probe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--task-line-only",
        action="store_true",
        help="prompt with the task line only: the segr1-task-line style (overrides --prompt-style)",
    )
    ap.add_argument("--val", type=Path, help="scene folder to score the result on (image_use.py's columns)")
    ap.add_argument("--val-n", type=int, default=64)
    ap.add_argument(
        "--diagnose",
        type=Path,
        nargs="+",
        metavar="FOLDER",
        help="train nothing: print where the taught head of --init looks on these scene folders "
        "(target_attention, --val-n scenes each, per phrase template) as JSON",
    )
    args = ap.parse_args(argv)
    if args.diagnose:
        pipe = _image_use()._pipeline(args.init, 8, "referring")
        report = {
            str(f): target_attention(pipe, f, args.val_n, args.attn_layer, args.attn_head)
            for f in args.diagnose
        }
        print(json.dumps(report, indent=1))
        return 0
    if not args.train or not args.out:
        ap.error("--train and --out are needed to train (or --diagnose FOLDER ... to inspect --init)")

    import torch
    from PIL import Image

    from segr1.data.folders import read_manifest
    from segr1.data.io import read_image, read_mask
    from segr1.data.trl import sft_target
    from segr1.geometry import mask_to_box, resize_to_frame
    from segr1.styles import get_style

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    image_use = _image_use()
    pipe = image_use._pipeline(args.init, 8, "referring")
    style = get_style("segr1-task-line" if args.task_line_only else args.prompt_style)
    pipe.style = style
    model, processor, frame = pipe.policy.model, pipe.policy.processor, pipe.frame
    if args.attn_weight > 0:
        model.set_attn_implementation("eager")  # attention weights are returned only by eager attention
    digit_ids = digit_token_ids(processor.tokenizer)
    samples = read_manifest(Path(args.train) / "manifest.jsonl")
    image_id = model.config.image_token_id
    hidden = model.config.text_config.hidden_size
    probe = torch.nn.Linear(hidden, 1)
    place_probe, box_probe = torch.nn.Linear(hidden, 2), torch.nn.Linear(hidden, 4)
    params = [*model.parameters(), *probe.parameters(), *place_probe.parameters(), *box_probe.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warm = 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)),
    )
    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "right"  # answer_batch: the prompt starts each row
    rng = random.Random(args.seed)
    log, t0 = [], time.time()
    model.train()
    for step in range(1, args.steps + 1):
        batch = rng.sample(samples, args.batch)
        images = [resize_to_frame(Image.fromarray(read_image(s.image)), frame) for s in batch]
        masks = [read_mask(s.mask) for s in batch]
        prompts = [image_use.prompt_text(pipe, image, s.text) for image, s in zip(images, batch, strict=True)]
        targets = [
            sft_target(
                m,
                frame=frame,
                rng=rng.randrange(2**31),
                n_pos=1,
                n_neg=0,
                think="object",
                point_mode="interior",
            )
            for m in masks
        ]
        enc, labels = image_use.answer_batch(processor, prompts, images, targets)
        out = model(**enc, labels=labels, output_hidden_states=True, output_attentions=args.attn_weight > 0)
        loss = out.loss
        aux = torch.zeros(())
        attn = torch.zeros(())
        queries = pre_coordinate_queries(enc["input_ids"], labels, digit_ids)
        if args.attn_weight > 0:
            attn = attention_loss(
                out.attentions[args.attn_layer][:, args.attn_head], enc["input_ids"] == image_id, queries,
                torch.tensor(np.stack([cell_targets(m, frame) for m in masks])),
            )  # fmt: skip
            loss = loss + args.attn_weight * attn
        place = box = torch.zeros(())
        if args.pos_weight > 0:
            tokens = out.hidden_states[args.attn_layer][enc["input_ids"] == image_id].view(
                args.batch, -1, hidden
            )
            place = place_loss(place_probe, tokens)
            loss = loss + args.pos_weight * place
        if args.box_weight > 0:
            h = out.hidden_states[args.attn_layer + 1]
            boxes = [mask_to_box(resize_to_frame(m.astype(bool), frame)) for m in masks]
            goal = torch.tensor(np.stack([np.asarray(b, dtype=np.float32) / frame for b in boxes]))
            goal = goal.repeat_interleave(queries.sum(1), dim=0)
            box = torch.nn.functional.mse_loss(box_probe(h[queries]), goal)
            loss = loss + args.box_weight * box
        if args.aux_weight > 0:
            h = out.hidden_states[args.layer]  # (B, L, hidden): the output of decoder layer `layer`
            where = enc["input_ids"] == image_id
            cells = h[where].view(args.batch, -1, hidden)
            goal = torch.tensor(np.stack([cell_targets(m, frame) for m in masks]))
            if goal.shape != cells.shape[:2]:
                raise SystemExit(f"{cells.shape[1]} image tokens per scene, {goal.shape[1]} cells")
            aux = torch.nn.functional.binary_cross_entropy_with_logits(probe(cells).squeeze(-1), goal)
            loss = loss + args.aux_weight * aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 10 == 0 or step == args.steps:
            row = {"step": step, "loss": round(out.loss.item(), 4), "aux": round(aux.item(), 4),
                   "attn": round(attn.item(), 4), "place": round(place.item(), 4), "box": round(box.item(), 4),
                   "seconds": round(time.time() - t0, 1)}  # fmt: skip
            log.append(row)
            print(json.dumps(row), flush=True)
    model.eval()
    processor.tokenizer.padding_side = side  # the policy generates with its own (left) padding
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    meta = json.loads((Path(args.init) / "segr1_policy.json").read_text())
    meta.update(prompt_style=style.name, task="referring", tasks=["referring"], trained=True,
                grounding_aux={k: str(v) for k, v in vars(args).items()})  # fmt: skip
    (args.out / "segr1_policy.json").write_text(json.dumps(meta, indent=1) + "\n")
    (args.out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    for name in ("chat_template.jinja",):
        if (Path(args.init) / name).is_file() and not (args.out / name).is_file():
            shutil.copy(Path(args.init) / name, args.out / name)
    if args.val:
        row = evaluate(pipe, args.val, args.val_n)
        if args.attn_weight > 0:
            row.update(attention_share(pipe, args.val, args.val_n, args.attn_layer, args.attn_head))
        (args.out / "val.json").write_text(json.dumps(row, indent=1) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
