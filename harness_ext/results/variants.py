"""What a run evaluated: its variant (name, method, lambda, layers, hash), its models, and whether it is
the unmerged VLM baseline.

A run of `--model merged_vlm` (lmms-eval) or `--model merged_lm` (lm-eval) carries the merge record; its
variant is the recipe hash. A run of any other backend is identified by the backend and its model
arguments, minus those that only say where or how fast it ran.

Baseline rules (the unmerged VLM): a run ingested with `--baseline`; or a merge whose record says it
merges no tensor (`baseline: true`, e.g. `modules: []`); or a linear / task-arithmetic recipe whose
sources all have weight 0 and whose VLM weight is 1. Views also take an explicit `--baseline`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any

from harness_ext.arguments import join_arguments, split_arguments
from harness_ext.results.record import ModelRef, Variant

# Model arguments that do not change what is evaluated.
RUNTIME_ARGS = {"device", "device_map", "batch_size", "max_batch_size", "parallelize", "use_cache", "quiet",
                "cache", "attn_implementation", "max_pixels", "min_pixels", "use_flash_attention_2"}
IDENTITY_METHODS = ("linear", "task_arithmetic")


def merged_variant(merge: dict[str, Any], marked_baseline: bool) -> tuple[Variant, list[ModelRef]]:
    """The variant and models of a run that recorded a merge (`merged_vlm` record)."""
    recipe = merge["recipe"]
    recipe_hash = merge["recipe_hash"]
    vlm, sources, base = recipe["vlm"], recipe.get("sources") or [], recipe.get("base")
    reason = _baseline_reason(merge, recipe, marked_baseline)
    variant = Variant(
        id=recipe_hash, name=variant_name(recipe, merge.get("overrides"), recipe_hash), kind="merged",
        method=_method(recipe), lambda_=recipe.get("lambda"),
        weights=f"{_plain(vlm.get('weight'))} / {', '.join(_plain(s.get('weight')) for s in sources)}",
        layers=_layers(recipe), vlm=_model_name(vlm.get("model"), vlm.get("revision")), recipe_hash=recipe_hash,
        recipe=recipe, baseline=reason is not None, baseline_reason=reason)
    inputs = merge.get("inputs") or {}
    refs = [("vlm", vlm)] + ([("base", base)] if base else []) + [(f"sources[{i}]", s) for i, s in enumerate(sources)]
    models = [ModelRef(role=role, model=ref["model"], revision=ref.get("revision"), identity=inputs.get(role))
              for role, ref in refs]
    return variant, models


def variant_name(recipe: dict[str, Any], overrides: dict[str, Any] | None, recipe_hash: str) -> str:
    """The recipe's name; with `--model_args` overrides, `<name>@<key>=<value>,...` (as sweeps name their
    variants), so a recipe evaluated with and without overrides gets two names. An overridden `name` stands."""
    name = recipe.get("name") or f"merge-{recipe_hash[:8]}"
    if not overrides or "name" in overrides:
        return name
    return f"{name}@{join_arguments(overrides)}"


def model_variant(model: str, model_args: dict[str, Any], marked_baseline: bool) -> tuple[Variant, list[ModelRef]]:
    """The variant and model of a run of a built-in backend (no merge record)."""
    args = {k: v for k, v in sorted(model_args.items()) if k not in RUNTIME_ARGS}
    digest = hashlib.sha256(json.dumps([model, args], sort_keys=True, default=str).encode()).hexdigest()[:16]
    pretrained = args.get("pretrained") or args.get("model") or next(
        (str(v) for k, v in args.items() if k.endswith("path")), None)
    named = pretrained or next((str(v) for v in args.values() if v), None)  # e.g. from_log's logs=
    label = PurePath(str(named).rstrip("/")).name if named else ""
    revision = args.get("revision")
    variant = Variant(id=f"model-{digest}", name=f"{model}:{label}" if label else model, kind="model",
                      vlm=_model_name(str(pretrained), revision) if pretrained else None,
                      baseline=marked_baseline, baseline_reason="marked at ingest" if marked_baseline else None)
    models = [ModelRef(role="model", model=str(pretrained), revision=revision)] if pretrained else []
    return variant, models


def parse_model_args(value: Any) -> dict[str, Any]:
    """lmms-eval's `k=v,k=v` string (commas inside brackets belong to the value) or lm-eval's dict, as a dict."""
    if isinstance(value, dict):
        return dict(value)
    pairs = (item.split("=", 1) for item in split_arguments(str(value or "")) if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


def _baseline_reason(merge: dict[str, Any], recipe: dict[str, Any], marked: bool) -> str | None:
    if marked:
        return "marked at ingest"
    if merge.get("baseline"):
        return "the recipe merges no tensor"
    inner = (recipe.get("layer_swap") or {}).get("inner") if recipe.get("method") == "layer_swap" else None
    method = inner or recipe.get("method")
    weights = [s.get("weight") for s in recipe.get("sources") or []]
    if method in IDENTITY_METHODS and weights and all(w == 0 for w in weights) and recipe["vlm"].get("weight") == 1:
        return "every source has weight 0 and the VLM weight 1"
    return None


def _method(recipe: dict[str, Any]) -> str:
    swap = recipe.get("layer_swap")
    return f"layer_swap/{swap['inner']}" if recipe.get("method") == "layer_swap" and swap else recipe["method"]


def _layers(recipe: dict[str, Any]) -> str:
    swap, layers = recipe.get("layer_swap"), recipe.get("layers")
    parts = []
    if layers:
        parts.append(f"{layers[0]}-{layers[1]}")
    if swap:
        parts.append(f"keep 0-{swap['keep_through']}")
    if recipe.get("modules") is not None:
        parts.append("modules " + (",".join(recipe["modules"]) or "none"))
    return "; ".join(parts) or "all"


def _plain(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _model_name(model: str | None, revision: str | None) -> str | None:
    return None if model is None else f"{model}@{revision}" if revision else model
