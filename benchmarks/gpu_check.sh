#!/usr/bin/env bash
# What the full-size rehearsal (benchmarks/full_size.py) could not check without a GPU, in one run
# on one GPU (about 8 minutes on one H100), printing one table:
#   1. merge_device=cuda against the CPU merge on the Qwen2-VL stand-ins: bit-identical output?
#      (linear and DARE-TIES recipes; 8 decoder layers, full width)
#   2. benchmarks/merge_bench.py --device cuda (merged-vlm on the GPU vs mergekit --cuda vs the floor)
#   3. device_map=auto with max_memory splitting the merged model across the GPU and the CPU
#   4. one lmms-eval document end to end on the GPU
# Usage: bash benchmarks/gpu_check.sh [WORK_DIR]   (needs about 40 GB free in WORK_DIR; deleted at the end)
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-benchmarks/_work/gpu_check}
LAYERS=${LAYERS:-8}
mkdir -p "$WORK"
export MERGED_VLM_CACHE="$WORK/cache" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
TABLE="$WORK/table.tsv"
: > "$TABLE"
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$TABLE"; }
timed() { local start=$SECONDS; "$@" > "$WORK/last.log" 2>&1; local rc=$?; echo $((SECONDS - start)) $rc; }

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1 | sed 's/^/gpu: /'
read -r s rc < <(timed python benchmarks/standins.py --trio qwen2vl --out "$WORK/qwen" --layers "$LAYERS" --replace)
row "write Qwen stand-ins ($LAYERS layers)" "$s" "exit $rc"

for recipe in qwen2vl-qwen2math-linear qwen2vl-qwen2math-dare; do
  python - "$recipe" "$WORK" <<'EOF'
import sys, yaml
from pathlib import Path
name, work = sys.argv[1], Path(sys.argv[2])
r = yaml.safe_load(Path(f"recipes/{name}.yaml").read_text())
r["vlm"]["model"] = str(work / "qwen/qwen2-vl-7b-instruct")
r["sources"][0]["model"] = str(work / "qwen/qwen2-math-7b")
if "base" in r:
    r["base"] = str(work / "qwen/qwen2-7b")
(work / f"{name}.yaml").write_text(yaml.safe_dump(r, sort_keys=False))
EOF
  for device in cpu cuda; do
    read -r s rc < <(timed merged-vlm merge "$WORK/$recipe.yaml" --set merge_device=$device --out "$WORK/out-$device" --force -q)
    row "$recipe merge_device=$device" "$s" "exit $rc"
  done
  same=$(python - "$WORK/out-cpu" "$WORK/out-cuda" <<'EOF'
import sys
from pathlib import Path
from safetensors import safe_open
a, b = map(Path, sys.argv[1:])
differ, total = 0, 0
for file in sorted(a.glob("*.safetensors")):
    with safe_open(str(file), "pt") as x, safe_open(str(b / file.name), "pt") as y:
        for name in x.keys():
            total += 1
            differ += not x.get_tensor(name).view(-1).view(dtype=__import__("torch").uint8).equal(
                y.get_tensor(name).view(-1).view(dtype=__import__("torch").uint8))
print(f"{total - differ}/{total} tensors bit-identical")
EOF
)
  row "$recipe cuda vs cpu output" "" "$same"
  rm -rf "$WORK/out-cpu" "$WORK/out-cuda"
done

read -r s rc < <(timed python benchmarks/merge_bench.py --layers 12 --device cuda --work "$WORK/merge_bench")
row "merge_bench.py --layers 12 --device cuda" "$s" "exit $rc: $(grep -E '^\| (task_arithmetic|ties)' "$WORK/last.log" | tr '\n' ' ' | cut -c1-300)"
rm -rf "$WORK/merge_bench"

read -r s rc < <(timed python - "$WORK/qwen2vl-qwen2math-linear.yaml" <<'EOF'
import sys
from harness_ext.generation import generate
from harness_ext.lmms_model import MergedVLMChat
from PIL import Image
chat = MergedVLMChat(recipe=sys.argv[1], cache=False, quiet=True, device_map="auto", max_memory={0: "3GiB", "cpu": "64GiB"})
model = chat.loaded.model
print("devices", sorted({str(p.device) for p in model.parameters()}))
conversation = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (224, 224), "red")},
                                             {"type": "text", "text": "What colour is this?"}]}]
print("answer", generate(model, chat.loaded.processor, [conversation], {"max_new_tokens": 4}))
EOF
)
row "device_map=auto across GPU + CPU (cache=false)" "$s" "exit $rc: $(grep -E '^(devices|answer)' "$WORK/last.log" | tr '\n' ' ' | cut -c1-200)"

read -r s rc < <(timed python -m harness_ext.lmms_eval_cli --model merged_vlm \
  --model_args "recipe=$WORK/qwen2vl-qwen2math-linear.yaml,device=cuda,quiet=true" --tasks mvlm_probe_perception \
  --limit 1 --gen_kwargs max_new_tokens=4 --output_path "$WORK/lmms" --log_samples)
answer=$(find "$WORK/lmms" -name '*samples*.jsonl' -exec head -c 100000 {} + 2>/dev/null | python -c \
  "import sys, json; print(json.dumps(json.loads(sys.stdin.readline()).get('resps'))[:80])" 2>/dev/null)
row "lmms-eval 1 document on the GPU" "$s" "exit $rc: answer $answer"

echo
printf '| check | seconds | result |\n|---|---:|---|\n'
while IFS=$'\t' read -r a b c; do printf '| %s | %s | %s |\n' "$a" "$b" "$c"; done < "$TABLE"
rm -rf "$WORK/qwen" "$WORK/cache" "$WORK/lmms"
