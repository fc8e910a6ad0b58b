"""Which lmms-eval outputs are finished runs.

lmms-eval writes `<stamp>_results.json` first and the per-sample logs after it, so an interrupt or a
full disk in between leaves a results file that looks like a run. This project's entry points (the
`lmms_eval` alias, `demo`, `sweep`) write `<stamp>_results.json.complete` once the sample logs are
written; the alias removes the files of a run that failed. Ingest refuses a run that has neither the
marker nor sample logs, and skips a sweep's `.partial-*` folders (a variant being evaluated).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness_ext.results.files import write_atomic

MARKER_SUFFIX = ".complete"
PARTIAL_PREFIX = ".partial-"
_LMMS_RESULTS = re.compile(r"(.+)_results\.json$")


def marker(results_file: Path) -> Path:
    """The completion marker of a results file."""
    return results_file.with_name(results_file.name + MARKER_SUFFIX)


def mark_complete(results_file: Path) -> None:
    """Mark a run finished: its results and every sample log are written."""
    write_atomic(marker(results_file), "finished: results and sample logs written\n")


def in_partial_folder(path: Path, root: Path) -> bool:
    """Whether `path` lies in a sweep's `.partial-*` folder under `root`."""
    return any(part.startswith(PARTIAL_PREFIX) for part in path.relative_to(root).parts[:-1])


def results_files(output_path: Path | None) -> set[Path]:
    """The lmms-eval results files under an --output_path folder."""
    if output_path is None or not output_path.is_dir():
        return set()
    return {p for p in output_path.rglob("*_results.json") if _LMMS_RESULTS.match(p.name)}


def mark_finished(output_path: Path | None, before: set[Path]) -> None:
    """Mark every results file written under `output_path` since `before` (its results files then) finished."""
    for results_file in results_files(output_path) - before:
        mark_complete(results_file)


def remove_unfinished(output_path: Path | None, before: set[Path], existed: bool) -> None:
    """Remove what a failed run wrote: its results files, sample logs, and folders left empty (`output_path`
    too when it did not exist before the run)."""
    if output_path is None:
        return
    for results_file in results_files(output_path) - before:
        stamp = _LMMS_RESULTS.match(results_file.name).group(1)
        for path in [results_file, marker(results_file), *results_file.parent.glob(f"{stamp}_samples_*.jsonl")]:
            path.unlink(missing_ok=True)
        if results_file.parent != output_path and not any(results_file.parent.iterdir()):
            results_file.parent.rmdir()
    if not existed and output_path.is_dir() and not any(output_path.iterdir()):
        output_path.rmdir()
