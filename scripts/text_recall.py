"""Can the tiny LM select a list entry by a word? A text-only probe of the rotary frequencies.

The referring runs in docs/results_multitask.md never learnt to select by the phrase, not even with the
answer written out in the prompt ("the red shape, one of: red circle [143,34,205,112]; green circle
[5,57,55,124]"). This script asks the same question without an image: it trains the tiny Qwen2.5-VL
(text tokens only, so its multimodal rotary positions are plain 1-D positions) on that list-copy task and
measures how often the greedy answer copies the named entry's box, against chance (1 / entries).

Each ``--run`` is ``NAME=SPEC``; SPEC is ``theta=T`` (a fresh tiny model built with ``rope_theta`` T, seed 0)
or a checkpoint folder (the shipped policy, say), optionally followed by ``,static=K``: the same model with
its K fastest rotary pairs made position-free (``segr1.policies.tiny.with_static_rope_pairs``). Every run
sees the same training and test sequences::

    python scripts/text_recall.py --run "rope_theta 10=theta=10" --run "rope_theta 1e4=theta=10000" \\
        --run "rope_theta 10, 4 static pairs=theta=10,static=4" --steps 2000

Results go to stdout as a Markdown table (and ``--out-json``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import tempfile
import time
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow", "pink", "purple", "orange", "white")
SHAPES = ("circle", "square", "triangle", "star", "ellipse")
BOX = re.compile(r"\[(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\]")


def sample(rng: random.Random, min_entries: int = 2, max_entries: int = 4, layout: str = "phrase-first"):
    """One list-copy example: (prompt, answer, entry boxes, index of the named entry)."""
    n = rng.randint(min_entries, max_entries)
    colours = rng.sample(COLOURS, n)
    entries = []
    for colour in colours:
        x1, x2 = sorted(rng.sample(range(224), 2))
        y1, y2 = sorted(rng.sample(range(224), 2))
        entries.append((colour, rng.choice(SHAPES), (x1, y1, x2, y2)))
    target = rng.randrange(n)
    listing = "; ".join(f"{c} {s} [{b[0]},{b[1]},{b[2]},{b[3]}]" for c, s, b in entries)
    phrase = f"the {colours[target]} shape"
    if layout == "phrase-first":
        prompt = f"{phrase}, one of: {listing}. Answer:"
    elif layout == "phrase-last":
        prompt = f"One of: {listing}. Find {phrase}. Answer:"
    elif layout == "segr1-instruction":  # segr1's whole referring instruction (frame note, format rules)
        from segr1 import prompts

        prompt = prompts.build_instruction("referring", f"{phrase}, one of: {listing}", frame=224) + "\n"
    else:
        raise ValueError(f"unknown layout {layout!r}")
    b = entries[target][2]
    return prompt, f"<bbox>[{b[0]},{b[1]},{b[2]},{b[3]}]</bbox>", [e[2] for e in entries], target


def _load(spec: str, workdir: Path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from segr1.policies.tiny import build_tiny_qwen25vl, with_static_rope_pairs

    spec, _, static = spec.partition(",static=")
    tag = f"{len(list(workdir.iterdir()))}"
    if spec.startswith("theta="):
        folder = build_tiny_qwen25vl(workdir / tag, seed=0, rope_theta=float(spec[6:]))
    else:
        folder = Path(spec)
    if static:
        folder = with_static_rope_pairs(folder, workdir / f"{tag}-static", int(static))
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(folder), folder


def _batch(tok, examples):
    import torch

    ids, labels = [], []
    for prompt, answer, _, _ in examples:
        p, a = tok(prompt)["input_ids"], tok(answer)["input_ids"] + [tok.eos_token_id]
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    mask = [[1] * len(x) + [0] * (width - len(x)) for x in ids]
    ids = [x + [pad] * (width - len(x)) for x in ids]
    labels = [x + [-100] * (width - len(x)) for x in labels]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def evaluate(model, tok, examples) -> dict:
    """Greedy answers: exact copies of the named entry, and which entry the answer box is closest to."""
    import torch

    from segr1.geometry import box_iou

    exact = chosen = parsed = 0
    chance = 0.0
    model.eval()
    with torch.no_grad():
        for prompt, _, boxes, target in examples:
            ids = torch.tensor([tok(prompt)["input_ids"]])
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False
            )
            text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            chance += 1 / len(boxes)
            m = BOX.search(text)
            if not m:
                continue
            parsed += 1
            box = tuple(int(v) for v in m.groups())
            exact += box == boxes[target]
            ious = [box_iou(box, b) for b in boxes]
            chosen += max(range(len(boxes)), key=ious.__getitem__) == target and max(ious) > 0
    n = len(examples)
    return {
        "n": n,
        "parsed": parsed / n,
        "exact_copy": exact / n,
        "named_entry_chosen": chosen / n,
        "chance": chance / n,
    }


def train(model, tok, examples, steps: int, batch: int, lr: float, log_every: int) -> list[dict]:
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    log, rng = [], random.Random(1)
    for step in range(1, steps + 1):
        ids, mask, labels = _batch(tok, rng.sample(examples, batch))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            log.append({"step": step, "loss": round(loss.item(), 4)})
            print(f"  step {step}: loss {loss.item():.4f}", flush=True)
    return log


def _save(model, source: Path, out: Path) -> None:
    """The trained weights, with the processor, tokenizer and segr1_policy.json of the folder they came from."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", "config.json"):
            shutil.copy(f, out / f.name)
    model.save_pretrained(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="NAME=theta=T or NAME=checkpoint folder")
    ap.add_argument(
        "--layout", default="phrase-first", choices=["phrase-first", "phrase-last", "segr1-instruction"]
    )
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-n", type=int, default=20000)
    ap.add_argument("--test-n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-json", type=Path)
    ap.add_argument(
        "--save", type=Path, help="save the (one) trained model here, e.g. to warm-start SFT from"
    )
    args = ap.parse_args(argv)
    if args.save and len(args.run) != 1:
        ap.error("--save takes exactly one --run")

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_rng, test_rng = random.Random(100), random.Random(5000)
    train_set = [sample(train_rng, layout=args.layout) for _ in range(args.train_n)]
    test_set = [sample(test_rng, layout=args.layout) for _ in range(args.test_n)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.run:
            name, _, spec = run.partition("=")
            print(f"{name}: {spec}", flush=True)
            model, tok, folder = _load(spec, Path(tmp))
            before = evaluate(model, tok, test_set)
            t0 = time.time()
            log = train(model, tok, train_set, args.steps, args.batch, args.lr, max(1, args.steps // 10))
            seconds = time.time() - t0
            after = evaluate(model, tok, test_set)
            if args.save:
                _save(model, folder, args.save)
            theta = model.config.text_config.rope_parameters.get("rope_theta")
            results.append(
                {
                    "run": name,
                    "spec": spec,
                    "rope_theta": theta,
                    "before": before,
                    "after": after,
                    "train_seconds": round(seconds, 1),
                    "log": log,
                }
            )
            print(f"  {name}: before {before}\n  after {after}  ({seconds:.0f} s)", flush=True)
    print(
        f"\nlayout {args.layout}, {args.steps} steps of {args.batch}, lr {args.lr}, {args.test_n} test lists\n"
    )
    print(
        "| run | rope_theta | final train loss | answer parsed | exact copy of the named entry | named entry chosen | chance |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        a = r["after"]
        print(
            f"| {r['run']} | {r['rope_theta']:g} | {r['log'][-1]['loss']:.3f} | {a['parsed']:.2f} | "
            f"{a['exact_copy']:.2f} | {a['named_entry_chosen']:.2f} | {a['chance']:.2f} |"
        )
    if args.out_json:
        args.out_json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
