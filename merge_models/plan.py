"""The merge plan: what happens to every tensor of the VLM, checked before any work starts."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from merge_models.adapters import layer_index
from merge_models.checkpoint import Checkpoint, dtype_name, itemsize, open_checkpoint
from merge_models.errors import CheckpointError, RecipeError
from merge_models.methods.native import TensorParams
from merge_models.methods.registry import LAYER_SWAP, MethodInfo, method_info
from merge_models.portable import portable_name
from merge_models.recipe import LINEAR_FAMILY, Recipe
from merge_models.schedule import resolve
from merge_models.vocab import (
    RowPairing,
    describe_differences,
    has_tokenizer,
    pair_by_index,
    pair_by_token,
    row_differences,
    token_ids,
)

ENGINE_FORMAT = 1
VOCAB_TENSORS = ("embed_tokens", "lm_head")
Action = Literal["merge", "keep", "exclude", "vision", "other"]
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
logger = logging.getLogger("merged_vlm")


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: its source in the VLM and what the merge does to it.

    action: merge (combined by the method), keep (language tensor left as the VLM's by the
    layer range, layer swap or module filter), exclude (left by `exclude`), vision (vision
    tower or projector), other (anything else the VLM holds; copied). A merged embedding or
    output head merges only the rows of `pairing`; its other rows stay the VLM's.
    """

    name: str
    action: Action
    reason: str
    canonical: str | None
    layer: int | None
    shape: tuple[int, ...]
    out_dtype: torch.dtype
    params: TensorParams | None = None
    pairing: RowPairing | None = None  # vocabulary tensors: the rows that merge, paired by token

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass
class MergePlan:
    """A recipe bound to its checkpoints: per-tensor actions, parameters and the recipe hash."""

    recipe: Recipe
    method: MethodInfo
    vlm: Checkpoint
    base: Checkpoint | None
    sources: list[Checkpoint]
    tensors: list[TensorPlan]
    out_dtype: torch.dtype
    recipe_hash: str
    num_layers: int
    unused_source_tensors: int
    warnings: list[str] = field(default_factory=list)

    def record(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The normalised recipe, its hash and the identity of every input (the base too, used or not), for
        outputs and results. Local checkpoints are named portably (merge_models.portable): relative to their
        repository, else to `relative_to` (the recipe's folder)."""
        inputs = {c.field: c.identity for c in self.checkpoints()}
        merged = len(self.merged())
        return {"recipe_hash": self.recipe_hash, "recipe": self.portable_recipe(relative_to), "inputs": inputs,
                "engine_format": ENGINE_FORMAT, "merged_tensor_count": merged, "baseline": merged == 0}

    def portable_recipe(self, relative_to: Path | None = None,
                        naming: Callable[[Path], str] | None = None) -> dict[str, Any]:
        """The normalised recipe with every local checkpoint named without this machine's absolute path:
        by `naming(path)` (default: portable_name relative to `relative_to`)."""
        naming = naming or (lambda path: portable_name(path, relative_to))
        recipe = self.recipe.normalized()
        refs = [("vlm", recipe["vlm"]), ("base", recipe["base"])] + [(f"sources[{i}]", ref)
                                                                     for i, ref in enumerate(recipe["sources"])]
        checkpoints = {c.field: c for c in self.checkpoints()}
        for role, ref in refs:
            checkpoint = checkpoints.get(role)
            if ref is not None and checkpoint is not None and checkpoint.hub_identity is None:
                ref["model"] = naming(checkpoint.path)
        return recipe

    def checkpoints(self) -> list[Checkpoint]:
        """Every opened input: the VLM, the base (when the recipe names one) and the sources."""
        return [self.vlm] + ([self.base] if self.base else []) + self.sources

    def read_checkpoints(self) -> list[Checkpoint]:
        """The inputs the merge reads: the base only when the method works on task vectors."""
        return [self.vlm] + ([self.base] if self.base and self.method.needs_base else []) + self.sources

    def merged(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.action == "merge"]

    def close(self) -> None:
        for checkpoint in self.checkpoints():
            checkpoint.close()


def build_plan(recipe: Recipe, opener: Callable[..., Checkpoint] = open_checkpoint) -> MergePlan:
    """Open every checkpoint (through `opener`), check compatibility and decide each tensor's fate.

    A base the method does not use (linear) is opened too, without `opener` (no preloading): its identity
    is recorded and `merged-vlm layers --stats` measures task vectors against it; the merge never reads it.
    """
    info = method_info(recipe.merge_method)
    vlm = opener(recipe.vlm, "vlm", recipe.allow_pickle, require_vlm=True)
    vlm.support_files()  # a link leading out of the checkpoint is refused before anything is merged
    base = None
    if recipe.base is not None:
        base = (opener if info.needs_base else open_checkpoint)(recipe.base, "base", recipe.allow_pickle)
    sources = [opener(s, f"sources[{i}]", recipe.allow_pickle) for i, s in enumerate(recipe.sources)]
    others = ([base] if base else []) + sources
    _check_configs(vlm, others)
    num_layers = int(vlm.language.num_hidden_layers or _count_layers(vlm))
    _check_layer_bounds(recipe, num_layers)
    out_dtype = _output_dtype(recipe, vlm)
    canonical_maps = {c.field: c.canonical_map for c in others}
    ordered = sorted(vlm.tensors.values(), key=lambda m: (str(m.file), m.start))
    vocabulary = VocabularyPairing(recipe, vlm, others)
    tensors = [_plan_tensor(recipe, info, vlm, others, canonical_maps, meta.name, num_layers, out_dtype, vocabulary)
               for meta in ordered]
    _check_weight_sums(recipe, tensors)
    used = {t.canonical for t in tensors if t.action == "merge"}
    unused = sum(len(set(canonical_maps[s.field]) - used) for s in sources)
    notes = setting_warnings(recipe, vlm, others, vocabulary.differences()) + vocabulary.warnings
    plan = MergePlan(recipe, info, vlm, base, sources, tensors, out_dtype, "", num_layers, unused, notes)
    plan.recipe_hash = recipe_hash(recipe, plan)
    for line in notes:
        logger.warning("merge plan: %s", line)
    return plan


def _check_weight_sums(recipe: Recipe, tensors: list[TensorPlan]) -> None:
    """A linear-family merge whose weights (per layer or module) add up to 0 for some tensor is refused:
    that tensor would come out all zeros (0/0 when normalising), whatever the inputs hold."""
    if recipe.merge_method not in LINEAR_FAMILY:
        return
    for entry in tensors:
        if entry.action == "merge" and entry.params is not None and sum(entry.params.weights) == 0:
            raise RecipeError("sources", f"the weights (VLM and sources) add up to 0 for {entry.name}, so "
                                         f"{recipe.merge_method} would make it all zeros",
                              "change the gradients or filter rules so that every tensor's weights add up to 1")


def recipe_hash(recipe: Recipe, plan: MergePlan) -> str:
    """sha256 of the normalised recipe with every model replaced by its checkpoint's identity.

    The recipe's `name` is cosmetic and left out; so are model paths, so the same inputs hash
    alike wherever they lie. An unused base (linear) does not count.
    """
    doc = recipe.normalized()
    doc.pop("name", None)
    for key, default in _legacy_conventions(doc).items():  # hashes of recipes that predate the fields stay
        if doc.get(key) in (None, default):
            doc.pop(key, None)
    doc["vlm"]["model"] = plan.vlm.identity
    doc["base"] = {**doc["base"], "model": plan.base.identity} if plan.base and plan.method.needs_base else None
    for ref, checkpoint in zip(doc["sources"], plan.sources):
        ref["model"] = checkpoint.identity
    for ref in [doc["vlm"], doc["base"], *doc["sources"]]:
        if ref:
            ref.pop("revision", None)
    pairings = {t.canonical: t.pairing for t in plan.merged() if t.pairing is not None}
    if pairings:  # which rows merge depends on the tokenizers, which checkpoint identities may not cover
        digest = hashlib.sha256()
        for canonical, pairing in sorted(pairings.items()):
            for which in [None, *sorted(pairing.other_rows)]:
                digest.update(f"{canonical}\0{which}\0".encode() + pairing.rows(which).numpy().tobytes())
        doc["vocab_rows"] = digest.hexdigest()
    doc["engine_format"] = ENGINE_FORMAT
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _legacy_conventions(doc: dict[str, Any]) -> dict[str, Any]:
    """The convention values every merge used before they became recipe fields."""
    return {"sign_election": "weighted_sum", "disjoint_mean": "weights" if doc["normalize"] else "none",
            "min_kept": 1, "task_vector_dtype": "float32"}


def _check_configs(vlm: Checkpoint, others: list[Checkpoint]) -> None:
    """Hidden size and layer count must agree, compared as transformers resolves them (class defaults filled in)."""
    for checkpoint in [vlm, *others]:
        _check_config_sizes(checkpoint)
    reference = vlm.language
    for other in others:
        config = other.language
        for key, label in (("hidden_size", "hidden size"), ("num_hidden_layers", "layer count")):
            ours, theirs = getattr(reference, key), getattr(config, key)
            if ours is not None and theirs is not None and ours != theirs:
                raise CheckpointError(
                    f"{other.field}.model", f"{label} {theirs} does not match the VLM's language model ({ours})",
                    "merge only models tuned from the same base LLM",
                )


def _check_config_sizes(checkpoint: Checkpoint) -> None:
    """The config's hidden size and layer count agree with the tensors (the embedding's width, the final norm,
    the layer indices): transformers would build the model from the config and refuse the tensors."""
    sizes, canonical = checkpoint.language, checkpoint.canonical_map
    problem = None
    for name, axis in (("model.embed_tokens.weight", -1), ("model.norm.weight", 0)):
        shape = checkpoint.tensors[canonical[name]].shape if name in canonical else ()
        if sizes.hidden_size is not None and shape and shape[axis] != sizes.hidden_size:
            problem = f"says hidden size {sizes.hidden_size}, but tensor {canonical[name]} has shape {list(shape)}"
            break
    layers = len({layer_index(c) for c in canonical} - {None})
    if problem is None and sizes.num_hidden_layers is not None and layers and layers != sizes.num_hidden_layers:
        problem = f"says layer count {sizes.num_hidden_layers}, but the weights hold {layers} layers"
    if problem is not None:
        raise CheckpointError(f"{checkpoint.field}.model", f"{checkpoint.path / 'config.json'} {problem}",
                              "restore the config.json that came with these weights")


def setting_warnings(recipe: Recipe, vlm: Checkpoint, others: list[Checkpoint],
                     differences: dict[str, list[tuple[int, str | None, str | None]]] | None = None) -> list[str]:
    """One line per input whose RoPE settings, vocabulary size or tokens at the same row index (`differences`,
    per input field: see merge_models.vocab.row_differences) differ from the VLM's language model."""
    models = {"vlm": recipe.vlm.model, "base": recipe.base.model if recipe.base else None,
              **{f"sources[{i}]": s.model for i, s in enumerate(recipe.sources)}}
    lines = []
    for checkpoint in [vlm, *others]:
        _check_config_sizes(checkpoint)
    reference = vlm.language
    for other in others:
        config = other.language
        settings = {**config.rope(), "vocab_size": config.vocab_size}
        ours = {**reference.rope(), "vocab_size": reference.vocab_size}
        differ = [f"{key} {_show(settings[key])} vs {_show(ours[key])}" for key in settings
                  if settings[key] != ours[key] and not (key == "vocab_size" and None in (settings[key], ours[key]))]
        rows = (differences or {}).get(other.field)
        if rows:
            differ.append(describe_differences(rows))
        if differ:
            keeps = " and pairs embedding rows by token" if rows else ""
            lines.append(f"{other.field} ({_short(models[other.field])}) differs from the VLM "
                         f"({_short(models['vlm'])}): {'; '.join(differ)}; the merged model keeps the VLM's settings"
                         f"{keeps}")
    return lines


def _short(model: str) -> str:
    """A Hub id as is, a local directory by its name (no machine paths in messages meant for others)."""
    return model if model.count("/") == 1 and not model.startswith((".", "/", "~")) else Path(model).name


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def _count_layers(vlm: Checkpoint) -> int:
    layers = {layer_index(c) for c in vlm.canonical_map} - {None}
    return max(layers) + 1 if layers else 0


def _check_layer_bounds(recipe: Recipe, num_layers: int) -> None:
    if recipe.layers and recipe.layers[1] >= num_layers:
        raise RecipeError("layers", f"last layer {recipe.layers[1]} is past the VLM's {num_layers} layers",
                          f"use indices 0..{num_layers - 1}")
    if recipe.method == LAYER_SWAP and recipe.layer_swap.keep_through >= num_layers:
        raise RecipeError("layer_swap.keep_through", f"{recipe.layer_swap.keep_through} keeps all "
                                                     f"{num_layers} layers, so nothing would merge",
                          f"use a value below {num_layers - 1}")


def _output_dtype(recipe: Recipe, vlm: Checkpoint) -> torch.dtype:
    if recipe.dtype:
        return DTYPES[recipe.dtype]
    for config in (vlm.config, vlm.text_config):
        for key in ("torch_dtype", "dtype"):
            if config.get(key) in DTYPES:
                return DTYPES[config[key]]
    language = [vlm.tensors[n].dtype for n in vlm.canonical_map.values()]
    return language[0] if language else torch.float32


def _plan_tensor(recipe: Recipe, info: MethodInfo, vlm: Checkpoint, others: list[Checkpoint],
                 canonical_maps: dict[str, dict[str, str]], name: str, num_layers: int,
                 out_dtype: torch.dtype, vocabulary: VocabularyPairing) -> TensorPlan:
    meta = vlm.tensors[name]
    dtype = out_dtype if meta.dtype.is_floating_point else meta.dtype
    canonical = vlm.adapter.canonical(name)
    if canonical is None:
        action: Action = "vision" if vlm.adapter.is_vision(name) else "other"
        reason = "vision tower or projector" if action == "vision" else "not part of the language model"
        return TensorPlan(name, action, reason, None, None, meta.shape, dtype)
    layer = layer_index(canonical)
    kept = _kept_reason(recipe, canonical, layer)
    if kept is not None:
        action, reason = kept
        return TensorPlan(name, action, reason, canonical, layer, meta.shape, dtype)
    _check_shapes(recipe, canonical, meta.shape, others, canonical_maps)
    params = _tensor_params(recipe, canonical, layer, num_layers)
    if not any(v in canonical for v in VOCAB_TENSORS):
        return TensorPlan(name, "merge", info.name, canonical, layer, meta.shape, dtype, params)
    limits = {o.field: o.tensors[canonical_maps[o.field][canonical]].shape[0] for o in others}
    pairing = vocabulary.for_tensor(meta.shape[0], limits)
    how = "by token" if pairing.by_token else "by index (no tokenizers)"
    reason = f"{info.name}; {len(pairing)} of {meta.shape[0]} rows paired {how}, the rest the VLM's"
    return TensorPlan(name, "merge", reason, canonical, layer, meta.shape, dtype, params, pairing)


def _kept_reason(recipe: Recipe, canonical: str, layer: int | None) -> tuple[Action, str] | None:
    for pattern in recipe.exclude:
        if pattern in canonical:
            return "exclude", f"excluded ({pattern})"
    if recipe.modules is not None and not any(m in canonical for m in recipe.modules):
        return "keep", "not in modules"
    if layer is not None and recipe.layers and not recipe.layers[0] <= layer <= recipe.layers[1]:
        return "keep", f"outside layers {recipe.layers[0]}-{recipe.layers[1]}"
    if layer is not None and recipe.method == LAYER_SWAP and layer <= recipe.layer_swap.keep_through:
        return "keep", f"layer swap keeps layers 0-{recipe.layer_swap.keep_through}"
    return None


def _check_shapes(recipe: Recipe, canonical: str, shape: tuple[int, ...], others: list[Checkpoint],
                  canonical_maps: dict[str, dict[str, str]]) -> None:
    for other in others:
        other_name = canonical_maps[other.field].get(canonical)
        if other_name is None:
            raise CheckpointError(f"{other.field}.model", f"has no tensor {canonical}, which the VLM's language "
                                                          "model has", "merge models of the same architecture")
        other_shape = other.tensors[other_name].shape
        if other_shape == shape:
            continue
        is_vocab = any(v in canonical for v in VOCAB_TENSORS) and other_shape[1:] == shape[1:]
        if is_vocab and recipe.shared_vocab_rows:
            continue
        fix = ("keep `exclude: [embed_tokens, lm_head]` or set `shared_vocab_rows: true`" if is_vocab
               else "merge only models tuned from the same base LLM")
        raise CheckpointError(f"{other.field}.model", f"tensor {canonical} has shape {list(other_shape)} but the "
                                                      f"VLM's is {list(shape)}", fix)


class VocabularyPairing:
    """The VLM's vocabulary rows paired with every other input's, worked out when a vocabulary tensor first merges.

    Rows pair by token string through the checkpoints' tokenizers. Checkpoints without any
    tokenizer (synthetic ones) pair by index, with a warning; a tokenizer on only some is an error.
    """

    def __init__(self, recipe: Recipe, vlm: Checkpoint, others: list[Checkpoint]) -> None:
        self.recipe, self.vlm, self.others = recipe, vlm, others
        self.warnings: list[str] = []
        self._by_token: RowPairing | None = None
        self._vocabularies: dict[str, dict[str, int]] = {}

    def _vocabulary(self, checkpoint: Checkpoint) -> dict[str, int]:
        """token string -> id of one input, loaded once."""
        if checkpoint.field not in self._vocabularies:
            self._vocabularies[checkpoint.field] = token_ids(checkpoint.path, checkpoint.field,
                                                             self.recipe.trust_remote_code)
        return self._vocabularies[checkpoint.field]

    def differences(self) -> dict[str, list[tuple[int, str | None, str | None]]]:
        """Per other input, the rows whose token differs from the VLM's at the same index. Empty when some input
        carries no tokenizer or one cannot be loaded: that is an error only where rows are paired (for_tensor)."""
        if not all(has_tokenizer(c.path) for c in [self.vlm, *self.others]):
            return {}
        try:
            vlm = self._vocabulary(self.vlm)
            return {c.field: row_differences(vlm, self._vocabulary(c)) for c in self.others}
        except CheckpointError:
            logger.debug("merge plan: token rows not compared, a tokenizer could not be loaded", exc_info=True)
            return {}

    def for_tensor(self, vlm_rows: int, limits: dict[str, int]) -> RowPairing:
        """The pairs whose rows exist in a vocabulary tensor of `vlm_rows` rows (`limits`: the others' row counts)."""
        inputs = [self.vlm, *self.others]
        missing = [c for c in inputs if not has_tokenizer(c.path)]
        if len(missing) == len(inputs):
            if not self.warnings:
                self.warnings.append("no input carries a tokenizer, so embedding and head rows are paired by index")
            return pair_by_index(min(vlm_rows, *limits.values()), [o.field for o in self.others])
        if missing:
            raise CheckpointError(f"{missing[0].field}.model", f"{missing[0].path} has no tokenizer files, so its "
                                  "embedding rows cannot be paired with the other inputs' by token",
                                  "add its tokenizer or keep `exclude: [embed_tokens, lm_head]`")
        if self._by_token is None:
            vocabularies = {c.field: self._vocabulary(c) for c in self.others}
            self._by_token = pair_by_token(self._vocabulary(self.vlm), vocabularies)
        return self._by_token.within(vlm_rows, limits)


def _tensor_params(recipe: Recipe, canonical: str, layer: int | None, num_layers: int) -> TensorParams:
    def value(v: Any, default: float | None = None) -> float | None:
        resolved = resolve(v, canonical, layer, num_layers)
        return default if resolved is None else resolved

    refs = [recipe.vlm, *recipe.sources]
    weights = tuple(value(recipe.vlm_weight(), 1.0) if i == 0 else value(r.weight, 0.0) for i, r in enumerate(refs))
    global_density = value(recipe.density, 1.0)
    densities = tuple(value(r.density, global_density) for r in refs)
    extra = {k: (v if isinstance(v, bool) else value(v)) for k, v in recipe.mergekit_parameters.items()}
    conventions = recipe.conventions()
    rounding, min_kept = conventions["task_vector_dtype"], conventions["min_kept"]
    return TensorParams(weights=weights, densities=densities, lam=value(recipe.lambda_, 1.0),
                        normalize=recipe.effective_normalize(), rescale=recipe.rescale, gamma=recipe.gamma,
                        seed=recipe.seed, name=canonical, extra=extra,
                        sign_election=conventions["sign_election"] or "weighted_sum",
                        disjoint_mean=conventions["disjoint_mean"], min_kept=1 if min_kept is None else min_kept,
                        task_vector_dtype=DTYPES[rounding] if rounding not in (None, "float32") else None)


# ---------------------------------------------------------------------------------------------
# Summaries for `merged-vlm plan`


@dataclass(frozen=True)
class ModuleRow:
    """Tensors of one module pattern (layer numbers folded into `*`) with one action."""

    module: str
    action: str
    reason: str
    tensors: int
    params: int
    out_bytes: int


def module_rows(plan: MergePlan) -> list[ModuleRow]:
    """Per module pattern and action: tensor count, parameters and output bytes."""
    groups: dict[tuple[str, str, str], list[TensorPlan]] = defaultdict(list)
    for t in plan.tensors:
        pattern = re.sub(r"\.\d+\.", ".*.", t.canonical or t.name)
        if t.action in ("vision", "other"):
            pattern = ".".join(pattern.split(".")[:3]) + ".**"
        groups[(pattern, t.action, t.reason)].append(t)
    rows = []
    for (pattern, action, reason), items in groups.items():
        params = sum(t.numel for t in items)
        nbytes = sum(t.numel * itemsize(t.out_dtype) for t in items)
        rows.append(ModuleRow(pattern, action, reason, len(items), params, nbytes))
    order = {"merge": 0, "keep": 1, "exclude": 2, "vision": 3, "other": 4}
    return sorted(rows, key=lambda r: (order[r.action], r.module))


def plan_totals(plan: MergePlan) -> dict[str, Any]:
    """Counts per action, bytes read and written, and an estimate of peak working memory."""
    counts: dict[str, int] = defaultdict(int)
    for t in plan.tensors:
        counts[t.action] += 1
    from merge_models.streaming import working_bytes  # streaming builds on this module

    working = working_bytes(plan)
    read_bytes = sum(c.tensors[n].nbytes for c in plan.read_checkpoints() for n in c.tensors)
    return {
        "tensors": dict(counts),
        "merged_params": sum(t.numel for t in plan.merged()),
        "output_bytes": sum(t.numel * itemsize(t.out_dtype) for t in plan.tensors),
        "input_bytes": read_bytes,
        "peak_working_bytes": working,
        "out_dtype": dtype_name(plan.out_dtype),
        "layers": plan.num_layers,
        "unused_source_tensors": plan.unused_source_tensors,
        "vocab_rows_paired": {t.canonical: len(t.pairing) for t in plan.merged() if t.pairing is not None},
        "warnings": list(plan.warnings),
    }
