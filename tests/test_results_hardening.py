"""The results store against careless or hostile content: record names that would escape a folder,
unreadable or duplicate record files, a damaged index, and SQL that would write or run forever."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness_ext.results.errors import ResultsError
from harness_ext.results.query import run_query
from harness_ext.results.record import load_record, parse_record
from harness_ext.results.store import Store

COMMITTED = Path(__file__).resolve().parent.parent / "results" / "runs"
VLM_ALONE, MERGED = "c51b0bc105c2", "e9396d83d6dd"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding two of the committed runs (the intact VLM and the default merge)."""
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    for run in (VLM_ALONE, MERGED):
        shutil.copy(next(COMMITTED.glob(f"*-{run}.json")), runs)
    return tmp_path / "results"


def _record_text(store: Path, run: str) -> str:
    return next((store / "runs").glob(f"*-{run}.json")).read_text(encoding="utf-8")


def _plant(store: Path, name: str, edit) -> Path:
    """A copy of the merged run under another run id (so it is a distinct run), edited by `edit`."""
    data = json.loads(_record_text(store, MERGED))
    data["run_id"] = "0123456789ab"
    edit(data)
    path = store / "runs" / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("task", ["../../../escaped", "/tmp/abs", "a\\b", "..", "x\x00y"])
def test_a_task_name_that_is_no_file_name_makes_the_record_invalid(store: Path, task: str) -> None:
    data = json.loads(_record_text(store, MERGED))
    data["tasks"][task] = data["tasks"].pop("mvlm_probe_reasoning")
    with pytest.raises(ResultsError, match="cannot name a file"):
        parse_record(json.dumps(data), "planted.json")


def test_a_run_id_that_is_no_file_name_makes_the_record_invalid(store: Path) -> None:
    data = json.loads(_record_text(store, MERGED))
    data["run_id"] = "../../x"
    with pytest.raises(ResultsError, match="run_id"):
        parse_record(json.dumps(data), "planted.json")


def test_submit_writes_nothing_outside_its_folder(store: Path, run_cli, tmp_path: Path) -> None:
    def escape(data: dict) -> None:
        data["variant"]["name"] = "planted"
        data["tasks"]["../../../escaped"] = data["tasks"].pop("mvlm_probe_reasoning")

    _plant(store, "20261201T030000Z-planted-0123456789ab.json", escape)
    out = tmp_path / "a" / "b" / "c" / "bundle"
    code, _, err = run_cli("submit", "0123456789ab", "--out", out, "--store", store)
    assert code == 2
    assert not list(tmp_path.rglob("escaped*")) and not out.exists()
    assert "0123456789ab" in err or "planted" in err


def test_submit_refuses_a_task_name_that_is_no_file_name(tmp_path: Path) -> None:
    from harness_ext.results import submit
    from harness_ext.results.selection import Evaluation

    evaluation = Evaluation.__new__(Evaluation)
    object.__setattr__(evaluation, "tasks", {"../../../escaped": None})
    with pytest.raises(ResultsError, match="task '../../../escaped' cannot name a file"):
        submit.write_bundle(evaluation, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.parent.rglob("escaped*"))


def test_views_name_an_unreadable_record_and_go_on(store: Path, run_cli) -> None:
    bad = store / "runs" / "20261201T030000Z-bad-0123456789ab.json"
    bad.write_bytes(b'{"run_id": "\xff\xfe"}')
    truncated = _plant(store, "20261201T030001Z-cut-0123456789ac.json", lambda data: None)
    truncated.write_text(truncated.read_text()[:500])
    for command in (["track", "list"], ["leaderboard"], ["compare", VLM_ALONE, MERGED]):
        code, _out, err = run_cli(*command, "--store", store)
        assert code == 0, (command, err)
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        assert any(bad.name in line and "UTF-8" in line for line in warnings), err
        assert any(truncated.name in line for line in warnings), err
        assert "Traceback" not in err
    assert MERGED in run_cli("track", "list", "--store", store, columns=400)[1]


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000, b"[1, 2]", b'{"run_id": 3}'])
def test_any_undecodable_record_is_a_one_line_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "20261201T030000Z-x-0123456789ab.json"
    path.write_bytes(content)
    with pytest.raises(ResultsError, match=f"{path.name}: not a valid run record"):
        load_record(path)


def test_regress_refuses_an_unreadable_record_naming_it(store: Path, run_cli) -> None:
    bad = store / "runs" / "20261201T030000Z-bad-0123456789ab.json"
    bad.write_bytes(b"\xff\xfe not json")
    code, _, err = run_cli("regress", "--baseline", VLM_ALONE, "--candidate", MERGED, "--store", store)
    assert code == 2 and bad.name in err and "UTF-8" in err


def test_a_damaged_index_is_rebuilt_with_one_warning(store: Path, run_cli) -> None:
    assert run_cli("track", "list", "--store", store)[0] == 0
    (store / ".index.sqlite").write_bytes(b"garbage" * 1000)
    for command in (["track", "list"], ["leaderboard"], ["track", "query", "SELECT COUNT(*) FROM runs"]):
        code, out, err = run_cli(*command, "--store", store)
        assert code == 0, (command, err)
    code, out, err = run_cli("track", "query", "SELECT run_id FROM runs ORDER BY run_id", "--store", store)
    assert code == 0 and MERGED in out and VLM_ALONE in out
    (store / ".index.sqlite").write_bytes(b"garbage" * 1000)
    code, _, err = run_cli("track", "list", "--store", store)
    assert code == 0 and [line for line in err.splitlines() if line.strip()] == [
        f"warning: {store / '.index.sqlite'}: index unreadable (file is not a database); rebuilt from the record files"]


def test_a_record_in_two_files_is_named_and_the_rest_still_works(store: Path, run_cli) -> None:
    original = next((store / "runs").glob(f"*-{MERGED}.json"))
    copy = store / "runs" / "20261201T030000Z-copy-0123456789ab.json"  # same record, another file name
    copy.write_text(original.read_text())
    code, out, err = run_cli("track", "list", "--store", store, columns=400)
    assert code == 0, err
    assert f"run {MERGED} is recorded twice" in err and original.name in err and copy.name in err
    assert VLM_ALONE in out and MERGED in out
    assert run_cli("leaderboard", "--store", store)[0] == 0


def test_query_cannot_attach_or_write_files(store: Path, run_cli, tmp_path: Path) -> None:
    for sql in (f"ATTACH '{tmp_path / 'a.db'}' AS x", f"VACUUM INTO '{tmp_path / 'v.db'}'",
                "DELETE FROM runs", "CREATE TABLE t (a)", "PRAGMA journal_mode = WAL"):
        code, _, err = run_cli("track", "query", sql, "--store", store)
        assert code == 2 and "query:" in err, (sql, err)
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "v.db").exists()
    code, out, _ = run_cli("track", "query", "SELECT COUNT(*) AS n FROM runs", "--store", store)
    assert code == 0 and "2" in out


def test_query_stops_at_its_time_limit(store: Path, run_cli) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    code, _, err = run_cli("track", "query", endless, "--timeout", "0.5", "--store", store)
    assert code == 2 and "stopped after 0.5 s (--timeout)" in err


def test_query_runs_on_an_index_file_read_only(store: Path) -> None:
    Store(store).index().close()
    index = store / ".index.sqlite"
    before = index.read_bytes()
    with pytest.raises(ResultsError, match="only reading"):
        run_query(index, "INSERT INTO files VALUES ('x')")
    assert index.read_bytes() == before
    assert load_record(next((store / "runs").glob(f"*-{MERGED}.json"))).run_id == MERGED
