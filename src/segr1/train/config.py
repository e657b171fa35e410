"""Configuration of ``segr1 train``: segr1's own dataclasses next to TRL's, parsed from a YAML recipe + CLI.

A recipe is one flat YAML mapping read by TRL's ``TrlParser``: every key is a field of one of the dataclasses
``(GRPOScriptArguments | SFTScriptArguments, GRPOConfig | SFTConfig, ModelConfig)``, so all of TRL's and
transformers' options (``num_generations``, ``beta``, ``loss_type``, ``use_vllm``, ``learning_rate``,
``output_dir``, ``save_steps``, ...) and peft's LoRA options (``use_peft``, ``lora_r``, ...) work unchanged;
``--key value`` on the command line overrides the recipe. segr1 adds the data, prompt and reward fields below.

``train_data`` is a list of sources, each a mapping with one of:

* ``{images: DIR, masks: DIR}`` (optional ``exclude: [substr, ...]``, ``name``, ``task``): an image/mask folder
  pair matched by file stem, any extension;
* ``{root: DIR}`` (or a list of DIRs): folders each holding an images and a masks sub-folder (``images/`` +
  ``masks/``, ``Imgs/`` + ``GT/``, ``im/`` + ``gt/``, ...; see `segr1.data.folders.find_pair_dirs`);
* ``{manifest: FILE.jsonl}``: one JSON object per line with ``image``, ``mask`` (paths, relative to the
  manifest's folder) and optional ``id``, ``text``, ``task``;
* ``{synthetic: {kind: salient|camouflaged|referring|silhouette|multi, n: N, seed: S}}`` (optional ``size``/
  ``min_size``/``max_size``): procedural scenes, written once to ``data_cache_dir`` on first use and reused after;
  ``multi`` writes the multi-object referring scenes of `segr1.data.synthetic_multi` ("all the red shapes"), whose
  samples carry per-instance ground truth (``boxes``, ``points``, ``instances``) into the GRPO rows;
* ``{fcot: geshang/FCoT}`` (or a folder in FCoT's layout; optional ``split``, ``name``, ``task``): the Seg-R1
  release's SFT data (`segr1.data.fcot`), rows with a ready target ``"{thinking} {solution}"`` and no mask, so
  for ``segr1 train sft`` only.

``prompt_style`` picks the texts (`segr1.styles`; default: what the base checkpoint records, ``segr1`` for
``tiny``, else ``seg-r1``, the release's; ``seg-zero`` / ``vision-reasoner`` for those families' prompts),
``answer_format`` the format of SFT targets and of what the mask rewards parse (`segr1.formats`; default: the
style's) and ``protocol`` the release-protocol switches of the reward and the images (`segr1.protocol`; default
``segr1``). ``segr1 train`` records all three in the output's ``segr1_policy.json``.

On the command line a list is given as JSON: ``--train_data '[{"synthetic": {"kind": "salient", "n": 64}}]'``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from segr1.prompts import TASKS

AUTO_TASK = "auto"  # recipe task: each sample keeps its own

logger = logging.getLogger(__name__)

TINY_MODEL = "tiny"  # model_name_or_path value that selects segr1's offline tiny Qwen2.5-VL
SOURCE_KINDS = ("images", "root", "manifest", "synthetic", "fcot")


def _parse_sources(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"train_data must be a list of sources (JSON on the command line); got {value!r}"
            ) from exc
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"train_data must be a list of sources; got {type(value).__name__}")
    for i, src in enumerate(value):
        if not isinstance(src, dict) or sum(k in src for k in SOURCE_KINDS) != 1:
            raise ValueError(
                f"train_data[{i}] must be a mapping with exactly one of {SOURCE_KINDS}; got {src!r}. Examples: "
                "{images: DIR, masks: DIR} | {root: DIR} | {manifest: FILE.jsonl} | {synthetic: {kind: salient, n: 256, seed: 0}} "
                "| {fcot: geshang/FCoT}"
            )
        if "images" in src and "masks" not in src:
            raise ValueError(f"train_data[{i}] has 'images' but no 'masks' folder: {src!r}")
        if "synthetic" in src and not isinstance(src["synthetic"], dict):
            raise ValueError(
                f"train_data[{i}].synthetic must be a mapping {{kind, n, seed}}; got {src['synthetic']!r}"
            )
    return value


@dataclass
class DataArguments:
    """Data and prompt options shared by ``segr1 train sft`` and ``segr1 train grpo``."""

    task: str = field(
        default="foreground",
        metadata={
            "help": f"Task whose instruction the model sees: one of {TASKS} ('prerl' = points-only stage), or "
            "'auto': each sample's own task (synthetic referring / reasoning scenes carry theirs; folders are "
            "foreground), for one policy trained on several tasks (needs an explicit frame)."
        },
    )
    frame: int | None = field(
        default=None,
        metadata={
            "help": "Side in pixels of the square model frame images are resized to (default: 768 for "
            "foreground/prerl, 1024 for referring/reasoning). Rewards use the same frame."
        },
    )
    system_prompt: str | None = field(
        default="default",
        metadata={
            "help": "'default' (the prompt style's system turn for the task; FCoT rows: the row's own when it "
            "has one), 'none' (no system turn) or a literal text."
        },
    )
    prompt_style: str | None = field(
        default=None,
        metadata={
            "help": "Prompt style of the texts: 'segr1', 'seg-r1' (the release's), 'seg-zero' or "
            "'vision-reasoner' (those checkpoints' templates). Default: what the base "
            "checkpoint's segr1_policy.json records; segr1 for 'tiny'; seg-r1 for any other (hub ids)."
        },
    )
    answer_format: str | None = field(
        default=None,
        metadata={
            "help": "Answer format of SFT targets and of the mask rewards' parsing: 'seg-r1' (tags), "
            "'seg-zero-json' or 'vision-reasoner-json'. Default: the prompt style's."
        },
    )
    protocol: str | None = field(
        default=None,
        metadata={
            "help": "Release-protocol switches (segr1.protocol): 'segr1' (default), 'seg-r1', optionally "
            "',switch=value' overrides; the reward switches apply to GRPO, the image ones to both stages."
        },
    )
    train_data: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "Training sources: list of {images, masks} | {manifest} | {synthetic: {kind, n, seed}} "
            "mappings (JSON on the command line)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many samples (after concatenating the sources)."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where synthetic sources are written (default: $SEGR1_CACHE/synthetic or "
            "~/.cache/segr1/synthetic)."
        },
    )

    def __post_init__(self) -> None:
        if self.task not in (*TASKS, AUTO_TASK):
            raise ValueError(f"task must be one of {TASKS} or {AUTO_TASK!r}; got {self.task!r}")
        if self.task == AUTO_TASK and self.frame is None:
            raise ValueError("task 'auto' mixes tasks whose default frames differ: set `frame` in the recipe")
        if self.prompt_style is not None:
            from segr1.styles import get_style

            self.prompt_style = get_style(self.prompt_style).name  # ValueError lists the styles
        if self.answer_format is not None:
            from segr1.formats import get_format

            self.answer_format = get_format(self.answer_format).name  # ValueError lists the formats
        if self.protocol is not None:
            from segr1.protocol import get_protocol

            get_protocol(self.protocol, "train")  # ValueError names a bad preset or switch
        if self.frame is not None and int(self.frame) <= 0:
            raise ValueError(f"frame must be a positive number of pixels (e.g. 768); got {self.frame!r}")
        if isinstance(self.system_prompt, str) and self.system_prompt.lower() in ("none", "null", ""):
            self.system_prompt = None
        self.train_data = _parse_sources(self.train_data)
        if self.max_train_samples is not None and self.max_train_samples <= 0:
            raise ValueError(f"max_train_samples must be positive or unset; got {self.max_train_samples}")


@dataclass
class GRPOScriptArguments(DataArguments):
    """segr1's GRPO options: which rewards, and the segmenter that turns prompts into masks."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["segmentation", "format"],
        metadata={
            "help": "Rewards, in order (weights: TRL's reward_weights): segmentation, format, format_points, "
            "length; the prompt-shaping terms box_iou, points (segr1.shaping_rewards); the family rewards seg_zero, vision_reasoner, seg_zero_<term>, vision_reasoner_<term>, "
            "non_repeat, sam_r1_tiered (segr1.train.named_rewards); or the import path of your own TRL-style "
            "reward (pkg.module.func)."
        },
    )
    segmenter: str = field(
        default="grabcut",
        metadata={
            "help": "Segmenter spec for the segmentation reward: 'grabcut', 'sam2-hf:<hub id|folder>', "
            "'sam2:<config>@<checkpoint>'."
        },
    )
    segmenter_device: str | None = field(
        default=None,
        metadata={"help": "Device of the segmenter (default: the backend's choice, e.g. this rank's GPU)."},
    )
    segmenter_dtype: str | None = field(
        default=None, metadata={"help": "dtype of the segmenter, e.g. bfloat16."}
    )
    iou_weight: float = field(
        default=0.7, metadata={"help": "Weight of the mask IoU in the segmentation reward."}
    )
    s_weight: float = field(
        default=0.3, metadata={"help": "Weight of the S-measure in the segmentation reward."}
    )
    reward_workers: int = field(
        default=1, metadata={"help": "Threads that segment distinct images of a batch in parallel."}
    )
    length_ideal_points: int = field(
        default=8, metadata={"help": "length reward: the ideal number of points."}
    )
    length_sigma: float = field(default=2.0, metadata={"help": "length reward: width of the Gaussian."})
    compile_generation: bool = field(
        default=False,
        metadata={
            "help": "When vLLM does not generate: decode rollouts with a static KV cache and a compiled decoding "
            "step (CUDA graphs). Sets cache_implementation: static if unset. DDP / ZeRO-2 only."
        },
    )
    generation_cache_len: int | None = field(
        default=None,
        metadata={
            "help": "With compile_generation: size every rollout's static cache for this many tokens (prompt + "
            "completion), so batches with longer prompts reuse the compiled graph, e.g. 2048."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from segr1.rewards import REWARD_NAMES
        from segr1.shaping_rewards import SHAPING_REWARDS
        from segr1.train.named_rewards import NAMED_REWARDS

        if self.generation_cache_len is not None and self.generation_cache_len < 1:
            raise ValueError(f"generation_cache_len must be >= 1 or null; got {self.generation_cache_len}")

        known = (*REWARD_NAMES, *SHAPING_REWARDS, *NAMED_REWARDS)
        bad = [r for r in self.reward_funcs if r not in known and "." not in r]
        if bad or not self.reward_funcs:
            raise ValueError(
                f"unknown reward_funcs {bad or self.reward_funcs}; choose from {', '.join(known)} or give an "
                "import path such as mypackage.rewards.my_reward"
            )
        if self.reward_workers < 1:
            raise ValueError(f"reward_workers must be >= 1; got {self.reward_workers}")


@dataclass
class SFTScriptArguments(DataArguments):
    """segr1's SFT options: how the targets are rendered from the ground-truth masks."""

    sft_points_pos: int = field(default=2, metadata={"help": "Foreground points per SFT target."})
    sft_points_neg: int = field(default=1, metadata={"help": "Background points per SFT target."})
    sft_think: str = field(
        default="describe",
        metadata={
            "help": "Think text of SFT targets: 'describe' (object size and position), 'none' (empty), "
            "'scene' (referring/reasoning records that list their objects: each object's colour, shape and "
            "centre; other records: 'object') or a literal text."
        },
    )
    sft_seed: int = field(default=0, metadata={"help": "Seed of the points sampled for the SFT targets."})
    sft_points_mode: str = field(
        default="random",
        metadata={
            "help": "First foreground point of SFT targets: 'random' (a mask pixel) or 'interior' (the pixel "
            "farthest from the mask's boundary)."
        },
    )
    grounding_attn_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the training-only attention term (segr1.train.grounding): one head is taught to "
            "attend to the target's image tokens before the answer's first coordinate digit. 0: off."
        },
    )
    grounding_attn_layer: int = field(
        default=1,
        metadata={"help": "Decoder layer (0-based) of the taught head; the place probe reads its input."},
    )
    grounding_attn_head: int = field(default=0, metadata={"help": "The taught head of grounding_attn_layer."})
    grounding_place_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the training-only place probe: the image tokens at the taught layer's input "
            "must hold their (column, row) in the token grid. 0: off."
        },
    )
    grounding_tasks: str = field(
        default="all",
        metadata={
            "help": "Comma-separated tasks whose rows get the attention term ('all': every task), e.g. "
            "'referring,reasoning'."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grounding_attn_weight < 0 or self.grounding_place_weight < 0:
            raise ValueError("grounding_attn_weight and grounding_place_weight must be >= 0")
        if self.grounding_attn_layer < 0 or self.grounding_attn_head < 0:
            raise ValueError("grounding_attn_layer and grounding_attn_head must be >= 0")
        unknown = set(self.grounding_task_set) - set(TASKS)
        if unknown:
            raise ValueError(f"grounding_tasks: unknown tasks {sorted(unknown)}; expected some of {TASKS}")

    @property
    def grounding(self) -> bool:
        """Whether the SFT adds the grounding terms."""
        return self.grounding_attn_weight > 0 or self.grounding_place_weight > 0

    @property
    def grounding_task_set(self) -> frozenset[str]:
        """The tasks of ``grounding_tasks`` (empty: every task)."""
        names = {t.strip() for t in self.grounding_tasks.split(",") if t.strip()}
        return frozenset() if names <= {"all"} else frozenset(names)
