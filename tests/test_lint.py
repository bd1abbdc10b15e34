"""Lint and types, as CI runs them: ruff and mypy with the configuration checked in (pyproject.toml)."""

import subprocess
import sys

from tests.conftest import PROJECT


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=PROJECT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_edge_convert_and_models():
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
