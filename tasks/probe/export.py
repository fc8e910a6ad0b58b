"""Writing probe items as parquet files that `datasets` (and so lmms-eval) loads with a PIL image column."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import datasets
from PIL import Image

from .generate import DEFAULT_N, EVAL_SEED, generate_probe
from .items import SPLITS, Item

DATA_DIR = Path(__file__).parent  # pyproject package-data ships *.parquet from package folders

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "category": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "answer_type": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")),
        "image": datasets.Image(),
        "text_question": datasets.Value("string"),
    }
)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of `image`, with no metadata chunks (same pixels and same zlib build -> same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def items_to_dataset(items: Sequence[Item]) -> datasets.Dataset:
    """An in-memory dataset of `items` with the image stored as the `datasets` Image feature."""
    columns: dict[str, list[object]] = {name: [] for name in FEATURES}
    for item in items:
        row = item.as_row()
        row["image"] = {"bytes": encode_png(item.image), "path": None}
        for name in FEATURES:
            columns[name].append(row[name])
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def write_probe_parquet(out_dir: str | Path, n: int = DEFAULT_N, seed: int = EVAL_SEED) -> dict[str, Path]:
    """Write `<split>.parquet` for both splits into `out_dir`; returns {split: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = out / f"{split}.parquet"
        items_to_dataset(generate_probe(split, n, seed)).to_parquet(str(paths[split]))
    return paths


def shipped_data_files() -> dict[str, Path]:
    """{split: path} of the evaluation set shipped with the package (default size and seed)."""
    return {split: DATA_DIR / f"{split}.parquet" for split in SPLITS}
