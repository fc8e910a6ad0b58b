"""Loading one split of a published dataset: from the local copy under MERGED_VLM_DATA, else the Hub."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from .catalog import is_known, sources_for
from .errors import DataError, first_line
from .specs import SOURCES, Source

DATA_ENV = "MERGED_VLM_DATA"


def data_root() -> Path | None:
    """The local data folder named by MERGED_VLM_DATA, or None when the variable is unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def local_file(root: Path, source: Source, split: str) -> Path:
    """Where a split lives in the local layout: <root>/<source>/<split>.parquet."""
    return Path(root) / source.name / f"{split}.parquet"


def prepare_command(task: str, out: str = "DIR") -> str:
    """The command that writes the local copy a task (or comma-separated tasks and groups) needs."""
    return f"merged-vlm data prepare --out {out} --tasks {task}"


def _offline_fix(task: str) -> str:
    return f"run `{prepare_command(task)}` where a network is available, then set {DATA_ENV}=DIR"


def read_hub(source: Source, split: str) -> datasets.Dataset:
    """One split as published on the Hugging Face Hub (downloads on first use, then the HF cache)."""
    return datasets.load_dataset(source.hub_id, source.config, split=split)


def check_columns(dataset: datasets.Dataset, source: Source, where: str, fix: str) -> datasets.Dataset:
    """`dataset`, after checking that it has every column of the published schema."""
    missing = [column for column in source.columns if column not in dataset.column_names]
    if missing:
        raise DataError(f"{where} lacks the published column(s) {missing} of {source.hub_id}; {fix}")
    return dataset


def load_split(source_name: str, split: str, task: str) -> datasets.Dataset:
    """Split `split` of Source `source_name`, for lmms-eval task `task` (named in error messages).

    With MERGED_VLM_DATA set, reads <MERGED_VLM_DATA>/<source>/<split>.parquet and nothing else;
    otherwise loads the split from the Hugging Face Hub (or its local cache).
    """
    source = SOURCES[source_name]
    root = data_root()
    if root is not None:
        path = local_file(root, source, split)
        fix = f"run `{prepare_command(task, str(root))}`"
        if not path.is_file():
            raise DataError(f"{task}: {DATA_ENV}={root} has no {source.name}/{split}.parquet; {fix}")
        return check_columns(datasets.Dataset.from_parquet(str(path)), source, str(path), fix)
    try:
        dataset = read_hub(source, split)
    except Exception as exc:  # offline, unreachable, or not cached: all mean "prepare a local copy"
        raise DataError(
            f"{task}: {DATA_ENV} is not set and {source.hub_id} ({split}) could not be loaded from the "
            f"Hugging Face Hub ({first_line(exc)}); {_offline_fix(task)}"
        ) from exc
    return check_columns(dataset, source, f"{source.hub_id} ({split})", "the published schema has changed")


def check_available(names: list[str], offline: bool) -> None:
    """Raise DataError when the data of this project's tasks among `names` (tasks or groups) cannot be read.

    Checked before an evaluation starts, so that a run that would fail says why at once: with
    MERGED_VLM_DATA set, every split file must be there; without it and with the Hub offline, every
    dataset must be in the local Hugging Face cache. Online, the Hub is left to the run itself.
    """
    known = [name for name in names if is_known(name)]
    sources = [SOURCES[name] for name in sources_for(known)]
    wanted = ",".join(known)
    root = data_root()
    if root is not None:
        missing = [f"{s.name}/{split}.parquet" for s in sources for split in s.splits
                   if not local_file(root, s, split).is_file()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DataError(f"{wanted}: {DATA_ENV}={root} has no {', '.join(missing[:3])}{more}; "
                            f"run `{prepare_command(wanted, str(root))}`")
        return
    if offline:
        missing = [s.hub_id for s in sources if not _in_hub_cache(s)]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise DataError(f"{wanted}: {DATA_ENV} is not set, the Hugging Face Hub is offline and "
                            f"{', '.join(missing)} {verb} not in its local cache; {_offline_fix(wanted)}")


def _in_hub_cache(source: Source) -> bool:
    """Whether every split of `source` loads from the local Hugging Face cache (call in offline mode)."""
    try:
        for split in source.splits:
            read_hub(source, split)
    except Exception:  # noqa: BLE001 -- not cached, or cached in part: either way the run could not read it
        return False
    return True
