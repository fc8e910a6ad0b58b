"""`--model_args` of the merged models: loading options apart from recipe overrides, validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness_ext.arguments import split_arguments
from merge_models.errors import MergeError
from merge_models.recipe import Recipe, load_recipe

# Loading options of merged_vlm (lmms-eval) and their defaults.
VLM_OPTIONS: dict[str, Any] = {
    "recipe": None, "device": None, "attn_implementation": None, "max_pixels": None, "min_pixels": None,
    "cache": True, "save_merged": None, "batch_size": 1, "max_batch_size": None, "system_prompt": None,
    "quiet": False, "device_map": None, "max_memory": None, "offload_folder": None,
}
# Recipe fields that may be overridden from --model_args (dotted paths such as vlm.weight too).
RECIPE_FIELDS = {name for name in Recipe.model_fields if name != "lambda_"} | {"lambda"}
DOTTED_ROOTS = ("vlm.", "base.", "sources.", "layer_swap.", "mergekit_parameters.")


class ModelArgsError(MergeError):
    """A --model_args entry the model cannot accept."""


@dataclass(frozen=True)
class ModelArgs:
    """Validated model arguments: the recipe (overrides applied) and the loading options."""

    recipe: Recipe
    recipe_path: Path
    overrides: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def split_model_args(kwargs: dict[str, Any], options: dict[str, Any], model: str) -> ModelArgs:
    """Separate loading options from recipe overrides, then load and validate the recipe.

    Unknown names raise one ModelArgsError listing what is accepted.
    """
    if kwargs.get("recipe") in (None, ""):
        raise ModelArgsError(f"--model_args: {model} needs recipe=PATH_OR_NAME (a recipe YAML or a name in recipes/)")
    chosen = {k: v for k, v in options.items()}
    overrides: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in options:
            chosen[key] = value
        elif key in RECIPE_FIELDS or key.startswith(DOTTED_ROOTS):
            overrides[key] = _parse(value)
        else:
            accepted = ", ".join(sorted(options)) + "; recipe fields " + ", ".join(sorted(RECIPE_FIELDS))
            raise ModelArgsError(f"--model_args: unknown argument {key!r} for {model}; accepted: {accepted}")
    from merge_models.recipe import resolve_recipe_path

    path = resolve_recipe_path(str(chosen["recipe"]))
    recipe = load_recipe(path, overrides)
    chosen["cache"] = _boolean(chosen.get("cache"), "cache")
    chosen["quiet"] = _boolean(chosen.get("quiet"), "quiet")
    for name, kinds in (("device_map", (str, int, dict)), ("max_memory", (dict,))):
        if chosen.get(name) not in (None, ""):
            chosen[name] = _placement(chosen[name], name, kinds)
    return ModelArgs(recipe=recipe, recipe_path=path, overrides=overrides, options=chosen)


def _parse(value: Any) -> Any:
    """Values arrive as strings for lists and the like: read them as YAML (numbers, lists, booleans)."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _placement(value: Any, name: str, kinds: tuple[type, ...]) -> Any:
    """device_map (a device, auto, balanced, ... or {module: device}) or max_memory ({device: size})."""
    parsed = _parse(value)
    if not isinstance(parsed, kinds) or isinstance(parsed, bool):
        example = "auto, balanced, cuda:0 or {model.vision_tower: 0, model.language_model: 1, lm_head: 1}" \
            if name == "device_map" else "{0: 20GiB, 1: 20GiB, cpu: 64GiB}"
        raise ModelArgsError(f"--model_args: {name} must be like {example}, got {value!r}")
    return parsed


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ModelArgsError(f"--model_args: {name} must be true or false, got {value!r}")


def parse_model_args_string(text: str) -> dict[str, Any]:
    """`k=v,k2=v2` as lmms-eval and lm-eval split it (values kept as strings; YAML-read later)."""
    out: dict[str, Any] = {}
    for part in split_arguments(text):
        key, sep, value = part.partition("=")
        if not sep:
            raise ModelArgsError(f"--model_args: {part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out
