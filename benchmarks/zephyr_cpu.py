"""Wall time of `distill zephyr --profile cpu`, stage by stage, against its 20-minute budget.

    python benchmarks/zephyr_cpu.py [-o runs/zephyr-cpu-bench] [--keep-cache] [--set KEY=VALUE ...]

Runs the whole profile in this process (as the command does), from an empty run folder and,
unless --keep-cache, an empty distill cache (so the Gemma GGUF is de-quantized inside the dSFT
stage, as on a fresh install). Prints each stage's seconds, what it made (dialogues, pairs,
steps, losses, the DPO reward accuracy, the base/dSFT/dDPO table) and the ratio of the total to
the budget the profile is sized for: 20 minutes on a 2-core laptop CPU (goal <= 1.0).
`--set` passes a profile override, as on the command line (`--set dialogues=8`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 20 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", default="runs/zephyr-cpu-bench")
    parser.add_argument("--keep-cache", action="store_true", help="reuse the de-quantized models of the distill cache")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.keep_cache:
        os.environ["DISTILL_CACHE_DIR"] = tempfile.mkdtemp(prefix="distill-cache-")
    out = Path(args.output)
    if out.exists():
        shutil.rmtree(out)

    import yaml

    from distill.config import validate_config
    from distill.pipelines import zephyr
    from distill.pipelines.zephyr_eval import ablation_lines

    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    config = validate_config(zephyr.ZephyrConfig, {"profile": "cpu", "output": out, "quiet": True, **overrides})
    started = time.monotonic()
    summary = zephyr.run(config, lambda line: print(line, file=sys.stderr))
    total = time.monotonic() - started

    print(f"\n{'stage':<10} {'seconds':>8}")
    for stage, seconds in summary["seconds"].items():
        print(f"{stage:<10} {seconds:8.0f}")
    print(f"{'total':<10} {total:8.0f}   ratio to the 20-minute budget: {total / BUDGET_SECONDS:.2f}")
    print(f"\ndialogues made {summary['dialogues']}, kept for dSFT {summary['dialogues_kept']}; "
          f"prompts rated {summary['prompts_rated']}, pairs {summary['pairs']}")
    for stage in ("sft", "dpo"):
        print(f"{stage}: {summary[stage]}")
    print("", *ablation_lines(summary.get("eval"), summary.get("compare")), sep="\n")
    if not args.keep_cache:
        shutil.rmtree(os.environ["DISTILL_CACHE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
