"""Shared terminal output for the command line."""

from __future__ import annotations

from typing import Any

from rich.console import Console

console = Console()
errors = Console(stderr=True)


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """`key=value` strings as a dict, values parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    from merge_models.errors import RecipeError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RecipeError(option, f"{item!r} is not key=value", f"write e.g. {option} lambda=0.7")
        out[key.strip()] = yaml.safe_load(value)
    return out
