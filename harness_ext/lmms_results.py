"""Make lmms-eval's outputs name and record the merge that produced them.

lmms-eval 0.7.3 names its output folder after `pretrained=`-like model arguments (a recipe has
none, so the folder name would be empty) and offers models no way to add to the results JSON.
When a merged model loads, two EvaluationTracker steps are wrapped (harness_ext.compat.lmms_eval): the folder
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
    from harness_ext.compat.lmms_eval import sanitize_model_name

    name = record["recipe"].get("name") or "merged_vlm"
    return sanitize_model_name(f"{name}-{record['recipe_hash']}")


def reproducing_args(record: dict[str, Any]) -> str:
    """The `--model_args` of `--model merged_vlm` that load this merge again: the recipe file and the overrides
    (lists and numbers as YAML reads them back)."""
    recipe = f"recipe={record.get('recipe_file') or 'recipe.yaml'}"
    overrides = record.get("overrides")
    return f"{recipe},{join_arguments(overrides)}" if overrides else recipe


def _install() -> None:
    from harness_ext.compat.lmms_eval import wrap_tracker

    wrap_tracker(lambda: output_folder_name(_current) if _current else None,
                 lambda: dict(_current) if _current else None)
