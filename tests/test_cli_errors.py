"""User errors reach people as one or two lines with the right exit code; tracebacks only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1 import hub
from segr1.cli import main
from segr1.commands._common import check_image_files, report_error
from segr1.hub import ModelSourceError, check_model_source, load_error
from segr1.pipeline import SegR1Pipeline

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SEGR1_DEBUG"}
    env.update(PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _segr1(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segr1", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_lines(stderr: str, prog: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prog)]


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 50, 3), 90, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a command tries to load models."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(SegR1Pipeline, "from_specs", classmethod(refuse))


@pytest.mark.parametrize(
    ("option", "what"),
    [(["--model", "some/id"], "policy 'some/id'"), (["--segmenter", "sam2-hf:some/id"], "SAM2 'some/id'")],
)
def test_unknown_hub_id_offline_is_one_line_and_exit_2(tmp_path, image, option, what):
    proc = _segr1(["segment", str(image), "--out", str(tmp_path / "o"), *option], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc.stderr, "segr1 segment: error:")
    assert what in line and "hf download some/id" in line and "offline" in line
    assert "local directory with the same name" not in proc.stderr  # SAM2's misleading hint
    assert "Loading weights" not in proc.stderr  # refused before any model loaded


def test_debug_flag_and_env_show_the_traceback(tmp_path, image):
    args = ["segment", str(image), "--out", str(tmp_path / "o"), "--model", "some/id"]
    proc = _segr1(["--debug", *args], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ModelSourceError" in proc.stderr
    proc = _segr1(args, cwd=tmp_path, SEGR1_DEBUG="1")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_missing_or_unreadable_images_are_refused_before_models_load(tmp_path, capsys, no_model_load):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code = main(
        ["segment", str(tmp_path / "typo.png"), str(text), str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "typo.png: no such file" in err
    assert "notes.png: is not an image" in err
    assert f"{tmp_path}: a folder" in err
    assert not (tmp_path / "o").exists()


def test_check_image_files_reads_headers_only(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)  # small file, many pixels
    ok = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(ok)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(ok.read_bytes()[:20])
    problems = check_image_files([big, ok, truncated], max_pixels=1_000_000)
    assert set(problems) == {big, truncated}
    assert "too many pixels: 3000x3000" in problems[big]


@pytest.mark.parametrize(
    ("option", "needle"),
    [(["--device", "foo"], "device 'foo' is not a torch device"), (["--model", "bad id!"], "'bad id!'")],
)
def test_bad_option_values_are_usage_errors(tmp_path, image, capsys, option, needle):
    if option[0] == "--device":
        pytest.importorskip("torch")
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), *option]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_unexpected_errors_are_two_lines_and_exit_1(capsys):
    assert report_error("segment", RuntimeError("boom\nsecond line")) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "segr1 segment: error: RuntimeError: boom",
        "segr1 segment: rerun with --debug (or SEGR1_DEBUG=1) for the traceback",
    ]
    assert report_error("eval", ModelSourceError("policy 'x' ...")) == 2
    assert capsys.readouterr().err.splitlines() == ["segr1 eval: error: policy 'x' ..."]


def test_local_folder_checks(tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist"):
        check_model_source(str(tmp_path / "nope"), "policy", "geshang/Seg-R1-7B")
    with pytest.raises(ModelSourceError, match="holds no config.json"):
        check_model_source(str(tmp_path), "policy", "geshang/Seg-R1-7B")
    (tmp_path / "config.json").write_text("{}")
    assert check_model_source(str(tmp_path), "policy", "x/y") == (str(tmp_path), True)
    with pytest.raises(ModelSourceError, match="valid hub id"):
        check_model_source("a/b/c", "policy", "x/y")


def _bare(cls: type[Exception], message: str) -> Exception:
    """An instance of a huggingface_hub HTTP error without building an HTTP response."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


def test_online_probe_reports_unknown_repos_and_unreachable_hubs_fast(monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_in_hub_cache", lambda repo, name: False)

    def missing(self, repo_id, timeout=None):
        raise _bare(RepositoryNotFoundError, "404 Client Error")

    monkeypatch.setattr(HfApi, "model_info", missing)
    with pytest.raises(ModelSourceError, match="the hub has no repository 'some/id'"):
        check_model_source("some/id", "policy", "x/y")

    def unreachable(self, repo_id, timeout=None):
        assert timeout is not None and timeout <= 30
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match="the hub cannot be reached") as err:
        check_model_source("some/id", "policy", "x/y")
    assert "Name or service not known" in str(err.value) and time.perf_counter() - start < 5
    monkeypatch.setattr(hub, "_in_hub_cache", lambda repo, name: True)  # cached: use it without the hub
    assert check_model_source("some/id", "policy", "x/y") == ("some/id", True)


def test_load_error_names_the_hub_cause_in_the_chain():
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    def chained(inner: Exception) -> OSError:
        try:
            try:
                raise inner
            except Exception as exc:
                raise OSError("Can't load image processor for 'x/y'. ... local directory ...") from exc
        except OSError as outer:
            return outer

    cases = {
        _bare(RepositoryNotFoundError, "404"): "no such repository",
        _bare(GatedRepoError, "403"): "gated repository",
        LocalEntryNotFoundError("not cached"): "hf download x/y",
    }
    for inner, needle in cases.items():
        message = str(load_error(chained(inner), "SAM2", "x/y", "facebook/sam2.1-hiera-large"))
        assert needle in message and "local directory" not in message, message
    plain = load_error(ValueError("bad config\nmore"), "policy", "x/y", "e/g")
    assert str(plain).startswith("could not load policy 'x/y': bad config;")


def test_a_piped_run_prints_no_progress_bars(tmp_path):
    """Without a terminal (logs, CI) transformers' "Loading weights" bar is noise: it is switched off."""
    proc = _segr1(
        ["segment", str(REPO / "examples" / "salient-0.png"), "--out", str(tmp_path / "o")], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Loading weights" not in proc.stderr and "it/s]" not in proc.stderr


def test_data_synth_reports_once(tmp_path, capsys, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        assert (
            main(
                [
                    "data",
                    "synth",
                    "--kind",
                    "salient",
                    "--n",
                    "2",
                    "--out",
                    str(tmp_path / "s"),
                    "--no-progress",
                ]
            )
            == 0
        )
    said = capsys.readouterr().out + caplog.text
    assert said.count("wrote 2 salient scenes") == 1
