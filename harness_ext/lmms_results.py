"""Make lmms-eval's outputs name and record the merge that produced them.

lmms-eval 0.7.3 names its output folder after `pretrained=`-like model arguments (a recipe has
none, so the folder name would be empty) and offers models no way to add to the results JSON.
When a merged model loads, we wrap two EvaluationTracker steps, once per process: the folder
becomes `<recipe name>-<recipe hash>` and the results JSON gains a `merged_vlm` entry with the
normalised recipe, its hash, the input identities, how the model was loaded, and the versions and
hardware of the run.
"""

from __future__ import annotations

from typing import Any

from harness_ext.arguments import join_arguments

_current: dict[str, Any] = {}


def record_loaded_merge(record: dict[str, Any]) -> None:
    """Remember the merge record of the model this process evaluates, and install the hooks."""
    from harness_ext.results.environment import capture

    _current.clear()
    _current.update(record, environment=capture())
    _install()


def merge_loaded() -> bool:
    """Whether a merged model has loaded in this process."""
    return bool(_current)


def loaded_record() -> dict[str, Any] | None:
    """The merge record of the model this process evaluates, None before one loads."""
    return dict(_current) if _current else None


def output_folder_name(record: dict[str, Any]) -> str:
    """`<recipe name>-<hash>`, sanitised as lmms-eval sanitises folder names: where results land."""
    from lmms_eval.loggers.evaluation_tracker import sanitize_model_name

    name = record["recipe"].get("name") or "merged_vlm"
    return sanitize_model_name(f"{name}-{record['recipe_hash']}")


def reproducing_args(record: dict[str, Any]) -> str:
    """The `--model_args` of `--model merged_vlm` that load this merge again: the recipe file and the overrides
    (lists and numbers as YAML reads them back)."""
    recipe = f"recipe={record.get('recipe_file') or 'recipe.yaml'}"
    overrides = record.get("overrides")
    return f"{recipe},{join_arguments(overrides)}" if overrides else recipe


def _install() -> None:
    from lmms_eval.loggers import evaluation_tracker as tracker_module

    general, tracker = tracker_module.GeneralConfigTracker, tracker_module.EvaluationTracker
    if getattr(general.log_experiment_args, "_merged_vlm", False):
        return
    log_experiment_args = general.log_experiment_args
    save_results_aggregated = tracker.save_results_aggregated

    def log_with_merge_name(self, *args: Any, **kwargs: Any) -> None:
        log_experiment_args(self, *args, **kwargs)
        if _current:
            self.model_name = self.model_name_sanitized = output_folder_name(_current)

    def save_with_merge_record(self, results: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if _current:
            results = {**results, "merged_vlm": dict(_current)}
        return save_results_aggregated(self, results, *args, **kwargs)

    log_with_merge_name._merged_vlm = True  # type: ignore[attr-defined]
    general.log_experiment_args = log_with_merge_name
    tracker.save_results_aggregated = save_with_merge_record
