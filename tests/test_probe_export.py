"""Parquet files: `datasets` loads them with a PIL image column, and the shipped files are current."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from mvlm_tasks.probe import generate_probe, shipped_data_files, write_probe_parquet
from mvlm_tasks.probe.items import Item
from PIL import Image


def _load(path: Path, cache_dir: Path) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files={"test": str(path)}, cache_dir=str(cache_dir))["test"]


def _assert_rows_match(loaded: datasets.Dataset, items: list[Item]) -> None:
    assert len(loaded) == len(items)
    for row, item in zip(loaded, items):
        expected = item.as_row()
        image = row.pop("image")
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.tobytes() == expected.pop("image").tobytes(), item.id
        assert row == expected


def test_parquet_round_trip_gives_pil_images_and_the_same_rows(tmp_path: Path) -> None:
    paths = write_probe_parquet(tmp_path / "probe", n=24, seed=11)
    assert set(paths) == {"perception", "reasoning"}
    for split, path in paths.items():
        loaded = _load(path, tmp_path / "cache")
        assert isinstance(loaded.features["image"], datasets.Image)
        _assert_rows_match(loaded, generate_probe(split, 24, seed=11))


def test_writing_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    first = write_probe_parquet(tmp_path / "a", n=16)
    second = write_probe_parquet(tmp_path / "b", n=16)
    for split in first:
        assert first[split].read_bytes() == second[split].read_bytes()


@pytest.mark.parametrize("split", ["perception", "reasoning"])
def test_shipped_files_hold_the_default_eval_set(split: str, tmp_path: Path) -> None:
    """Fails when the generator changes without `python -m mvlm_tasks.probe` being rerun."""
    _assert_rows_match(_load(shipped_data_files()[split], tmp_path), generate_probe(split))
