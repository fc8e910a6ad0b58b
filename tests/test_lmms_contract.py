"""lmms-eval's model contract, kept by merged_vlm: token counts and throughput filled from the generated
tokens, each process's own rank and world size, and one merge plan per run (each checkpoint opened once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The real `lmms_eval` alias, in a process that counts how often each checkpoint's safetensors index is read.
COUNTING_RUN = textwrap.dedent("""
    import collections, json, sys
    import merge_models.checkpoint as checkpoint
    opened = collections.Counter()
    index = checkpoint._index_safetensors
    def counting(files, field):
        opened[str(files[0].parent)] += 1
        return index(files, field)
    checkpoint._index_safetensors = counting
    from harness_ext.lmms_eval_cli import main
    sys.argv = ["lmms_eval", "--model", "merged_vlm", "--model_args", "recipe=tiny-world,quiet=true",
                "--tasks", "mvlm_probe_perception", "--limit", "2", "--output_path", "out", "--log_samples"]
    try:
        main()
    finally:
        print("OPENED " + json.dumps(opened))
""")


@pytest.fixture(scope="module")
def alias_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alias-run")
    env = {**os.environ, "MERGED_VLM_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "MERGED_VLM_LOCAL_RESULTS": str(folder / "records")}
    done = subprocess.run([sys.executable, "-c", COUNTING_RUN], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    opened = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("OPENED "))[7:])
    (results,) = (folder / "out").rglob("*_results.json")
    return Counter(opened), json.loads(results.read_text()), list((folder / "out").rglob("*_samples_*.jsonl"))


def test_a_lmms_eval_run_opens_each_checkpoint_index_once(alias_run):
    opened, _, _ = alias_run
    assert {Path(p).name for p in opened} == {"vlm", "base", "reasoning"}
    assert set(opened.values()) == {1}, f"checkpoint indexes read more than once: {dict(opened)}"


def test_lmms_eval_logs_throughput_and_token_counts_of_merged_vlm(alias_run):
    _, results, sample_files = alias_run
    throughput = results["throughput"]
    assert throughput["total_gen_tokens"] > 0 and throughput["avg_speed"] > 0
    samples = [json.loads(line) for f in sample_files for line in f.read_text().splitlines()]
    assert len(samples) == 2
    for sample in samples:
        (counts,) = sample["token_counts"]
        assert counts["output_tokens"] > 0 and counts["input_tokens"] > counts["output_tokens"] > 0


RANK_SCRIPT = textwrap.dedent("""
    import json
    from harness_ext.lmms_model import MergedVLMChat
    model = MergedVLMChat(recipe="tiny-world", quiet=True)
    print("RANK " + json.dumps([model.rank, model.world_size]), flush=True)
""")


def test_each_of_two_processes_reports_its_own_rank(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    # two real processes, as `accelerate launch --cpu` starts them: torchrun's ranks, ACCELERATE_USE_CPU
    env = {**os.environ, "MERGED_VLM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = sorted(tuple(json.loads(line[5:])) for line in done.stdout.splitlines() if line.startswith("RANK "))
    assert ranks == [(0, 2), (1, 2)]
