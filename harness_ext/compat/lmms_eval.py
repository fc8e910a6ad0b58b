"""Every lmms-eval internal merged-vlm patches or relies on, written for lmms-eval 0.7.3.

- The evaluation tracker: lmms-eval names its output folder after `pretrained=`-like model arguments (a
  recipe has none) and gives models no way to add to the results JSON, so two tracker steps are wrapped:
  the folder name and the saved results come from callables of the model's process.
- The CLI: `cli_evaluate` logs an exception of `cli_evaluate_single` and exits 0; the `lmms_eval` alias
  swaps in a wrapper that records the failure so the alias can exit non-zero.
- Throughput: lmms-eval sums what models report through `gen_metrics.log_metrics` (as its own models do)
  into the results' `throughput`.
- Task data: the real-benchmark tasks load a one-row placeholder parquet named relative to their YAML,
  which lmms-eval resolves against the YAML's folder (`_maybe_resolve_yaml_local_data_files`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness_ext.compat import Target, Upstream

UPSTREAM = Upstream("lmms_eval", "0.7.3", "harness_ext/compat/lmms_eval.py")
TRACKER = "lmms_eval.loggers.evaluation_tracker"
LOG_EXPERIMENT_ARGS = Target(UPSTREAM, TRACKER, "GeneralConfigTracker.log_experiment_args", ("self", "model_source"))
SAVE_RESULTS = Target(UPSTREAM, TRACKER, "EvaluationTracker.save_results_aggregated", ("self", "results"))
SANITIZE = Target(UPSTREAM, TRACKER, "sanitize_model_name", ("model_name",))
CLI_EVALUATE = Target(UPSTREAM, "lmms_eval.__main__", "cli_evaluate", ("args",))
CLI_EVALUATE_SINGLE = Target(UPSTREAM, "lmms_eval.__main__", "cli_evaluate_single", ("args",))
PARSE_EVAL_ARGS = Target(UPSTREAM, "lmms_eval.__main__", "parse_eval_args")
# relied on, not patched: what anchors the placeholder's data_files at its YAML's folder (test_compat checks it)
LOCAL_DATA_FILES = Target(UPSTREAM, "lmms_eval.utils", "_maybe_resolve_yaml_local_data_files",
                          ("yaml_config", "yaml_dir"))
LOAD_YAML_CONFIG = Target(UPSTREAM, "lmms_eval.utils", "load_yaml_config", ("yaml_path",))
LOG_METRICS = Target(UPSTREAM, "lmms_eval.models.model_utils.gen_metrics", "log_metrics",
                     ("total_elapsed_time", "total_gen_tokens", "avg_speed", "additional_metrics"))
TARGETS = (LOG_METRICS, LOG_EXPERIMENT_ARGS, SAVE_RESULTS, SANITIZE, CLI_EVALUATE, CLI_EVALUATE_SINGLE, PARSE_EVAL_ARGS,
           LOCAL_DATA_FILES, LOAD_YAML_CONFIG)

_hooks: dict[str, Callable[[], Any]] = {}


def _nothing() -> None:
    return None


def sanitize_model_name(name: str) -> str:
    """`name` as lmms-eval sanitises an output folder name."""
    return SANITIZE.resolve()(name)


def wrap_tracker(folder_name: Callable[[], str | None], results_entry: Callable[[], dict[str, Any] | None]) -> None:
    """Make the tracker name the output folder `folder_name()` and add `results_entry()` to the results JSON
    under `merged_vlm` (each only when it returns something). Installed once per process; a later call
    replaces the callables."""
    _hooks.update(folder=folder_name, entry=results_entry)
    log_experiment_args, save_results_aggregated = LOG_EXPERIMENT_ARGS.resolve(), SAVE_RESULTS.resolve()
    if getattr(log_experiment_args, "_merged_vlm", False):
        return
    import lmms_eval.loggers.evaluation_tracker as tracker_module

    @functools.wraps(log_experiment_args)
    def log_with_merge_name(self, *args: Any, **kwargs: Any) -> None:
        log_experiment_args(self, *args, **kwargs)
        name = _hooks.get("folder", _nothing)()
        if name:
            self.model_name = self.model_name_sanitized = name

    @functools.wraps(save_results_aggregated)
    def save_with_merge_record(self, results: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        entry = _hooks.get("entry", _nothing)()
        if entry:
            results = {**results, "merged_vlm": entry}
        return save_results_aggregated(self, results, *args, **kwargs)

    log_with_merge_name._merged_vlm = True  # type: ignore[attr-defined]
    tracker_module.GeneralConfigTracker.log_experiment_args = log_with_merge_name
    tracker_module.EvaluationTracker.save_results_aggregated = save_with_merge_record


def log_throughput(tokens: int, seconds: float, rank: int) -> None:
    """Report `tokens` generated in `seconds` by process `rank` to lmms-eval's throughput summary."""
    LOG_METRICS.resolve()(total_elapsed_time=seconds, total_gen_tokens=tokens,
                          avg_speed=tokens / seconds if seconds > 0 else 0.0, additional_metrics={"rank": rank})


def parse_eval_args() -> Any:
    """lmms-eval's parsed evaluation arguments (from sys.argv)."""
    _, args = PARSE_EVAL_ARGS.resolve()()
    return args


def evaluate_recording_failures(args: Any, reraise: Callable[[Any], bool]) -> list[BaseException]:
    """Run `cli_evaluate(args)` and return the exceptions its runs raised (lmms-eval would log them and go
    on to exit 0); a run for which `reraise(run_args)` is true raises instead."""
    import lmms_eval.__main__ as lmms_main

    failures: list[BaseException] = []
    with _swapped_single_run(lmms_main, failures, reraise):
        CLI_EVALUATE.resolve()(args)
    return failures


@contextmanager
def _swapped_single_run(lmms_main: Any, failures: list[BaseException],
                        reraise: Callable[[Any], bool]) -> Iterator[None]:
    run_single = CLI_EVALUATE_SINGLE.resolve()

    def run_recording_failures(run_args):
        try:
            return run_single(run_args)
        except Exception as exc:
            if reraise(run_args):
                raise
            failures.append(exc)
            return None, None

    lmms_main.cli_evaluate_single = run_recording_failures
    try:
        yield
    finally:
        lmms_main.cli_evaluate_single = run_single

