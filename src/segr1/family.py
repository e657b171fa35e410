"""Protocol facts of the RL-segmentation family beside Seg-R1: Seg-Zero, VisionReasoner, SAM-R1 -- as data.

Each `FamilyProtocol` records, per checkpoint family, the exact user-turn template, the system text the
checkpoint was trained with, the model frame, the answer layout (`segr1.answer_json`), the token budgets, the
reward definition (`RewardSpec`, read by `segr1.family_rewards` / `segr1.tiered_rewards`) and the published
training settings. Strings are reproduced byte for byte; nothing here is code from those projects.

Where each fact was read (public repositories; the upstream ``dvlab-research/Seg-Zero`` is not in the index
this was researched with, so its files were read in forks that carry them unchanged):

* Seg-Zero before its May 2025 update (checkpoint ``Ricky06662/Seg-Zero-7B``), repository
  ``xiaoqian-UQ/Segzero_plus`` (a fork of that version) at commit 495b7d5e1e7efdb4488cc440355e6da6cf754e31:
  ``evaluation_scripts/evaluation.py`` (template, answer example, ``.lower().strip(".")``, 840 frame, PIL
  BILINEAR resize, greedy, 1024 new tokens), ``training_scripts/seg_zero_7b.yaml`` and
  ``training_scripts/run_qwen2_5_7b_refCOCOg.sh`` (training settings); ``verl/trainer/config.py`` at commit
  d8aa1220905684623a88bf8f86706880082fe357 (system text "You are a helpful assistant."). The reward
  ``seg_strict`` is ``verl/utils/reward_score/seg_restrict.py`` of ``ysj9909/StAR`` (another fork) at commit
  54996593e9ee2f26cd3b6bde2b45e009d2698c71.
* VisionReasoner (checkpoint ``Ricky06662/VisionReasoner-7B``; also Seg-Zero's training code since May 2025):
  ``JIA-Lab-research/VisionReasoner`` at commit 5fb3baa528cc5034283d1a721344b3f66aafef83,
  ``vision_reasoner/models/vision_reasoner_model.py`` (template, answer example, ``resize_size = 840``, BILINEAR,
  ``.lower().strip(".\\"?!")``, greedy, 2048 new tokens); ``Schiffer116/Seg-Zero`` (a fork of the updated
  Seg-Zero) at commit 664bd231293e7b3e31a9cd69aab6dcaebd77a1a7: ``verl/utils/rl_dataset.py`` (training user
  turn: ``"<image>\\n"`` + template, ``.lower().strip(".")``) and ``inference_scripts/infer_multi_object.py``;
  ``training_scripts/visionreasoner_7b.yaml`` at 4254d4a46608dbd3b43738c09681bf8756c59ec8 and
  ``training_scripts/run_visionreasoner_7b.sh`` at 23970404539f7e551751e360157bf1f683505bcd (training
  settings). The reward ``vision_reasoner`` is ``verl/utils/reward_score/vision_reasoner.py``, identical in
  ``ysj9909/StAR`` (54996593e9ee2f26cd3b6bde2b45e009d2698c71), ``SCBoy1007/video-learning``
  (403c1bb1d9119aa24e98a750f290f233f8334feb) and ``xVI-group-SCU/Dr-Seg``
  (8cf047b5d97deb8a5e7f216134d10344e650397e). The ground-truth point of an object is the maximum of the mask's
  Euclidean distance transform (``prepare_dataset/training_data_prepare_toturial.ipynb`` of
  ``Schiffer116/Seg-Zero`` at 664bd231293e7b3e31a9cd69aab6dcaebd77a1a7).
* SAM-R1 (arXiv 2505.22596, NeurIPS 2025): no code is released. The tiers (IoU > 0.8: 4, 0.7-0.8: 3,
  0.5-0.7: 2, else 0), epsilon_high 0.3 with epsilon_low unchanged, the 1 / sum_i |o_i| token-level
  normalisation, 840 x 840, 8 responses, lr 1e-6, 3,000 RefCOCOg samples, Qwen2.5-VL-7B + SAM2-Large come from
  two summaries of the paper (a Chinese paper digest stored in the search index, and
  lan-kehan.github.io's reading notes), not from the paper's own text: check them against the paper before
  citing them as its numbers. Its prompt strings and its KL coefficient were not found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ exact prompt strings

SEG_ZERO_TEMPLATE = (
    "Please find '{Question}' with bbox and points."
    "Compare the difference between objects and find the most closely matched one."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)
SEG_ZERO_ANSWER_EXAMPLE = "{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}"

VISION_REASONER_TEMPLATE = (
    'Please find "{Question}" with bboxs and points.'
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format."
    "i.e., <think> thinking process here </think>"
    "<answer>{Answer}</answer>"
)
VISION_REASONER_ANSWER_EXAMPLE = '[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]'

# EasyR1's default data.system_prompt in the Seg-Zero code; the same text Qwen2.5-VL's chat template inserts
# when a conversation has no system turn, which is how both projects prompt at inference.
QWEN_DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class RewardSpec:
    """A family's reward definition, in pixels of ``reference_frame`` (the frame the thresholds were set in).

    iou_threshold: a predicted box scores its IoU term when IoU > this.
    l1_threshold: ... its L1 term when the mean absolute corner difference < this.
    point_threshold: ... its point term when the point distance < this (and the point rule holds).
    point_rule: ``"nearest"`` -- the predicted point lies in its own predicted box and within the threshold of
        the ground-truth point (VisionReasoner); ``"pair"`` -- both predicted points lie in the predicted box and
        the two-to-two matched mean distance is within the threshold (Seg-Zero).
    iou_inclusive: boxes are inclusive pixel ranges (``(x2 - x1 + 1) * (y2 - y1 + 1)``), as both projects compute.
    iou_strict_overlap: an intersection counts only when ``x1 < x2`` and ``y1 < y2`` strictly (Seg-Zero's scalar
        IoU); VisionReasoner's batched IoU clips at 0 instead (a 1-pixel touch counts).
    truncate_points: predicted points are truncated to ints before the point term (Seg-Zero).
    all_or_nothing: the accuracy terms are 0 unless every entry has a valid box and point (VisionReasoner: one
        malformed entry fails its array conversion); Seg-Zero scores box terms when the box alone is valid.
    format_per_object: the JSON-format reward sums, per entry, 1 for a valid box and 1 for a valid point and
        divides by the number of entries (range [0, 2], VisionReasoner); else 1.0 when the single layout is
        complete (Seg-Zero).
    non_repeat: the family adds VisionReasoner's non-repeat reward (sentences split on '.'; two repeats -> 0).
    max_objects: predicted and ground-truth objects kept, as VisionReasoner truncates (Seg-Zero's single layout
        has one predicted object; several ground-truth objects are matched as for VisionReasoner).

    Both families match predicted and ground-truth objects one-to-one with the Hungarian algorithm on the summed
    terms (cost = number of terms - sum) and divide the matched total by max(#predicted, #ground truth).
    tiers: SAM-R1's mask-IoU tiers, ``((threshold, reward), ...)`` highest first: IoU > threshold -> reward.
    """

    iou_threshold: float = 0.5
    l1_threshold: float = 10.0
    point_threshold: float = 30.0
    point_rule: str = "nearest"
    iou_inclusive: bool = True
    iou_strict_overlap: bool = False
    truncate_points: bool = False
    all_or_nothing: bool = True
    format_per_object: bool = True
    non_repeat: bool = True
    max_objects: int = 120
    reference_frame: int = 840
    tiers: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.point_rule not in ("nearest", "pair"):
            raise ValueError(f"point_rule must be 'nearest' or 'pair'; got {self.point_rule!r}")
        if any(a[0] <= b[0] for a, b in zip(self.tiers, self.tiers[1:], strict=False)):
            raise ValueError(f"tiers must be ordered by decreasing threshold; got {self.tiers!r}")


@dataclass(frozen=True)
class FamilyProtocol:
    """What a checkpoint family expects and how it was trained (see the module docstring for sources).

    name: segr1's name of the family. checkpoints: released hub ids. paper: arXiv id.
    template: the user-turn text, ``template.format(Question=..., Answer=answer_example)``.
    train_prefix: what precedes the template in the training user turn (the image placeholder EasyR1 expands).
    strip_chars: characters stripped from both ends of the lower-cased question (inference).
    train_strip_chars: the same during training (Seg-Zero's data loader strips '.' only).
    system: the training system text (None: unknown). frame: square model frame in pixels.
    resample: how the image is resized to the frame. layout: the JSON layout (`segr1.answer_json.LAYOUTS`).
    max_new_tokens: the inference budget of the project's own script; max_response_length /
    max_prompt_length: the training budgets. greedy: inference decodes greedily.
    reward: the reward definition. training: the published training settings (EasyR1/veRL keys and values).
    """

    name: str
    checkpoints: tuple[str, ...]
    paper: str
    template: str | None
    answer_example: str | None
    train_prefix: str
    strip_chars: str
    train_strip_chars: str
    system: str | None
    frame: int
    resample: str
    layout: str | None
    max_new_tokens: int | None
    max_response_length: int | None
    max_prompt_length: int | None
    greedy: bool
    reward: RewardSpec
    training: dict[str, Any] = field(default_factory=dict)

    def question(self, text: str, *, training: bool = False) -> str:
        """The question as the family's scripts put it into the template: lower-cased and stripped."""
        if not isinstance(text, str):
            raise TypeError(f"question text must be a str; got {type(text).__name__}")
        return text.lower().strip(self.train_strip_chars if training else self.strip_chars)

    def user_text(self, text: str, *, training: bool = False) -> str:
        """The exact user-turn text for a referring / reasoning query (the image goes before it)."""
        if self.template is None:
            raise ValueError(f"the {self.name} prompt strings are not published; no user text to build")
        body = self.template.format(
            Question=self.question(text, training=training), Answer=self.answer_example
        )
        return (self.train_prefix if training else "") + body


SEG_ZERO = FamilyProtocol(
    name="seg-zero",
    checkpoints=("Ricky06662/Seg-Zero-7B", "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest"),
    paper="2503.06520",
    template=SEG_ZERO_TEMPLATE,
    answer_example=SEG_ZERO_ANSWER_EXAMPLE,
    train_prefix="<image>",
    strip_chars=".",
    train_strip_chars=".",
    system=QWEN_DEFAULT_SYSTEM,
    frame=840,
    resample="bilinear",
    layout="single",
    max_new_tokens=1024,
    max_response_length=1300,
    max_prompt_length=1300,
    greedy=True,
    reward=RewardSpec(
        point_threshold=100.0,
        point_rule="pair",
        iou_strict_overlap=True,
        truncate_points=True,
        all_or_nothing=False,
        format_per_object=False,
        non_repeat=False,
    ),
    training={
        "framework": "EasyR1/veRL",
        "base_model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "train_files": "Ricky06662/refCOCOg_2k_840",  # the paper's RefCOCOg-9K is Ricky06662/refCOCOg_9k_840
        "adv_estimator": "grpo",
        "rollout_n": 8,
        "rollout_batch_size": 16,
        "global_batch_size": 16,
        "micro_batch_size_per_device_for_update": 1,
        "lr": 1.0e-6,
        "weight_decay": 1.0e-2,
        "max_grad_norm": 1.0,
        "use_kl_loss": True,
        "kl_loss_coef": 5.0e-3,
        "kl_loss_type": "low_var_kl",
        "kl_coef": 0.0,
        "temperature": 1.0,
        "total_episodes": 1,
        "save_freq": 50,
        "n_gpus_per_node": 8,
        "clip_ratio": 0.2,  # EasyR1's ActorConfig default (not set by the recipe)
    },
)

VISION_REASONER = FamilyProtocol(
    name="vision-reasoner",
    checkpoints=("Ricky06662/VisionReasoner-7B",),
    paper="2505.12081",
    template=VISION_REASONER_TEMPLATE,
    answer_example=VISION_REASONER_ANSWER_EXAMPLE,
    train_prefix="<image>\n",
    strip_chars='."?!',
    train_strip_chars=".",
    system=QWEN_DEFAULT_SYSTEM,
    frame=840,
    resample="bilinear",
    layout="objects",
    max_new_tokens=2048,
    max_response_length=2000,
    max_prompt_length=1300,
    greedy=True,
    reward=RewardSpec(),
    training={
        "framework": "EasyR1/veRL",
        "base_model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "train_files": "Ricky06662/VisionReasoner_multi_object_1k_840",  # 7K: ..._multi_object_7k_840
        "adv_estimator": "grpo",
        "rollout_n": 8,
        "rollout_batch_size": 16,
        "global_batch_size": 16,
        "micro_batch_size_per_device_for_update": 16,
        "lr": 1.0e-6,
        "weight_decay": 1.0e-2,
        "max_grad_norm": 1.0,
        "use_kl_loss": True,
        "kl_loss_coef": 1.0e-2,  # the run script's override of the YAML's 5.0e-3
        "kl_loss_type": "low_var_kl",
        "kl_coef": 0.0,
        "temperature": 1.0,
        "total_episodes": 1,
        "save_freq": 100,
        "n_gpus_per_node": 8,
        "clip_ratio": 0.2,  # EasyR1's ActorConfig default (not set by the recipe)
    },
)

SAM_R1 = FamilyProtocol(
    name="sam-r1",
    checkpoints=(),
    paper="2505.22596",
    template=None,
    answer_example=None,
    train_prefix="",
    strip_chars="",
    train_strip_chars="",
    system=None,
    frame=840,
    resample="unknown",
    layout=None,  # "a bounding box and reference points in JSON"; exact keys not published in the sources read
    max_new_tokens=None,
    max_response_length=None,
    max_prompt_length=None,
    greedy=True,
    reward=RewardSpec(tiers=((0.8, 4.0), (0.7, 3.0), (0.5, 2.0)), non_repeat=False),
    training={
        "base_model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "segmenter": "SAM2-Large",
        "train_samples": 3000,  # drawn at random from the RefCOCOg training set
        "rollout_n": 8,
        "lr": 1.0e-6,
        "epsilon_low": 0.2,  # "kept standard": PPO's usual value, an assumption
        "epsilon_high": 0.3,
        "loss_normalisation": "1 / sum_i |o_i| (token level over the group)",
        "kl": "kept (removing it collapses training after about 100 steps); coefficient not found",
        "gpus": "8 x A100",
    },
)

FAMILIES: dict[str, FamilyProtocol] = {p.name: p for p in (SEG_ZERO, VISION_REASONER, SAM_R1)}


def get_family(name: str) -> FamilyProtocol:
    """The protocol of a family by name (``seg-zero``, ``vision-reasoner``, ``sam-r1``) or by a checkpoint id."""
    if name in FAMILIES:
        return FAMILIES[name]
    for protocol in FAMILIES.values():
        if name in protocol.checkpoints:
            return protocol
    raise ValueError(f"unknown family {name!r}; choose one of {sorted(FAMILIES)} or a checkpoint id")
