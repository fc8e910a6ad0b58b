"""Shipped files (recipes, the tiny-world family) are found the same way from a checkout and from an
installed wheel, named the same in records, and an install without a checkout records runs in the user
data folder and says so."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from merge_models import shipped

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """merged-vlm as a wheel lays it out: the shipped files under merge_models/shipped/, no checkout."""
    folder = tmp_path / "site-packages" / "merge_models" / shipped.PACKAGE_FOLDER
    for content in shipped.CONTENTS:
        shutil.copytree(ROOT / content, folder / content)
    monkeypatch.setattr(shipped, "root", lambda: folder)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("MERGED_VLM_RESULTS", raising=False)
    monkeypatch.delenv("MERGED_VLM_LOCAL_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


def test_setup_py_ships_what_merge_models_shipped_looks_for():
    tree = ast.parse((ROOT / "setup.py").read_text())
    (value,) = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "SHIPPED" for t in node.targets)]
    assert ast.literal_eval(value) == shipped.CONTENTS


def test_a_checkout_finds_its_own_recipes_and_records_runs_in_the_current_folder(monkeypatch):
    from harness_ext.results.store import default_root, recording_note
    from merge_models.recipe import resolve_recipe_path

    monkeypatch.delenv("MERGED_VLM_RESULTS", raising=False)
    assert shipped.checkout() == ROOT and shipped.root() == ROOT
    assert resolve_recipe_path("tiny-world") == ROOT / "recipes" / "tiny-world.yaml"
    assert default_root() == Path("results") and recording_note() is None


def test_an_install_finds_recipes_and_checkpoints_from_any_folder(installed):
    from merge_models.plan import build_plan
    from merge_models.recipe import load_recipe, resolve_recipe_path

    assert shipped.checkout() is None
    path = resolve_recipe_path("tiny-world")
    assert path == installed / "recipes" / "tiny-world.yaml"
    plan = build_plan(load_recipe(path))
    try:
        assert plan.vlm.path == (installed / "models" / "tiny-world" / "vlm").resolve()
        record = plan.record(path.parent)
    finally:
        plan.close()
    assert record["recipe"]["vlm"]["model"] == "models/tiny-world/vlm", "named as shipped, not by this machine"
    assert {ref["model"] for ref in record["recipe"]["sources"]} == {"models/tiny-world/reasoning"}


def test_an_install_records_runs_in_the_user_data_folder_unless_told_otherwise(installed, tmp_path, monkeypatch):
    from harness_ext.results.store import default_root, local_root, recording_note

    assert default_root() == tmp_path / "data" / "merged-vlm" / "results"
    assert recording_note() == (f"runs are recorded in {local_root()} (the user data folder; set "
                                "$MERGED_VLM_RESULTS to move it)")
    monkeypatch.setenv("MERGED_VLM_RESULTS", str(tmp_path / "mine"))
    assert default_root() == tmp_path / "mine"
    assert recording_note() == f"runs are recorded in {tmp_path / 'mine' / 'local'} ($MERGED_VLM_RESULTS)"


def test_a_users_own_recipe_keeps_its_relative_checkpoint_paths(installed, tmp_path):
    from merge_models.recipe import load_recipe

    mine = tmp_path / "work"
    shutil.copytree(installed / "models" / "tiny-world" / "vlm", mine / "ckpt" / "vlm")
    (mine / "recipe.yaml").write_text("vlm: {model: ./ckpt/vlm, weight: 0.5}\n"
                                      "sources: [{model: ./ckpt/vlm, weight: 0.5}]\nmethod: linear\n")
    recipe = load_recipe(mine / "recipe.yaml")
    assert Path(recipe.vlm.model).resolve() == (mine / "ckpt" / "vlm").resolve()
