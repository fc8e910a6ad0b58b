"""A leaderboard submission bundle: results JSON (lmms-eval's layout), per-sample predictions, a model card
with the recipe, its hash, the software versions and the command that reproduces it, and the normalised
recipe itself.

    <out>/results.json  <out>/predictions/<task>.jsonl  <out>/MODEL_CARD.md  <out>/recipe.yaml (merges)

Nothing in a bundle names this machine's folders, and no path in it climbs out of it: `recipe.yaml` names a
Hub checkpoint by its id and the commit the run used, and a local one by its path inside the checkout or
package that holds it (`models/tiny-world/vlm`), with the content digest the record carries in `results.json`
and the model card. `merged-vlm reproduce BUNDLE`, run from that checkout, checks the digests and re-runs the
evaluation (harness_ext.results.reproduce).
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path, PurePosixPath
from statistics import fmean
from typing import Any

import yaml

from harness_ext.results.errors import ResultsError
from harness_ext.results.files import publish_dir
from harness_ext.results.names import checked_name
from harness_ext.results.record import SPLITS, RunRecord
from harness_ext.results.selection import Evaluation
from harness_ext.results.variants import parse_model_args

MERGED_MODEL = "merged_vlm"  # lmms-eval's name of the merged model (the `--model` of the command line)
BUNDLE_RECIPE = "recipe.yaml"  # the bundle's recipe, as the reproduce arguments name it
REPRODUCE_WHERE = ("From the root of a merged-vlm checkout, or any folder that holds the local checkpoints at "
                   "the paths `recipe.yaml` names (checkpoints shipped with merged-vlm are also found in the "
                   "installed package), with `BUNDLE` this folder. It first checks every local checkpoint's "
                   "content digest against the Models table and stops with one line (exit 2) on a mismatch.")
LM_EVAL_TASKS = "import harness_ext.lm_eval_tasks as t, os; print(os.path.dirname(t.__file__))"


def write_bundle(evaluation: Evaluation, out: Path, force: bool = False) -> list[Path]:
    """Write the bundle to `out` atomically; returns the files written (relative to `out`)."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out: {out} is a file; name a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ResultsError(f"--out: {out} exists and is not empty; pass --force to replace it")
    for task in evaluation.tasks:
        checked_name(task, "task")  # becomes predictions/<task>.jsonl
    missing = [task for task, result in evaluation.tasks.items() if result.samples is None]
    if missing:
        raise ResultsError(f"no per-sample predictions for {', '.join(missing)}: re-run lmms-eval with "
                           "--log_samples and ingest again")
    recipe = bundle_recipe(evaluation)
    files: dict[str, str] = {"results.json": json.dumps(results_json(evaluation), indent=2) + "\n",
                             "MODEL_CARD.md": model_card(evaluation)}
    if recipe is not None:
        files["recipe.yaml"] = (f"# merged-vlm recipe, normalised; recipe hash {evaluation.variant.recipe_hash}\n"
                                + yaml.safe_dump(recipe, sort_keys=False))
    for task, result in evaluation.tasks.items():
        lines = [json.dumps({"doc_id": s.doc_id, "id": s.id, "split": s.split, "category": s.category,
                             "target": s.target, "response": s.response, "extracted": s.extracted,
                             "correct": s.correct, **({"verdicts": {k: v.model_dump(exclude_none=True)
                                                                    for k, v in s.verdicts.items()}}
                                                      if s.verdicts else {})}, ensure_ascii=False)
                 for s in result.samples or []]
        files[f"predictions/{task}.jsonl"] = "\n".join(lines) + "\n"

    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")

    publish_dir(out, fill, replace=True)
    return [Path(name) for name in files]


def bundle_recipe(evaluation: Evaluation) -> dict[str, Any] | None:
    """The normalised recipe as the bundle holds it: Hub checkpoints pinned to the commit the run used, local
    ones named by their path inside their checkout (as the record names them), never climbing out."""
    if not evaluation.variant.recipe:
        return None
    recipe = copy.deepcopy(evaluation.variant.recipe)
    models = {m.role: m for m in _first(evaluation).models}
    for role, ref in recipe_refs(recipe):
        identity = (models[role].identity or {}) if role in models else {}
        if identity.get("source") == "hub" and identity.get("commit"):
            ref["revision"] = identity["commit"]
        elif identity.get("source") == "local":
            ref["model"] = inside_name(ref["model"])
    return recipe


def recipe_refs(recipe: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, model reference) of a normalised recipe's checkpoints, roles named as the record names them."""
    refs = [("vlm", recipe.get("vlm")), ("base", recipe.get("base"))]
    refs += [(f"sources[{i}]", ref) for i, ref in enumerate(recipe.get("sources") or [])]
    return [(role, ref) for role, ref in refs if isinstance(ref, dict)]


def inside_name(name: str) -> str:
    """A recorded local checkpoint name without leading `./` or `../` parts (no path out of its folder)."""
    parts = [part for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("/", ".")]
    while parts and parts[0] == "..":
        parts.pop(0)
    return "/".join(parts) or name


def results_json(evaluation: Evaluation) -> dict[str, Any]:
    """Scores in lmms-eval's results layout, plus the merge record, the protocol and each task's source run."""
    first = _first(evaluation)
    out: dict[str, Any] = {
        "results": {task: {"alias": task, **{k if "," in k else f"{k},none": v for k, v in r.scores.items()}}
                    for task, r in evaluation.tasks.items()},
        "versions": {task: r.version for task, r in evaluation.tasks.items()},
        "n-samples": {task: {"original": r.n_total, "effective": r.n} for task, r in evaluation.tasks.items()},
        "config": {"model": command_model(evaluation, first), "model_args": first.harness.model_args,
                   "limit": first.harness.limit},
        "merged_vlm_submission": {"variant": evaluation.variant.name, "variant_id": evaluation.variant.id,
                                  "protocol": evaluation.protocol,
                                  "scores": {task: r.score for task, r in evaluation.tasks.items()},
                                  "documents": {task: {"n": r.n, "n_total": r.n_total, "doc_set": r.doc_set,
                                                       "partial": r.partial} for task, r in evaluation.tasks.items()},
                                  "splits": split_averages(evaluation), "runs": evaluation.run_of_task,
                                  "models": [m.model_dump() for m in first.models],
                                  "reproduce": dict(zip(("harness", "arguments"),
                                                        reproduce_arguments(evaluation, first)))},
    }
    if first.merge is not None:
        out["merged_vlm"] = {**first.merge, "recipe": evaluation.variant.recipe}
    return out


def partial_tasks(evaluation: Evaluation) -> list[str]:
    """Tasks evaluated on part of their documents (lmms-eval --limit)."""
    return [t for t, r in evaluation.tasks.items() if r.partial]


def split_averages(evaluation: Evaluation) -> dict[str, float]:
    """Mean task score per split over the evaluation's tasks."""
    out = {}
    for split in SPLITS:
        values = [r.split_scores[split] for r in evaluation.tasks.values() if split in r.split_scores]
        if values:
            out[split] = fmean(values)
    return out


def model_card(evaluation: Evaluation) -> str:
    """The model card: what was merged, how it scored (on how many documents), with what it was measured,
    and how to reproduce it."""
    v = evaluation.variant
    runs = {r.run_id: r for r in evaluation.records if r.run_id in evaluation.run_of_task.values()}
    lines = [f"# {v.name}", ""]
    if v.kind == "merged":
        lines += [(f"A VLM whose language backbone was merged with reasoning LLMs by merged-vlm "
                  f"(method `{v.method}`, lambda `{v.lambda_}`, weights VLM / sources `{v.weights}`, layers "
                  f"`{v.layers}`)."), "", f"- recipe hash: `{v.recipe_hash}`"]
    else:
        lines += [f"Evaluated with the harness backend `{v.name}` (no merge).", ""]
    lines += [f"- baseline (unmerged VLM): {'yes, ' + (v.baseline_reason or '') if v.baseline else 'no'}",
              f"- scoring protocol: {evaluation.protocol}", ""]
    lines += ["## Scores", "", "| task | split | score (%) | documents (n) |", "|---|---|---:|---:|"]
    for task, r in evaluation.tasks.items():
        score = "-" if r.score is None else f"{100 * r.score:.1f}"
        documents = "-" if r.n is None else f"{r.n} of {r.n_total}" if r.partial and r.n_total else str(r.n)
        lines.append(f"| {task} | {r.split or '-'} | {score} | {documents} |")
    lines += [""] + [f"- {split} average: {100 * value:.1f}" for split, value in split_averages(evaluation).items()]
    first = _first(evaluation)
    if v.recipe:
        lines += ["", "## Recipe (normalised)", "", "```yaml", yaml.safe_dump(v.recipe, sort_keys=False).rstrip(),
                  "```"]
    lines += ["", "## Models", "", "| role | model | revision | identity |", "|---|---|---|---|"]
    for m in first.models:
        identity = ", ".join(f"{k}: {val}" for k, val in (m.identity or {}).items()) or "-"
        lines.append(f"| {m.role} | `{m.model}` | {m.revision or '-'} | {identity} |")
    lines += ["", "## Evaluation runs", ""] + [_run_lines(r) for r in runs.values()]
    lines += ["", "## Reproduce", "", REPRODUCE_WHERE, "", "```sh", "merged-vlm reproduce BUNDLE --out out", "```",
              "", "It runs (`recipe.yaml`'s local checkpoints resolved to the folders it found):", "", "```sh",
              reproduce_command(evaluation, first), "```"]
    lines += ["", "## Files", "", "- `results.json`: scores in lmms-eval's results layout, with the merge record",
              "- `predictions/<task>.jsonl`: per document the response, the extracted answer and the verdict"]
    if v.recipe:
        lines.append("- `recipe.yaml`: the normalised recipe")
    return "\n".join(lines) + "\n"


def command_model(evaluation: Evaluation, first: RunRecord) -> str:
    """The `--model` that reproduces a run: `merged_vlm` for a merge evaluated by lmms-eval (runs that
    recorded the model's Python class, as `demo` and `sweep` once did, included)."""
    if evaluation.variant.recipe and first.harness.name == "lmms-eval":
        return MERGED_MODEL
    return first.harness.model


def reproduce_arguments(evaluation: Evaluation, first: RunRecord) -> tuple[str, list[str]]:
    """The harness and its arguments that evaluate the bundle's recipe (`recipe=recipe.yaml`, the bundle's) or
    model on the same tasks and documents; `merged-vlm reproduce` adds the include path and `OUTPUT`."""
    args = ["--model", command_model(evaluation, first)]
    if evaluation.variant.recipe:
        overrides = set((first.merge or {}).get("overrides") or {})  # in the normalised recipe already
        options = [f"{k}={v}" for k, v in parse_model_args(first.harness.model_args).items()
                   if k != "recipe" and k not in overrides]
        args += ["--model_args", ",".join([f"recipe={BUNDLE_RECIPE}", *options])]
    else:
        args += ["--model_args", first.harness.model_args]
    args += ["--tasks", ",".join(evaluation.tasks)]
    if first.harness.limit is not None:
        args += ["--limit", f"{first.harness.limit:g}"]
    batch = first.harness.batch_size
    if batch not in (None, 1, "1"):
        args += ["--batch_size", str(batch)]
    gen = first.harness.gen_kwargs
    if isinstance(gen, dict):
        gen = ",".join(f"{k}={v}" for k, v in gen.items())
    if gen:
        args += ["--gen_kwargs", gen]
    return ("lm_eval" if first.harness.name == "lm-eval" else "lmms_eval"), args


def needs_include(harness: str, tasks: list[str]) -> bool:
    """lm-eval finds this project's text tasks only on an include path (the `lmms_eval` alias adds its own)."""
    return harness == "lm_eval" and any(task.startswith("mvlm_") for task in tasks)


def reproduce_command(evaluation: Evaluation, first: RunRecord) -> str:
    """The harness command `merged-vlm reproduce` runs, with the bundle's recipe resolved (shown in the card)."""
    harness, args = reproduce_arguments(evaluation, first)
    include = f' --include_path "$(python -c "{LM_EVAL_TASKS}")"' if needs_include(harness, list(evaluation.tasks)) else ""
    return f"{harness} {shlex.join(args)}{include} {shlex.join(output_arguments('out'))}"


def output_arguments(out: str) -> list[str]:
    """The harness arguments that save scores and per-sample logs under `out`."""
    return ["--output_path", out, "--log_samples"]


def _first(evaluation: Evaluation) -> RunRecord:
    records = {r.run_id: r for r in evaluation.records}
    return records[next(iter(evaluation.run_of_task.values()))]


def _run_lines(record: RunRecord) -> str:
    env, hw = record.environment, record.environment.hardware
    versions = ", ".join(f"{k} {val}" for k, val in env.versions.items() if val)
    machine = ", ".join(x for x in (hw.cpu, f"{hw.cpu_count} CPUs" if hw.cpu_count else None,
                                    f"{hw.ram_gb} GiB RAM" if hw.ram_gb else None, *hw.gpus, hw.platform) if x)
    wall = f"{record.wall_time_s:.0f} s" if record.wall_time_s is not None else "unknown"
    documents = ", ".join(f"{t} {r.n}" + (f" of {r.n_total}" if r.partial and r.n_total else "")
                          for t, r in sorted(record.tasks.items()))
    return (f"- run `{record.run_id}` ({documents} documents): {record.harness.name} "
            f"`--model {record.harness.model} --model_args {record.harness.model_args}`, limit "
            f"{record.harness.limit if record.harness.limit is not None else 'none'}, {record.date}, wall time {wall}\n"
            f"  - versions ({env.versions_source}): {versions}\n  - hardware ({env.hardware_source}): {machine}")
