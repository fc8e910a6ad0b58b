"""The `merged-vlm` command line: one Typer app, command groups registered from harness_ext.commands."""

from __future__ import annotations

import sys

import typer

from harness_ext.commands import analysis as analysis_commands
from harness_ext.commands import data as data_commands
from harness_ext.commands import demo as demo_commands
from harness_ext.commands import merge as merge_commands
from harness_ext.commands import report, track
from harness_ext.console import errors
from merge_models.errors import MergeError

app = typer.Typer(help="Merge reasoning LLMs into VLMs and measure perception vs reasoning.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
merge_commands.register(app)
data_commands.register(app)
demo_commands.register(app)
analysis_commands.register(app)
track.register(app)
report.register(app)


def main() -> None:
    """Entry point: user errors print one line and exit with status 2."""
    try:
        app()
    except MergeError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
