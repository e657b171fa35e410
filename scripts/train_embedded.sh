#!/usr/bin/env bash
# Reproduce the embedded tiny Seg-R1 policy shipped in src/segr1/assets/tiny-policy, with segr1's own commands:
#
#   1. segr1 data synth   -> training scenes (seed 100) under $RUN/data: foreground (silhouette, salient,
#                            camouflaged, salient-hard, camouflaged-hard), referring-seen, reasoning
#   2. segr1 train sft    --config recipes/tiny/embedded_sft.yaml   -> $RUN/sft   (format + localisation, 3 tasks)
#   3. segr1 train grpo   --config recipes/tiny/embedded_grpo.yaml  -> $RUN/grpo  (GrabCut mask reward + format
#                                                                                 + box / point shaping)
#   4. copy the GRPO checkpoint (weights, tokenizer, processor) into src/segr1/assets/tiny-policy with a
#      segr1_policy.json {"frame": 224, "trained": true, "recipe": ..., "date": ..., "seeds": ...}
#
# Usage: scripts/train_embedded.sh [--no-ship | --ship-only]      (from anywhere; runs in the repository root)
#   --no-ship:   train only; the policy stays in $RUN/grpo
#   --ship-only: skip training and ship $RUN/grpo (train_seconds = the two stages' recorded train_runtime)
# Environment: VARIANT (default shipped: the foreground policy in the package; multitask: the foreground +
# referring + reasoning policy of docs/results.md, trained into runs/embedded-multitask; --ship would put it in
# the package), RUN (default runs/embedded or runs/embedded-multitask) -- where data, checkpoints and logs go; the recipes expect the
# default, so pass --output_dir/--train_data overrides through SFT_ARGS / GRPO_ARGS if you change it.
# SFT_ARGS / GRPO_ARGS: extra `--key value` overrides for the two stages. Budget: <= 30 min on 2 CPU cores.
# The measurement (held-out test sets, table, curves) is scripts/synthetic_results.py; see docs/results.md.
set -euo pipefail

cd "$(dirname "$0")/.."
VARIANT=${VARIANT:-shipped}
case "$VARIANT" in
  shipped)    # the policy in src/segr1/assets/tiny-policy: foreground only
    RUN=${RUN:-runs/embedded}
    FAMILIES="silhouette:2000 salient:2000 camouflaged:2000"
    SFT_RECIPE=recipes/tiny/embedded_sft.yaml
    GRPO_RECIPE=recipes/tiny/embedded_grpo.yaml ;;
  multitask)  # one policy for foreground, referring and reasoning (docs/results.md; not shipped)
    RUN=${RUN:-runs/embedded-multitask}
    FAMILIES="silhouette:2000 salient:1000 camouflaged:1000 salient-hard:2000 camouflaged-hard:2000 referring-seen:3000 reasoning:2000"
    SFT_RECIPE=recipes/tiny/embedded_multitask_sft.yaml
    GRPO_RECIPE=recipes/tiny/embedded_multitask_grpo.yaml ;;
  *) echo "VARIANT must be shipped or multitask, not $VARIANT" >&2; exit 2 ;;
esac
SHIP=1
ONLY_SHIP=0
[[ "${1:-}" == "--no-ship" ]] && SHIP=0
[[ "${1:-}" == "--ship-only" ]] && ONLY_SHIP=1
TRAIN_SEED=100          # scene seed of the training sets (the held-out test sets use seed 5000)
ASSET=src/segr1/assets/tiny-policy

mkdir -p "$RUN"
T0=$(date +%s)
stamp() { echo "[train_embedded] $(date -u +%H:%M:%S) (+$(( $(date +%s) - T0 ))s) $*"; }

if [[ $ONLY_SHIP == 1 ]]; then
  [[ -f "$RUN/grpo/model.safetensors" ]] || { echo "--ship-only: no policy in $RUN/grpo" >&2; exit 1; }
  TRAIN_S=$(python -c "import json, sys; print(int(sum(json.loads(l).get('train_runtime', 0) for f in sys.argv[1:] for l in open(f))))" "$RUN/sft/log.jsonl" "$RUN/grpo/log.jsonl")
else
stamp "1/4 synthetic training scenes -> $RUN/data"
for spec in $FAMILIES; do
  kind=${spec%%:*}
  if [[ ! -f "$RUN/data/$kind-train/manifest.jsonl" ]]; then
    segr1 data synth --kind "$kind" --n "${spec##*:}" --seed "$TRAIN_SEED" --min-size 160 --max-size 320 \
      --out "$RUN/data/$kind-train" --no-progress
  fi
done

stamp "2/4 SFT warm-up ($SFT_RECIPE)"
rm -rf "$RUN/sft"
# shellcheck disable=SC2086
segr1 train sft --config "$SFT_RECIPE" ${SFT_ARGS:-} 2>&1 | tee "$RUN/sft.log" | grep -E "INFO segr1|Error|error" || true
[[ -f "$RUN/sft/model.safetensors" ]] || { echo "SFT produced no model; see $RUN/sft.log" >&2; exit 1; }

stamp "3/4 GRPO ($GRPO_RECIPE)"
rm -rf "$RUN/grpo"
# shellcheck disable=SC2086
segr1 train grpo --config "$GRPO_RECIPE" ${GRPO_ARGS:-} 2>&1 | tee "$RUN/grpo.log" | grep -E "INFO segr1|Error|error" || true
[[ -f "$RUN/grpo/model.safetensors" ]] || { echo "GRPO produced no model; see $RUN/grpo.log" >&2; exit 1; }
TRAIN_S=$(( $(date +%s) - T0 ))
stamp "training done in ${TRAIN_S}s"
fi

if [[ $SHIP == 0 ]]; then
  stamp "4/4 skipped (--no-ship); policy in $RUN/grpo"
  exit 0
fi
stamp "4/4 shipping $RUN/grpo -> $ASSET"
rm -rf "$ASSET"
mkdir -p "$ASSET"
# The checkpoint's own files (config, fp32 safetensors, tokenizer, processor, chat template); not the
# trainer state (training_args.bin, checkpoint-*/), the log or the stage's segr1_policy.json.
for f in "$RUN"/grpo/*; do
  case "$(basename "$f")" in
    training_args.bin|log.jsonl|segr1_policy.json|README.md|checkpoint-*) ;;
    *) [[ -f "$f" ]] && cp "$f" "$ASSET/" ;;
  esac
done
python - "$ASSET" "$RUN" "$SFT_RECIPE" "$GRPO_RECIPE" "$TRAIN_SEED" "$FAMILIES" "$TRAIN_S" "$VARIANT" <<'PY'
import datetime, json, sys
from pathlib import Path

from segr1.policies import read_policy_metadata, write_policy_metadata

asset, run, sft_recipe, grpo_recipe, train_seed, families, seconds, variant = sys.argv[1:]
grpo = read_policy_metadata(Path(run) / "grpo")
args = grpo.get("segr1_args", {})
meta = {
    "format": "segr1-policy",
    "frame": int(grpo.get("frame", 224)),
    "trained": True,
    "tasks": grpo.get("tasks") or ["foreground"],
    "prompt_style": grpo.get("prompt_style", "segr1"),
    "answer_format": grpo.get("answer_format", "seg-r1"),
    "system_prompt": args.get("system_prompt"),
    "description": (
        "segr1's embedded tiny Qwen2.5-VL policy (1.3 M parameters, 224x224 frame): SFT on synthetic silhouette + "
        "salient + camouflaged scenes, then GRPO with the GrabCut mask reward on salient + camouflaged scenes. A "
        "demo of the method, not a model for real photographs."
        if variant == "shipped"
        else "segr1's multi-task tiny Qwen2.5-VL policy (1.3 M parameters, 224x224 frame) for foreground, referring "
        "and reasoning prompts: SFT on synthetic scenes of the three tasks, then GRPO with the GrabCut mask reward "
        "plus box / point shaping. A demo of the method on synthetic scenes, not a model for real photographs."
    ),
    "recipe": {"sft": sft_recipe, "grpo": grpo_recipe, "script": "scripts/train_embedded.sh"},
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    "seeds": {"train_scenes": int(train_seed), "test_scenes": 5000, "sft": 0, "grpo": 0},
    "train_scenes_per_family": {s.split(":")[0]: int(s.split(":")[1]) for s in families.split()},
    "train_seconds": int(seconds),
}
write_policy_metadata(asset, meta)
print(json.dumps(meta, indent=2))
PY
chmod 644 "$ASSET"/*
du -sh "$ASSET"
stamp "done"
