"""Load a merged VLM from a recipe: reuse the cache, merge into it, or stream merged tensors into
the VLM in memory. Also the merged language backbone as a text-only causal LM."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers as T
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from harness_ext.model_options import ModelArgs, ModelArgsError
from merge_models.cache import cached_checkpoint, publish
from merge_models.errors import MergeError
from merge_models.executor import merge_into
from merge_models.language_config import MROPE_KEYS, transformers_text_config
from merge_models.output import write_checkpoint, write_descriptions
from merge_models.plan import MergePlan, build_plan
from merge_models.portable import portable_name

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")


@dataclass
class LoadedVLM:
    """A merged VLM ready to generate, with the record that traces it to exact weights."""

    model: T.PreTrainedModel
    processor: Any
    family: str
    record: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_merged_vlm(args: ModelArgs, device: str | None = None) -> LoadedVLM:
    """Build the merged VLM the recipe describes.

    cache=true (default): reuse the verified cache entry for the recipe hash, or merge into the
    cache first (an inter-process lock makes concurrent ranks merge once) and load from there.
    cache=false: load the VLM and stream merged tensors into its parameters in place.
    """
    options = args.options
    plan = build_plan(args.recipe)
    start = time.perf_counter()
    family = plan.vlm.adapter.family
    load_kwargs = _load_kwargs(plan, options)
    if options["cache"]:
        path, hit = cached_checkpoint(plan, quiet=options["quiet"])
        model = T.AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
        how, merged = ("cache hit" if hit else "merged into the cache"), len(plan.merged())
    else:
        path = plan.vlm.path
        model = T.AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
        merged = merge_into_model(plan, model, quiet=options["quiet"])
        how = "merged in memory"
    processor = load_processor(plan, options)
    if options.get("save_merged"):
        save_merged(plan, Path(options["save_merged"]), path if options["cache"] else None)
    model.to(device or options.get("device") or default_device()).eval()
    stats = {"how": how, "merged_tensors": merged, "kept_tensors": len(plan.tensors) - len(plan.merged()),
             "seconds": round(time.perf_counter() - start, 3)}
    record = merge_record(plan, args.recipe_path, args.overrides, load=stats)
    plan.close()
    return LoadedVLM(model, processor, family, record, stats)


def merge_record(plan: MergePlan, recipe_file: Path | None, overrides: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """What a run records about its merge: the plan's record, the recipe file and the overrides, every local
    path named portably (relative to its repository, else to the recipe's folder)."""
    folder = recipe_file.resolve().parent if recipe_file else None
    portable = {k: portable_name(v, folder) if isinstance(v, str) else v for k, v in (overrides or {}).items()}
    return {**plan.record(folder), **extra, "recipe_file": portable_name(recipe_file) if recipe_file else None,
            "overrides": portable}


def load_message(record: dict[str, Any]) -> str:
    """One line on how a merged model was loaded: a cache hit says what the entry holds, not "0 merged"."""
    stats = record["load"]
    held = f"{stats['merged_tensors']} merged and {stats['kept_tensors']} kept tensors"
    done = f"the cache entry holds {held}" if stats["how"] == "cache hit" else \
        f"{stats['merged_tensors']} tensors merged, {stats['kept_tensors']} kept"
    return f"recipe hash {record['recipe_hash']} ({stats['how']}): {done}, {stats['seconds']} s"


def merge_into_model(plan: MergePlan, model: T.PreTrainedModel, quiet: bool = True) -> int:
    """Stream every merged tensor into the loaded VLM's own parameters (no second copy)."""
    parameters = dict(model.named_parameters())
    adapter = plan.vlm.adapter

    def target(entry) -> torch.Tensor:
        name = adapter.memory_name(entry.canonical)
        if name not in parameters:
            raise RuntimeError(f"adapter {adapter.family}: {entry.canonical} maps to {name}, which the loaded "
                               "model does not have")
        return parameters[name].data

    return merge_into(plan, target, quiet=quiet)


def load_processor(plan: MergePlan, options: dict[str, Any]):
    """The VLM's processor (chat template, image processor, tokenizer), left-padding for batches."""
    pixels = {k: int(options[k]) for k in ("max_pixels", "min_pixels") if options.get(k) is not None}
    if pixels and plan.vlm.adapter.family not in QWEN_FAMILIES:
        raise ModelArgsError(f"--model_args: max_pixels/min_pixels apply to Qwen2-VL family processors, not "
                             f"{plan.vlm.adapter.family}")
    processor = T.AutoProcessor.from_pretrained(plan.vlm.path, trust_remote_code=plan.recipe.trust_remote_code,
                                                **pixels)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    return processor


def save_merged(plan: MergePlan, target: Path, cached: Path | None) -> None:
    """Write the merged checkpoint to `target` (copied from the cache entry when there is one)."""
    if cached is not None:
        def copy(temp: Path) -> None:
            shutil.copytree(cached, temp, dirs_exist_ok=True)
            write_descriptions(plan, temp)  # local inputs named from the new place

        publish(target, copy, replace=True)
    else:
        publish(target, lambda temp: write_checkpoint(plan, temp), replace=True)


def _load_kwargs(plan: MergePlan, options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": plan.out_dtype, "trust_remote_code": plan.recipe.trust_remote_code}
    if options.get("attn_implementation"):
        kwargs["attn_implementation"] = options["attn_implementation"]
    return kwargs


def build_merged_causal_lm(plan: MergePlan, quiet: bool = True) -> T.PreTrainedModel:
    """The merged language backbone as a text-only causal LM configured as the VLM's language model.

    Merged tensors come from the plan; the rest of the language model (embeddings, lm_head, layers
    the recipe keeps) is the VLM's, so its config (RoPE base and scaling, positions, vocabulary)
    and its tokenizer apply. The reasoning LLM's config would be wrong: Qwen2-Math-7B's RoPE base
    is 1e4 where the Qwen2-VL backbone's is 1e6.
    """
    config = causal_lm_config(plan)
    model = T.AutoModelForCausalLM.from_config(config, dtype=plan.out_dtype)
    parameters = dict(model.named_parameters())
    merged = {entry.canonical for entry in plan.merged()}
    vlm_language = plan.vlm.canonical_map
    with torch.no_grad():
        for canonical, name in vlm_language.items():
            if canonical not in merged and canonical in parameters:
                parameters[canonical].copy_(plan.vlm.read(name))
    merge_into(plan, lambda entry: parameters[entry.canonical].data, quiet=quiet)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def causal_lm_config(plan: MergePlan) -> T.PretrainedConfig:
    """The VLM's language-model config as a causal LM config.

    A language model type transformers has no causal LM class for (Qwen2-VL's text model, whose
    multimodal RoPE on text positions is plain RoPE) takes the reasoning LLM's architecture with
    the VLM's values.
    """
    text = transformers_text_config(plan.vlm.config)
    if text is None:
        raise MergeError(f"merged_lm: transformers cannot build the config of the VLM's language model "
                         f"(model_type {plan.vlm.config.get('model_type')!r})")
    values = text.to_dict()
    if text.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        model_type = text.model_type
    else:
        model_type = plan.sources[0].config.get("model_type")
        rope = {k: v for k, v in (values.get("rope_parameters") or {}).items() if k not in MROPE_KEYS}
        if rope.get("type") == "mrope":
            rope.pop("type")
        values["rope_parameters"] = rope or None
    for key in ("model_type", "architectures", "_name_or_path", "transformers_version"):
        values.pop(key, None)
    config = T.CONFIG_MAPPING[model_type].from_dict(values)
    vlm_language = plan.vlm.canonical_map
    config.vocab_size = plan.vlm.tensors[vlm_language["model.embed_tokens.weight"]].shape[0]
    config.tie_word_embeddings = "lm_head.weight" not in vlm_language
    return config
