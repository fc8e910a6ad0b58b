"""Reading a mergekit YAML configuration as a merged-vlm recipe, where it can be expressed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from merge_models.adapters import VLM_ADAPTERS
from merge_models.errors import RecipeError
from merge_models.methods.registry import NATIVE_METHODS

# mergekit parameters with a merged-vlm recipe field of the same name and meaning.
SHARED_FIELDS = ("lambda", "normalize", "density")
IGNORED = {"int8_mask"}  # a memory knob of mergekit's, with no effect on the result


def from_mergekit(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Translate a mergekit configuration mapping into a recipe mapping.

    The VLM is the first model whose local config.json names a supported VLM family (else the
    first model listed); the other models are the sources; `base_model` is the base.
    """
    for key in ("modules", "tokenizer", "tokenizer_source", "chat_template"):
        if config.get(key) is not None:
            raise RecipeError(key, "cannot be expressed: merged-vlm always keeps the VLM's tokenizer, processor "
                                   "and module layout", "remove it")
    unknown = set(config) - {"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
                             "modules", "tokenizer", "tokenizer_source", "chat_template"}
    if unknown:
        raise RecipeError(sorted(unknown)[0], "is not a mergekit configuration field", "check the spelling")
    models = _models(config)
    if len(models) < 2:
        raise RecipeError("models", "a VLM merge needs the VLM and at least one reasoning LLM", "list both")
    vlm_index = next((i for i, m in enumerate(models) if _is_vlm(m, folder)), 0)
    method = str(config["merge_method"])
    recipe: dict[str, Any] = {
        "method": method if method in NATIVE_METHODS else f"mergekit.{method}",
        "vlm": models[vlm_index],
        "sources": [m for i, m in enumerate(models) if i != vlm_index],
    }
    if config.get("base_model"):
        recipe["base"] = _reference(str(config["base_model"]), "base_model")
    dtype = config.get("out_dtype") or config.get("dtype")
    if dtype:
        recipe["dtype"] = dtype
    _global_parameters(config.get("parameters") or {}, recipe, method)
    return recipe


def _models(config: dict[str, Any]) -> list[dict[str, Any]]:
    if config.get("slices") is not None:
        return _single_full_slice(config["slices"])
    models = config.get("models")
    if not isinstance(models, list):
        raise RecipeError("models", "is required (a list of {model, parameters})", "list the VLM and the LLM(s)")
    return [_model_entry(m, f"models[{i}]") for i, m in enumerate(models)]


def _single_full_slice(slices: Any) -> list[dict[str, Any]]:
    if not isinstance(slices, list) or len(slices) != 1:
        raise RecipeError("slices", "several slices assemble a model from layer ranges, which a VLM merge cannot "
                                    "express", "use `layers: [first, last]` or `layer_swap` in a merged-vlm recipe")
    sources = slices[0].get("sources") or []
    ranges = {tuple(s.get("layer_range", ())) for s in sources}
    if len(ranges) != 1 or next(iter(ranges))[0] != 0:
        raise RecipeError("slices[0].sources", "differing or partial layer ranges drop layers from the model",
                          "use `layers: [first, last]` in a merged-vlm recipe to merge part of the depth")
    return [_model_entry(s, f"slices[0].sources[{i}]") for i, s in enumerate(sources)]


def _model_entry(entry: Any, field: str) -> dict[str, Any]:
    if isinstance(entry, str):
        return _reference(entry, field)
    if not isinstance(entry, dict) or "model" not in entry:
        raise RecipeError(field, "must be a mapping with `model`", "write `- model: <id or dir>`")
    out = _reference(str(entry["model"]), f"{field}.model")
    for key, value in (entry.get("parameters") or {}).items():
        if key not in ("weight", "density"):
            raise RecipeError(f"{field}.parameters.{key}", "per-model values other than weight and density cannot "
                                                          "be expressed", "set it once under `parameters`")
        out[key] = value
    return out


def _reference(text: str, field: str) -> dict[str, Any]:
    if "+" in text:
        raise RecipeError(field, f"LoRA references ({text!r}) cannot be expressed", "merge the adapter first")
    model, _, revision = text.partition("@")
    return {"model": model, "revision": revision} if revision else {"model": model}


def _is_vlm(reference: dict[str, Any], folder: Path) -> bool:
    for path in (Path(reference["model"]), folder / reference["model"]):
        config = path / "config.json"
        if config.is_file():
            try:
                return json.loads(config.read_text()).get("model_type") in VLM_ADAPTERS
            except json.JSONDecodeError:
                return False
    return False


def _global_parameters(parameters: dict[str, Any], recipe: dict[str, Any], method: str) -> None:
    native = method in NATIVE_METHODS
    if native and method.startswith("dare"):
        # mergekit's DARE rescales by matching the L1 norm unless told otherwise.
        recipe["rescale"] = "l1" if parameters.get("rescale", True) else "none"
    extra: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in IGNORED or (native and key == "rescale"):
            continue
        if key == "weight":
            for ref in [recipe["vlm"], *recipe["sources"]]:
                ref.setdefault("weight", value)
        elif key in SHARED_FIELDS or (native and key == "gamma"):
            recipe[key] = value
        elif not native:
            extra[key] = value
        else:
            raise RecipeError(f"parameters.{key}", f"is not a parameter of {method} that merged-vlm can express",
                              "remove it")
    if extra:
        recipe["mergekit_parameters"] = extra
