"""A leaderboard submission bundle: results JSON (lmms-eval's layout), per-sample predictions, a model card
with the recipe, its hash, the software versions and the command that reproduces it, and the normalised
recipe itself.

    <out>/results.json  <out>/predictions/<task>.jsonl  <out>/MODEL_CARD.md  <out>/recipe.yaml (merges)

Nothing in a bundle names this machine's absolute paths. A local checkpoint is named in `recipe.yaml`
relative to the bundle folder when it is found in the repository the bundle is written into (or the
one the command runs in), so the Reproduce command runs as written from the bundle folder; otherwise
by its name relative to its repository, with its content identity in the model card.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

import yaml

from harness_ext.results.errors import ResultsError
from harness_ext.results.files import publish_dir
from harness_ext.results.names import checked_name
from harness_ext.results.record import SPLITS, RunRecord
from harness_ext.results.selection import Evaluation
from harness_ext.results.variants import parse_model_args
from merge_models.portable import relative_to_folder, repository_root

MERGED_MODEL = "merged_vlm"  # lmms-eval's name of the merged model (the `--model` of the command line)
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
    recipe, located = bundle_recipe(evaluation, out)
    files: dict[str, str] = {"results.json": json.dumps(results_json(evaluation), indent=2) + "\n",
                             "MODEL_CARD.md": model_card(evaluation, located)}
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


def bundle_recipe(evaluation: Evaluation, out: Path) -> tuple[dict[str, Any] | None, dict[str, bool]]:
    """The recipe as the bundle holds it, and per local checkpoint role whether it was found to name it
    relative to the bundle."""
    if not evaluation.variant.recipe:
        return None, {}
    recipe = json.loads(json.dumps(evaluation.variant.recipe))
    local = {m.role for m in _first(evaluation).models if (m.identity or {}).get("source") == "local"}
    roots = [r for r in dict.fromkeys([repository_root(out.resolve().parent), repository_root(Path.cwd())]) if r]
    located = {}
    refs = [("vlm", recipe.get("vlm")), ("base", recipe.get("base"))] + [
        (f"sources[{i}]", ref) for i, ref in enumerate(recipe.get("sources") or [])]
    for role, ref in refs:
        if ref is None or role not in local:
            continue
        found = next((root / ref["model"] for root in roots if (root / ref["model"]).is_dir()), None)
        located[role] = found is not None
        if found is not None:
            ref["model"] = relative_to_folder(found, out)
    return recipe, located


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
                                  "splits": split_averages(evaluation), "runs": evaluation.run_of_task},
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


def model_card(evaluation: Evaluation, located: dict[str, bool] | None = None) -> str:
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
    lines += ["", "## Reproduce", "", "In this folder:", "", "```sh", reproduce_command(evaluation, first), "```"]
    missing = [role for role, found in (located or {}).items() if not found]
    if missing:
        lines += ["", (f"Local checkpoints not found beside this bundle ({', '.join(missing)}): put them where "
                       "`recipe.yaml` names them (relative to their repository; their content identities are in "
                       "the Models table) and name them relative to this folder.")]
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


def reproduce_command(evaluation: Evaluation, first: RunRecord) -> str:
    """The harness command that evaluates the bundle's recipe (or model) on the same tasks and documents."""
    tasks = ",".join(evaluation.tasks)
    limit = f" --limit {first.harness.limit:g}" if first.harness.limit is not None else ""
    gen = first.harness.gen_kwargs
    if isinstance(gen, dict):
        gen = ",".join(f"{k}={v}" for k, v in gen.items())
    gen_kwargs = f" --gen_kwargs {gen}" if gen else ""
    batch = first.harness.batch_size
    batch_size = f" --batch_size {batch}" if batch not in (None, 1, "1") else ""
    if evaluation.variant.recipe:
        overrides = set((first.merge or {}).get("overrides") or {})  # in the normalised recipe already
        options = [f"{k}={v}" for k, v in parse_model_args(first.harness.model_args).items()
                   if k != "recipe" and k not in overrides]
        args = ",".join(["recipe=recipe.yaml", *options])
    else:
        args = first.harness.model_args
    harness = "lm_eval" if first.harness.name == "lm-eval" else "lmms_eval"
    include = ""  # lm-eval finds this project's text tasks only on an include path (lmms_eval adds its own)
    if harness == "lm_eval" and any(task.startswith("mvlm_") for task in evaluation.tasks):
        include = f' --include_path "$(python -c "{LM_EVAL_TASKS}")"'
    return (f"{harness} --model {command_model(evaluation, first)} --model_args {args} --tasks {tasks}{limit}"
            f"{batch_size}{gen_kwargs}{include} --output_path out --log_samples")


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
