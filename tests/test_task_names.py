"""Task names and layer options are checked before anything is merged, evaluated or written, with the
closest names offered; a sweep whose start fails leaves no state behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext import sweep, task_names

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "tiny-world.yaml")
BIN = Path(sys.executable).parent


def test_unknown_project_task_gets_the_closest_names() -> None:
    with pytest.raises(task_names.UnknownTaskError) as caught:
        task_names.check_project_tasks(["mvlm_probe_reasoning", "mvlm_prob"])
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("--tasks: unknown task 'mvlm_prob' (did you mean mvlm_probe")
    task_names.check_project_tasks(["mvlm_probe", "mvlm_all_cot", "mmmu_val", "mvlm_*"])  # others: lmms-eval's


def test_lmms_eval_task_typo_is_named_with_suggestions(monkeypatch) -> None:
    class Index:
        all_tasks = ("mmmu_val", "mmstar", "mvlm_probe")

    monkeypatch.setattr("harness_ext.evaluate.task_manager", lambda: Index())
    with pytest.raises(task_names.UnknownTaskError, match=r"'mmmu_vall' \(did you mean mmmu_val\?\)"):
        task_names.check_tasks(["mvlm_probe", "mmmu_vall"])
    task_names.check_tasks(["mvlm_probe", "mmstar"])
    error = ValueError("Tasks not found: mmmu_vall. Try `lmms-eval --tasks {list_groups,...}` to list")
    assert "did you mean mmmu_val" in task_names.lmms_eval_unknown_tasks(error)
    assert task_names.lmms_eval_unknown_tasks(ValueError("something else")) is None


def test_sweep_with_a_task_typo_merges_nothing_and_leaves_no_state(run_cli, tmp_path, monkeypatch) -> None:
    def no_merge(*args, **kwargs):
        raise AssertionError("merged before the task names were checked")

    monkeypatch.setattr("harness_ext.remerge.InPlaceMerger.__init__", no_merge)
    out = tmp_path / "sw5"
    code, _, err = run_cli("sweep", RECIPE, "--grid", "lambda=0,1", "--tasks", "mvlm_prob", "--limit", "5",
                           "--out", out)
    assert code == 2 and "did you mean mvlm_probe" in err and "Traceback" not in err, err
    assert not (out / "sweep.json").exists()


def test_demo_with_a_task_typo_loads_nothing(run_cli, monkeypatch) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the task names were checked")

    monkeypatch.setattr("harness_ext.lmms_model.MergedVLMChat.__init__", no_model)
    code, _, err = run_cli("demo", "--tasks", "mvlm_probe_perception,mvlm_prob")
    assert code == 2 and "unknown task 'mvlm_prob' (did you mean mvlm_probe" in err, err


def test_layers_checks_its_module_groups_before_the_first_evaluation(run_cli, tmp_path, monkeypatch) -> None:
    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before --module was checked")

    monkeypatch.setattr("harness_ext.evaluate.evaluate", no_evaluation)
    code, _, err = run_cli("layers", RECIPE, "--module", "foo", "--tasks", "mvlm_probe_reasoning", "--limit", "1",
                           "--out", tmp_path, "--no-ingest")
    assert code == 2 and "--module" in err and "'foo'" in err and "attn, mlp" in err, err


def test_a_sweep_whose_first_variant_fails_leaves_no_state(tmp_path, monkeypatch) -> None:
    class Refused(Exception):
        pass

    def refuse(*args, **kwargs):
        raise Refused

    monkeypatch.setattr("harness_ext.remerge.InPlaceMerger.__init__", refuse)
    out = tmp_path / "sweep"
    with pytest.raises(Refused):
        sweep.run_sweep(RECIPE, {"lambda": [0.0, 1.0]}, ["mvlm_prob"], out, limit=5)
    assert not (out / "sweep.json").exists()
    with pytest.raises(Refused):  # the corrected command is not refused as "a different sweep"
        sweep.run_sweep(RECIPE, {"lambda": [0.0, 1.0]}, ["mvlm_probe"], out, limit=5)


def test_lmms_eval_alias_names_the_task_not_the_model(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MERGED_VLM_DATA"}
    command = [str(BIN / "lmms_eval"), "--model", "merged_vlm", "--model_args", "recipe=tiny-world", "--tasks",
               "mvlm_prob", "--limit", "2", "--output_path", str(tmp_path / "out")]
    result = subprocess.run(command, env={**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "unknown task 'mvlm_prob' (did you mean mvlm_probe" in lines[0] and "merged_vlm" not in lines[0]
    assert not (tmp_path / "out").exists()
