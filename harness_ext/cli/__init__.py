"""The `merged-vlm` command line: one Typer app; each command group registers itself from its module here."""

from __future__ import annotations

import sys

import typer

from harness_ext.cli import analysis as analysis_commands
from harness_ext.cli import data as data_commands
from harness_ext.cli import demo as demo_commands
from harness_ext.cli import merge as merge_commands
from harness_ext.cli import report, track
from harness_ext.cli.console import errors
from merge_models.errors import MergeError

# Plain help (click's layout): flags shown as flags, options and help text wrapped to the terminal.
app = typer.Typer(help="Merge reasoning LLMs into VLMs and measure perception vs reasoning.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"merged-vlm {version('merged-vlm')}")
        raise typer.Exit()


@app.callback()
def _options(show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                               help="Print the version and exit.")) -> None:
    """Merge reasoning LLMs into VLMs and measure perception vs reasoning."""

merge_commands.register(app)
data_commands.register(app)
demo_commands.register(app)
analysis_commands.register(app)
track.register(app)
report.register(app)


def main() -> None:
    """Entry point: user errors print one line and exit with status 2."""
    try:
        app(prog_name="merged-vlm")
    except MergeError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)

