"""Shared fixtures: an isolated merge cache per test, offline hubs, tiny generated checkpoints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from mvlm_tasks.scoring import judge

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Fixture builders save tiny models; their progress bars would pollute captured stderr."""
    from transformers.utils import logging

    logging.disable_progress_bar()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty merge cache, and no LLM judge (scoring by the rules alone)."""
    cache = tmp_path / "merge-cache"
    monkeypatch.setenv("MERGED_VLM_CACHE", str(cache))
    monkeypatch.delenv(judge.URL_ENV, raising=False)
    return cache


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory):
    """Build (once per session) a tiny VLM + base + reasoning trio of a family."""
    from tiny_checkpoints import build_family

    root = tmp_path_factory.mktemp("tiny")
    built = {}

    def get(family: str = "qwen2_vl"):
        if family not in built:
            built[family] = build_family(family, root)
        return built[family]

    return get


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe mapping to a YAML file and return its path."""
    counter = iter(range(1000))

    def write(recipe: dict) -> Path:
        path = tmp_path / f"recipe-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run `merged-vlm ARGS` in-process (in a terminal `columns` wide); returns (exit code, stdout, stderr)."""
    from harness_ext.cli import main

    def run(*args: str, columns: int = 200) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["merged-vlm", *map(str, args)])
        monkeypatch.setenv("COLUMNS", str(columns))
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
