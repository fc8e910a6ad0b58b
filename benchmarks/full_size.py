"""Full-size rehearsal of the shipped paper recipes on real-size stand-ins (benchmarks/standins.py).

For each recipe, on its trio of stand-ins (written first, deleted after the trio's recipes ran):
  1. `merged-vlm validate` and `plan`, checking the plan warns as the real pair makes it warn;
  2. `merged-vlm merge --out`, and the read+write floor of the same inputs (every input tensor
     read, the VLM's tensors written in the output dtype, tensor by tensor) in the same run;
  3. the load-time path in lmms-eval's model class: `cache=false` (merged in memory as
     transformers loads) and `cache=true` (merged into the cache, then loaded), both with
     `device_map=auto` and `max_memory` (--max-memory);
  4. one lmms-eval document end to end (`--limit 1`, the probe's synthetic image, 4 new tokens).
Every step is its own process: wall time and peak RSS (os.wait4) per step; a table at the end. The
inputs' pages are evicted from the page cache before the floor and before the merge, so both read
from the disk (the floor otherwise depends on what ran before it: 36.7 s and 60.5 s were seen for the
same DARE floor).

    python benchmarks/full_size.py --work DIR                      # every recipe, full depth
    python benchmarks/full_size.py --work DIR --recipe qwen2vl-qwen2math-linear --layers 14
    python benchmarks/full_size.py --work DIR --scaling 4,7,14,28  # merge time and RSS against depth

DIR needs room for one trio plus one merged model (about 64 GB for the Qwen trio at full depth); the
script refuses to start a trio that would leave less than --keep-free GB free.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import standins

RECIPES = {
    "qwen2vl-qwen2math-linear": "qwen2vl",
    "qwen2vl-qwen2math-dare": "qwen2vl",
    "llavanext-dartmath-linear": "llavanext",
    "llavanext-dartmath-ties": "llavanext",
    "llavanext-dartmath-layerswap": "llavanext",
    "idefics2-mammoth-linear": "idefics2",
}
# what the plan must say for each real pair (stderr or stdout of `merged-vlm plan`)
EXPECTED_WARNINGS = {
    "qwen2vl": ["rope_theta 10000 vs 1e+06", "11 token rows differ at the same index (151646-151656)"],
    "llavanext": ["128256 none vs '<image>'"],
    "idefics2": ["32000 '[PAD]' vs '<fake_token_around_image>'"],
}
GIB = 2**30


@dataclass
class Step:
    recipe: str
    step: str
    seconds: float
    peak_rss: int  # bytes
    ok: bool
    note: str = ""


def measure(command: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Run `command` (output to `log`); wall seconds, peak RSS in bytes (its own or a waited child's), exit status."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def evict_page_cache(folders: list[Path]) -> None:
    """Drop the clean cached pages of every file in `folders` (posix_fadvise DONTNEED; no privileges needed),
    so the next step reads them from the disk whatever ran before it."""
    os.sync()
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def local_recipe(name: str, dirs: dict[str, Path], work: Path) -> Path:
    """The shipped recipe with its checkpoints pointed at the stand-ins."""
    recipe = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
    recipe["vlm"]["model"] = str(dirs["vlm"])
    recipe["sources"][0]["model"] = str(dirs["source"])
    if "base" in recipe:
        recipe["base"] = str(dirs["base"])
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def trio_bytes(trio: str, layers: int | None, roles: set[str]) -> tuple[int, int]:
    """(bytes of the trio's checkpoints, bytes of one merged output) at `layers`."""
    total, vlm = 0, 0
    for role, _, standin in standins.TRIOS[trio]:
        if role not in roles:
            continue
        config = standins.published_config(standin, layers)
        count = sum(torch_numel(shape) for _, shape in standins.model_tensors(standin, config))
        size = count * {"bfloat16": 2, "float16": 2, "float32": 4}[standin.config["torch_dtype"]]
        total += size
        vlm = count * 2 if role == "vlm" else vlm  # every recipe's output is 16-bit
    return total, vlm


def torch_numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def floor(recipe_path: Path, out: Path) -> None:
    """Read every tensor of every input, write the VLM's tensors in the recipe's dtype, tensor by tensor."""
    import torch

    from merge_models.plan import build_plan
    from merge_models.recipe import parse_recipe
    from merge_models.safetensors_writer import ShardWriter, tensor_bytes

    plan = build_plan(parse_recipe(yaml.safe_load(recipe_path.read_text())))
    dtype = plan.out_dtype
    out.mkdir(parents=True, exist_ok=True)
    others = [c for c in (plan.base, *plan.sources) if c is not None]
    for checkpoint in others:
        for file in checkpoint.pickle_files or sorted(checkpoint.path.glob("*.safetensors")):
            if file.suffix == ".bin":
                for tensor in torch.load(file, weights_only=True, mmap=True).values():
                    float(tensor.reshape(-1)[::2048].float().sum())  # every page read
            else:
                _read_all(file)
    for file in sorted(plan.vlm.path.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            names = list(handle.keys())
            shapes = {n: tuple(handle.get_slice(n).get_shape()) for n in names}
            writer = ShardWriter(out / file.name, [(n, dtype, shapes[n]) for n in names])
            for name in names:
                writer.write(name, tensor_bytes(handle.get_tensor(name).to(dtype)))
            writer.close()


def _read_all(file: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
            handle.get_tensor(name)


LOAD = """
import json, sys, time
from harness_ext.lmms_model import MergedVLMChat
start = time.perf_counter()
model = MergedVLMChat(recipe=sys.argv[1], cache=sys.argv[2] == "true", quiet=True, device_map="auto",
                      max_memory=json.loads(sys.argv[3]))
placed = sorted({str(p.device) for p in model.loaded.model.parameters()})
print("devices", placed, "stats", model.loaded.stats, "seconds", round(time.perf_counter() - start, 1))
"""


def run_recipe(name: str, dirs: dict[str, Path], work: Path, args: argparse.Namespace) -> list[Step]:
    """Steps 1-4 for one recipe; returns their measurements."""
    recipe = local_recipe(name, dirs, work)
    env = {**os.environ, "MERGED_VLM_CACHE": str(work / "cache")}
    steps: list[Step] = []
    python = sys.executable
    cli = (
        [python, "-m", "harness_ext.cli"] if not shutil.which("merged-vlm") else [shutil.which("merged-vlm")]
    )

    def step(label: str, command: list[str], check=None) -> Step:
        log = work / f"{name}-{label}.log"
        seconds, rss, code = measure(command, log, env)
        text = log.read_text(errors="replace")
        ok, note = (
            code == 0,
            ""
            if code == 0
            else f"exit {code}: {text.strip().splitlines()[-1][:160] if text.strip() else ''}",
        )
        if ok and check is not None:
            ok, note = check(text)
        result = Step(name, label, seconds, rss, ok, note)
        steps.append(result)
        print(
            f"  {name:30s} {label:18s} {seconds:8.1f} s  {rss / GIB:6.2f} GiB  {'ok' if ok else 'FAIL'} {note}",
            flush=True,
        )
        return result

    trio = RECIPES[name]

    def warnings(text: str) -> tuple[bool, str]:
        wanted = EXPECTED_WARNINGS.get(trio, [])
        missing = [w for w in wanted if w not in text]
        return not missing, f"plan warnings missing {missing}" if missing else "expected warnings present"

    step("validate", cli + ["validate", str(recipe)])
    step("plan", cli + ["plan", str(recipe)], warnings)
    out, floor_out = work / "merged", work / "floor"
    if "merge" in args.steps:
        inputs = [path for path in dirs.values() if path.is_dir()]
        evict_page_cache(inputs)  # both start cold, as a first merge after a download does
        step("floor", [python, __file__, "--floor", str(recipe), "--work", str(floor_out)])
        shutil.rmtree(floor_out, ignore_errors=True)
        evict_page_cache(inputs)
        step("merge (to disk)", cli + ["merge", str(recipe), "--out", str(out), "--force", "-q"])
        shutil.rmtree(out, ignore_errors=True)
    memory = json.dumps({"cpu": args.max_memory})
    if "load" in args.steps:
        step(
            "load cache=false",
            [python, "-c", LOAD, str(recipe), "false", memory],
            lambda t: (True, t.strip().splitlines()[-1][:200]),
        )
        step(
            "load cache=true",
            [python, "-c", LOAD, str(recipe), "true", memory],
            lambda t: (True, t.strip().splitlines()[-1][:200]),
        )
    if "eval" in args.steps:
        results = work / "lmms-out"
        model_args = f"recipe={recipe},quiet=true,device_map=auto,max_memory={{cpu: {args.max_memory}}}"
        step(
            "lmms-eval 1 doc",
            [
                python,
                "-m",
                "harness_ext.lmms_eval_cli",
                "--model",
                "merged_vlm",
                "--model_args",
                model_args,
                "--tasks",
                "mvlm_probe_perception",
                "--limit",
                "1",
                "--gen_kwargs",
                "max_new_tokens=4",
                "--output_path",
                str(results),
                "--log_samples",
            ],
            lambda t: answered(results),
        )
        shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)
    return steps


def answered(results: Path) -> tuple[bool, str]:
    """Whether the logged sample has a non-empty response."""
    for file in results.rglob("*samples*.jsonl"):
        for line in file.read_text().splitlines():
            sample = json.loads(line)
            response = sample.get("resps") or sample.get("filtered_resps")
            text = json.dumps(response)
            return bool(response and text.strip('[]" ')), f"answer {text[:60]}"
    return False, "no samples logged"


def run_trio(trio: str, names: list[str], work: Path, args: argparse.Namespace) -> list[Step]:
    """Write the trio's stand-ins, run its recipes, delete the trio."""
    if args.inputs:  # stand-ins written before, kept
        dirs = {role: args.inputs / name for role, name, _ in standins.TRIOS[trio]}
        return [step for name in names for step in run_recipe(name, dirs, work, args)]
    layers = args.layers.get(trio)
    roles = {"vlm", "source"} | (
        {"base"}
        if any("base" in yaml.safe_load((ROOT / "recipes" / f"{n}.yaml").read_text()) for n in names)
        else set()
    )
    need, output = trio_bytes(trio, layers, roles)
    free = shutil.disk_usage(work).free
    if free - need - output < args.keep_free * 1e9:
        print(
            f"skip {trio} at {layers or 'full'} layers: needs {(need + output) / 1e9:.1f} GB, {free / 1e9:.1f} GB free "
            f"(keeping {args.keep_free} GB); pass a smaller --layers {trio}=N",
            flush=True,
        )
        return []
    folder = work / trio
    start = time.perf_counter()
    log = work / f"{trio}-standins.log"
    _seconds, rss, code = measure(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "standins.py"),
            "--trio",
            trio,
            "--out",
            str(folder),
            "--replace",
            "--roles",
            *sorted(roles),
        ]
        + (["--layers", str(layers)] if layers else []),
        log,
    )
    if code:
        raise SystemExit(f"writing the {trio} stand-ins failed: {log.read_text()[-400:]}")
    print(
        f"{trio}: stand-ins at {layers or 'full'} layers, {folder_bytes(folder) / 1e9:.1f} GB written in "
        f"{time.perf_counter() - start:.0f} s, peak RSS {rss / GIB:.2f} GiB",
        flush=True,
    )
    dirs = {role: folder / name for role, name, _ in standins.TRIOS[trio]}
    steps: list[Step] = []
    try:
        for name in names:
            steps += run_recipe(name, dirs, work, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return steps


def table(steps: list[Step], layers: dict[str, int]) -> str:
    """The measurements as a Markdown table, with merge time over the floor per recipe."""
    rows = [
        "| recipe | depth | step | seconds | peak RSS GiB | ok | note |",
        "|---|---|---|---:|---:|---|---|",
    ]
    floors = {s.recipe: s.seconds for s in steps if s.step == "floor"}
    for s in steps:
        note = s.note
        if s.step.startswith("merge") and s.recipe in floors:
            note = f"{s.seconds / floors[s.recipe]:.2f}x the floor. " + note
        depth = layers.get(RECIPES[s.recipe], "full")
        rows.append(
            f"| {s.recipe} | {depth} | {s.step} | {s.seconds:.1f} | {s.peak_rss / GIB:.2f} | "
            f"{'yes' if s.ok else 'NO'} | {note.replace('|', '/')} |"
        )
    return "\n".join(rows)


def scaling(depths: list[int], names: list[str], work: Path, args: argparse.Namespace) -> None:
    """Qwen-pair recipes merged to disk at each depth, with the floor; seconds and peak RSS fitted
    against the merged model's size."""
    import numpy

    rows: dict[str, list[tuple[int, int, float, int, float]]] = {name: [] for name in names}
    for depth in depths:
        args.layers, args.steps = {"qwen2vl": depth}, ["merge"]
        steps = run_trio("qwen2vl", names, work, args)
        _, output = trio_bytes("qwen2vl", depth, {"vlm"})
        for name in names:
            merge = next(s for s in steps if s.recipe == name and s.step.startswith("merge"))
            fl = next(s for s in steps if s.recipe == name and s.step == "floor")
            rows[name].append((depth, output, merge.seconds, merge.peak_rss, fl.seconds))
    print("\n| recipe | layers | merged GB | merge s | floor s | merge / floor | peak RSS GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, found in rows.items():
        for depth, output, seconds, rss, fl in found:
            print(
                f"| {name} | {depth} | {output / 1e9:.1f} | {seconds:.1f} | {fl:.1f} | {seconds / fl:.2f} | "
                f"{rss / GIB:.2f} |"
            )
    for name, found in rows.items():
        if len(found) < 2:
            continue
        sizes = numpy.array([r[1] / 1e9 for r in found])
        slope, intercept = numpy.polyfit(sizes, [r[2] for r in found], 1)
        floor_slope, _ = numpy.polyfit(sizes, [r[4] for r in found], 1)
        rss_slope, _ = numpy.polyfit(sizes, [r[3] / GIB for r in found], 1)
        print(
            f"{name}: merge seconds = {slope:.2f} * GB + {intercept:.1f} (floor {floor_slope:.2f} s per GB); "
            f"peak RSS {rss_slope * 1024:+.1f} MiB per GB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for stand-ins, outputs and the cache"
    )
    parser.add_argument(
        "--recipe", action="append", choices=sorted(RECIPES), help="run only these (repeatable)"
    )
    parser.add_argument(
        "--layers",
        action="append",
        default=[],
        metavar="TRIO=N",
        help="decoder layers of a trio's stand-ins, e.g. idefics2=16 (default: all)",
    )
    parser.add_argument(
        "--steps",
        default="merge,load,eval",
        help="which of merge,load,eval to run (validate and plan always run)",
    )
    parser.add_argument("--max-memory", default="12GiB", help="max_memory for the CPU in the load steps")
    parser.add_argument("--keep-free", type=float, default=10, help="GB of disk to leave free")
    parser.add_argument(
        "--scaling",
        default=None,
        help="depths of the Qwen pair to merge its recipes (--recipe, "
        "default the linear one) at, e.g. 4,7,14,28",
    )
    parser.add_argument(
        "--inputs",
        type=Path,
        default=None,
        help="use the stand-ins already in this folder (standins.py --out) and keep them",
    )
    parser.add_argument("--floor", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor(args.floor, args.work)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    if args.scaling:
        scaling(
            [int(d) for d in args.scaling.split(",")],
            args.recipe or ["qwen2vl-qwen2math-linear"],
            args.work,
            args,
        )
        return 0
    args.layers = {k: int(v) for k, v in (item.split("=") for item in args.layers)}
    args.steps = args.steps.split(",")
    names = args.recipe or list(RECIPES)
    steps: list[Step] = []
    for trio in dict.fromkeys(RECIPES[n] for n in names):
        steps += run_trio(trio, [n for n in names if RECIPES[n] == trio], args.work, args)
    print()
    print(table(steps, args.layers))
    return 0 if all(s.ok for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
