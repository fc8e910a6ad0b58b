"""Sweeps on Ray workers against the single-process sweep, one run.

On the tiny world (recipes/tiny-world.yaml), one grid of `--variants` mixing weights:
  1. wall time of `merged-vlm sweep` in one process, on `--workers 2` and on `--workers 1`, each a fresh
     command with a fresh sweep folder (its start-up, model loads and Ray start included); prints the
     speed-up of 2 workers over one process (on 2 free cores expect about 1.6-1.9x) and the cost of Ray
     per variant, (1 worker - one process) / variants, which includes Ray's start and the worker's load;
  2. Ray's own costs: starting the runtime and one worker (its model loaded), once per command, and the
     round trip of each of `--jobs` empty jobs through that resident worker (pickling, dispatch, result),
     against the same calls made directly in this process.

    python benchmarks/scaleout_bench.py [--variants 6] [--limit 8] [--tasks mvlm_probe_reasoning]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny-world.yaml"


def sweep_seconds(grid: str, tasks: str, limit: int, out: Path, extra: list[str]) -> float:
    """Wall seconds of one `merged-vlm sweep` command into a fresh folder."""
    command = [sys.executable, "-m", "harness_ext.cli", "sweep", str(RECIPE), "--grid", grid, "--tasks", tasks,
               "--limit", str(limit), "--out", str(out), "--no-ingest", "--quiet", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run(command, check=False, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep {' '.join(extra) or '(one process)'} failed: {done.stderr.strip()[-2000:]}")
    return seconds


def nothing(merger) -> None:
    """An empty job: what Ray's scheduling costs with no work in it."""


def dispatch_seconds(jobs: int) -> tuple[float, float, float]:
    """Seconds to start Ray and one worker (its model loaded), per empty job through that worker, and per
    direct call in this process."""
    from harness_ext.scaleout import Job, ScaleOut, pool, run_jobs
    from merge_models.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    work = [Job(str(i), str(i), nothing) for i in range(jobs)]
    start = time.perf_counter()
    with pool(ScaleOut(workers=1), recipe, {}, log=lambda _: None) as workers:
        started = time.perf_counter() - start
        run_jobs(work[:2], workers, lambda job, value: None, log=lambda _: None, quiet=True)  # warm up
        start = time.perf_counter()
        run_jobs(work, workers, lambda job, value: None, log=lambda _: None, quiet=True)
        remote = (time.perf_counter() - start) / jobs
    start = time.perf_counter()
    for job in work:
        job.call(None)
    return started, remote, (time.perf_counter() - start) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--limit", type=int, default=8, help="documents per task and variant")
    parser.add_argument("--tasks", default="mvlm_probe_reasoning")
    parser.add_argument("--jobs", type=int, default=50, help="empty jobs for the scheduling cost")
    args = parser.parse_args()
    grid = "lambda=" + ",".join(f"{0.4 + 0.1 * i:.1f}" for i in range(args.variants))
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="scaleout-bench-") as temp:
        one = sweep_seconds(grid, args.tasks, args.limit, Path(temp) / "one", [])
        two = sweep_seconds(grid, args.tasks, args.limit, Path(temp) / "two", ["--workers", "2"])
        single = sweep_seconds(grid, args.tasks, args.limit, Path(temp) / "w1", ["--workers", "1"])
    started, remote, direct = dispatch_seconds(args.jobs)
    print(f"{args.variants}-variant tiny-world sweep, --limit {args.limit} on {args.tasks}:")
    print(f"  one process        {one:8.1f} s")
    print(f"  2 Ray workers      {two:8.1f} s   speed-up {one / two:.2f}x")
    print(f"  1 Ray worker       {single:8.1f} s   ratio to one process {single / one:.2f}x; "
          f"Ray costs {(single - one) / args.variants:+.2f} s per variant (start and load included)")
    print(f"starting Ray and one worker (model loaded): {started:.1f} s, once per command")
    print(f"scheduling an empty job: {1000 * remote:.2f} ms through a Ray worker vs {1e6 * direct:.2f} us direct "
          f"({remote / max(direct, 1e-9):.0f}x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
