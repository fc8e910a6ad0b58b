"""The merge recipe: a validated YAML document naming models, method, weights and schedules."""

from __future__ import annotations

import copy
import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from merge_models.errors import RecipeError
from merge_models.methods.registry import LAYER_SWAP, NATIVE_METHODS, MethodInfo, is_mergekit, method_info
from merge_models.schedule import FilterRule, ParamValue, all_numbers, has_default_rule, to_plain
from merge_models.shipped import recipes_dir

DEFAULT_EXCLUDE = ("embed_tokens", "lm_head")
DType = Literal["bfloat16", "float16", "float32"]
SignElection = Literal["weighted_sum", "unweighted_sum", "count"]
DisjointMean = Literal["weights", "count", "none"]
# Native methods that work on task vectors (theta - base), as the registry says.
TASK_VECTOR_METHODS = tuple(name for name, info in NATIVE_METHODS.items() if info.needs_base)
# Methods that elect signs (TIES' consensus step) and the one that trims by magnitude (top-k).
SIGN_ELECTING = tuple(name for name, info in NATIVE_METHODS.items()
                      if getattr(info.impl, "elect_signs", False))
TOPK_TRIMMING = tuple(name for name, info in NATIVE_METHODS.items()
                      if getattr(info.impl, "sparsify", None) == "magnitude")
# Methods that add weighted task vectors (base + lambda * sum_i w_i tau_i, sparsified or not): a negative
# weight there is task negation. Sign-electing methods take a vote that a negative weight would flip.
NEGATABLE_METHODS = tuple(name for name in TASK_VECTOR_METHODS if name not in SIGN_ELECTING)
DOCS = "docs/recipes.md"
# The largest magnitude a weight, lambda or mergekit parameter may take. Published recipes stay within a few
# units; beyond this a "merge" only amplifies the inputs, and float16/bfloat16 outputs overflow.
NUMBER_LIMIT = 100.0
# mergekit parameters that count rather than weigh (karcher's iterations): finite, but not bounded by NUMBER_LIMIT.
UNBOUNDED_MERGEKIT_PARAMETERS = ("max_iter",)
# Methods whose result is the weighted sum of whole models (divided by the weights' sum when normalising).
LINEAR_FAMILY = ("linear", "mergekit.linear")


class ModelRef(BaseModel):
    """A checkpoint: a Hugging Face id or a local directory, with its merge parameters."""

    model_config = ConfigDict(extra="forbid")
    model: str
    revision: str | None = None
    weight: ParamValue | None = None
    density: ParamValue | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("model")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a Hugging Face id or a local directory")
        return value


class LayerSwap(BaseModel):
    """Layers 0..keep_through keep the VLM's weights; later layers merge with `inner`."""

    model_config = ConfigDict(extra="forbid")
    keep_through: int = Field(ge=0)
    inner: str = "linear"


class Recipe(BaseModel):
    """A validated merge recipe. Every field is described in docs/recipes.md."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    vlm: ModelRef
    base: ModelRef | None = None
    sources: list[ModelRef] = Field(min_length=1)
    method: str
    lambda_: ParamValue = Field(1.0, alias="lambda")
    density: ParamValue | None = None
    normalize: bool | None = None
    rescale: Literal["inverse_density", "l1", "none"] = "inverse_density"
    gamma: float = Field(0.01, ge=0.0, lt=1.0)
    layers: tuple[int, int] | None = None
    layer_swap: LayerSwap | None = None
    modules: list[str] | None = None
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    shared_vocab_rows: bool = False
    seed: int = 0
    dtype: DType | None = None
    sign_election: SignElection | None = None
    disjoint_mean: DisjointMean | None = None
    min_kept: int | None = Field(None, ge=0)
    task_vector_dtype: DType | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    mergekit_parameters: dict[str, Union[bool, ParamValue]] = Field(default_factory=dict)
    merge_device: str | None = None

    @field_validator("merge_device")
    @classmethod
    def _device_name(cls, value: str | None) -> str | None:
        """Where merging runs (cpu, cuda, cuda:N); None: where the model will live."""
        if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", value):
            raise ValueError(f"must be cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("layers")
    @classmethod
    def _ordered_layers(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 <= value[0] <= value[1]:
            raise ValueError("must be [first, last] with 0 <= first <= last")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        _check_method(self)
        _check_parameters(self)
        _check_conventions(self)
        return self

    @property
    def merge_method(self) -> str:
        """The method that combines tensors (the inner method for layer_swap)."""
        return self.layer_swap.inner if self.method == LAYER_SWAP else self.method

    def vlm_weight(self) -> ParamValue:
        """The VLM's weight, defaulting to 1 - sum(source weights) for linear and 1 otherwise."""
        if self.vlm.weight is not None:
            return self.vlm.weight
        if self.merge_method == "linear":
            return 1.0 - sum(float(s.weight) for s in self.sources)  # scalars: checked at validation
        return 1.0

    def effective_normalize(self) -> bool:
        if self.normalize is not None:
            return self.normalize
        if self.disjoint_mean is not None:
            return self.disjoint_mean != "none"
        return method_info(self.merge_method).default_normalize

    def conventions(self) -> dict[str, Any]:
        """The TIES/DARE conventions in force, defaults resolved; None where the method has no such step.

        sign_election: the sum that elects each entry's sign (mergekit: the weighted sum);
        disjoint_mean: what the sum of agreeing entries is divided by (mergekit: their weights when
        normalising); min_kept: the least number of entries TIES trimming keeps (mergekit: 1);
        task_vector_dtype: the dtype inputs and task vectors are rounded to (float32: no rounding).
        """
        method = self.merge_method
        electing = method in SIGN_ELECTING
        native = method in TASK_VECTOR_METHODS
        mean = self.disjoint_mean or ("weights" if self.effective_normalize() else "none")
        return {
            "sign_election": (self.sign_election or "weighted_sum") if electing else None,
            "disjoint_mean": mean if electing else None,
            "min_kept": (1 if self.min_kept is None else self.min_kept) if method in TOPK_TRIMMING else None,
            "task_vector_dtype": (self.task_vector_dtype or "float32") if native else None,
        }

    def normalized(self) -> dict[str, Any]:
        """Every field with defaults resolved, in a canonical JSON-ready form (without `merge_device`,
        which says where to compute, not what: it is not part of records or of the recipe hash)."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"vlm", "base", "sources", "merge_device"})
        data["vlm"] = _plain_ref(self.vlm, weight=self.vlm_weight())
        data["base"] = _plain_ref(self.base) if self.base else None
        data["sources"] = [_plain_ref(s) for s in self.sources]
        data["lambda"] = to_plain(self.lambda_)
        data["density"] = to_plain(self.density)
        data["normalize"] = self.effective_normalize()
        data.update(self.conventions())
        data["layers"] = list(self.layers) if self.layers else None
        data["mergekit_parameters"] = {k: v if isinstance(v, bool) else to_plain(v)
                                       for k, v in sorted(self.mergekit_parameters.items())}
        return data


def _plain_ref(ref: ModelRef, weight: ParamValue | None = None) -> dict[str, Any]:
    return {
        "model": ref.model,
        "revision": ref.revision,
        "weight": to_plain(weight if weight is not None else ref.weight),
        "density": to_plain(ref.density),
    }


def _check_method(recipe: Recipe) -> None:
    known = sorted(NATIVE_METHODS) + [LAYER_SWAP, "mergekit.<name>"]
    if recipe.method == LAYER_SWAP:
        if recipe.layer_swap is None:
            raise RecipeError("layer_swap", "method layer_swap needs it", "add `layer_swap: {keep_through: 5, inner: linear}`")
        if recipe.layer_swap.inner == LAYER_SWAP:
            raise RecipeError("layer_swap.inner", "cannot itself be layer_swap", "use linear, ties, ...")
        if recipe.layers is not None:
            raise RecipeError("layers", "cannot be combined with layer_swap", "use one of the two")
        field = "layer_swap.inner"
    elif recipe.layer_swap is not None:
        raise RecipeError("layer_swap", f"only applies to method layer_swap, not {recipe.method}",
                          "remove it or set `method: layer_swap`")
    else:
        field = "method"
    name = recipe.merge_method
    try:
        info = method_info(name)
    except KeyError:
        if is_mergekit(name):
            raise RecipeError(field, f"unknown mergekit method {name!r}",
                              "see `merged-vlm methods` for the names mergekit offers") from None
        raise RecipeError(field, f"unknown method {name!r}", f"choose one of {', '.join(known)}") from None
    except ImportError as exc:
        raise RecipeError(field, f"{name} needs mergekit", str(exc)) from None
    if info.needs_base and recipe.base is None:
        raise RecipeError("base", f"method {name} works on task vectors and needs the shared base LLM",
                          "add `base: <HF id or dir of the pretrained LLM both models were tuned from>`")


def _check_parameters(recipe: Recipe) -> None:
    info = method_info(recipe.merge_method)
    refs = [("vlm", recipe.vlm)] + [(f"sources[{i}]", s) for i, s in enumerate(recipe.sources)]
    _check_bounded("lambda", recipe.lambda_)
    for key, value in recipe.mergekit_parameters.items():
        if not isinstance(value, bool):
            _check_bounded(f"mergekit_parameters.{key}", value, key not in UNBOUNDED_MERGEKIT_PARAMETERS)
    for field, ref in refs + ([("base", recipe.base)] if recipe.base else []):
        _check_bounded(f"{field}.weight", ref.weight)
    for field, ref in refs:
        if ref.weight is None and field != "vlm":
            raise RecipeError(f"{field}.weight", "missing",
                              "give the reasoning LLM's weight, e.g. 0.1 (the paper's linear merge uses VLM 0.9, LLM 0.1)")
        if any(w < 0 for w in all_numbers(ref.weight)):
            _check_negative_weight(recipe, info, f"{field}.weight", ref.weight)
        if not has_default_rule(ref.weight):
            raise RecipeError(f"{field}.weight", "every rule has a filter, so some tensors get no weight",
                              "add a last rule without `filter`")
        _check_density(f"{field}.density", ref.density, info.uses_density, recipe.merge_method)
    _check_density("density", recipe.density, info.uses_density, recipe.merge_method)
    if recipe.merge_method == "linear" and recipe.vlm.weight is None:
        if any(not isinstance(s.weight, (int, float)) for s in recipe.sources):
            raise RecipeError("vlm.weight", "is required when source weights vary by layer or module",
                              "give the VLM's weight explicitly, e.g. 0.9")
    if recipe.merge_method == "linear" and recipe.vlm.weight is None and recipe.vlm_weight() < 0:
        raise RecipeError("sources", "the source weights add up to more than 1, leaving the VLM a negative weight",
                          "give `vlm.weight` explicitly or lower the source weights")
    if recipe.merge_method in LINEAR_FAMILY:
        weights = [recipe.vlm_weight(), *(s.weight for s in recipe.sources)]
        if all(isinstance(w, (int, float)) for w in weights) and sum(weights) == 0:  # type: ignore[arg-type]
            raise RecipeError("sources", f"the weights (VLM and sources) add up to 0, so {recipe.merge_method} would "
                                         "turn every merged tensor into zeros (or 0/0 when normalising)",
                              "give the VLM and the sources weights that add up to 1, e.g. 0.9 and 0.1")
    if not is_mergekit(recipe.merge_method) and recipe.mergekit_parameters:
        raise RecipeError("mergekit_parameters", f"only used by mergekit.* methods, not {recipe.merge_method}",
                          "remove it")
    if is_mergekit(recipe.merge_method):
        from merge_models.methods.mergekit_bridge import mergekit_parameter_names

        accepted = mergekit_parameter_names(recipe.merge_method.split(".", 1)[1])
        for key in recipe.mergekit_parameters:
            if key not in accepted:
                raise RecipeError(f"mergekit_parameters.{key}", f"not a parameter of {recipe.merge_method}",
                                  f"accepted: {', '.join(sorted(accepted)) or 'none'}")


def _check_conventions(recipe: Recipe) -> None:
    """The TIES/DARE convention fields apply only to methods with the step they name, and agree with normalize."""
    method = recipe.merge_method
    needs = {"sign_election": (SIGN_ELECTING, "ties, dare_ties or breadcrumbs_ties"),
             "disjoint_mean": (SIGN_ELECTING, "ties, dare_ties or breadcrumbs_ties"),
             "min_kept": (TOPK_TRIMMING, "ties"),
             "task_vector_dtype": (TASK_VECTOR_METHODS,
                                   "a native task-vector method (task_arithmetic, ties, dare_*, breadcrumbs*)")}
    for field, (methods, which) in needs.items():
        if getattr(recipe, field) is not None and method not in methods:
            raise RecipeError(field, f"has no effect with method {method}", f"remove it or use {which}")
    mean = recipe.disjoint_mean
    if mean is not None and recipe.normalize is not None and recipe.normalize != (mean != "none"):
        raise RecipeError("disjoint_mean", f"{mean!r} contradicts `normalize: {str(recipe.normalize).lower()}`",
                          "remove `normalize` (disjoint_mean says what the agreeing entries are divided by)")
def _check_negative_weight(recipe: Recipe, info: MethodInfo, field: str, weight: ParamValue) -> None:
    """Task negation: a negative weight subtracts a task vector, so only methods that add weighted task
    vectors accept one; elsewhere it is meaningless, and the error says why."""
    method, got = recipe.merge_method, f"got {to_plain(weight)}"
    if not info.needs_base:
        raise RecipeError(field, f"must not be negative with method {method}, {got}: it averages whole models, "
                                 "so a negative weight subtracts a model, not a skill",
                          f"for task negation use {', '.join(NEGATABLE_METHODS)} with `base:`")
    if method not in NEGATABLE_METHODS:
        raise RecipeError(field, f"must not be negative with method {method}, {got}: it elects each entry's sign "
                                 "from the weighted task vectors, so a negative weight flips votes instead of "
                                 "subtracting a task" if method in SIGN_ELECTING else
                          f"must not be negative with method {method}, {got}: merged-vlm cannot tell what it does "
                          "with one", f"for task negation use {', '.join(NEGATABLE_METHODS)}")
    if recipe.effective_normalize():
        raise RecipeError(field, f"must not be negative with `normalize: true`, {got}: dividing by the sum of the "
                                 "weights makes a negative weight rescale every task vector",
                          "set `normalize: false` (the default of these methods)")


def _check_bounded(field: str, value: ParamValue | None, bounded: bool = True) -> None:
    """Every number of a parameter is finite and, when `bounded`, within NUMBER_LIMIT."""
    for number in all_numbers(value):
        if not math.isfinite(number):
            raise RecipeError(field, f"must be a finite number, got {number}", "write e.g. 0.5")
        if bounded and abs(number) > NUMBER_LIMIT:
            raise RecipeError(field, f"must be a finite number between -{NUMBER_LIMIT:g} and {NUMBER_LIMIT:g}, "
                                     f"got {number}", "write e.g. 0.5")


def _check_density(field: str, value: ParamValue | None, used: bool, method: str) -> None:
    if value is None:
        return
    if not used:
        raise RecipeError(field, f"has no effect with method {method}", "remove it or pick ties/dare_*/breadcrumbs")
    for number in all_numbers(value):
        if not 0.0 < number <= 1.0:
            raise RecipeError(field, f"must be in (0, 1], got {number}", "use the fraction of entries to keep, e.g. 0.2")


# ---------------------------------------------------------------------------------------------
# Loading


def resolve_recipe_path(reference: str | Path) -> Path:
    """A recipe file path, or the name of a recipe shipped in recipes/ (with or without .yaml)."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    shipped_dir = recipes_dir()
    for candidate in (shipped_dir / f"{reference}.yaml", shipped_dir / str(reference)):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in shipped_dir.glob("*.yaml"))) or "none"
    raise RecipeError("recipe", f"no file {str(reference)!r}", f"give a YAML path or a shipped recipe name ({shipped})")


def read_recipe_document(reference: str | Path) -> dict[str, Any]:
    """Parse a recipe YAML file into a mapping (mergekit YAML is translated)."""
    path = resolve_recipe_path(reference)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError("recipe", f"{path} is not valid YAML{where}", "fix the syntax") from None
    if not isinstance(data, dict):
        raise RecipeError("(top level)", f"must be a mapping of fields, got {type(data).__name__}",
                          "write `vlm: ...`, `sources: ...`, `method: ...` as top-level keys")
    if "merge_method" in data:
        from merge_models.mergekit_config import from_mergekit

        data = from_mergekit(data, path.parent)
    return _resolve_local_paths(data, path.parent)


def _resolve_local_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Model paths written relative to the recipe's folder become absolute when they exist."""
    data = copy.deepcopy(data)

    def fix(ref: Any) -> Any:
        name = ref if isinstance(ref, str) else ref.get("model") if isinstance(ref, dict) else None
        if isinstance(name, str) and name.startswith(".") and (folder / name).is_dir():
            resolved = str((folder / name).resolve())
            return resolved if isinstance(ref, str) else {**ref, "model": resolved}
        return ref

    for key in ("vlm", "base"):
        if key in data:
            data[key] = fix(data[key])
    if isinstance(data.get("sources"), list):
        data["sources"] = [fix(s) for s in data["sources"]]
    return data


def parse_recipe(data: Any) -> Recipe:
    """Validate a mapping as a Recipe, turning the first problem into a one-line RecipeError."""
    if not isinstance(data, dict):
        raise RecipeError("(top level)", f"must be a mapping of fields, got {type(data).__name__}",
                          "write `vlm: ...`, `sources: ...`, `method: ...` as top-level keys")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc) from None


def load_recipe(reference: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read, override and validate a recipe file (or shipped recipe name)."""
    data = read_recipe_document(reference)
    if overrides:
        data = apply_overrides(data, overrides)
    return parse_recipe(data)


def parse_value(text: str, option: str, item: str) -> Any:
    """A command-line value (`--set`, `--grid`) read as plain YAML: a number, boolean, string or list."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or "not valid YAML").split("\n")[0]
        raise RecipeError(option, f"{item!r}: the value is not plain YAML ({problem})",
                          "write a number, true/false, text or a list such as [0.1, 0.2]") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted fields such as `lambda`, `vlm.weight` or `sources.0.density` in a recipe mapping."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node: Any = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
            try:
                child = node[key]
            except (KeyError, IndexError, TypeError):
                raise RecipeError(dotted, "no such field in the recipe", "check the dotted path") from None
            if isinstance(child, str) and part in ("vlm", "base"):
                child = node[key] = {"model": child}
            node = child
        last: Any = int(parts[-1]) if isinstance(node, list) and parts[-1].isdigit() else parts[-1]
        node[last] = value
    return data


def _one_line(exc: ValidationError) -> RecipeError:
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains a "missing"
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "list[", "union[", "float", "json"))]
    field = ".".join(loc).replace(".[", "[") or "(top level)"
    field = _bracket_indices(field)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_field(field, error["loc"])
    if kind == "too_short" and field == "sources":
        return RecipeError(field, "needs at least one reasoning LLM", "add `- {model: <id or dir>, weight: 0.1}`")
    if kind == "missing":
        return RecipeError(field, "is required", "add it to the recipe")
    if field.endswith(("weight", "density", "lambda")) or kind in ("float_parsing", "float_type"):
        return RecipeError(field, f"must be a number, a list of numbers (a per-layer gradient) or a list of "
                                  f"{{filter, value}} rules, got {value!r}", "write e.g. 0.5")
    message = error["msg"].removeprefix("Value error, ")
    return RecipeError(field, message, "")


def _unknown_field(field: str, loc: tuple) -> RecipeError:
    """"unknown field 'methd' (did you mean 'method'?)", the candidates read from the schema at that place."""
    key = str(loc[-1])
    known = _field_names(_schema_at(loc[:-1]))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = "" if close else f"; fields here: {', '.join(known)}"
    return RecipeError(field, f"unknown field {key!r}{hint}{listed}", f"see {DOCS}")


def _schema_at(path: tuple) -> type[BaseModel]:
    """The model class that validates the mapping at `path` (list indices skipped)."""
    model: type[BaseModel] = Recipe
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        nested = _model_in(info.annotation) if info is not None else None
        if nested is None:
            break
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _bracket_indices(field: str) -> str:
    parts = field.split(".")
    out: list[str] = []
    for part in parts:
        if part.isdigit() and out:
            out[-1] += f"[{part}]"
        else:
            out.append(part)
    return ".".join(out)


__all__ = ["Recipe", "ModelRef", "LayerSwap", "FilterRule", "load_recipe", "parse_recipe", "apply_overrides",
           "read_recipe_document", "resolve_recipe_path", "DEFAULT_EXCLUDE"]
