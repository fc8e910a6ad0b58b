"""Packaging: every Python package folder ships, and the plugins are where the harnesses look."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {name: ROOT / path for name, path in config["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_lmms_eval_entry_point_names_merged_vlm():
    (point,) = [e for e in entry_points(group="lmms_eval.models") if e.name == "merged_vlm"]
    manifest = point.load()
    assert manifest.chat_class_path.endswith("MergedVLMChat") and manifest.simple_class_path.endswith("MergedVLMSimple")


def test_lm_eval_finds_merged_lm_and_its_own_models():
    from lm_eval.api.registry import get_model

    assert get_model("merged_lm").__name__ == "MergedLM"
    assert get_model("hf").__name__ == "HFLM", "registering ours must not hide lm-eval's built-in models"
