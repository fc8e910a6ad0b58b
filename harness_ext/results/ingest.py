"""Read lmms-eval and lm-eval output folders into run records.

lmms-eval writes `<dir>/<stamp>_results.json` and `<dir>/<stamp>_samples_<task>.jsonl`; lm-eval writes
`<dir>/results_<stamp>.json` and `<dir>/samples_<task>_<stamp>.jsonl`. Everything found is parsed and
checked before anything is stored, so a malformed or truncated file refuses the whole ingest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from harness_ext.results import environment, stats
from harness_ext.results.completion import in_partial_folder, marker
from harness_ext.results.errors import ResultsError
from harness_ext.results.record import (
    SPLITS,
    Group,
    Harness,
    RunRecord,
    Sample,
    TaskResult,
    Verdict,
    set_coverage,
)
from harness_ext.results.variants import merged_variant, model_variant, parse_model_args
from merge_models.portable import portable_data

LMMS_RESULTS, LM_RESULTS = re.compile(r"(.+)_results\.json$"), re.compile(r"results_(.+)\.json$")
AGGREGATIONS = {"micro_accuracy": "micro", "mean": "micro", "macro_accuracy": "macro",
                "seed_average_accuracy": "cluster_mean"}
CLUSTER_FIELD = "seed"  # per-sample field that groups documents under cluster_mean (DynaMath)
SPLIT_GROUPS = {"mvlm_perception": "perception", "mvlm_reasoning": "reasoning"}
LMMS_TIMEZONE = "Asia/Singapore"  # lmms-eval's default --timezone for its `date` field
NOT_SCORES = {"alias", "name", "sample_len", "sample_count"}


@dataclass
class RunFiles:
    """The files of one run: its results JSON and its per-task sample logs."""

    results: Path
    harness: str
    samples: dict[str, Path] = field(default_factory=dict)


def read_output(output_path: Path, baseline: bool = False) -> list[RunRecord]:
    """Every run under `output_path` (a folder or one results file) as records, all parsed and checked."""
    found = discover(output_path)
    root = output_path if output_path.is_dir() else output_path.parent
    return [read_run(files, root, baseline) for files in found]


def discover(output_path: Path) -> list[RunFiles]:
    """The runs under a folder (searched recursively), or the run of one results file."""
    if not output_path.exists():
        raise ResultsError(f"{output_path}: no such file or folder")
    candidates = [output_path] if output_path.is_file() else sorted(
        p for p in output_path.rglob("*.json") if (LMMS_RESULTS.match(p.name) or LM_RESULTS.match(p.name))
        and not in_partial_folder(p, output_path))  # a sweep's variant being evaluated
    runs = [_run_files(path) for path in candidates]
    unfinished = [run.results for run in runs if not run.samples and not marker(run.results).exists()]
    if unfinished:
        raise ResultsError(f"{', '.join(str(p) for p in unfinished)}: no per-sample logs and no completion marker "
                           "(the run was interrupted, or ran without --log_samples); re-run lmms-eval with "
                           "--log_samples; nothing was ingested")
    if not runs:
        raise ResultsError(f"{output_path}: no lmms-eval (*_results.json) or lm-eval (results_*.json) results "
                           "file found")
    return runs


def read_run(files: RunFiles, root: Path, baseline: bool = False) -> RunRecord:
    """One run's record from its files."""
    try:
        return _record(files, root, baseline)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    except (KeyError, TypeError, AttributeError) as exc:
        problem = f"{type(exc).__name__} {exc}"
    raise ResultsError(f"{files.results}: unexpected content ({problem}); nothing was ingested")


def _record(files: RunFiles, root: Path, baseline: bool) -> RunRecord:
    data = _read_json(files.results)
    for key in ("results", "config"):
        if not isinstance(data.get(key), dict):
            raise ResultsError(f"{files.results}: no '{key}' object; not a complete {files.harness} results file")
    lmms = files.harness == "lmms-eval"
    config = data["config"]
    merge = portable_data(data.get("merged_vlm") if lmms else config.get("merged_vlm"))
    model_args = portable_data(config.get("model_args"))
    if merge:
        variant, models = merged_variant(merge, baseline)
    else:
        variant, models = model_variant(str(config.get("model")), parse_model_args(model_args), baseline)
    groups = {name: members for name, members in (data.get("group_subtasks") or {}).items() if members}
    tasks = {name: _task(files, data, name, groups) for name in data["results"] if name not in groups}
    for name in files.samples:
        if name not in tasks:
            raise ResultsError(f"{files.samples[name]}: task {name} is not in {files.results.name}")
    harness = Harness(
        name=files.harness, version=_text(data.get("lmms_eval_version" if lmms else "lm_eval_version")),
        model=str(config.get("model")),
        model_args=model_args if isinstance(model_args, str) else json.dumps(model_args, sort_keys=True),
        backend=config.get("model_backend"), limit=config.get("limit"), batch_size=config.get("batch_size"),
        gen_kwargs=config.get("gen_kwargs"),
        seed=[config.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")])
    return RunRecord(
        run_id=hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12],
        date=_date(data, lmms, files.results), wall_time_s=_float(data.get("total_evaluation_time_seconds")),
        source=files.results.relative_to(root).as_posix(), harness=harness, variant=variant, models=models,
        merge={k: v for k, v in merge.items() if k != "recipe"} if merge else None,
        environment=environment.for_lmms_eval(data) if lmms else environment.for_lm_eval(data),
        tasks=tasks,
        groups={name: Group(tasks=list(members), scores=_scores(data["results"].get(name, {})))
                for name, members in groups.items()})


def _run_files(path: Path) -> RunFiles:
    if match := LMMS_RESULTS.match(path.name):
        stamp, harness = match.group(1), "lmms-eval"
        pattern = re.compile(rf"{re.escape(stamp)}_samples_(.+)\.jsonl$")
    elif match := LM_RESULTS.match(path.name):
        stamp, harness = match.group(1), "lm-eval"
        pattern = re.compile(rf"samples_(.+)_{re.escape(stamp)}\.jsonl$")
    else:
        raise ResultsError(f"{path}: not an lmms-eval (*_results.json) or lm-eval (results_*.json) results file")
    samples = {m.group(1): p for p in sorted(path.parent.glob("*.jsonl")) if (m := pattern.match(p.name))}
    return RunFiles(path, harness, samples)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the file "
                           "is truncated or damaged, nothing was ingested") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not UTF-8 text; nothing was ingested") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a results object; nothing was ingested")
    return data


def _task(files: RunFiles, data: dict[str, Any], name: str, groups: dict[str, list[str]]) -> TaskResult:
    reported = data["results"][name]
    config = (data.get("configs") or {}).get(name) or {}
    metric, result_key = _primary(name, reported, config, files.results)
    aggregation = _aggregation(config, metric)
    counts = (data.get("n-samples") or {}).get(name) or {}
    samples = _samples(files, name, metric, aggregation, counts.get("effective"))
    score = _float(reported.get(result_key))
    split = _split(samples, config, name, groups)
    if split == "mixed":  # per-item splits: each split's score over its own documents
        found = sorted({x.split for x in samples or [] if x.split})
        split_scores = {s: _subset_score(samples or [], s, aggregation) for s in found}
    else:
        split_scores = {split: score} if split in SPLITS and score is not None else {}
    version = (data.get("versions") or {}).get(name)
    result = TaskResult(version=None if version is None else str(version), split=split, metric=metric,
                        aggregation=aggregation, score=score, scores=_scores(reported),
                        split_scores=split_scores, n=_int(counts.get("effective")),
                        n_total=_int(counts.get("original")), samples=samples)
    return set_coverage(result, data["config"].get("limit"))


def _primary(name: str, reported: dict[str, Any], config: dict[str, Any], path: Path) -> tuple[str, str]:
    """The primary metric (`mvlm_acc`, else the task's first metric) and its key in the results."""
    listed = [m.get("metric") for m in config.get("metric_list") or [] if isinstance(m, dict)]
    for metric in ["mvlm_acc", *listed]:
        keys = [k for k in reported if k.startswith(f"{metric},") and "_stderr" not in k]
        if keys:
            return metric, f"{metric},none" if f"{metric},none" in keys else keys[0]
    raise ResultsError(f"{path}: task {name} reports no metric; not a complete results file")


def _aggregation(config: dict[str, Any], metric: str) -> str:
    for entry in config.get("metric_list") or []:
        if isinstance(entry, dict) and entry.get("metric") == metric:
            text = str(entry.get("aggregation"))
            function = re.match(r"<function (\w+)", text)
            return AGGREGATIONS.get(function.group(1) if function else text, "unknown")
    return "unknown"


def _samples(files: RunFiles, task: str, metric: str, aggregation: str, expected: Any) -> list[Sample] | None:
    path = files.samples.get(task)
    if path is None:
        if files.samples:
            raise ResultsError(f"{files.results}: per-sample log of task {task} is missing (other tasks have one); "
                               "nothing was ingested")
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if expected is not None and len(lines) != int(expected):
        raise ResultsError(f"{path}: {len(lines)} samples, the results file says {int(expected)}; the log is "
                           "truncated or from another run, nothing was ingested")
    samples = []
    for number, line in enumerate(lines, start=1):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}: line {number} is not valid JSON ({exc.msg}); the log is truncated or "
                               "damaged, nothing was ingested") from None
        try:
            sample = _sample(raw, metric, aggregation)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ResultsError(f"{path}: line {number} is not a per-sample record (no doc_id); nothing was "
                               "ingested") from None
        if sample is None:
            return None  # the task's per-sample values are not verdicts this layer can pair
        samples.append(sample)
    return samples


def _sample(raw: dict[str, Any], metric: str, aggregation: str) -> Sample | None:
    entry, doc = raw.get(metric), raw.get("doc") if isinstance(raw.get("doc"), dict) else {}
    response = raw.get("filtered_resps")
    while isinstance(response, list):
        response = response[0] if response else None
    common = {"doc_id": int(raw["doc_id"]), "target": raw.get("target"),
              "response": None if response is None else str(response)}
    if isinstance(entry, dict) and "correct" in entry:
        correct = bool(entry["correct"])
        cluster = entry.get(CLUSTER_FIELD) if aggregation == "cluster_mean" else None
        verdicts = entry.get("verdicts")
        return Sample(**common, id=_text(entry.get("id")), split=entry.get("split"),
                      category=_text(entry.get("category")), cluster=_text(cluster), value=float(correct), correct=correct,
                      extracted=_text(entry.get("extracted")), rule=entry.get("rule"), flagged=entry.get("flagged"),
                      verdicts={name: _verdict(v) for name, v in verdicts.items()} if isinstance(verdicts, dict)
                      else None)
    if isinstance(entry, bool | int | float):
        value = float(entry)
        return Sample(**common, id=_text(doc.get("id")), split=doc.get("split"),
                      category=_text(doc.get("category")), value=value, correct=bool(value) if value in (0.0, 1.0) else None)
    return None


def _verdict(raw: dict[str, Any]) -> Verdict:
    """One protocol's verdict of a sample (its extracted answer as text, like the sample's own)."""
    return Verdict.model_validate({**raw, "correct": None if raw.get("correct") is None else bool(raw["correct"]),
                                   "extracted": _text(raw.get("extracted"))})


def _split(samples: list[Sample] | None, config: dict[str, Any], name: str, groups: dict[str, list[str]]) -> str | None:
    found = {s.split for s in samples or [] if s.split}
    if found:
        return found.pop() if len(found) == 1 else "mixed"
    declared = (config.get("metadata") or {}).get("split")
    if declared:
        return str(declared)
    for group, split in SPLIT_GROUPS.items():
        if name in _members(group, groups):
            return split
    return None


def _members(group: str, groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for member in groups.get(group, []):
        out |= {member} | _members(member, groups)
    return out


def _subset_score(samples: list[Sample], split: str, aggregation: str) -> float:
    chosen = [s for s in samples if s.split == split]
    return stats.score([s.value or 0.0 for s in chosen], "micro" if aggregation == "unknown" else aggregation,
                       [s.category for s in chosen], [s.cluster for s in chosen])


def _scores(reported: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in reported.items():
        if key in NOT_SCORES or "_stderr" in key or "," not in key:
            continue
        metric, _, filter_name = key.partition(",")
        out[metric if filter_name == "none" else key] = value
    return out


def _date(data: dict[str, Any], lmms: bool, path: Path) -> str:
    value = data.get("date")
    try:
        if lmms:
            zone_name = ((data["config"].get("resolved_cli_args") or {}).get("timezone")) or LMMS_TIMEZONE
            local = datetime.strptime(str(value), "%Y%m%d_%H%M%S").replace(tzinfo=ZoneInfo(zone_name))
            moment = local.astimezone(timezone.utc)
        else:
            moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, ZoneInfoNotFoundError):
        raise ResultsError(f"{path}: no readable run date ({value!r}); nothing was ingested") from None
    return moment.replace(microsecond=0).isoformat()


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
