"""merged_vlm in lmms-eval: evaluation throughput and load time, against lmms-eval's own backend, one run.

On one tiny-but-not-trivial LLaVA (random weights, hidden 512, 8 layers by default) and the same
probe documents:
  1. evaluation throughput (documents/s) of merged_vlm vs lmms-eval's built-in `llava_hf` backend
     loaded from merged_vlm's saved checkpoint (target ratio >= 0.97; batch size 1, the only size
     llava_hf's chat path supports);
  2. load time: a cold merge (into the cache, and in memory), a cache hit, and loading the
     pre-merged checkpoint with transformers (targets: cache hit <= 1.1x pre-merged; in-memory
     merge + load <= 1.5x pre-merged; both of the latter timed up to every weight page read); a
     cache hit checks the content digest of every shard, and that check is also timed alone;
  3. bytes read by the in-memory merge + load (cache=false), from /proc/self/io (every read
     system call of the process) and from the merge's own reader, against the inputs' tensor bytes
     (target: each input byte read once).
Loads are repeated and the median is reported. The recipe merges every language tensor (the
embeddings' shared rows too), so every byte of every input is needed.

    python benchmarks/harness_bench.py [--docs 40] [--hidden 512] [--layers 8] [--skip-eval]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["mvlm_probe_perception", "mvlm_probe_reasoning"]


def timed(function, repeats: int = 1) -> tuple[float, object]:
    """Median wall seconds over `repeats` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def touched(model):
    """The model, after reading one value of every 4 KiB page of its weights: transformers maps a
    checkpoint's pages and reads them only when first used, so a load timed without this would
    leave the reading to the first request (an in-memory merge has read everything already)."""
    for parameter in model.parameters():
        flat = parameter.detach().reshape(-1)
        float(flat[::max(4096 // flat.element_size(), 1)].float().sum())
    return model


def read_syscall_bytes() -> int:
    """Bytes this process has received from read system calls so far (Linux /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


@contextmanager
def counted_reads() -> Iterator[dict[str, int]]:
    """Counts bytes read by system calls and, separately, by the merge's tensor reader."""
    from merge_models.checkpoint import Checkpoint

    counts = {"syscalls": 0, "tensor reader": 0}
    original = Checkpoint.read_into

    def counting(self, name, start, buffer):
        counts["tensor reader"] += buffer.numel()
        return original(self, name, start, buffer)

    Checkpoint.read_into = counting
    before = read_syscall_bytes()
    try:
        yield counts
    finally:
        counts["syscalls"] = read_syscall_bytes() - before
        Checkpoint.read_into = original


def main() -> None:
    args = arguments()
    try:
        run(args)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)  # about 600 MB of models, merges and cache


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work" / "harness")
    parser.add_argument("--docs", type=int, default=40, help="documents per probe task")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-eval", action="store_true", help="measure loading only")
    return parser.parse_args()


def run(args: argparse.Namespace) -> None:
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    os.environ.update(MERGED_VLM_CACHE=str(args.work / "cache"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                      TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")

    import transformers as T

    from harness_ext.evaluate import evaluate, task_manager
    from harness_ext.lmms_model import MergedVLMChat
    from lmms_eval.models import get_model
    from merge_models.output import verify_checkpoint
    from merge_models.plan import build_plan
    from merge_models.recipe import load_recipe

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-support checkpoint builders
    from tiny_checkpoints import TinySizes, build_family

    family = build_family("llava", args.work, sizes=TinySizes(hidden=args.hidden, layers=args.layers,
                                                              heads=8, kv_heads=4, intermediate=4 * args.hidden))
    recipe = args.work / "bench.yaml"
    recipe.write_text(yaml.safe_dump({"name": "bench", "vlm": {"model": str(family.vlm), "weight": 0.9},
                                      "sources": [{"model": str(family.reasoning), "weight": 0.1}],
                                      "method": "linear", "exclude": [], "shared_vocab_rows": True}))
    saved = args.work / "saved"
    task_manager()  # index the tasks once, outside every timing

    print(f"model: LLaVA, hidden {args.hidden}, {args.layers} layers; {args.docs} documents x {len(TASKS)} tasks")
    cold, ours = timed(lambda: MergedVLMChat(recipe=str(recipe), quiet=True, save_merged=str(saved)))
    with counted_reads() as reads:
        MergedVLMChat(recipe=str(recipe), quiet=True, cache=False)
    plan = build_plan(load_recipe(recipe))
    input_bytes = sum(meta.nbytes for c in plan.checkpoints() for meta in c.tensors.values())
    entry = args.work / "cache" / plan.recipe_hash
    entry_bytes = sum(f.stat().st_size for f in entry.glob("*.safetensors"))
    check, problem = timed(lambda: verify_checkpoint(entry, plan.recipe_hash), args.repeats)
    assert problem is None, problem
    plan.close()
    in_memory, _ = timed(lambda: touched(MergedVLMChat(recipe=str(recipe), quiet=True, cache=False).model),
                         args.repeats)
    hit, ours = timed(lambda: MergedVLMChat(recipe=str(recipe), quiet=True), args.repeats)
    assert ours.loaded.stats["how"] == "cache hit"

    def premerged():
        model = T.AutoModelForImageTextToText.from_pretrained(saved, dtype="auto")
        return touched(model), T.AutoProcessor.from_pretrained(saved)

    pre, _ = timed(premerged, args.repeats)

    print("\nload time (median of %d)" % args.repeats)
    print(f"  cold merge into the cache + load   {cold:7.2f} s")
    print(f"  cold merge in memory + load        {in_memory:7.2f} s")
    print(f"  cache hit                          {hit:7.2f} s")
    print(f"    of which the entry's check       {check:7.2f} s  ({entry_bytes / 1e6:,.0f} MB of shards hashed "
          f"at {entry_bytes / check / 1e9:.1f} GB/s)")
    print(f"  pre-merged checkpoint (transformers) {pre:5.2f} s")
    print("\nbytes read by one in-memory merge + load (cache=false)")
    print(f"  inputs' tensor bytes (VLM, reasoning LLM)      {input_bytes:>12,}")
    print(f"  read by the merge's tensor reader              {reads['tensor reader']:>12,}  "
          f"({reads['tensor reader'] / input_bytes:.3f}x the inputs)")
    print(f"  read by every system call of the process       {reads['syscalls']:>12,}  "
          f"({reads['syscalls'] / input_bytes:.3f}x; also configs, tokenizer and safetensors headers)")
    print("\nratios")
    print(f"  load: cache hit / pre-merged       {hit / pre:5.2f}  (target <= 1.1)")
    print(f"  load: cold merge / pre-merged      {cold / pre:5.2f}")
    print(f"  load: in-memory merge / pre-merged {in_memory / pre:5.2f}  (target <= 1.5)")
    if args.skip_eval:
        return

    def builtin():
        return get_model("llava_hf", force_simple=False)(pretrained=str(saved), device="cpu", device_map="cpu")

    # Warm-up: first generate calls pay one-off costs. lmms-eval's evaluate() ends with lm.clean(),
    # which deletes a built-in model's weights, so the built-in is rebuilt for the timed run.
    evaluate(ours, TASKS, limit=2)
    evaluate(builtin(), TASKS, limit=2)
    # Alternate the two, `repeats` times each, and compare medians: one timed run each drifts with
    # whatever else the machine does.
    ours_times, builtin_times = [], []
    for _ in range(args.repeats):
        ours_times.append(timed(lambda: evaluate(ours, TASKS, limit=args.docs))[0])
        builtin_model = builtin()
        builtin_times.append(timed(lambda: evaluate(builtin_model, TASKS, limit=args.docs))[0])
    ours_eval, builtin_eval = statistics.median(ours_times), statistics.median(builtin_times)
    documents = args.docs * len(TASKS)
    print("\nevaluation throughput (median of %d alternating runs)" % args.repeats)
    print(f"  merged_vlm        {documents / ours_eval:7.2f} documents/s")
    print(f"  llava_hf built-in {documents / builtin_eval:7.2f} documents/s")
    print(f"  throughput merged_vlm / built-in   {builtin_eval / ours_eval:5.2f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
