"""Training-only grounding terms of ``segr1 train sft``: make the policy look at the target before it answers.

SFT on the answer's tokens alone let the embedded tiny policy box the salient object but never select the
object a phrase names (docs/results_multitask.md). Two extra terms, added to TRL's SFT loss, changed that:

* **attention** (``grounding_attn_weight``): head ``grounding_attn_head`` of decoder layer
  ``grounding_attn_layer`` is taught, at the answer positions up to the first coordinate digit
  (`pre_coordinate_queries`), to attend to the target's image tokens: the cross-entropy between the target
  mask's share of each image-token cell, normalised over the image tokens, and the head's attention weights
  on them (`attention_loss`). Later answer positions are left out: teacher forcing has already shown them the
  box's digits, so a head could find the object from those instead of from the phrase. It needs eager
  attention (`segr1.train.sft` sets it) and adds no parameters.
* **place** (``grounding_place_weight``): a linear probe reads each image token's (column, row) in the token
  grid from the input of the taught layer (mean squared error on coordinates in [0, 1]), so the values the
  head returns say *where* the object is, not only *which* (`place_loss`).

Both read the model through forward hooks (`GroundingTerms`), so they work whatever the forward returns
(TRL's fused LM head returns no attentions). The probe is the trainer's, not the model's: the saved
checkpoint is an ordinary Qwen2.5-VL. The cell targets are computed per row from the SFT target's mask by
`segr1.data.trl.to_sft_dataset` (``grounding_cells``); rows whose task is not among ``grounding_tasks``, or
that have no mask, get an all-zero row and no attention term.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

CELL = 28  # frame pixels per merged image token of Qwen2.5-VL: 14 px patches, 2 x 2 merged
CELLS_COLUMN = "grounding_cells"


def cell_targets(mask: np.ndarray, frame: int, cell: int = CELL) -> np.ndarray:
    """Share of each ``cell`` x ``cell`` square of the frame-sized mask that is foreground, in raster order
    (the order of Qwen2.5-VL's merged image tokens). The mask is squashed to the frame as the image is."""
    from segr1.geometry import resize_to_frame

    if frame % cell:
        raise ValueError(f"the frame ({frame} px) is not a whole number of {cell} px image-token cells")
    m = resize_to_frame(np.asarray(mask, dtype=bool), frame).astype(np.float32)
    g = frame // cell
    return m.reshape(g, cell, g, cell).mean(axis=(1, 3)).reshape(-1)


def box_cover(box, size, frame: int, cell: int = CELL) -> np.ndarray:
    """Share of each cell (raster order) that the box ``[x1, y1, x2, y2]`` of an image of ``size`` (w, h)
    covers once the image is squashed to the frame (the box's pixel span rounded outwards)."""
    w, h = size
    m = np.zeros((frame, frame), dtype=np.float32)
    x1, y1, x2, y2 = box
    m[int(y1 * frame / h) : math.ceil(y2 * frame / h), int(x1 * frame / w) : math.ceil(x2 * frame / w)] = 1
    g = frame // cell
    return m.reshape(g, cell, g, cell).mean(axis=(1, 3)).reshape(-1)


def object_cells(meta: dict, frame: int, share: float) -> dict[int, int]:
    """Cell index (raster order) -> index of the one object whose box covers more than ``share`` of it.
    Cells that two objects cover by more than ``share`` are left out."""
    out: dict[int, int] = {}
    seen: set[int] = set()
    for k, o in enumerate(meta["objects"]):
        for c in np.flatnonzero(box_cover(o["box"], meta["size"], frame) > share):
            if c in seen:
                out.pop(int(c), None)
            else:
                out[int(c)] = k
            seen.add(int(c))
    return out


def digit_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the vocabulary's tokens that hold a digit: the first of them in an answer starts its coordinates."""
    return {i for t, i in tokenizer.get_vocab().items() if any(c.isdigit() for c in t)}


def pre_coordinate_queries(input_ids, labels, digit_ids: Iterable[int]):
    """(B, L) mask of the positions that predict the answer's tokens up to its first coordinate digit: the
    last prompt token and the think / ``<bbox>[`` tokens (position i predicts token i + 1). ``labels`` are the
    unshifted ones (-100 outside the answer). An answer without digits gives all its positions but the last."""
    import torch

    digit_ids = torch.tensor(sorted(set(digit_ids)), dtype=input_ids.dtype, device=input_ids.device)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for row in range(labels.shape[0]):
        answer = (labels[row] != -100).nonzero().squeeze(-1)
        if answer.numel() == 0:
            continue
        digits = answer[torch.isin(input_ids[row, answer], digit_ids)]
        stop = int(digits[0]) if digits.numel() else int(answer[-1])
        mask[row, max(int(answer[0]) - 1, 0) : stop] = True
    return mask


def attention_loss(weights, is_image, queries, coverage):
    """Cross-entropy of one head's attention ``weights`` (B, L, L) at the ``queries`` positions (B x L mask)
    against the target's ``coverage`` (B, cells) normalised over the image tokens (``is_image``, B x L,
    ``cells`` of them per row in raster order). Rows whose target covers no cell are skipped; the mean is over
    the rows left (zero, still attached to the graph, when none is)."""
    import torch

    goal = coverage / coverage.sum(dim=1, keepdim=True).clamp_min(1e-6)
    total, count = weights.sum() * 0.0, 0
    for row in range(weights.shape[0]):
        if coverage[row].sum() <= 0 or not queries[row].any():
            continue
        keys = is_image[row].nonzero().squeeze(-1)
        if keys.numel() != goal.shape[1]:
            raise ValueError(
                f"{keys.numel()} image tokens in a row but {goal.shape[1]} grounding cells: the frame and the "
                f"cell size ({CELL} px) must give one cell per merged image token"
            )
        w = weights[row][queries[row]][:, keys]  # (query positions, image tokens)
        total = total - (goal[row] * torch.log(w.clamp_min(1e-9))).sum(dim=1).mean()
        count += 1
    return total / max(count, 1)


def place_loss(probe, tokens):
    """Mean squared error of ``probe`` (hidden -> 2) reading each image token's (column, row) centre, in
    [0, 1], from ``tokens`` (B, cells, hidden) of a square grid in raster order."""
    import torch

    g = math.isqrt(tokens.shape[1])
    if g * g != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} image tokens per row are not a square grid")
    grid = (torch.arange(g, dtype=tokens.dtype, device=tokens.device) + 0.5) / g
    goal = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(1, -1, 2)
    return torch.nn.functional.mse_loss(probe(tokens), goal.expand(tokens.shape[0], -1, -1))


def decoder_layer(model: Any, index: int) -> Any:
    """Decoder layer ``index`` of the language model inside ``model`` (plain, PEFT-wrapped or compiled)."""
    suffix = f"language_model.layers.{index}"
    found = [m for name, m in model.named_modules() if name.endswith(suffix)]
    if not found:
        layers = [n for n, _ in model.named_modules() if n.endswith("language_model.layers")]
        raise ValueError(f"no decoder layer {index} in the model (layer lists: {layers or 'none'})")
    return found[0]


class GroundingTerms:
    """The two terms on one model: forward hooks record the taught head's attention weights and the taught
    layer's input; `loss` turns them, with the batch's ids, labels and cell targets, into the weighted sum."""

    def __init__(
        self,
        *,
        hidden_size: int,
        image_token_id: int,
        digit_ids: Iterable[int],
        attn_weight: float = 0.0,
        attn_layer: int = 1,
        attn_head: int = 0,
        place_weight: float = 0.0,
    ) -> None:
        import torch

        if attn_weight < 0 or place_weight < 0:
            raise ValueError(f"grounding weights must be >= 0; got {attn_weight}, {place_weight}")
        self.attn_weight, self.attn_layer, self.attn_head = attn_weight, attn_layer, attn_head
        self.place_weight = place_weight
        self.image_token_id = image_token_id
        self.digit_ids = set(digit_ids)
        self.probe = torch.nn.Linear(hidden_size, 2)  # the place probe: trained, never saved
        self._handles: list[Any] = []
        self._seen: dict[str, Any] = {}

    def attach(self, model: Any) -> GroundingTerms:
        layer = decoder_layer(model, self.attn_layer)
        self.detach()
        if self.attn_weight > 0:
            attention = getattr(layer, "self_attn", None)
            if attention is None:
                raise ValueError(f"decoder layer {self.attn_layer} has no self_attn module")
            self._handles.append(attention.register_forward_hook(self._record_attention))
        if self.place_weight > 0:
            self._handles.append(layer.register_forward_pre_hook(self._record_input, with_kwargs=True))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._seen = [], {}

    def _record_attention(self, module, args, output) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise RuntimeError(
                "the taught attention layer returned no attention weights: grounding_attn_weight needs "
                "attn_implementation: eager"
            )
        self._seen["attention"] = weights[:, self.attn_head]

    def _record_input(self, module, args, kwargs) -> None:
        self._seen["input"] = args[0] if args else kwargs["hidden_states"]

    def loss(self, input_ids, labels, coverage) -> tuple[Any, dict[str, float]]:
        """The weighted terms of the forward just run, and their values for the log."""
        import torch

        seen, self._seen = self._seen, {}
        is_image = input_ids == self.image_token_id
        parts: dict[str, float] = {}
        total = torch.zeros((), device=input_ids.device)
        if self.attn_weight > 0:
            if coverage is None:
                raise ValueError(f"grounding_attn_weight needs the {CELLS_COLUMN!r} column in the batch")
            queries = pre_coordinate_queries(input_ids, labels, self.digit_ids)
            value = attention_loss(seen["attention"], is_image, queries, coverage.to(seen["attention"]))
            total = total + self.attn_weight * value
            parts["grounding_attention"] = float(value.detach())
        if self.place_weight > 0:
            hidden = seen["input"]
            per_row = is_image.sum(dim=1)
            if per_row.min() != per_row.max() or int(per_row[0]) == 0:
                raise ValueError(f"rows hold different numbers of image tokens: {per_row.tolist()}")
            tokens = hidden[is_image].view(hidden.shape[0], int(per_row[0]), hidden.shape[-1])
            value = place_loss(self.probe.to(hidden.device, hidden.dtype), tokens)
            total = total + self.place_weight * value
            parts["grounding_place"] = float(value.detach())
        return total, parts
