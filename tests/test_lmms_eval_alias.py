"""The `lmms_eval` alias: a run that cannot work says why in one line, exits non-zero and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mvlm_tasks.sources import DATA_ENV, SOURCES, DataError, check_available, local_file

BIN = Path(sys.executable).parent
OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, *OFFLINE)}
    return {**env, "HF_HOME": str(tmp_path / "hf"), **extra}


def _lmms_eval(tmp_path: Path, env: dict[str, str], tasks: str, *extra: str) -> subprocess.CompletedProcess:
    command = [str(BIN / "lmms_eval"), "--model", "merged_vlm", "--model_args", "recipe=tiny-world",
               "--tasks", tasks, "--limit", "2", "--output_path", str(tmp_path / "out"), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def test_offline_run_without_data_fails_before_lmms_eval_starts(tmp_path):
    """The issue's run: offline, no MERGED_VLM_DATA, a real group. One line naming the prepare command,
    status 2, lmms-eval never started (so no Hub retries) and no output folder."""
    result = _lmms_eval(tmp_path, _env(tmp_path, HF_HUB_OFFLINE="1"), "mvlm_perception")
    line = _one_error_line(result)
    assert result.returncode == 2
    assert "run `merged-vlm data prepare --out DIR --tasks mvlm_perception`" in line, line
    assert result.stdout == "", "lmms-eval started"
    assert not (tmp_path / "out").exists()


def test_hub_that_does_not_answer_counts_as_offline(tmp_path):
    """No offline variable set, but the Hub does not answer (a closed local port stands in for it): the same
    one-line failure instead of a minute of retries."""
    env = _env(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    result = _lmms_eval(tmp_path, env, "mvlm_ocrbench,mvlm_probe")
    line = _one_error_line(result)
    assert result.returncode == 2 and "echo840/OCRBench" in line and "Hub is offline" in line, line
    assert "merged-vlm data prepare --out DIR --tasks mvlm_ocrbench,mvlm_probe" in line
    assert result.stdout == "" and not (tmp_path / "out").exists()


def test_model_that_cannot_be_built_and_evaluation_that_raises_exit_non_zero(tmp_path):
    env = _env(tmp_path, HF_HUB_OFFLINE="1")
    runs = {}
    for name, args in (("build", ["--model_args", "recipe=tiny-world,attn_implementation=no_such_kernel"]),
                       ("evaluate", ["--gen_kwargs", "max_new_tokens=abc"]),
                       ("device", ["--model_args", "recipe=tiny-world,device=nodevice"])):
        folder = tmp_path / name
        folder.mkdir()
        command = [str(BIN / "lmms_eval"), "--model", "merged_vlm", "--model_args", "recipe=tiny-world",
                   "--tasks", "mvlm_probe_perception", "--limit", "1", "--output_path", str(folder / "out"),
                   *args]
        runs[name] = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    for name, expected in (("build", "error: merged_vlm could not be built: ValueError: "),
                           ("evaluate", "error: the evaluation failed: ValueError: ")):
        out, err = runs[name].communicate(timeout=600)
        last = err.strip().splitlines()[-1]
        assert runs[name].returncode == 1, err[-3000:]
        assert last.startswith(expected) and last.endswith("rerun with --verbosity DEBUG for the traceback")
        assert "Traceback" not in out + err
        assert not (tmp_path / name / "out").exists()
    out, err = runs["device"].communicate(timeout=600)  # a device that does not exist is the user's to fix
    assert runs["device"].returncode == 2, err[-3000:]
    assert err.strip().splitlines()[-1] == ("error: --model_args: device 'nodevice' is not a device; "
                                            "use cpu, cuda, cuda:N")
    assert "Traceback" not in out + err and not (tmp_path / "device" / "out").exists()


def _write_split(root: Path, source: str, split: str) -> None:
    path = local_file(root, SOURCES[source], split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.mark.parametrize("group,present,missing", [
    ("mvlm_perception", ["ocrbench"], ["mmstar/val.parquet", "mathvista/testmini.parquet"]),
    ("mvlm_reasoning", ["mathvista", "mmstar"], ["mathvision/", "mathverse/", "dynamath/"]),
    ("mvlm_all", ["ocrbench", "mmstar", "mathvista", "mathvision", "mathverse"],
     ["dynamath/sample_variant1"]),
])
def test_groups_resolve_to_their_members_data(tmp_path, monkeypatch, group, present, missing):
    for source in present:
        for split in SOURCES[source].splits:
            _write_split(tmp_path, source, split)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError) as caught:
        check_available([group], offline=True)
    message = str(caught.value)
    assert all(part in message for part in missing), message
    assert not any(f" {source}/" in message for source in present), message
    assert f"run `merged-vlm data prepare --out {tmp_path} --tasks {group}`" in message


def test_check_passes_when_the_local_copy_is_complete_or_no_task_needs_data(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    for split in SOURCES["ocrbench"].splits:
        _write_split(tmp_path, "ocrbench", split)
    check_available(["mvlm_ocrbench", "mvlm_probe", "some_lmms_eval_task"], offline=True)
    monkeypatch.delenv(DATA_ENV)
    check_available(["mvlm_probe", "some_lmms_eval_task"], offline=True)
