"""Shared terminal output and options of the command line."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import typer
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

console = Console()
errors = Console(stderr=True)

# The options every command that merges or evaluates takes (demo, sweep, layers, merge, plan, validate).
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE",
                      help="Override a recipe field, repeatable: --set lambda=0.7 --set sources.0.density=0.2")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or progress messages: results, "
                                                     "warnings and errors only.")


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """`key=value` strings as a dict, values parsed as YAML scalars (numbers, booleans, lists)."""
    from merge_models.errors import RecipeError
    from merge_models.recipe import parse_value

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RecipeError(option, f"{item!r} is not key=value", f"write e.g. {option} lambda=0.7")
        out[key.strip()] = parse_value(value, option, item)
    return out


def be_quiet() -> None:
    """No progress bars from this process on, and no log below warnings.

    The libraries' own switches (huggingface_hub, transformers, datasets) are environment variables read
    when they are imported, which also reach subprocesses; lmms-eval has none and tqdm is imported before
    any option is parsed, so every tqdm bar is also created disabled.
    """
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1",
                      TRANSFORMERS_VERBOSITY="error")
    import tqdm.std
    from loguru import logger

    draw = tqdm.std.tqdm.__init__
    if not getattr(draw, "_quiet", False):
        @functools.wraps(draw)
        def disabled(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            draw(self, *args, **kwargs)

        disabled._quiet = True  # type: ignore[attr-defined]
        tqdm.std.tqdm.__init__ = disabled
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def say(quiet: bool):
    """`console.print` for progress messages, or a function that prints nothing when `quiet`."""
    return (lambda *args, **kwargs: None) if quiet else console.print


def print_table(table: Table) -> None:
    """Print `table` without cutting any value.

    When each column fits its longest word in the terminal, the table is printed with every column at
    least that wide (rich alone would squeeze some columns below it and cut words) and cells wrap at
    spaces; otherwise each row becomes a block: the first cell, then `header: value` fields in lines.
    """
    unbounded = console.options.update_width(10_000)
    ranges = [_column_range(table, column, unbounded) for column in table.columns]
    borders = (len(table.columns) - 1 + (2 if table.show_edge else 0)) if table.box else 0  # vertical rules
    room = console.width - borders - sum(low for low, _ in ranges)
    if room >= 0:
        if sum(high for _, high in ranges) + borders > console.width:
            _fit(table, ranges, room)
        console.print(table)
        return
    headers = [_plain(column.header) for column in table.columns]
    if table.title:
        console.print(_plain(table.title), markup=False, highlight=False, soft_wrap=True)
    for cells in zip(*(list(column.cells) for column in table.columns)):
        values = [_plain(cell) for cell in cells]
        console.print(values[0], markup=False, highlight=False, soft_wrap=True)
        fields = [f"{header}: {value}" for header, value in zip(headers[1:], values[1:]) if value]
        for line in _pack(fields, console.width - 2):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if table.caption:
        console.print(_plain(table.caption), markup=False, highlight=False)


def _column_range(table: Table, column: Column, options: ConsoleOptions) -> tuple[int, int]:
    """A column's (longest word, longest line) width, cell padding included."""
    measured = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
    padding = table.padding[1] + table.padding[3]
    if column.no_wrap:
        return max(m.maximum for m in measured) + padding, max(m.maximum for m in measured) + padding
    return max(m.minimum for m in measured) + padding, max(m.maximum for m in measured) + padding


def _fit(table: Table, ranges: list[tuple[int, int]], room: int) -> None:
    """Fix the columns' widths: each its longest word, plus a share of `room` in proportion to what it lacks."""
    lacking = [high - low for low, high in ranges]
    total = sum(lacking) or 1
    padding = table.padding[1] + table.padding[3]
    for column, (low, high), short in zip(table.columns, ranges, lacking):
        column.width = min(high, low + room * short // total) - padding


def _plain(cell: Any) -> str:
    """A cell's text on one line, without styles."""
    text = cell.plain if isinstance(cell, Text) else console.render_str(cell).plain if isinstance(cell, str) else str(cell)
    return " ".join(text.split())


def _pack(fields: list[str], width: int) -> list[str]:
    """Fields joined by three spaces into lines of at most `width` (a longer field gets a line of its own)."""
    lines: list[str] = []
    for field in fields:
        if lines and len(lines[-1]) + 3 + len(field) <= width:
            lines[-1] += f"   {field}"
        else:
            lines.append(field)
    return lines
