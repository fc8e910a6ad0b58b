"""Merge speed and peak memory: merged-vlm vs mergekit-yaml vs a plain-safetensors floor, one run.

Builds a synthetic bf16 checkpoint trio with Qwen2-1.5B shapes (hidden 1536, 28 layers, vocab
151936; about 3.5 GB each, sharded): a VLM (Qwen2-VL layout, its language tensors plus a small
vision shard), the shared base LLM and a reasoning LLM. mergekit cannot read a VLM, so it gets the
VLM's language shards under a Qwen2 config (the same files, symlinked). Every contender runs in
its own process, starting from a warm page cache; wall time and peak RSS (os.wait4) are measured.

    python benchmarks/merge_bench.py                 # full size, both methods
    python benchmarks/merge_bench.py --layers 12     # the size the README reports (about 6 GB of inputs)
    python benchmarks/merge_bench.py --layers 4      # a quick look
    python benchmarks/merge_bench.py --device cuda   # merged-vlm merges on the GPU (merge_device), mergekit --cuda

Compute precision is the same everywhere: float32 arithmetic, bfloat16 output. Our outputs' tensor
data are compared with digests recorded from the engine of commit be8bf1c (merge_bench_reference.json),
and with mergekit's. The inputs are deleted at the end unless --keep-inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, VOCAB = 1536, 8960, 12, 2, 151936
SHARD_BYTES = 1 << 30
REFERENCE = Path(__file__).with_name("merge_bench_reference.json")


def layer_shapes(layer: int) -> dict[str, tuple[int, ...]]:
    kv = HIDDEN // HEADS * KV_HEADS
    p = f"model.layers.{layer}."
    return {p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.q_proj.bias": (HIDDEN,),
            p + "self_attn.k_proj.weight": (kv, HIDDEN), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, HIDDEN), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN), p + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
            p + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN), p + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
            p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)}


def all_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for layer in range(layers):
        shapes.update(layer_shapes(layer))
    shapes.update({"model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)})
    return shapes


def shards(shapes: dict[str, tuple[int, ...]]) -> list[list[str]]:
    out, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = 2 * int(torch.tensor(shape).prod())
        if current and size + nbytes > SHARD_BYTES:
            out.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    return out + [current]


def text_config(layers: int) -> dict:
    return {"hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "num_hidden_layers": layers, "vocab_size": VOCAB,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def build_inputs(work: Path, layers: int) -> dict[str, Path]:
    """Write base, reasoning and VLM checkpoints (and mergekit's view of the VLM) unless present."""
    dirs = {k: work / k for k in ("base", "reasoning", "vlm", "vlm-as-llm")}
    if (work / "inputs.done").is_file() and json.loads((work / "inputs.done").read_text())["layers"] == layers:
        return dirs
    shutil.rmtree(work, ignore_errors=True)
    for d in dirs.values():
        d.mkdir(parents=True)
    groups = shards(all_shapes(layers))
    shapes = all_shapes(layers)
    generator = torch.Generator().manual_seed(0)
    weight_maps: dict[str, dict[str, str]] = {k: {} for k in ("base", "reasoning", "vlm")}
    for index, names in enumerate(groups, 1):
        file = f"model-{index:05d}-of-{len(groups) + 1:05d}.safetensors"
        tensors = {k: {} for k in weight_maps}
        for name in names:
            base = torch.randn(shapes[name], generator=generator) * 0.02
            tensors["base"][name] = base.bfloat16()
            for role in ("reasoning", "vlm"):
                tensors[role][name] = (base + torch.randn(shapes[name], generator=generator) * 0.002).bfloat16()
            del base
        for role, dictionary in tensors.items():
            save_file(dictionary, dirs[role] / file, metadata={"format": "pt"})
            weight_maps[role].update({n: file for n in names})
        print(f"  wrote shard {index}/{len(groups)}", flush=True)
    visual_file = f"model-{len(groups) + 1:05d}-of-{len(groups) + 1:05d}.safetensors"
    visual = {f"visual.blocks.{i}.mlp.fc1.weight": torch.randn(1280, 5120, generator=generator).bfloat16()
              for i in range(2)}
    save_file(visual, dirs["vlm"] / visual_file, metadata={"format": "pt"})
    llm_config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **text_config(layers)}
    vlm_config = {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
                  **text_config(layers), "vision_config": {"depth": 2, "embed_dim": 1280}}
    for role in ("base", "reasoning"):
        _write_json(dirs[role] / "config.json", llm_config)
        _write_index(dirs[role], weight_maps[role])
    _write_json(dirs["vlm"] / "config.json", vlm_config)
    _write_index(dirs["vlm"], {**weight_maps["vlm"], **{n: visual_file for n in visual}})
    _write_json(dirs["vlm-as-llm"] / "config.json", llm_config)
    for file in set(weight_maps["vlm"].values()):
        (dirs["vlm-as-llm"] / file).symlink_to(dirs["vlm"] / file)
    _write_index(dirs["vlm-as-llm"], weight_maps["vlm"])
    digest = hashlib.sha256()
    for role in ("vlm", "base", "reasoning"):
        digest.update(data_digest(dirs[role]).encode())
    (work / "inputs.done").write_text(json.dumps({"layers": layers, "sha256": digest.hexdigest()}))
    return dirs


def data_digest(folder: Path) -> str:
    """sha256 of the tensor data (not the headers) of a checkpoint's shards, in file-name order.

    Headers are left out: a merge's header metadata records its recipe hash, which for
    large local inputs includes file times.
    """
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as handle:
            handle.seek(8 + int.from_bytes(handle.read(8), "little"))
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))


def _write_index(folder: Path, weight_map: dict[str, str]) -> None:
    total = sum((folder / f).stat().st_size for f in set(weight_map.values()))
    _write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def floor(dirs: dict[str, Path], out: Path) -> None:
    """Read every input tensor and write the VLM's language tensors, with plain safetensors calls."""
    out.mkdir(parents=True, exist_ok=True)
    index = json.loads((dirs["vlm-as-llm"] / "model.safetensors.index.json").read_text())["weight_map"]
    for file in sorted(set(index.values())):
        handles = {r: safe_open(str(dirs[r] / file), framework="pt") for r in ("vlm-as-llm", "base", "reasoning")}
        result = {}
        for name in handles["vlm-as-llm"].keys():
            tensors = [h.get_tensor(name) for h in handles.values()]
            result[name] = tensors[0]
        save_file(result, out / file, metadata={"format": "pt"})


TARGETS = {"task_arithmetic": 1.5, "ties": 2.5}  # time / floor on 2 cores
RSS_TARGET = 1.5 * 2**30


def recipes(dirs: dict[str, Path], method: str, work: Path, device: str) -> tuple[Path, Path]:
    density = {} if method in ("linear", "task_arithmetic") else {"density": 0.2}
    ours = {"vlm": {"model": str(dirs["vlm"]), "weight": 1.0, **density}, "base": str(dirs["base"]),
            "sources": [{"model": str(dirs["reasoning"]), "weight": 0.5, **density}], "method": method,
            "exclude": [], "dtype": "bfloat16", "merge_device": device}
    theirs = {"merge_method": method, "base_model": str(dirs["base"]), "dtype": "float32", "out_dtype": "bfloat16",
              "models": [{"model": str(dirs["vlm-as-llm"]), "parameters": {"weight": 1.0, **density}},
                         {"model": str(dirs["reasoning"]), "parameters": {"weight": 0.5, **density}}]}
    paths = work / f"ours-{method}.yaml", work / f"mergekit-{method}.yaml"
    paths[0].write_text(yaml.safe_dump(ours))
    paths[1].write_text(yaml.safe_dump(theirs))
    return paths


def warm(dirs: dict[str, Path]) -> None:
    """Read every input file once so each contender starts from the same warm page cache."""
    for role in ("vlm", "base", "reasoning"):
        for file in dirs[role].glob("*.safetensors"):
            with open(file, "rb") as handle:
                while handle.read(1 << 26):
                    pass


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{command[:3]} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024


def compare_outputs(ours: Path, theirs: Path, samples: int = 6) -> tuple[float, float]:
    """Max abs difference and the share of differing entries over a few tensors of two merged checkpoints."""
    def locate(folder: Path) -> dict[str, Path]:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            return {k: folder / v for k, v in json.loads(index.read_text())["weight_map"].items()}
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            return {k: folder / "model.safetensors" for k in f.keys()}
    a, b = locate(ours), locate(theirs)
    names = [n for n in b if n in a][:: max(1, len(b) // samples)]
    worst, differing, total = 0.0, 0, 0
    for name in names:
        with safe_open(str(a[name]), framework="pt") as fa, safe_open(str(b[name]), framework="pt") as fb:
            difference = (fa.get_tensor(name).float() - fb.get_tensor(name).float()).abs()
        worst = max(worst, float(difference.max()))
        differing, total = differing + int(torch.count_nonzero(difference)), total + difference.numel()
    return worst, differing / max(total, 1)


def _identity(digest: str, inputs_digest: str, expected: dict, method: str) -> str:
    if expected.get("inputs") != inputs_digest or method not in expected:
        return "not compared: no reference digest for these inputs"
    return "bit-identical to the reference" if expected[method] == digest else "DIFFERS from the reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work" / "merge")
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--methods", default="task_arithmetic,ties")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where merged-vlm merges (merge_device) and mergekit computes (--cuda)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per contender; the fastest counts")
    parser.add_argument("--keep-inputs", action="store_true", help="leave the inputs in --work for the next run")
    parser.add_argument("--skip-mergekit", action="store_true", help="time merged-vlm and the floor only")
    parser.add_argument("--record-reference", action="store_true",
                        help=f"store our outputs' digests in {REFERENCE.name} as the bit-identity reference")
    parser.add_argument("--floor-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dirs = {k: args.work / k for k in ("base", "reasoning", "vlm", "vlm-as-llm")}
    if args.floor_only:
        floor(dirs, args.floor_only)
        return
    print(f"building inputs in {args.work} ({args.layers} layers) ...", flush=True)
    # Built in a child process: a child's peak RSS (wait4) counts what it inherited at fork, so the
    # measuring process must stay small.
    builder = multiprocessing.get_context("spawn").Process(target=build_inputs, args=(args.work, args.layers))
    builder.start()
    builder.join()
    if builder.exitcode != 0:
        raise SystemExit(f"building the inputs failed (exit {builder.exitcode})")
    size = sum(f.stat().st_size for f in dirs["vlm"].glob("*.safetensors"))
    print(f"each checkpoint: {size / 1e9:.2f} GB bf16 in {len(list(dirs['vlm'].glob('*.safetensors')))} shards")
    mergekit_yaml = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")
    env_python = sys.executable
    results: dict[str, tuple[float, int]] = {}

    def run(label: str, command: list[str], out: Path) -> None:
        runs = []
        for _ in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)
            warm(dirs)
            runs.append(measure(command))
        results[label] = min(runs)
        print(f"  {label:28s} {results[label][0]:8.1f} s  peak RSS {results[label][1] / 2**30:6.2f} GiB", flush=True)

    out = args.work / "out"
    inputs_digest = json.loads((args.work / "inputs.done").read_text())["sha256"]
    reference = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
    expected = reference.get(f"layers-{args.layers}", {})
    recorded = {"inputs": inputs_digest, **expected}
    run("floor (safetensors only)", [env_python, __file__, "--work", str(args.work), "--floor-only",
                                      str(out / "floor")], out / "floor")
    agreement: dict[str, str] = {}
    for method in args.methods.split(","):
        ours_recipe, theirs_recipe = recipes(dirs, method, args.work, args.device)
        run(f"merged-vlm {method}", [env_python, "-m", "harness_ext.cli", "merge", str(ours_recipe), "--out",
                                     str(out / f"ours-{method}"), "--force", "--quiet"], out / f"ours-{method}")
        recorded[method] = data_digest(out / f"ours-{method}")
        agreement[method] = _identity(recorded[method], inputs_digest, expected, method)
        print(f"  {'':28s} output {agreement[method]}", flush=True)
        if not args.skip_mergekit:
            run(f"mergekit {method}", [mergekit_yaml, str(theirs_recipe), str(out / f"mk-{method}"), "--quiet",
                                       "--no-copy-tokenizer", "--no-write-model-card"]
                + (["--cuda"] if args.device == "cuda" else []), out / f"mk-{method}")
            if not method.startswith("dare"):  # DARE draws its own random masks
                # in a child: the tensors compared would otherwise stay in this process, and every
                # later contender's peak RSS (wait4) would count them, inherited at fork
                with multiprocessing.get_context("spawn").Pool(1) as child:
                    worst, share = child.apply(compare_outputs, (out / f"ours-{method}", out / f"mk-{method}"))
                print(f"  {'':28s} vs mergekit: max abs difference {worst:.2e}, {share:.2e} of sampled "
                      "entries differ (bf16 output)", flush=True)
        for label in (f"ours-{method}", f"mk-{method}"):
            shutil.rmtree(out / label, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    if not args.keep_inputs:
        shutil.rmtree(args.work, ignore_errors=True)
    if args.record_reference:
        REFERENCE.write_text(json.dumps({**reference, f"layers-{args.layers}": recorded}, indent=2) + "\n")
        print(f"  recorded output digests in {REFERENCE.name}")

    floor_time = results["floor (safetensors only)"][0]
    print(f"\nsummary ({args.layers} layers, merge device {args.device}; targets on 2 cores: time/floor "
          f"{', '.join(f'{m} <= {t}' for m, t in TARGETS.items())}; peak RSS <= {RSS_TARGET / 2**30:.1f} GiB)")
    print("| method | merged-vlm | mergekit | floor | ours / floor | ours vs mergekit | peak RSS ours / mergekit "
          "| output vs reference |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for method in args.methods.split(","):
        ours_t, ours_rss = results[f"merged-vlm {method}"]
        mk_t, mk_rss = results.get(f"mergekit {method}", (float("nan"), 0))
        target = f" (target {TARGETS[method]})" if method in TARGETS else ""
        print(f"| {method} | {ours_t:.1f} s | {mk_t:.1f} s | {floor_time:.1f} s | {ours_t / floor_time:.2f}x{target} | "
              f"{mk_t / ours_t:.2f}x faster | {ours_rss / 2**30:.2f} / {mk_rss / 2**30:.2f} GiB | "
              f"{agreement[method]} |")


if __name__ == "__main__":
    main()
