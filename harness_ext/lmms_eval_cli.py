"""`lmms_eval`: lmms-eval's command line with this project's tasks on the include path.

Checks `--model merged_vlm` arguments (and the recipe they name) before lmms-eval starts, so a
bad argument is one line on stderr, exit status 2, and nothing under --output_path. Everything
else is lmms-eval's own CLI (`lmms-eval` keeps working, with `--include_path`).
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    from harness_ext.model_options import VLM_OPTIONS, parse_model_args_string, split_model_args
    from merge_models.plan import build_plan

    args = split_model_args(parse_model_args_string(_option(argv, "--model_args") or ""), VLM_OPTIONS, "merged_vlm")
    build_plan(args.recipe).close()


def main() -> None:
    """Entry point of the `lmms_eval` console script."""
    argv = sys.argv[1:]
    if _option(argv, "--model") == "merged_vlm":
        from merge_models.errors import MergeError

        try:
            _check_merged_vlm(argv)
        except MergeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    if argv and (argv[0] == "eval" or (argv[0].startswith("-") and argv[0] not in ("-h", "--help"))):
        _evaluate(argv[1:] if argv[0] == "eval" else argv)
        return
    sys.argv = ["lmms-eval", *argv]
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    lmms_eval_main()


def _evaluate(argv: list[str]) -> None:
    """lmms-eval's evaluation with our tasks folder added to any --include_path the user gave."""
    sys.argv = ["lmms-eval", *argv]
    from lmms_eval.__main__ import cli_evaluate, parse_eval_args

    _, args = parse_eval_args()
    args.include_path = [_tasks_dir()] + ([args.include_path] if args.include_path else [])
    cli_evaluate(args)


if __name__ == "__main__":
    main()
