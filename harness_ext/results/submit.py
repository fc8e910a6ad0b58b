"""A leaderboard submission bundle: results JSON (lmms-eval's layout), per-sample predictions, a model card
with the recipe, its hash and the software versions, and the normalised recipe itself.

    <out>/results.json  <out>/predictions/<task>.jsonl  <out>/MODEL_CARD.md  <out>/recipe.yaml (merges)
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import Any

import yaml

from harness_ext.results.errors import ResultsError
from harness_ext.results.files import publish_dir
from harness_ext.results.record import SPLITS, RunRecord
from harness_ext.results.selection import Evaluation


def write_bundle(evaluation: Evaluation, out: Path, force: bool = False) -> list[Path]:
    """Write the bundle to `out` atomically; returns the files written (relative to `out`)."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out: {out} is a file; name a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ResultsError(f"--out: {out} exists and is not empty; pass --force to replace it")
    missing = [task for task, result in evaluation.tasks.items() if result.samples is None]
    if missing:
        raise ResultsError(f"no per-sample predictions for {', '.join(missing)}: re-run lmms-eval with "
                           "--log_samples and ingest again")
    files: dict[str, str] = {"results.json": json.dumps(results_json(evaluation), indent=2) + "\n",
                             "MODEL_CARD.md": model_card(evaluation)}
    if evaluation.variant.recipe:
        files["recipe.yaml"] = (f"# merged-vlm recipe, normalised; recipe hash {evaluation.variant.recipe_hash}\n"
                                + yaml.safe_dump(evaluation.variant.recipe, sort_keys=False))
    for task, result in evaluation.tasks.items():
        lines = [json.dumps({"doc_id": s.doc_id, "id": s.id, "split": s.split, "category": s.category,
                             "target": s.target, "response": s.response, "extracted": s.extracted,
                             "correct": s.correct}, ensure_ascii=False) for s in result.samples or []]
        files[f"predictions/{task}.jsonl"] = "\n".join(lines) + "\n"

    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")

    publish_dir(out, fill, replace=True)
    return [Path(name) for name in files]


def results_json(evaluation: Evaluation) -> dict[str, Any]:
    """Scores in lmms-eval's results layout, plus the merge record and where each task's result comes from."""
    records = {r.run_id: r for r in evaluation.records}
    first = records[next(iter(evaluation.run_of_task.values()))]
    out: dict[str, Any] = {
        "results": {task: {"alias": task, **{k if "," in k else f"{k},none": v for k, v in r.scores.items()}}
                    for task, r in evaluation.tasks.items()},
        "versions": {task: r.version for task, r in evaluation.tasks.items()},
        "n-samples": {task: {"original": r.n_total, "effective": r.n} for task, r in evaluation.tasks.items()},
        "config": {"model": first.harness.model, "model_args": first.harness.model_args,
                   "limit": first.harness.limit},
        "merged_vlm_submission": {"variant": evaluation.variant.name, "variant_id": evaluation.variant.id,
                                  "splits": split_averages(evaluation), "runs": evaluation.run_of_task},
    }
    if first.merge is not None:
        out["merged_vlm"] = {**first.merge, "recipe": evaluation.variant.recipe}
    return out


def partial_tasks(evaluation: Evaluation) -> list[str]:
    """Tasks evaluated on part of their documents (lmms-eval --limit)."""
    return [t for t, r in evaluation.tasks.items() if r.n is not None and r.n_total and r.n < r.n_total]


def split_averages(evaluation: Evaluation) -> dict[str, float]:
    """Mean task score per split over the evaluation's tasks."""
    out = {}
    for split in SPLITS:
        values = [r.split_scores[split] for r in evaluation.tasks.values() if split in r.split_scores]
        if values:
            out[split] = fmean(values)
    return out


def model_card(evaluation: Evaluation) -> str:
    """The model card: what was merged, how it scored, with what it was measured, how to reproduce it."""
    v = evaluation.variant
    runs = {r.run_id: r for r in evaluation.records if r.run_id in evaluation.run_of_task.values()}
    lines = [f"# {v.name}", ""]
    if v.kind == "merged":
        lines += [(f"A VLM whose language backbone was merged with reasoning LLMs by merged-vlm "
                  f"(method `{v.method}`, lambda `{v.lambda_}`, weights VLM / sources `{v.weights}`, layers "
                  f"`{v.layers}`)."), "", f"- recipe hash: `{v.recipe_hash}`"]
    else:
        lines += [f"Evaluated with the harness backend `{v.name}` (no merge).", ""]
    lines += [f"- baseline (unmerged VLM): {'yes, ' + (v.baseline_reason or '') if v.baseline else 'no'}", ""]
    lines += ["## Scores", "", "| task | split | score (%) | documents |", "|---|---|---:|---:|"]
    for task, r in evaluation.tasks.items():
        score = "-" if r.score is None else f"{100 * r.score:.1f}"
        documents = "-" if r.n is None else f"{r.n} of {r.n_total}" if r.n_total and r.n_total != r.n else str(r.n)
        lines.append(f"| {task} | {r.split or '-'} | {score} | {documents} |")
    lines += [""] + [f"- {split} average: {100 * value:.1f}" for split, value in split_averages(evaluation).items()]
    first = next(iter(runs.values()))
    if v.recipe:
        lines += ["", "## Recipe (normalised)", "", "```yaml", yaml.safe_dump(v.recipe, sort_keys=False).rstrip(),
                  "```"]
    lines += ["", "## Models", "", "| role | model | revision | identity |", "|---|---|---|---|"]
    for m in first.models:
        identity = ", ".join(f"{k}: {val}" for k, val in (m.identity or {}).items()) or "-"
        lines.append(f"| {m.role} | `{m.model}` | {m.revision or '-'} | {identity} |")
    lines += ["", "## Evaluation runs", ""] + [_run_lines(r) for r in runs.values()]
    lines += ["", "## Reproduce", "", "```sh", _command(evaluation, first), "```", "",
              "## Files", "", "- `results.json`: scores in lmms-eval's results layout, with the merge record",
              "- `predictions/<task>.jsonl`: per document the response, the extracted answer and the verdict"]
    if v.recipe:
        lines.append("- `recipe.yaml`: the normalised recipe")
    return "\n".join(lines) + "\n"


def _run_lines(record: RunRecord) -> str:
    env, hw = record.environment, record.environment.hardware
    versions = ", ".join(f"{k} {val}" for k, val in env.versions.items() if val)
    machine = ", ".join(x for x in (hw.cpu, f"{hw.cpu_count} CPUs" if hw.cpu_count else None,
                                    f"{hw.ram_gb} GiB RAM" if hw.ram_gb else None, *hw.gpus, hw.platform) if x)
    wall = f"{record.wall_time_s:.0f} s" if record.wall_time_s is not None else "unknown"
    return (f"- run `{record.run_id}` ({', '.join(sorted(record.tasks))}): {record.harness.name} "
            f"`--model {record.harness.model} --model_args {record.harness.model_args}`, limit "
            f"{record.harness.limit or 'none'}, {record.date}, wall time {wall}\n"
            f"  - versions ({env.versions_source}): {versions}\n  - hardware ({env.hardware_source}): {machine}")


def _command(evaluation: Evaluation, first: RunRecord) -> str:
    tasks = ",".join(evaluation.tasks)
    if first.harness.name == "lm-eval":
        return f"lm_eval --model {first.harness.model} --model_args recipe=recipe.yaml --tasks {tasks} --log_samples"
    args = "recipe=recipe.yaml" if evaluation.variant.recipe else first.harness.model_args
    return (f"lmms_eval --model {first.harness.model} --model_args {args} --tasks {tasks} "
            "--output_path out --log_samples")
