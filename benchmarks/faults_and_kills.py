"""Robustness figures: a run through heavy fault injection, and a run killed again and again.

    python benchmarks/faults_and_kills.py [--prompts 300] [--fault-rate 0.25] [--kills 6]

1. `distill generate completions` against the loopback server with a 25% fault rate
   (429 with Retry-After, 500, slow replies past --timeout, dropped connections, malformed
   bodies): how many answers the server sent per prompt, prompts missing from the dataset,
   prompts answered more than once (paid twice), and the retries the run counted.
2. The same command SIGKILLed at random moments, then started again, until it finishes:
   the same per-prompt figures, and whether the dataset equals an uninterrupted run's.
Both run the real CLI in a child process, as a user would; nothing is faked in between.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from distill.testing.openai_server import FaultPlan, LoopbackServer


def command(prompts: Path, url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "distill", "generate", "completions", "--input", str(prompts), "--backend", "openai",
            "--model", "m", "--base-url", url, "--concurrency", "16", "--timeout", "1", "--max-retries", "8",
            "--max-new-tokens", "32", "-o", str(out), "-q"]


def rows(out: Path) -> list[dict]:
    return pq.read_table(out / "data" / "train-00000-of-00001.parquet").to_pylist()


def figures(server: LoopbackServer, out: Path, n: int) -> dict:
    per_prompt = Counter(server.stats.answered.values())
    dataset = rows(out) if (out / "data").exists() else []
    stats = json.loads((out / "stats.json").read_text())
    return {
        "prompts": n,
        "rows": len(dataset),
        "answers per prompt (count of prompts)": dict(sorted(per_prompt.items())),
        "prompts missing": n - len({r["prompt"] for r in dataset}),
        "prompts answered more than once": sum(c for k, c in per_prompt.items() if k > 1),
        "faults injected": dict(server.stats.faults),
        "retries counted (last session)": stats["last_session"]["retries"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--fault-rate", type=float, default=0.25)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # the server's own notes on dropped connections
    env = {**os.environ, "OPENAI_API_KEY": "k"}
    share = args.fault_rate / 5
    plan = FaultPlan(rates={kind: share for kind in ("429", "500", "slow", "drop", "malformed")}, max_per_key=3,
                     retry_after=0.05, slow_seconds=2.0, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prompts = tmp / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": f"question {i}: tell me about it"}) + "\n"
                                   for i in range(args.prompts)))

        with LoopbackServer(faults=plan, latency=0.01) as server:
            started = time.monotonic()
            done = subprocess.run(command(prompts, server.url, tmp / "faults"), env=env, capture_output=True, text=True)
            print(f"1. {args.fault_rate:.0%} faults: exit {done.returncode} in {time.monotonic() - started:.1f} s")
            print(json.dumps(figures(server, tmp / "faults", args.prompts), indent=2))

        with LoopbackServer(latency=0.1) as whole_server:
            subprocess.run(command(prompts, whole_server.url, tmp / "whole"), env=env, check=True, capture_output=True)
        rng = random.Random(args.seed)
        with LoopbackServer(latency=0.1) as server:  # 300 prompts at 16 in flight: about 2 s of answers
            kills = 0
            while True:
                proc = subprocess.Popen(command(prompts, server.url, tmp / "killed"), env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if kills < args.kills:
                    before = server.stats.answered_total
                    while server.stats.answered_total < before + rng.randint(10, 60) and proc.poll() is None:
                        time.sleep(0.01)  # killed mid-run, with requests in flight
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        kills += 1
                        continue
                if proc.wait() == 0:
                    break
                raise SystemExit(f"the resumed run failed: {proc.stderr.read()}")
            result = figures(server, tmp / "killed", args.prompts)
            result["SIGKILLs"] = kills
            result["answers paid for but not received (killed in flight)"] = server.stats.answered_total - args.prompts
            result["dataset equals an uninterrupted run's"] = rows(tmp / "killed") == rows(tmp / "whole")
            print(f"2. killed {kills} times, then finished:")
            print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
