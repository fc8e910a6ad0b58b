"""`lmms_eval`: lmms-eval's command line with this project's tasks on the include path, failing fast and loud.

Before lmms-eval starts, an evaluation run is checked: a Hub that does not answer switches the run to
offline mode (harness_ext.hub), the data of this project's tasks must be readable (a local copy under
MERGED_VLM_DATA, or the Hugging Face cache when offline), and `--model merged_vlm` arguments and the recipe
they name must be valid. A run that fails a check, or whose model cannot be built or whose evaluation
raises, prints one line naming the cause and the fix, exits non-zero and writes no results folder
(lmms-eval itself logs such an error and exits 0). A merge evaluated with `--limit` and `--output_path` is
recorded in the local results store, as `demo` and `sweep` runs are. Everything else is lmms-eval's own CLI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEBUG_HINT = "rerun with --verbosity DEBUG for the traceback"
HELP = ("-h", "--help")


def _tasks_dir() -> str:
    import mvlm_tasks

    return str(Path(mvlm_tasks.__file__).parent)


def _option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _check_merged_vlm(argv: list[str]) -> None:
    from harness_ext.loading import keep_checked_plan
    from harness_ext.model_options import VLM_OPTIONS, parse_model_args_string, split_model_args
    from merge_models.plan import build_plan

    given = parse_model_args_string(_option(argv, "--model_args") or "")
    args = split_model_args(given, VLM_OPTIONS, "merged_vlm")
    keep_checked_plan(build_plan(args.recipe))  # the model reuses it: each checkpoint is opened once


def _check_run(argv: list[str], offline: bool) -> None:
    """Raise MergeError for a run that cannot work: unreadable task data, bad merged_vlm arguments."""
    from mvlm_tasks.sources import check_available

    from harness_ext.task_names import check_project_tasks

    names = [name.strip() for name in (_option(argv, "--tasks") or "").split(",")]
    check_project_tasks(names)  # a typo in this project's task names, at once (lmms-eval's are checked by it)
    check_available(names, offline)
    if _option(argv, "--model") == "merged_vlm":
        _check_merged_vlm(argv)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point of the `lmms_eval` console script."""
    argv = sys.argv[1:]
    evaluating = bool(argv) and (argv[0] == "eval" or (argv[0].startswith("-") and argv[0] not in HELP))
    if evaluating:
        argv = argv[1:] if argv[0] == "eval" else argv
        from harness_ext.hub import go_offline_if_unreachable, offline_set

        went_offline = go_offline_if_unreachable()  # before anything imports a Hub client
        from merge_models.errors import MergeError

        try:
            _check_run(argv, offline=offline_set())
        except MergeError as exc:
            _fail(str(exc), exc.exit_code)
        if went_offline:
            print(f"note: {went_offline}", file=sys.stderr)
        _evaluate(argv)
        return
    sys.argv = ["lmms-eval", *argv]
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    lmms_eval_main()


def _evaluate(argv: list[str]) -> None:
    """lmms-eval's evaluation with our tasks folder added to any --include_path the user gave; a run that
    raises ends the process with one line and a non-zero status instead of a logged traceback and 0."""
    sys.argv = ["lmms-eval", *argv]
    from harness_ext.compat.lmms_eval import evaluate_recording_failures, parse_eval_args

    from harness_ext.results.completion import mark_finished, remove_unfinished, results_files

    args = parse_eval_args()
    args.include_path = [_tasks_dir()] + ([args.include_path] if args.include_path else [])
    output = Path(args.output_path) if args.output_path else None
    existed, before = output is not None and output.exists(), results_files(output)
    try:
        failures = evaluate_recording_failures(args, reraise=lambda run_args: run_args.verbosity == "DEBUG")
    except BaseException:  # an interrupt: nothing of this run is left to look like a run
        remove_unfinished(output, before, existed)
        raise
    if failures:
        remove_unfinished(output, before, existed)
        _fail(*_failure_message(failures[0], args.model))
    mark_finished(output, before)
    _record_limited(args.limit, args.output_path)


def _record_limited(limit: float | None, output_path: str | None) -> None:
    """A merge evaluated with --limit is an exploratory run: record it in the local store (results/local/, or
    $MERGED_VLM_LOCAL_RESULTS) as `demo` and `sweep` do; full runs are recorded with `track ingest`."""
    from harness_ext.lmms_results import loaded_record, output_folder_name

    record = loaded_record()
    if limit is None or not output_path or record is None or os.environ.get("RANK", "0") != "0":
        return
    from harness_ext.cli.track import record_runs
    from harness_ext.results.errors import ResultsError
    from harness_ext.results.ingest import read_output

    saved = sorted((Path(output_path) / output_folder_name(record)).glob("*_results.json"))
    try:
        if saved:
            record_runs(read_output(saved[-1]))
    except ResultsError as exc:
        print(f"warning: the run was not recorded: {exc}", file=sys.stderr)


def _failure_message(exc: BaseException, model: str) -> tuple[str, int]:
    """One line for a run that raised, and its exit status: a MergeError (anywhere in the chain) speaks for
    itself (status 2); anything else is named with where it happened (status 1)."""
    from mvlm_tasks.sources.errors import first_line

    from harness_ext.lmms_results import merge_loaded
    from harness_ext.task_names import lmms_eval_unknown_tasks
    from merge_models.errors import MergeError

    chain = _chain(exc)
    cause = next((e for e in chain if isinstance(e, MergeError)), None)
    if cause is not None:
        return str(cause), cause.exit_code
    root = next((e for e in chain if getattr(e, "last_attempt", None) is None), exc)
    unknown_tasks = lmms_eval_unknown_tasks(root)
    if unknown_tasks is not None:  # lmms-eval checks task names before it builds the model
        return unknown_tasks, 2
    if model == "merged_vlm" and not merge_loaded():
        return f"merged_vlm could not be built: {first_line(root)}; {DEBUG_HINT}", 1
    return f"the evaluation failed: {first_line(root)}; {DEBUG_HINT}", 1


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: tenacity's last attempt (lmms-eval retries loading), causes, contexts."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        attempt = getattr(current, "last_attempt", None)
        wrapped = attempt.exception() if attempt is not None and hasattr(attempt, "exception") else None
        current = wrapped or current.__cause__ or current.__context__
    return seen


if __name__ == "__main__":
    main()
