"""Defaults that depend on which policy runs: the segmenter (and, through the prompt style, budget and frame).

* The embedded tiny policy (no ``--model``): ``grabcut`` — CPU, no weights, offline — with the segr1 style's
  256-token budget.
* Any other policy (a hub id, a checkpoint folder): SAM2.1-hiera-large through transformers
  (:data:`DEFAULT_SEGMENTER`), the segmenter every released Seg-R1 number was measured with; the budget and
  frame are the checkpoint's prompt style's (``seg-r1`` unless it records another: the release's 1024
  foreground / demo and 512 referring / reasoning new tokens).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: The segmenter of any policy but the embedded one (the release used SAM2.1-hiera-large everywhere).
DEFAULT_SEGMENTER = "sam2-hf:facebook/sam2.1-hiera-large"
#: The segmenter of the embedded tiny policy (offline, CPU).
EMBEDDED_SEGMENTER = "grabcut"


def is_embedded(model: str | None) -> bool:
    """True when the policy spec names the embedded default (None, "", "default", "hf:default")."""
    from segr1.policies import parse_policy_spec

    try:
        return parse_policy_spec(model)[1] is None
    except (TypeError, ValueError):
        return False  # a bad spec is reported where the policy loads


def default_segmenter(model: str | None) -> str:
    """:data:`EMBEDDED_SEGMENTER` for the embedded policy, :data:`DEFAULT_SEGMENTER` for any other."""
    return EMBEDDED_SEGMENTER if is_embedded(model) else DEFAULT_SEGMENTER
