"""The run record: what one evaluation run measured, on which merge, with which software and hardware.

A record is a plain JSON file under `results/runs/`, written once and never rewritten. It is laid
out for diffs: nested objects indented, each per-sample verdict on one line.

Format 2 adds what a score rests on: every task result carries its document set (`doc_set`, a hash
of the sorted document keys) and whether `--limit` cut it (`limited`), and samples carry their
verdicts under every scoring protocol the task logged (`verdicts`). Format-1 records are read and
upgraded in memory (document sets computed from their samples).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness_ext.results.errors import ResultsError
from harness_ext.results.names import unsafe_name

FORMAT = 2
READABLE_FORMATS = (1, 2)
SPLITS = ("perception", "reasoning")
DEFAULT_PROTOCOL = "official"  # the protocol of a sample's top-level `correct` (a task's default scoring)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def document_set(keys: Iterable[str]) -> str:
    """The identity of a set of documents: a hash of their sorted keys (dataset id, else position)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def count_span(counts: Sequence[int]) -> str:
    """Sorted document counts (not empty) as text: "200" when the first and last are equal, else "6-20"."""
    return str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"


class Verdict(BaseModel):
    """A document's verdict under one scoring protocol (further fields a task logs are kept)."""

    model_config = ConfigDict(extra="allow")

    correct: bool | None = None
    extracted: str | None = None
    rule: str | None = None


class Sample(_Model):
    """One document's verdict. `key` pairs documents across runs."""

    doc_id: int
    id: str | None = None  # the dataset's item id, when the task records one
    split: str | None = None
    category: str | None = None
    cluster: str | None = None  # documents resampled together (DynaMath: the seed question)
    value: float | None = None  # the per-sample value of the task's primary metric
    correct: bool | None = None  # the verdict, when the primary metric is binary
    target: Any = None
    extracted: str | None = None
    response: str | None = None
    rule: str | None = None
    flagged: bool | None = None
    verdicts: dict[str, Verdict] | None = None  # per protocol, when the task logs several ("official", "strict")

    @property
    def key(self) -> str:
        """The document's identity: the dataset id, else its position in the task."""
        return self.id if self.id is not None else f"doc_id:{self.doc_id}"


class TaskResult(_Model):
    """One task's scores and per-sample verdicts."""

    version: str | None = None
    split: str | None = None  # "perception", "reasoning", "mixed", or None when unknown
    metric: str  # the primary metric
    aggregation: str  # how the primary score follows from samples: "micro", "macro" or "cluster_mean"
    score: float | None = None
    scores: dict[str, Any] = Field(default_factory=dict)  # every reported metric, stderr left out
    split_scores: dict[str, float] = Field(default_factory=dict)
    n: int | None = None  # documents evaluated
    n_total: int | None = None  # documents in the task
    doc_set: str | None = None  # document_set() of the samples' keys; None without per-sample logs
    limited: bool = False  # --limit left out some of the task's documents
    samples: list[Sample] | None = None  # None: the run was made without --log_samples

    @property
    def partial(self) -> bool:
        """Whether the score rests on part of the task's documents."""
        return self.limited or (self.n is not None and self.n_total is not None and self.n < self.n_total)


def set_coverage(result: TaskResult, limit: Any) -> TaskResult:
    """Fill in what a task's score rests on: its document set (from the samples, when logged) and whether the
    run's --limit (`limit`) left out some of its documents; returns `result`."""
    if result.samples is not None:
        result.doc_set = document_set(s.key for s in result.samples)
    result.limited = limit is not None and result.n is not None and (
        result.n_total is None or result.n < result.n_total)
    return result


class Group(_Model):
    """A task group lmms-eval / lm-eval reported, with its members."""

    tasks: list[str]
    scores: dict[str, Any] = Field(default_factory=dict)


class ModelRef(_Model):
    """A model the run used: the VLM, a merge base or source, or the model a built-in backend loaded."""

    role: str
    model: str
    revision: str | None = None
    identity: dict[str, Any] | None = None  # content hash or resolved commit, when recorded


class Variant(_Model):
    """What was evaluated. Runs of one variant (same recipe hash) share `id`."""

    id: str
    name: str
    kind: Literal["merged", "model"]
    method: str | None = None
    lambda_: Any = Field(None, alias="lambda")
    weights: str | None = None
    layers: str | None = None
    vlm: str | None = None  # the VLM's id or path (@revision): matches a variant to its baseline
    recipe_hash: str | None = None
    recipe: dict[str, Any] | None = None
    baseline: bool = False
    baseline_reason: str | None = None


class Harness(_Model):
    """The evaluation harness invocation."""

    name: Literal["lmms-eval", "lm-eval"]
    version: str | None = None
    model: str
    model_args: str
    backend: str | None = None
    limit: float | None = None
    batch_size: Any = None  # batches pad their prompts, so answers may depend on it
    gen_kwargs: Any = None
    seed: Any = None


class Hardware(_Model):
    platform: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    ram_gb: float | None = None
    gpus: list[str] = Field(default_factory=list)


class Environment(_Model):
    """Software versions and hardware; `*_source` says whether the run recorded them or ingest filled them."""

    versions: dict[str, str | None] = Field(default_factory=dict)
    versions_source: Literal["run", "ingest"]
    hardware: Hardware
    hardware_source: Literal["run", "ingest"]


class RunRecord(_Model):
    """One evaluation run."""

    format: int = FORMAT
    run_id: str
    date: str  # ISO 8601, UTC
    wall_time_s: float | None = None
    source: str  # the results file, relative to the folder it was ingested from
    harness: Harness
    variant: Variant
    models: list[ModelRef]
    merge: dict[str, Any] | None = None  # the merge record minus the recipe: inputs, load, ...
    environment: Environment
    tasks: dict[str, TaskResult]
    groups: dict[str, Group] = Field(default_factory=dict)

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_name(cls, value: str) -> str:
        if unsafe_name(value):
            raise ValueError("a run id names the record's file: no '/', '\\', '..' or control characters")
        return value

    @field_validator("tasks")
    @classmethod
    def _task_names_are_names(cls, value: dict[str, TaskResult]) -> dict[str, TaskResult]:
        bad = [task for task in value if unsafe_name(task)]
        if bad:
            raise ValueError(f"task {bad[0]!r} cannot name a file: no '/', '\\', '..' or control characters")
        return value

    def file_name(self) -> str:
        """`<date>-<variant name>-<run id>.json`: sorts by date, readable, unique by run id."""
        stamp = re.sub(r"[-:]", "", self.date.split("+")[0].split(".")[0]) + "Z"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.variant.name).strip("-")[:60] or "run"
        return f"{stamp}-{slug}-{self.run_id}.json"


def dumps(record: RunRecord) -> str:
    """The record as diffable JSON: indented, with each sample on a single line."""
    return _format(record.model_dump(mode="json", by_alias=True), 0) + "\n"


def parse_record(text: str, origin: str) -> RunRecord:
    """A record from its file text; a ResultsError names `origin` when it is not a valid record."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{origin}: not a valid run record (not JSON: {exc.msg})") from None
    except RecursionError:
        raise ResultsError(f"{origin}: not a valid run record (nested too deeply)") from None
    found = data.get("format") if isinstance(data, dict) else None
    if isinstance(found, int) and found not in READABLE_FORMATS:
        raise ResultsError(f"{origin}: record format {found}, this version reads formats "
                           f"{', '.join(map(str, READABLE_FORMATS))}")
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ResultsError(f"{origin}: not a valid run record ({where}: {first['msg']})") from None
    return _upgraded(record) if record.format == 1 else record


def _upgraded(record: RunRecord) -> RunRecord:
    """A format-1 record in format 2: document sets from the samples, `limited` from the run's --limit."""
    for result in record.tasks.values():
        set_coverage(result, record.harness.limit)
    record.format = FORMAT
    return record


def load_record(path: Path) -> RunRecord:
    """Read a record file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not a valid run record (not UTF-8 at byte {exc.start})") from None
    except OSError as exc:
        raise ResultsError(f"{path}: the run record cannot be read ({exc.strerror or exc})") from None
    return parse_record(text, str(path))


def _format(value: Any, depth: int, key: str | None = None) -> str:
    pad, inner = "  " * depth, "  " * (depth + 1)
    if key == "samples" and isinstance(value, list) and value:
        lines = [_compact({k: v for k, v in item.items() if v is not None}) for item in value]
        return "[\n" + ",\n".join(inner + line for line in lines) + "\n" + pad + "]"
    compact = _compact(value)
    if not isinstance(value, dict | list) or len(compact) + len(pad) <= 100 and not _nested(value):
        return compact
    if isinstance(value, list):
        return "[\n" + ",\n".join(inner + _format(v, depth + 1) for v in value) + "\n" + pad + "]"
    items = [f"{inner}{json.dumps(k)}: {_format(v, depth + 1, k)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _nested(value: dict | list) -> bool:
    children = value.values() if isinstance(value, dict) else value
    return any(isinstance(child, dict | list) and child for child in children)
