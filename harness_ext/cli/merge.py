"""`merged-vlm validate | plan | merge | methods`: recipes to merged checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness_ext.cli.console import QuietOpt, SetOpt, be_quiet, console, parse_assignments, print_table
from merge_models.cache import cached_checkpoint, publish
from merge_models.errors import MergeError
from merge_models.executor import resolve_merge_device
from merge_models.methods.registry import NATIVE_METHODS
from merge_models.output import write_checkpoint
from merge_models.plan import build_plan, module_rows, plan_totals
from merge_models.recipe import load_recipe

RecipeArg = typer.Argument(..., metavar="RECIPE", help="Recipe YAML path or the name of a recipe in recipes/.")


def validate(recipe: str = RecipeArg, set_: Optional[list[str]] = SetOpt,
             recipe_only: bool = typer.Option(False, "--recipe-only", help="Check the recipe alone, not its "
                                                                          "checkpoints."),
             quiet: bool = QuietOpt) -> None:
    """Check a recipe (and, unless --recipe-only, that its checkpoints exist and fit together)."""
    if quiet:
        be_quiet()
    parsed = load_recipe(recipe, parse_assignments(set_, "--set"))
    if recipe_only:
        console.print(f"ok: recipe valid (method {parsed.method}, {len(parsed.sources)} source(s))")
        return
    plan = build_plan(parsed)
    console.print(f"ok: recipe valid, checkpoints compatible; recipe hash {plan.recipe_hash}")


def plan(recipe: str = RecipeArg, set_: Optional[list[str]] = SetOpt,
         as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
         quiet: bool = QuietOpt) -> None:
    """Dry run: per module what is merged, kept or excluded, with counts, bytes and a memory estimate."""
    if quiet:
        be_quiet()
    merge_plan = build_plan(load_recipe(recipe, parse_assignments(set_, "--set")))
    rows, totals = module_rows(merge_plan), plan_totals(merge_plan)
    if as_json:
        payload = {"recipe_hash": merge_plan.recipe_hash, "totals": totals, "modules": [r.__dict__ for r in rows]}
        print(json.dumps(payload, indent=2))
        return
    table = Table(title=f"merge plan {merge_plan.recipe_hash} ({merge_plan.method.name})")
    for column in ("module", "action", "why", "tensors", "parameters", "output bytes"):
        table.add_column(column, justify="right" if column in ("tensors", "parameters", "output bytes") else "left")
    for r in rows:
        table.add_row(r.module, r.action, r.reason, str(r.tensors), f"{r.params:,}", _size(r.out_bytes))
    print_table(table)
    counts = ", ".join(f"{v} {k}" for k, v in totals["tensors"].items())
    console.print(f"tensors: {counts}; merged parameters {totals['merged_params']:,}; "
                  f"read {_size(totals['input_bytes'])}, write {_size(totals['output_bytes'])} "
                  f"({totals['out_dtype']}); peak working memory at most about {_size(totals['peak_working_bytes'])}")
    if totals["unused_source_tensors"]:
        console.print(f"source tensors not used (vision-free or excluded): {totals['unused_source_tensors']}")
    for name, rows in totals["vocab_rows_paired"].items():
        console.print(f"{name}: {rows:,} rows paired with every input's by token string; the others stay the VLM's")


def merge(recipe: str = RecipeArg, set_: Optional[list[str]] = SetOpt,
          out: Optional[Path] = typer.Option(None, "--out", help="Write the merged checkpoint here "
                                                                 "(default: the merge cache)."),
          force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
          quiet: bool = QuietOpt) -> None:
    """Merge a recipe into a Hugging Face checkpoint directory (atomic: all or nothing).

    Merging runs on the recipe's `merge_device` (--set merge_device=cpu), else on a GPU when there is one.
    """
    if quiet:
        be_quiet()
    parsed = load_recipe(recipe, parse_assignments(set_, "--set"))
    device = resolve_merge_device(parsed.merge_device)
    merge_plan = build_plan(parsed)
    if out is None:
        path, hit = cached_checkpoint(merge_plan, quiet=quiet, device=device)
        console.print(f"{'cache hit' if hit else 'merged'}: {path} (recipe hash {merge_plan.recipe_hash})")
        return
    if out.exists() and not out.is_dir():
        raise MergeError(f"--out: {out} is a file, not a folder; name a new or existing folder for the checkpoint")
    if out.exists() and any(out.iterdir()) and not force:
        raise MergeError(f"--out: {out} exists and is not empty; pass --force to replace it")
    publish(out, lambda temp: write_checkpoint(merge_plan, temp, quiet, device), replace=True)
    console.print(f"merged: {out} (recipe hash {merge_plan.recipe_hash})")


def methods() -> None:
    """List merge methods: the native ones and, when installed, mergekit's."""
    table = Table(title="merge methods", caption="needs base: whether `base` must be given (inner's: as the "
                  "inner method; depends: on the mergekit method)", caption_justify="left")
    table.add_column("method")
    table.add_column("needs base")
    table.add_column("formula")
    for info in NATIVE_METHODS.values():
        table.add_row(info.name, "yes" if info.needs_base else "no", info.formula)
    table.add_row("layer_swap", "inner's", "layers <= keep_through stay the VLM's; later layers use `inner`")
    try:
        from merge_models.methods.mergekit_bridge import mergekit_method_names

        for name in mergekit_method_names():
            table.add_row(f"mergekit.{name}", "depends", "run by mergekit's in-memory API")
    except ImportError:
        table.add_row("mergekit.*", "-", "install mergekit==0.1.5 to enable")
    print_table(table)


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def register(app: typer.Typer) -> None:
    for command in (validate, plan, merge, methods):
        app.command(name=command.__name__)(command)
