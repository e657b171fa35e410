"""Start-up and first-mask costs that segr1 controls: CPU threads for small policies, GrabCut's worker
started while the policy loads, no hub request for a local folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segr1.devices import SMALL_MODEL_PARAMS, cpu_threads_for, intra_op_threads

REPO = Path(__file__).resolve().parents[1]


class Params:
    def __init__(self, n: int) -> None:
        self.n = n

    def parameters(self):
        return [_Numel(self.n)]


class _Numel:
    def __init__(self, n: int) -> None:
        self.n = n

    def numel(self) -> int:
        return self.n


def test_small_models_on_cpu_use_one_thread():
    assert cpu_threads_for(Params(1_300_000), "cpu") == 1
    assert cpu_threads_for(Params(SMALL_MODEL_PARAMS), "cpu") is None  # a real model: torch's default
    assert cpu_threads_for(Params(10), "cuda:0") is None
    assert cpu_threads_for(object(), "cpu") is None


def test_intra_op_threads_restores_the_setting():
    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with intra_op_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("spec", [None, "hf:default"], ids=["default (native)", "hf"])
def test_embedded_policy_generates_with_one_thread_and_keeps_its_answers(spec):
    from PIL import Image

    from segr1.geometry import resize_to_frame
    from segr1.policies import load_policy
    from segr1.prompts import build_instruction

    policy = load_policy(spec, device="cpu")
    assert policy.cpu_threads == 1
    assert policy.name.startswith("native:" if spec is None else "hf:")
    seen = []
    owner, attribute = (policy.model, "decoder" if spec is None else "generate")
    inner = getattr(owner, attribute)

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inner(*args, **kwargs)

    setattr(owner, attribute, spy)
    image = resize_to_frame(Image.open(REPO / "examples" / "salient-0.png").convert("RGB"), 224)
    before = torch.get_num_threads()
    (answer,) = policy.generate([image], [build_instruction("foreground", None, 224)], max_new_tokens=64)
    assert seen and set(seen) == {1} and torch.get_num_threads() == before
    assert answer[0].startswith("<think>")


def test_the_default_policy_does_not_import_transformers():
    """The embedded default answers without importing transformers (its import is most of the start-up)."""
    code = (
        "import sys; from PIL import Image; from segr1.policies import load_policy; "
        "from segr1.prompts import build_instruction; p = load_policy(None, device='cpu'); "
        "out = p.generate([Image.new('RGB', (224, 224))], [build_instruction('foreground', None, 224)], "
        "max_new_tokens=8); "
        "print(p.name.split(':')[0], 'transformers' in sys.modules, 'torchvision' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert run.stdout.split() == ["native", "False", "False"], run.stdout + run.stderr


def test_grabcut_worker_starts_when_the_segmenter_is_built():
    from segr1.segmenters._grabcut_worker import POOL
    from segr1.segmenters.grabcut import GrabCutConfig, GrabCutSegmenter

    POOL.close()
    GrabCutSegmenter(GrabCutConfig(timeout_s=None))
    assert len(POOL) == 0  # in-process GrabCut needs no worker
    GrabCutSegmenter()
    assert len(POOL) == 1 and all(w.alive() for w in POOL._idle)
    GrabCutSegmenter()
    assert len(POOL) == 1  # an idle worker is reused, not doubled


def test_local_policy_folder_is_loaded_without_hub_requests(monkeypatch):
    import huggingface_hub

    from segr1.hub import check_model_source
    from segr1.policies import SHIPPED_POLICY_DIR

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert check_model_source(str(SHIPPED_POLICY_DIR), "policy", "x/y") == (str(SHIPPED_POLICY_DIR), True)


@pytest.mark.slow
def test_startup_benchmark_prints_the_split():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup.py"), "--repeat", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "| default | median |" in out and "| hf:default | median |" in out and "beyond torch" in out
    assert "transformers imported: no" in out and "answer (all runs identical)" in out
    assert "the models' answers DIFFER" not in out
