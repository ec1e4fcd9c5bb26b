"""dSFT and dDPO on one GPU: distill's training stages against bare TRL on the same config.

    python benchmarks/train_gpu.py [--steps 20 --warmup 5 --seq-len 1024 --sft-batch 8 --dpo-batch 4]
    python benchmarks/train_gpu.py --cpu-smoke      # the plumbing only, a tiny model on the CPU

Needs a CUDA GPU: without one it says so on stderr and exits with status 2, having run
nothing. Everything is built here, offline (the GPU machine cannot download a model):

  model      a ~0.5B-parameter Mistral-like causal LM built from a config (hidden 1024,
             24 layers, 16 heads / 4 KV heads, MLP 4864, vocab 32000, untied embeddings:
             about 0.49B parameters), random weights, saved in bf16;
  tokenizer  a byte-level BPE trained on a synthetic corpus of made-up words, with the
             Zephyr chat template (generation markers, for the assistant-only loss); the
             model's vocabulary is larger than the tokenizer's, as with real models;
  data       SFT rows (`messages`: system, user, assistant) and DPO rows (`chosen` /
             `rejected` full conversations), each near --seq-len tokens, as JSONL files
             in distill's formats.

Four runs per round, each in a fresh process (no memory or compiled kernels carried over):

  bare    SFT   TRL's SFTTrainer on the model, tokenizer and rows, directly
  distill SFT   distill.train.recipe.load_recipe + distill.train.stages.train on a recipe
                naming the same model, data and TRL arguments (what `distill train sft`
                runs on one GPU, in its worker process)
  bare    DPO   TRL's DPOTrainer, reference model implicit (a copy of the model)
  distill DPO   the same through distill

Same TRL arguments on both sides: bf16, full fine-tuning, AdamW, --steps optimizer steps
after --warmup untimed ones, gradient accumulation 1, max_length --seq-len, activation
checkpointing unless --no-checkpointing, SDPA (FlashAttention-2 when installed; --attn).

The order matters on a GPU (on an H200 the first run after the machine started was a
third slower than the same run later), so an untimed warm-up run comes first, and over
--rounds (default 2) the sides take turns going first (bare, distill / distill, bare).

Reported per stage: each run's tokens/s (non-padding input tokens the trainer saw over the
timed steps, chosen and rejected both counted for DPO, divided by the wall time of those
steps, taken between CUDA syncs at step ends), the median per side, peak GPU memory
(torch.cuda.max_memory_allocated over the whole run) and the ratio distill/bare of the
medians. Goal: tokens/s ratio >= 0.95 and peak memory within 5% of bare: distill adds no
work per step. Tokenizing the data, loading the model and saving it are outside the timed
steps.

If distill's stages cannot be imported (not written yet, or the train extra is missing
pieces) the script says "distill stages not available" and runs the bare side only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distill.train.template import ZEPHYR_TEMPLATE

RESULT = "RESULT "  # prefix of the one line a child process reports on


# --- building the model, tokenizer and data (parent process) -------------------------------


def make_words(rng: random.Random, count: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "sh", "qu", "st", "nd"]
    words = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class Text:
    """Seeded Zipf-like text over a fixed vocabulary of made-up words."""

    def __init__(self, seed: int, vocabulary: int = 6000):
        self.rng = random.Random(seed)
        self.words = make_words(self.rng, vocabulary)
        self.weights = [1 / (rank + 1) for rank in range(len(self.words))]

    def __call__(self, words: int) -> str:
        chosen = self.rng.choices(self.words, self.weights, k=words)
        sentences, at = [], 0
        while at < len(chosen):
            n = self.rng.randint(6, 18)
            sentence = " ".join(chosen[at:at + n])
            sentences.append(sentence[:1].upper() + sentence[1:] + self.rng.choice([".", ".", ".", "?", "!"]))
            at += n
        return " ".join(sentences)


def build_tokenizer(folder: Path, text: Text, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator((text(200) for _ in range(3000)), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=1 << 20)
    fast.chat_template = ZEPHYR_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_model(folder: Path, tokenizer, size: dict, dtype_name: str) -> int:
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(
        vocab_size=max(size["vocab"], len(tokenizer)), hidden_size=size["hidden"], intermediate_size=size["mlp"],
        num_hidden_layers=size["layers"], num_attention_heads=size["heads"], num_key_value_heads=size["kv_heads"],
        max_position_embeddings=4096, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype_name))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def _fit(text: Text, tokenizer, tokens: int) -> str:
    """Text of about `tokens` tokens under `tokenizer` (a word is 1-2 tokens here)."""
    words = max(4, tokens)
    for _ in range(4):
        candidate = text(words)
        have = len(tokenizer(candidate, add_special_tokens=False)["input_ids"])
        if abs(have - tokens) <= max(2, tokens // 50):
            return candidate
        words = max(4, round(words * tokens / max(have, 1)))
    return candidate


def build_data(folder: Path, text: Text, tokenizer, seq_len: int, sft_rows: int, dpo_rows: int) -> tuple[Path, Path]:
    """SFT and DPO rows near seq_len tokens each (a few percent of room for the chat markup)."""
    body = int(seq_len * 0.94)
    sft, dpo = folder / "sft.jsonl", folder / "dpo.jsonl"
    with sft.open("w") as out:
        for _ in range(sft_rows):
            messages = [
                {"role": "system", "content": _fit(text, tokenizer, body // 16)},
                {"role": "user", "content": _fit(text, tokenizer, body // 4)},
                {"role": "assistant", "content": _fit(text, tokenizer, body - body // 16 - body // 4)},
            ]
            out.write(json.dumps({"messages": messages}) + "\n")
    with dpo.open("w") as out:
        for _ in range(dpo_rows):
            prompt = [{"role": "user", "content": _fit(text, tokenizer, body // 3)}]
            chosen = prompt + [{"role": "assistant", "content": _fit(text, tokenizer, body - body // 3)}]
            rejected = prompt + [{"role": "assistant", "content": _fit(text, tokenizer, (body - body // 3) * 4 // 5)}]
            out.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
    return sft, dpo


def trl_arguments(stage: str, args) -> dict:
    """The TRL SFTConfig / DPOConfig arguments both sides train with."""
    common = dict(
        max_steps=args.warmup + args.steps, gradient_accumulation_steps=1, max_length=args.seq_len,
        bf16=not args.cpu_smoke, activation_checkpointing=not args.no_checkpointing,
        lr_scheduler_type="constant", logging_steps=max(1, (args.warmup + args.steps) // 4), save_strategy="no",
        report_to=[], disable_tqdm=True, include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
    )
    if args.cpu_smoke:
        common["use_cpu"] = True
    if stage == "sft":
        return dict(common, per_device_train_batch_size=args.sft_batch, learning_rate=2e-5)
    return dict(common, per_device_train_batch_size=args.dpo_batch, learning_rate=5e-7, beta=0.1)


# --- one run (child process) ---------------------------------------------------------------


def timing_callback(warmup: int, total: int):
    """Marks the end of step `warmup` and of the last step: time, tokens seen, peak memory."""
    import torch
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks = {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, total):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)
            if state.global_step == total and torch.cuda.is_available():
                self.marks["peak"] = torch.cuda.max_memory_allocated()

    return Timer()


def distill_entry():
    """distill's stage entry points, or None when they cannot be imported."""
    try:
        from distill.train.recipe import load_recipe
        from distill.train.stages import train
    except ImportError as error:
        print(f"distill stages not available ({error})", file=sys.stderr)
        return None
    return lambda recipe_path, stage: train(load_recipe(recipe_path, stage, []))


def run_bare(stage: str, plan: dict, output_dir: Path) -> None:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plan["model"])
    model = AutoModelForCausalLM.from_pretrained(plan["model"], dtype=getattr(torch, plan["dtype"]),
                                                 attn_implementation=plan["attn"])
    columns = ("messages",) if stage == "sft" else ("chosen", "rejected")
    rows = [json.loads(line) for line in Path(plan["data"][stage]).read_text().splitlines()]
    train_data = datasets.Dataset.from_list([{c: row[c] for c in columns} for row in rows])
    if stage == "sft":
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(output_dir=str(output_dir), seed=plan["seed"], assistant_only_loss=True, **plan["trl"][stage])
        trainer = SFTTrainer(model=model, args=config, train_dataset=train_data, processing_class=tokenizer)
    else:
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(output_dir=str(output_dir), seed=plan["seed"], **plan["trl"][stage])
        trainer = DPOTrainer(model=model, ref_model=None, args=config, train_dataset=train_data, processing_class=tokenizer)
    trainer.train()


def run_distill(stage: str, plan: dict, output_dir: Path) -> None:
    import yaml

    entry = distill_entry()
    if entry is None:
        raise SystemExit(3)
    recipe = {
        "stage": stage,
        "model": {"name_or_path": plan["model"], "dtype": plan["dtype"], "attn_implementation": plan["attn"]},
        "datasets": [{"path": plan["data"][stage]}],
        "chat_template": "auto",  # the tokenizer's: Zephyr's, as on the bare side
        "output_dir": str(output_dir),
        "seed": plan["seed"],
        "training": plan["trl"][stage],
    }
    if stage == "sft":
        recipe["assistant_only_loss"] = True
    path = output_dir.parent / f"recipe-{stage}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    entry(path, stage)


def child(side: str, stage: str, plan_path: Path, warm_up: bool = False) -> None:
    import torch
    import transformers.trainer

    plan = json.loads(plan_path.read_text())
    if warm_up:  # a short run: two steps after the untimed ones
        plan["steps"] = 2
        plan["trl"][stage]["max_steps"] = plan["warmup"] + 2
    timer = timing_callback(plan["warmup"], plan["warmup"] + plan["steps"])
    # Every Trainer made in this process (bare, or inside distill's stage) gets the timer.
    transformers.trainer.DEFAULT_CALLBACKS.append(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    output_dir = plan_path.parent / f"out-{side}-{stage}"
    (run_bare if side == "bare" else run_distill)(stage, plan, output_dir)
    (t0, tokens0), (t1, tokens1) = timer.marks[plan["warmup"]], timer.marks[plan["warmup"] + plan["steps"]]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(RESULT + json.dumps({"side": side, "stage": stage, "device": device, "tokens": tokens1 - tokens0, "seconds": t1 - t0,
                               "tokens_per_s": (tokens1 - tokens0) / (t1 - t0), "peak_bytes": timer.marks.get("peak")}),
          flush=True)


# --- the parent: build, run each side in its own process, report ----------------------------


def run_child(side: str, stage: str, plan_path: Path, verbose: bool, warm_up: bool = False) -> dict | str:
    command = [sys.executable, os.path.abspath(__file__), "--child", side, stage, str(plan_path)] + (["--warm-up"] if warm_up else [])
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.PIPE, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1][len(RESULT):])
    if side == "distill" and done.returncode == 3:
        return "distill stages not available"
    tail = (done.stderr or "").strip().splitlines()[-15:]
    return f"failed (exit {done.returncode})" + ("".join("\n      " + line for line in tail) if tail else "")


def gib(value) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def report(stage: str, results: dict[str, list]) -> bool:
    """Print each side's runs and medians; False when a run failed."""
    ok = True
    print(f"\n{stage.upper()}")
    medians = {}
    for side, runs in results.items():
        good = [run for run in runs if isinstance(run, dict)]
        for run in runs:
            if not isinstance(run, dict):
                print(f"  {side:8s} {run}")
                ok = ok and run == "distill stages not available"
        if good:
            speed = statistics.median(run["tokens_per_s"] for run in good)
            peaks = [run["peak_bytes"] for run in good if run["peak_bytes"]]
            medians[side] = (speed, max(peaks) if peaks else None)
            each = ", ".join(f"{run['tokens_per_s']:,.0f}" for run in good)
            print(f"  {side:8s} {speed:>10,.0f} tokens/s (median of {each})   peak {gib(medians[side][1]):>10s}   "
                  f"({good[0]['tokens']:,} tokens per run on {good[0]['device']})")
    if "bare" in medians and "distill" in medians:
        (bare_speed, bare_peak), (speed, peak) = medians["bare"], medians["distill"]
        print(f"  distill/bare: tokens/s {speed / bare_speed:.3f}" + (f", peak memory {peak / bare_peak:.3f}" if peak and bare_peak else ""))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--sft-batch", type=int, default=8, help="SFT sequences per step")
    parser.add_argument("--dpo-batch", type=int, default=4, help="DPO pairs per step (2 sequences each)")
    parser.add_argument("--stages", default="sft,dpo")
    parser.add_argument("--sides", default="bare,distill")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side and stage; the sides take turns going first")
    parser.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flash_attention_2", "eager"],
                        help="auto: FlashAttention-2 when installed, else SDPA")
    parser.add_argument("--no-checkpointing", action="store_true", help="train without activation checkpointing")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, help="keep the model, data and outputs here (default: a temporary folder)")
    parser.add_argument("--verbose", action="store_true", help="show the runs' own logs")
    parser.add_argument("--cpu-smoke", action="store_true", help="check the plumbing on the CPU with a tiny model (no figures)")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "STAGE", "PLAN"), help=argparse.SUPPRESS)
    parser.add_argument("--warm-up", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]), args.warm_up)
        return 0

    try:
        import torch
    except ImportError:
        print("train_gpu.py needs a CUDA GPU and the train extra (pip install 'distill[train]'); nothing was run",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("train_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was run. "
              "--cpu-smoke checks the plumbing on the CPU with a tiny model.", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        args.steps, args.warmup, args.seq_len, args.sft_batch, args.dpo_batch = 2, 1, 96, 2, 1
        size = dict(vocab=512, hidden=32, mlp=64, layers=2, heads=2, kv_heads=1)
    else:
        size = dict(vocab=32000, hidden=args.hidden, mlp=args.hidden * 19 // 4, layers=args.layers,
                    heads=max(1, args.hidden // 64), kv_heads=max(1, args.hidden // 256))
    attn = args.attn
    if attn == "auto":
        import importlib.util

        attn = "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"
    stages = [s for s in args.stages.split(",") if s]
    sides = [s for s in args.sides.split(",") if s]

    holder = None if args.workdir else tempfile.TemporaryDirectory(prefix="distill-train-gpu-")
    work = args.workdir or Path(holder.name)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    text = Text(seed=0)
    tokenizer = build_tokenizer(work / "model", text, vocab_size=8000 if not args.cpu_smoke else 400)
    dtype = "float32" if args.cpu_smoke else "bfloat16"
    params = build_model(work / "model", tokenizer, size, dtype)
    rows = args.warmup + args.steps + 2
    sft_path, dpo_path = build_data(work, text, tokenizer, args.seq_len, rows * args.sft_batch, rows * args.dpo_batch)
    plan = {
        "model": str(work / "model"), "dtype": dtype, "attn": attn, "seed": 0,
        "warmup": args.warmup, "steps": args.steps,
        "data": {"sft": str(sft_path), "dpo": str(dpo_path)},
        "trl": {stage: trl_arguments(stage, args) for stage in ("sft", "dpo")},
    }
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=2))
    # No CUDA context in this process: the runs each have the GPU to themselves.
    print(f"torch {torch.__version__}" + ("" if torch.cuda.is_available() else "; CPU smoke test: the figures mean nothing"))
    print(f"model: Mistral-like, {params / 1e9:.3f}B parameters ({size['layers']} layers, hidden {size['hidden']}, "
          f"vocab {max(size['vocab'], len(tokenizer))}, tokenizer {len(tokenizer)}), {dtype}, attention {attn}, "
          f"activation checkpointing {'off' if args.no_checkpointing else 'on'}")
    print(f"runs: {args.warmup} untimed + {args.steps} timed steps, max length {args.seq_len}, "
          f"SFT batch {args.sft_batch}, DPO batch {args.dpo_batch} pairs; built in {time.perf_counter() - started:.1f} s")

    ok = True
    available = "distill" not in sides or distill_entry() is not None
    if not available:
        sides = [s for s in sides if s != "distill"]
    if sides:  # brings the GPU to its clocks; not reported
        run_child(sides[0], stages[0], plan_path, args.verbose, warm_up=True)
    for stage in stages:
        results = {side: [] for side in sides}
        for round_ in range(max(1, args.rounds)):
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                results[side].append(run_child(side, stage, plan_path, args.verbose))
        if not available:
            results["distill"] = ["distill stages not available"]
        ok = report(stage, results) and ok
    if holder:
        holder.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
