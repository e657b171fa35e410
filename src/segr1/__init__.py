"""segr1: Seg-R1 — a multimodal LLM prompts SAM2 with boxes and points; trained with GRPO on mask rewards."""

__version__ = "0.1.0"
