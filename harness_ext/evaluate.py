"""Evaluate models in this process through lmms-eval's Python API, writing lmms-eval's own output layout.

Used by `merged-vlm demo` and sweeps: the task index is built once and models are passed as
objects, so several variants cost one set of imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def task_manager():
    """lmms-eval's task index with this project's tasks included (built once per process)."""
    import mvlm_tasks
    from lmms_eval.tasks import TaskManager

    return TaskManager("WARNING", include_path=[str(Path(mvlm_tasks.__file__).parent)])


@dataclass(frozen=True)
class Evaluation:
    """lmms-eval's aggregated results, per-sample logs, and the folder and results file they were written to."""

    results: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]]
    folder: Path | None
    results_file: Path | None = None


def evaluate(lm, tasks: list[str], output_path: Path | None = None, limit: int | float | None = None) -> Evaluation:
    """Run `tasks` on an lmms-eval model object; save results and samples under output_path if given.

    A merged VLM's results name the model as the command line does (`merged_vlm`, with the `--model_args` that
    load the same merge), not by its Python class, so the recorded run says how to reproduce it.
    """
    from lmms_eval import evaluator, utils
    from lmms_eval.loggers import EvaluationTracker

    from harness_ext.lmms_model import MODEL_NAME, MergedVLMChat, MergedVLMSimple
    from harness_ext.lmms_results import reproducing_args
    from harness_ext.results.completion import mark_complete

    tracker = EvaluationTracker(output_path=str(output_path)) if output_path else None
    stamp = utils.get_datetime_str()
    results = evaluator.simple_evaluate(model=lm, tasks=tasks, limit=limit,
                                        log_samples=True, evaluation_tracker=tracker, task_manager=task_manager(),
                                        batch_size=lm.batch_size, datetime_str=stamp, verbosity="WARNING")
    if isinstance(lm, MergedVLMChat | MergedVLMSimple):
        results["config"].update(model=MODEL_NAME, model_args=reproducing_args(lm.loaded.record))
    samples = results.pop("samples")
    folder = results_file = None
    if tracker is not None:
        tracker.save_results_aggregated(results=results, samples=samples, datetime_str=stamp)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
        folder = Path(output_path) / tracker.general_config_tracker.model_name_sanitized
        results_file = folder / f"{tracker.date_id}_results.json"
        mark_complete(results_file)  # the sample logs are written: a finished run (see results.completion)
    return Evaluation(results, samples, folder, results_file)


def split_scores(results: dict[str, Any], metric: str = "mvlm_acc") -> dict[str, float]:
    """Task -> primary score (0..1) for every task and group in lmms-eval's results."""
    out = {}
    for task, values in results.get("results", {}).items():
        value = values.get(f"{metric},none")
        if isinstance(value, (int, float)):
            out[task] = float(value)
    return out
