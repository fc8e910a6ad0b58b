"""The seam to upstream internals (harness_ext.compat): every patched or relied-on internal is where the
patch expects it, each patch still does its job, and a changed upstream stops with one clear line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from harness_ext.compat import CompatError, Target, Upstream
from harness_ext.compat import lm_eval as lm_compat
from harness_ext.compat import lmms_eval as lmms_compat
from harness_ext.compat import transformers as tf_compat

ROOT = Path(__file__).resolve().parents[1]
MODULES = (lmms_compat, lm_compat, tf_compat)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.UPSTREAM.distribution)
def test_installed_upstream_is_the_version_the_patches_were_written_for(module):
    upstream = module.UPSTREAM
    assert upstream.installed() == upstream.written_for, (
        f"{upstream.distribution} is {upstream.installed()}, but {upstream.compat_module} was written for "
        f"{upstream.written_for}: re-check each of its TARGETS and patches against the new version, then set "
        f"UPSTREAM.written_for")


@pytest.mark.parametrize("target", [t for m in MODULES for t in m.TARGETS], ids=lambda t: t.qualname)
def test_every_internal_a_patch_relies_on_is_there_with_its_parameters(target):
    target.resolve()  # a CompatError names the upstream, both versions and the module to update


def test_a_changed_upstream_stops_with_one_line_naming_versions_and_the_fix(monkeypatch):
    import lmms_eval.__main__ as lmms_main

    monkeypatch.delattr(lmms_main, "cli_evaluate_single")
    with pytest.raises(CompatError) as caught:
        lmms_compat.CLI_EVALUATE_SINGLE.resolve()
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 1
    assert "lmms_eval.__main__.cli_evaluate_single is gone" in message
    assert "written for lmms_eval 0.7.3" in message and "harness_ext/compat/lmms_eval.py" in message

    def renamed(namespace):
        return None

    monkeypatch.setattr(lmms_main, "cli_evaluate_single", renamed, raising=False)
    with pytest.raises(CompatError, match=r"takes \(namespace\), not \(args\)"):
        lmms_compat.CLI_EVALUATE_SINGLE.resolve()
    missing = Upstream("no-such-distribution", "1.0", "harness_ext/compat/x.py")
    with pytest.raises(CompatError, match="no-such-distribution not installed: x.y is gone"):
        Target(missing, "x", "y").resolve()


def test_lmms_eval_tracker_names_the_folder_and_records_the_merge(tmp_path, monkeypatch):
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    monkeypatch.setattr(lmms_compat, "_hooks", {})
    lmms_compat.wrap_tracker(lambda: "tiny-world-0123abcd", lambda: {"recipe_hash": "0123abcd"})
    tracker = EvaluationTracker(output_path=str(tmp_path))
    tracker.general_config_tracker.log_experiment_args(
        model_source="merged_vlm", model_args="recipe=tiny-world", system_instruction=None, chat_template=None,
        fewshot_as_multiturn=False)
    assert tracker.general_config_tracker.model_name_sanitized == "tiny-world-0123abcd"
    tracker.save_results_aggregated(results={"results": {}, "config": {}}, samples=None, datetime_str="2026")
    (saved,) = (tmp_path / "tiny-world-0123abcd").rglob("*results*.json")
    assert json.loads(saved.read_text())["merged_vlm"] == {"recipe_hash": "0123abcd"}


def test_lmms_eval_alias_records_a_failed_run_instead_of_exiting_0(monkeypatch):
    import lmms_eval.__main__ as lmms_main

    def failing(args):
        raise RuntimeError("model could not load")

    monkeypatch.setattr(lmms_main, "cli_evaluate_single", failing)
    monkeypatch.setattr(sys, "argv", ["lmms-eval", "--model", "merged_vlm", "--tasks", "mvlm_probe"])
    args = lmms_compat.parse_eval_args()
    assert isinstance(args, argparse.Namespace) and args.model == "merged_vlm"
    failures = lmms_compat.evaluate_recording_failures(args, reraise=lambda run_args: False)
    assert [str(f) for f in failures] == ["model could not load"]
    assert lmms_main.cli_evaluate_single is failing, "the swap is undone after the run"


def test_lmms_eval_resolves_the_placeholder_dataset_next_to_the_task_yaml():
    suite = ROOT / "tasks" / "suite"
    config = lmms_compat.LOAD_YAML_CONFIG.resolve()(str(suite / "_mvlm_real.yaml"))
    placeholder = Path(config["dataset_kwargs"]["data_files"]["test"])
    assert placeholder == suite / "placeholder.parquet" and placeholder.is_file()


def test_lm_eval_registers_merged_lm_from_the_pth_hook_without_importing_lm_eval_early():
    import subprocess

    code = ("import sys; assert 'lm_eval' not in sys.modules, 'the .pth hook imported lm-eval at start';"
            "from lm_eval.api.registry import get_model; print(get_model('merged_lm').__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "MergedLM"


def test_lm_eval_tracker_names_the_folder_after_the_merge():
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    lm_compat.name_output_folder("tiny world-0123abcd")
    tracker = GeneralConfigTracker()
    tracker.log_experiment_args(model_source="merged_lm", model_args="recipe=tiny-world", system_instruction=None,
                                chat_template=None, fewshot_as_multiturn=False)
    assert tracker.model_name == "tiny world-0123abcd"
    other = GeneralConfigTracker()
    other.log_experiment_args(model_source="hf", model_args="pretrained=x", system_instruction=None,
                              chat_template=None, fewshot_as_multiturn=False)
    assert other.model_name == "x", "other models' folders are lm-eval's own"


def test_transformers_builds_a_model_from_a_state_dict_without_reading_weights():
    import torch
    import transformers as T
    from safetensors.torch import load_file

    path = ROOT / "models" / "tiny-world" / "reasoning"
    weights = load_file(path / "model.safetensors")
    config = T.AutoConfig.from_pretrained(path)
    model = tf_compat.from_streamed(T.AutoModelForCausalLM, config, dict(weights), path, True, dtype=torch.float32)
    state = model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in weights.items() if name in state)
    assert model.generation_config.max_new_tokens == T.GenerationConfig.from_pretrained(path).max_new_tokens
