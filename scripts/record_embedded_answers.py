"""Record the embedded policy's answers on examples/*.png (the golden file of tests/test_embedded_answers.py).

The embedded tiny policy was trained on segr1's own prompt style; whatever changes in how segr1 builds its
prompts, images or generation settings, its answers on the repository's examples must stay bit-identical.
This script runs `segr1 segment` on examples/*.png with the default options (foreground; and referring /
reasoning with a fixed text) and writes the answer texts, with the sha256 of the weights they came from, to
tests/data/embedded_answers.json.

Run it only when the shipped weights change (a retrained policy gives other answers):

    python scripts/record_embedded_answers.py            # writes tests/data/embedded_answers.json
    python scripts/record_embedded_answers.py --check    # exit 1 when the answers differ from the file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GOLDEN = REPO / "tests" / "data" / "embedded_answers.json"
# (name, extra `segr1 segment` arguments): the default foreground run and the two text tasks
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foreground", ()),
    ("referring", ("--task", "referring", "--text", "the orange ring")),
    ("reasoning", ("--task", "reasoning", "--text", "which object could hold water?")),
)


def weights_sha256() -> str:
    """sha256 of the shipped policy's model.safetensors (the answers are only comparable for these weights)."""
    from segr1.policies import SHIPPED_POLICY_DIR

    return hashlib.sha256((SHIPPED_POLICY_DIR / "model.safetensors").read_bytes()).hexdigest()


def record(model: str | None = None) -> dict[str, object]:
    """Run `segr1 segment` on the examples for every entry of RUNS; return {"weights_sha256", "runs"}.

    ``model``: a ``--model`` spec for the embedded policy, e.g. ``"hf:default"`` (transformers) or
    ``"native:default"``; None is the default (the native backend on CPU)."""
    from segr1.cli import main

    images = sorted(str(p) for p in EXAMPLES.glob("*.png"))
    runs: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="segr1-golden-") as tmp:
        for name, extra in RUNS:
            out = Path(tmp) / name
            model_args = ["--model", model] if model else []
            main(["segment", *images, *extra, *model_args, "--out", str(out)])
            lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            runs[name] = {Path(r["image"]).name: r["answer"] for r in records}
    return {"weights_sha256": weights_sha256(), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the golden file instead of writing it"
    )
    parser.add_argument(
        "--model", default=None, help="policy spec (default: the embedded default); e.g. hf:default"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    got = record(args.model)
    if args.check:
        want = json.loads(GOLDEN.read_text(encoding="utf-8"))
        if got != want:
            print(f"answers differ from {GOLDEN}", file=sys.stderr)
            return 1
        print("answers match", GOLDEN)
        return 0
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(got, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    print("wrote", GOLDEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
