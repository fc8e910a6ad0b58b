"""`merged-vlm data prepare`: download published datasets and write them in the local layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
from datasets.table import embed_table_storage

from .errors import DataError, first_line
from .load import check_columns, local_file, read_hub
from .specs import SOURCES


def prepare(out: Path, source_names: Iterable[str], force: bool = False,
            report: Callable[[str], None] = print) -> list[Path]:
    """Write <out>/<source>/<split>.parquet for every split of the named Sources; returns the files.

    Files that exist are kept unless `force`. Each file is written to a temporary name first, so an
    interrupted download never leaves a truncated file behind.
    """
    written = []
    for name in source_names:
        source = SOURCES[name]
        for split in source.splits:
            path = local_file(out, source, split)
            if path.is_file() and not force:
                report(f"kept {path} (exists; pass --force to download again)")
                written.append(path)
                continue
            try:
                dataset = read_hub(source, split)
            except Exception as exc:
                raise DataError(f"could not download {source.hub_id} ({split}): {first_line(exc)}") from exc
            check_columns(dataset, source, f"{source.hub_id} ({split})", "the published schema has changed")
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            _embedded(dataset).to_parquet(str(partial))
            os.replace(partial, path)
            report(f"wrote {path} ({len(dataset)} rows)")
            written.append(path)
    return written


def _embedded(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with the image files it references stored inline, so that the parquet file stands alone."""
    shown = dataset.format
    inline = dataset.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
    return inline.with_format(**shown)
