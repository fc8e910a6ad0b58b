"""Load a merged VLM from a recipe: reuse the cache, merge into it, or let transformers take every
tensor from the merge as it loads (in memory). Also the merged language backbone as a text-only
causal LM. Models are placed by a device or a device_map (with max_memory), as transformers does."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers as T
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from harness_ext.compat.transformers import from_streamed
from harness_ext.model_options import ModelArgs, ModelArgsError
from merge_models.cache import cached_checkpoint, publish
from merge_models.errors import MergeError
from merge_models.executor import merge_into, merge_tensor, resolve_merge_device, unchanged_tensor
from merge_models.language_config import transformers_text_config, without_mrope
from merge_models.output import write_checkpoint, write_descriptions
from merge_models.plan import MergePlan, TensorPlan, build_plan
from merge_models.portable import portable_name
from merge_models.recipe import Recipe
from merge_models.settings import cache_root
from merge_models.streaming import ChunkBuffers

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
# device_map values that spread a model over devices (accelerate computes the placement).
SPREAD_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


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


@dataclass(frozen=True)
class Placement:
    """Where a merged model lives and where its merge runs.

    device_map: what transformers' from_pretrained takes (a device name, "auto", "balanced",
    "balanced_low_0", "sequential" or a {module: device} mapping), max_memory likewise;
    merge_device: the recipe's merge_device, else the model's device when it has one, else the
    first GPU when there is one, else the CPU.
    """

    device_map: str | dict[str, Any]
    max_memory: dict[Any, Any] | None
    merge_device: torch.device
    offload_folder: str | None = None

    @classmethod
    def from_options(cls, recipe_device: str | None, options: dict[str, Any], device: str | None) -> "Placement":
        device_map = options.get("device_map") or device or options.get("device") or default_device()
        single = None if isinstance(device_map, dict) or device_map in SPREAD_MAPS else device_map
        if single is not None:
            try:
                torch.device(single)
            except (RuntimeError, TypeError):
                given = "device_map" if options.get("device_map") else "device"
                raise ModelArgsError(f"--model_args: {given} {single!r} is not a device; use cpu, cuda, cuda:N"
                                     f"{', auto or balanced' if given == 'device_map' else ''}") from None
        return cls(device_map, options.get("max_memory"), resolve_merge_device(recipe_device, single),
                   options.get("offload_folder") or None)

    def load_kwargs(self, streamed: bool = False) -> dict[str, Any]:
        """from_pretrained's placement arguments. Weights a spread device_map puts on the disk are read
        back from the checkpoint's own files, but a streamed (in-memory) merge has none: it gets an
        offload folder, the one given or else a temporary one in the merge cache, removed at exit."""
        kwargs: dict[str, Any] = {"device_map": self.device_map}
        if self.max_memory:
            kwargs["max_memory"] = self.max_memory
        folder = self.offload_folder
        if folder is None and streamed and (isinstance(self.device_map, dict) or self.device_map in SPREAD_MAPS):
            folder = _temporary_offload_folder()
        if folder:
            kwargs["offload_folder"] = str(folder)
        return kwargs


def _temporary_offload_folder() -> Path:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="offload-", dir=root))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


_checked: list[MergePlan] = []  # the plan a run's check built (the lmms_eval alias), for that run's model


def keep_checked_plan(plan: MergePlan) -> None:
    """Hold the plan built to check a run's arguments, so that run's model reuses it: one plan per run."""
    for old in _checked:
        old.close()
    _checked[:] = [plan]


def plan_for(recipe: Recipe) -> MergePlan:
    """The plan the run's check built for this same recipe (handed over once), else a new one."""
    if _checked and _checked[0].recipe == recipe:
        return _checked.pop()
    return build_plan(recipe)


def load_merged_vlm(args: ModelArgs, device: str | None = None) -> LoadedVLM:
    """Build the merged VLM the recipe describes, placed by `device` or the `device_map` option.

    cache=true (default): reuse the verified cache entry for the recipe hash, or merge into the
    cache first (an inter-process lock makes concurrent ranks merge once) and load from there.
    cache=false: transformers builds the model and takes every tensor from the merge as it loads
    (VLM-only tensors read from the VLM, language tensors merged), so each input byte is read once.
    """
    options = args.options
    plan = plan_for(args.recipe)
    start = time.perf_counter()
    family = plan.vlm.adapter.family
    placement = Placement.from_options(plan.recipe.merge_device, options, device)
    load_kwargs = {**_load_kwargs(plan, options), **placement.load_kwargs(streamed=not options["cache"])}
    if options["cache"]:
        path, hit = cached_checkpoint(plan, quiet=options["quiet"], device=placement.merge_device)
        with loading_bar(not options["quiet"]):
            model = T.AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
        how, merged = ("cache hit" if hit else "merged into the cache"), len(plan.merged())
    else:
        path = plan.vlm.path
        config = T.AutoConfig.from_pretrained(path, trust_remote_code=plan.recipe.trust_remote_code)
        with loading_bar(not options["quiet"]):
            model = from_streamed(T.AutoModelForImageTextToText, config,
                                  streamed_state_dict(plan, placement.merge_device), path, True, **load_kwargs)
        merged, how = len(plan.merged()), "merged in memory"
    processor = load_processor(plan, options)
    if options.get("save_merged"):
        save_merged(plan, Path(options["save_merged"]), path if options["cache"] else None, placement.merge_device)
    model.eval()
    stats = {"how": how, "merged_tensors": merged, "kept_tensors": len(plan.tensors) - len(plan.merged()),
             "seconds": round(time.perf_counter() - start, 3)}
    record = merge_record(plan, args.recipe_path, args.overrides, load=stats)
    plan.close()
    return LoadedVLM(model, processor, family, record, stats)


@contextmanager
def loading_bar(shown: bool) -> Iterator[None]:
    """Let transformers draw its "Loading weights" bar (one redraw per tensor, hundreds of lines in a log)
    only when `shown`; its own switch is restored afterwards."""
    from transformers.utils import logging as hf_logging

    hide = not shown and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


class PlannedTensor:
    """One tensor of the merged checkpoint, produced when transformers' loader materialises it
    (`tensor[...]`): merged tile by tile on the merge device (in `buffers`, which the tensors of one
    load share), or read from the VLM as it is."""

    def __init__(self, plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers) -> None:
        self.plan, self.entry, self.buffers = plan, entry, buffers

    # transformers materialises tensors on several threads; merges take turns (each one keeps the
    # cores busy itself), reads of tensors the merge leaves alone go on meanwhile.
    merging = threading.Lock()

    def __getitem__(self, index: Any) -> torch.Tensor:
        assert index is Ellipsis, "the loader takes planned tensors whole"
        if self.entry.action == "merge":
            with self.merging:
                return merge_tensor(self.plan, self.entry, self.buffers, self.buffers.device)
        return unchanged_tensor(self.plan, self.entry)


def streamed_state_dict(plan: MergePlan, device: torch.device, canonical: bool = False) -> dict[str, PlannedTensor]:
    """Every tensor of the merged VLM (or, with `canonical`, of its language model under causal-LM
    names) as a PlannedTensor, for from_pretrained(state_dict=...); merges reuse one set of buffers."""
    buffers = ChunkBuffers(device)
    if canonical:
        return {e.canonical: PlannedTensor(plan, e, buffers) for e in plan.tensors if e.canonical is not None}
    return {e.name: PlannedTensor(plan, e, buffers) for e in plan.tensors}


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
    """Stream every merged tensor into an already loaded VLM's own parameters (no second copy)."""
    parameters = dict(model.named_parameters())
    adapter = plan.vlm.adapter

    def target(entry) -> torch.Tensor:
        name = adapter.memory_name(entry.canonical)
        if name not in parameters:
            raise RuntimeError(f"adapter {adapter.family}: {entry.canonical} maps to {name}, which the loaded "
                               "model does not have")
        return parameters[name].data

    return merge_into(plan, target, quiet=quiet, device=resolve_merge_device(plan.recipe.merge_device, model.device))


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


def save_merged(plan: MergePlan, target: Path, cached: Path | None, device: torch.device | str = "cpu") -> None:
    """Write the merged checkpoint to `target` (copied from the cache entry when there is one)."""
    if cached is not None:
        def copy(temp: Path) -> None:
            shutil.copytree(cached, temp, dirs_exist_ok=True)
            write_descriptions(plan, temp)  # local inputs named from the new place

        publish(target, copy, replace=True)
    else:
        publish(target, lambda temp: write_checkpoint(plan, temp, device=device), replace=True)


def _load_kwargs(plan: MergePlan, options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": plan.out_dtype, "trust_remote_code": plan.recipe.trust_remote_code}
    if options.get("attn_implementation"):
        kwargs["attn_implementation"] = options["attn_implementation"]
    return kwargs


def build_merged_causal_lm(plan: MergePlan, placement: Placement | None = None) -> T.PreTrainedModel:
    """The merged language backbone as a text-only causal LM configured as the VLM's language model.

    Merged tensors come from the plan; the rest of the language model (embeddings, lm_head, layers
    the recipe keeps) is the VLM's, so its config (RoPE base and scaling, positions, vocabulary)
    and its tokenizer apply. The reasoning LLM's config would be wrong: Qwen2-Math-7B's RoPE base
    is 1e4 where the Qwen2-VL backbone's is 1e6. As with the VLM, transformers takes each tensor
    from the merge as it loads (placed by `placement`; default: on the default device).
    """
    placement = placement or Placement.from_options(plan.recipe.merge_device, {}, None)
    config = causal_lm_config(plan)
    model = from_streamed(T.AutoModelForCausalLM, config, streamed_state_dict(plan, placement.merge_device, True),
                          plan.vlm.path, False, dtype=plan.out_dtype, **placement.load_kwargs(streamed=True))
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
        values["rope_parameters"] = without_mrope(values.get("rope_parameters") or {}) or None
    for key in ("model_type", "architectures", "_name_or_path", "transformers_version"):
        values.pop(key, None)
    config = T.CONFIG_MAPPING[model_type].from_dict(values)
    vlm_language = plan.vlm.canonical_map
    config.vocab_size = plan.vlm.tensors[vlm_language["model.embed_tokens.weight"]].shape[0]
    config.tie_word_embeddings = "lm_head.weight" not in vlm_language
    return config
