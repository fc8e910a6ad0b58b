"""Benchmark data: published specs, shipped fixtures, the MERGED_VLM_DATA switch, `merged-vlm data prepare`.

The Hub is out of reach here: `datasets.load_dataset` is replaced by a stand-in that serves the
fixture rows (published schema) for exactly the ids, configs and splits the specs name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import datasets
import pytest
import typer
import yaml
from mvlm_tasks.fixtures import FIXTURE_DIR, fixture_split, write_fixtures
from mvlm_tasks.sources import (
    DATA_ENV,
    GROUPS,
    PROBE_TASKS,
    REAL_TASKS,
    SOURCES,
    DataError,
    leaf_tasks,
    load_split,
    local_file,
    sources_for,
)
from PIL import Image
from typer.testing import CliRunner

from harness_ext.commands import data as data_commands

SUITE = Path(__file__).resolve().parents[1] / "tasks" / "suite"
HUB = {(s.hub_id, s.config, split): s.name for s in SOURCES.values() for split in s.splits}


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads task YAMLs, keeping `!function x.y` as the string "x.y"."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _suite_yamls() -> dict[str, dict]:
    return {path.name: yaml.load(path.read_text(), Loader=_TaskYamlLoader) for path in SUITE.glob("*.yaml")}


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Serve fixture rows in place of the Hub; returns the (path, name, split) of every call."""
    calls: list[tuple] = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if (path, name, split) not in HUB:
            raise FileNotFoundError(f"no dataset {path!r} with config {name!r} and split {split!r} on this stand-in hub")
        return fixture_split(HUB[path, name, split], split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(path, name=None, split=None, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def _run_data_cli(*args: str):
    app = typer.Typer()
    data_commands.register(app)
    return CliRunner().invoke(app, ["data", *args])


# --- the task catalog mirrors the YAMLs -----------------------------------------------------------

def test_catalog_matches_the_task_and_group_yamls():
    configs = _suite_yamls()
    tasks = {c["task"] for c in configs.values() if isinstance(c.get("task"), str)}
    groups = {c["group"]: tuple(c["task"]) for c in configs.values() if "group" in c}
    assert tasks == set(REAL_TASKS) | set(PROBE_TASKS)
    assert groups == GROUPS
    assert all(name.startswith("mvlm_") for name in tasks | set(groups))


def test_every_function_named_in_a_yaml_exists():
    def functions(value):
        if isinstance(value, dict):
            return [f for v in value.values() for f in functions(v)]
        if isinstance(value, list):
            return [f for v in value for f in functions(v)]
        return [value] if isinstance(value, str) and value.startswith("mvlm_tasks.") else []

    targets = {name for config in _suite_yamls().values() for name in functions(config)}
    assert len(targets) > 20
    for target in targets:
        module, _, attribute = target.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), target


def test_groups_expand_to_tasks_and_sources():
    assert leaf_tasks("mvlm_all") == [*GROUPS["mvlm_perception"], *GROUPS["mvlm_reasoning"]]
    assert sources_for(["mvlm_perception"]) == ["ocrbench", "mmstar", "mathvista"]
    assert sources_for(["mvlm_probe", "mvlm_mathvista_math", "mvlm_mathvista_general"]) == ["mathvista"]
    with pytest.raises(DataError, match="unknown task or group 'mathvista'"):
        leaf_tasks("mathvista")


# --- fixtures --------------------------------------------------------------------------------------

def _comparable(row: dict) -> dict:
    """A row with its images as (size, pixels): PNG bytes may differ between zlib builds."""
    return {k: (v.size, v.convert("RGB").tobytes()) if isinstance(v, Image.Image) else v for k, v in row.items()}


def test_shipped_fixtures_have_the_published_schemas_and_regenerate_identically(tmp_path: Path):
    write_fixtures(tmp_path)
    for source in SOURCES.values():
        for split in source.splits:
            shipped = datasets.Dataset.from_parquet(str(local_file(FIXTURE_DIR, source, split)))
            fresh = datasets.Dataset.from_parquet(str(local_file(tmp_path, source, split)))
            assert shipped.features == source.features, (source.name, split)
            assert 3 <= len(shipped) <= 12
            assert list(map(_comparable, shipped)) == list(map(_comparable, fresh)), (source.name, split)


def test_fixture_dynamath_variants_share_their_seed_ids():
    variants = [fixture_split("dynamath", split) for split in SOURCES["dynamath"].splits]
    assert all(v["id"] == variants[0]["id"] for v in variants)
    assert len({v["ground_truth"][0] for v in variants}) > 1  # the numbers change between variants


# --- loading: MERGED_VLM_DATA, else the Hub --------------------------------------------------------

def test_merged_vlm_data_reads_the_local_layout(monkeypatch: pytest.MonkeyPatch, offline_hub):
    monkeypatch.setenv(DATA_ENV, str(FIXTURE_DIR))
    split = load_split("mathverse", "testmini", "mvlm_mathverse")
    assert split.features == SOURCES["mathverse"].features
    assert len(split) == 10


def test_missing_local_file_names_the_prepare_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError) as caught:
        load_split("mathvision", "testmini", "mvlm_mathvision")
    message = str(caught.value)
    assert f"run `merged-vlm data prepare --out {tmp_path} --tasks mvlm_mathvision`" in message
    assert "\n" not in message


def test_local_file_without_the_published_columns_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    path = local_file(tmp_path, SOURCES["ocrbench"], "test")
    path.parent.mkdir(parents=True)
    fixture_split("ocrbench", "test").remove_columns(["question_type"]).to_parquet(str(path))
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"lacks the published column\(s\) \['question_type'\]"):
        load_split("ocrbench", "test", "mvlm_ocrbench")


def test_without_merged_vlm_data_the_hub_is_used(monkeypatch: pytest.MonkeyPatch, fake_hub):
    monkeypatch.delenv(DATA_ENV, raising=False)
    split = load_split("mathverse", "testmini", "mvlm_mathverse")
    assert fake_hub == [("AI4Math/MathVerse", "testmini", "testmini")]
    assert split.features == SOURCES["mathverse"].features


def test_no_data_and_no_network_names_the_prepare_command(monkeypatch: pytest.MonkeyPatch, offline_hub):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError) as caught:
        load_split("dynamath", "sample_variant3", "mvlm_dynamath")
    message = str(caught.value)
    assert message.startswith("mvlm_dynamath: MERGED_VLM_DATA is not set and DynaMath/DynaMath_Sample")
    assert "run `merged-vlm data prepare --out DIR --tasks mvlm_dynamath`" in message
    assert "\n" not in message


# --- merged-vlm data prepare -----------------------------------------------------------------------

def test_prepare_downloads_every_split_into_the_layout_the_tasks_read(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_hub):
    out = tmp_path / "data"
    result = _run_data_cli("prepare", "--out", str(out), "--tasks", "mvlm_mathvision,mvlm_dynamath")
    assert result.exit_code == 0, result.output
    assert sorted(call[0] for call in fake_hub) == ["DynaMath/DynaMath_Sample"] * 10 + ["MathLLMs/MathVision"]
    assert {call[2] for call in fake_hub} == {"testmini", *SOURCES["dynamath"].splits}
    assert f"export {DATA_ENV}={out.resolve()}" in result.output
    monkeypatch.setenv(DATA_ENV, str(out))
    for split in SOURCES["dynamath"].splits:
        assert load_split("dynamath", split, "mvlm_dynamath").features == SOURCES["dynamath"].features
    assert len(load_split("mathvision", "testmini", "mvlm_mathvision")) == 6
    assert not list(out.rglob("*.partial"))


def test_mathvision_test_split_is_downloaded_only_for_its_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 fake_hub):
    assert _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_mathvision_cot").exit_code == 0
    assert fake_hub == [("MathLLMs/MathVision", None, "testmini")]
    assert _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_mathvision_test").exit_code == 0
    assert fake_hub[1:] == [("MathLLMs/MathVision", None, "test")]
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert len(load_split("mathvision_test", "test", "mvlm_mathvision_test")) == 3


def test_prepare_stores_images_inline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    picture = tmp_path / "word.png"
    Image.new("RGB", (24, 12), (200, 30, 30)).save(picture)
    rows = fixture_split("ocrbench", "test").remove_columns(["image"]).select(range(2))
    by_path = rows.add_column("image", [str(picture)] * 2).cast_column("image", datasets.Image())
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, split=None, **kwargs: by_path)
    assert _run_data_cli("prepare", "--out", str(tmp_path / "data"), "--tasks", "mvlm_ocrbench").exit_code == 0
    picture.unlink()
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    image = load_split("ocrbench", "test", "mvlm_ocrbench")[1]["image"]
    assert image.size == (24, 12) and image.getpixel((0, 0)) == (200, 30, 30)


def test_prepare_keeps_existing_files_unless_forced(tmp_path: Path, fake_hub):
    assert _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_ocrbench").exit_code == 0
    again = _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_ocrbench")
    assert "kept" in again.output and len(fake_hub) == 1
    forced = _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_ocrbench", "--force")
    assert "wrote" in forced.output and len(fake_hub) == 2


def test_prepare_defaults_to_every_real_task(tmp_path: Path, fake_hub):
    assert _run_data_cli("prepare", "--out", str(tmp_path)).exit_code == 0
    assert {call[0] for call in fake_hub} == {source.hub_id for source in SOURCES.values()}


def test_prepare_reports_user_errors_as_data_errors(tmp_path: Path, offline_hub):
    unknown = _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mmstar")
    assert isinstance(unknown.exception, DataError)
    offline = _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_mmstar_reasoning")
    assert isinstance(offline.exception, DataError)
    assert str(offline.exception).startswith("could not download Lin-Chen/MMStar (val): ConnectionError")
    assert not (tmp_path / "mmstar").exists()
    probe_only = _run_data_cli("prepare", "--out", str(tmp_path), "--tasks", "mvlm_probe")
    assert probe_only.exit_code == 0 and "nothing to prepare" in probe_only.output
