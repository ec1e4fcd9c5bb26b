#!/bin/bash
# The training stages on one GPU, end to end, from the repository root (needs distill[train]
# and bitsandbytes installed; nothing is downloaded: the model is built from a config):
#   bash benchmarks/gpu_check.sh               (SKIP_BENCH=1: without the bare-TRL comparison)
#   SMOKE=1 bash benchmarks/gpu_check.sh       (the same steps on the CPU, tiny, LoRA for QLoRA)
# 1. benchmarks/train_gpu.py; 2-3. the shipped sft_qlora and dpo_qlora recipes chained (dDPO
# starts from the dSFT adapter, merged); 4. the merged model loads and generates; 5. a full
# dSFT under `accelerate launch` with the shipped FSDP config. The log goes to $OUT/check.log
# (default /tmp/gpu-check-out).
set -u
REPO=$PWD
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
[ -z "${SMOKE:-}" ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import importlib
for m in ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyarrow", "bitsandbytes", "pydantic", "distill"]:
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"{m} FAILED {type(e).__name__}: {e}")
PY
cd /tmp  # out of the checkout, whose distill/ folder would shadow the installed package
W=/tmp/tg
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -c "from distill.cli import main; main()" "$@"\n' > /tmp/bin/distill
chmod +x /tmp/bin/distill; export PATH=/tmp/bin:$PATH
step() { echo; echo "=== $1"; }

step "1. benchmarks/train_gpu.py (bare TRL vs distill)"
if [ -z "${SMOKE:-}" ]; then
  if [ -n "${SKIP_BENCH:-}" ]; then  # only build the model, data and recipe for the steps below
    timeout 200 python3 "$REPO/benchmarks/train_gpu.py" --workdir $W --stages sft --sides distill --steps 1 --warmup 1; echo "exit $?"
  else
    timeout 330 python3 "$REPO/benchmarks/train_gpu.py" --workdir $W; echo "exit $?"
  fi
  PEFT=qlora; CPU=()
else
  timeout 330 python3 "$REPO/benchmarks/train_gpu.py" --workdir $W --cpu-smoke; echo "exit $?"
  PEFT=lora; CPU=(training.use_cpu=true training.bf16=false model.dtype=float32)
fi

step "2. $PEFT dSFT with the shipped sft_qlora recipe"
timeout 120 distill train sft --config zephyr-7b-beta/sft_qlora model.name_or_path=$W/model "datasets=[{path: $W/sft.jsonl}]" \
  output_dir=/tmp/q-sft peft.method=$PEFT global_batch_size=16 training.max_steps=8 training.save_steps=4 training.logging_steps=2 "${CPU[@]}"
echo "exit $?"; ls /tmp/q-sft

step "3. $PEFT dDPO with the shipped dpo_qlora recipe, on the dSFT adapter"
timeout 150 distill train dpo --config zephyr-7b-beta/dpo_qlora model.name_or_path=/tmp/q-sft "datasets=[{path: $W/dpo.jsonl}]" \
  output_dir=/tmp/q-dpo peft.method=$PEFT global_batch_size=8 training.max_steps=4 training.save_steps=2 training.logging_steps=1 "${CPU[@]}"
echo "exit $?"; ls /tmp/q-dpo

step "4. the merged dDPO model loads and generates"
timeout 60 python3 - <<'PY'
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("/tmp/q-dpo")
device = "cuda" if torch.cuda.is_available() else "cpu"
model = AutoModelForCausalLM.from_pretrained("/tmp/q-dpo", dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device)
ids = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True).to(device)
out = model.generate(**ids, max_new_tokens=8, do_sample=False)
print("generated", out.shape[1] - ids["input_ids"].shape[1], "tokens on", device, "| dtype", model.dtype)
PY
echo "exit $?"

if [ -z "${SMOKE:-}" ]; then
  step "5. full dSFT under accelerate launch with the shipped fsdp config (1 process)"
  timeout 150 distill train sft --config $W/recipe-sft.yaml --num-gpus 1 --accelerate-config fsdp output_dir=/tmp/fsdp-sft \
    training.max_steps=4 training.logging_steps=1
  echo "exit $?"; ls /tmp/fsdp-sft
fi
for f in /tmp/q-sft/README.md /tmp/q-dpo/README.md /tmp/q-dpo/train_metrics.json; do [ -f $f ] && cp $f "$OUT/$(basename $(dirname $f))-$(basename $f)"; done
echo; echo "=== done"
