"""The CI script runs the README's test command, and the test extra has what the tests use."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("Set up and run the tests", 1)[1]
    block = re.search(r"```bash\n(.+?)\n```", section, re.S)
    assert block, "README: no bash block after 'Set up and run the tests'"
    (command,) = block.group(1).strip().splitlines()
    return command


def _ci_line(marker: str) -> str:
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.endswith(f"# {marker}")]
    assert len(lines) == 1, f".ci/run needs exactly one line marked '# {marker}'"
    return lines[0].removesuffix(f"# {marker}").strip()


def test_ci_runs_the_readme_test_command():
    assert _ci_line("README-TEST") == _readme_test_command()


def test_ci_installs_official_sam2_before_the_default_run():
    text = (REPO / ".ci" / "run").read_text()
    sam2 = text.index("SAM2_BUILD_CUDA=0 pip install -q --no-build-isolation sam2")
    assert sam2 < text.index("# README-TEST")


def test_test_extra_has_the_pytest_plugins_the_tests_use():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", req, maxsplit=1)[0] for req in extras["test"]}
    uses_timeout = any("pytest.mark.timeout" in p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert not uses_timeout or "pytest-timeout" in names


def test_timeout_marks_are_enforced(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed"
