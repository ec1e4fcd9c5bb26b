"""Generation speed of the embedded backend through the distill client against raw llama-cpp-python.

    python benchmarks/embedded.py [--prompts 8 --max-tokens 64 --rounds 3] [--model PATH.gguf]

Both sides load the same GGUF (the embedded Gemma 3 270M by default) with the same settings
(n_ctx 4096, llama-cpp-python's default number of threads) before any timing starts, so the
model load is excluded on both sides. Both then complete the same N plain-text prompts,
greedy (temperature 0, top_p 1, the same seed, the same max_tokens, no stop strings):

  A  "raw llama-cpp-python": llama_cpp.Llama(...) and a plain loop of llm.reset() and
     llm.create_completion(prompt, max_tokens=..., temperature=0.0, top_p=1.0, seed=...);
  B  "distill Client (embedded backend)": Client(LlamaCppBackend(...), RequestCache(fresh
     temp file)) and asyncio.gather of client.complete(Request.text(...)) -- everything a
     run pays for: the cache lookup and the committed write of every answer, the worker
     thread each generation runs in, the context emptied before every prompt (distill's
     reproducibility rule), the per-token stop check, the accounting.

The raw loop calls llm.reset() before each prompt so that it evaluates every prompt whole, as
distill does. Without it llama-cpp-python reuses the KV cache of the previous prompt's common
prefix (here only the BOS token: the prompts begin with different words) and evaluates the
rest in another batch shape, whose logits differ in the last bits, and greedy decoding then
wrote another text for 1 prompt in 4: the sides would not generate the same tokens. The two
sides must generate the same texts and the same number of tokens (checked on every run; the
benchmark fails otherwise).

A warm-up request runs on each side first; then the sides take turns to go first (AB, BA,
AB, ...), and the median generated tokens/s of each is reported with the ratio distill/raw
(goal >= 0.95), plus the median of the per-round ratios, which is less sensitive to other
load on the machine. llama.cpp's speed depends on the cores it gets: run it on an otherwise
idle machine. OMP_WAIT_POLICY is set to passive unless given (see below).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# llama.cpp's CPU backend runs on OpenMP (libgomp), whose idle worker threads spin by default.
# On 2 busy cores that made llama.cpp called from the main thread (the raw loop) 3 times slower
# after its first prompts (8-10 tokens/s instead of 30), while the same calls from a worker
# thread (distill's backend) kept their speed; waiting passively (read when llama_cpp is loaded,
# below) gives both sides the same footing. An OMP_WAIT_POLICY set by the caller is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from distill.backends.llamacpp import LlamaCppBackend, embedded_model_path
from distill.cache import RequestCache
from distill.client import Client
from distill.request import Request, SamplingParams

GOAL = 0.95
RAW = "raw llama-cpp-python"
DISTILL = "distill Client (embedded backend)"
N_CTX = 4096  # LlamaCppBackend's default
SEED = 1234

# Distinct first words: the raw loop can reuse no more than the BOS token of the previous prompt.
PROMPTS = [
    "The history of the printing press begins",
    "Rivers shape the land around them by",
    "Photosynthesis is the process by which plants",
    "In the winter of 1812, the army",
    "A good recipe for bread needs flour,",
    "Mountains form when two tectonic plates",
    "Computers store numbers in binary, which means",
    "Every morning the old fisherman walked down to",
    "Volcanoes erupt because the pressure of",
    "Learning a second language helps children",
    "Honeybees communicate the direction of food by",
    "Ancient Rome was governed at first by",
    "Electric cars differ from petrol cars in",
    "Jupiter is the largest planet of",
    "Sleep matters for memory because during",
    "Chess openings are sequences of moves that",
]


def raw_side(llm, prompts: list[str], max_tokens: int) -> tuple[float, list[str], int]:
    start = time.perf_counter()
    outs = []
    for p in prompts:
        llm.reset()  # evaluate the prompt whole, as distill does: the same logits, so the same greedy text
        outs.append(llm.create_completion(p, max_tokens=max_tokens, temperature=0.0, top_p=1.0, seed=SEED))
    elapsed = time.perf_counter() - start
    return elapsed, [o["choices"][0]["text"] for o in outs], sum(o["usage"]["completion_tokens"] for o in outs)


def make_requests(model: str, prompts: list[str], max_tokens: int) -> list[Request]:
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=SEED)
    return [Request.text(model, p, params) for p in prompts]


def distill_side(backend: LlamaCppBackend, prompts: list[str], max_tokens: int, cache_path: Path) -> tuple[float, list[str], int]:
    cache = RequestCache(cache_path)
    client = Client(backend, cache)
    requests = make_requests(backend.model_id(), prompts, max_tokens)

    async def go():
        start = time.perf_counter()
        responses = await asyncio.gather(*(client.complete(r) for r in requests))
        return time.perf_counter() - start, responses

    try:
        elapsed, responses = asyncio.run(go())
    finally:
        cache.close()
    if client.stats.requests != len(prompts) or client.stats.cache_hits:
        raise RuntimeError(f"{DISTILL}: expected {len(prompts)} generations and no cache hit, got "
                           f"{client.stats.requests} and {client.stats.cache_hits}")
    return elapsed, [r.text for r in responses], sum(r.usage.completion_tokens for r in responses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help=f"prompts per run (at most {len(PROMPTS)})")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each runs both sides once")
    parser.add_argument("--model", help="a GGUF file (default: the embedded Gemma 3 270M)")
    args = parser.parse_args()
    if not 1 <= args.prompts <= len(PROMPTS):
        parser.error(f"--prompts takes 1 to {len(PROMPTS)}")
    prompts = PROMPTS[: args.prompts]

    path = Path(args.model) if args.model else embedded_model_path()
    import llama_cpp

    # Model loads, outside any timing. The raw side is llama-cpp-python as its docs show it.
    backend = LlamaCppBackend(str(path), n_ctx=N_CTX)
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, verbose=False)
    print(f"{path.name}, {len(prompts)} prompts, max_tokens {args.max_tokens}, greedy, {args.rounds} rounds, "
          f"llama-cpp-python {llama_cpp.__version__}, {raw.context_params.n_threads} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}",
          flush=True)

    try:
        with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
            caches = (Path(tmp) / f"cache{i}.sqlite" for i in range(1_000_000))
            # Warm-up: first allocations, the worker thread, SQLite.
            raw_side(raw, prompts[:1], 8)
            distill_side(backend, prompts[:1], 8, next(caches))

            rates: dict[str, list[float]] = {RAW: [], DISTILL: []}
            reference: tuple[list[str], int] | None = None
            print(f"\n{'round':>5}  {'side':<36} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}", flush=True)
            for rnd in range(1, args.rounds + 1):
                order = [RAW, DISTILL] if rnd % 2 else [DISTILL, RAW]  # AB, BA, AB...
                for side in order:
                    if side == RAW:
                        elapsed, texts, tokens = raw_side(raw, prompts, args.max_tokens)
                    else:
                        elapsed, texts, tokens = distill_side(backend, prompts, args.max_tokens, next(caches))
                    if reference is None:
                        reference = (texts, tokens)
                    elif (texts, tokens) != reference:
                        differ = sum(a != b for a, b in zip(texts, reference[0]))
                        raise RuntimeError(f"{side}: {tokens} tokens and {differ} texts differ from the first run's "
                                           f"{reference[1]} tokens: the sides did not generate the same")
                    rates[side].append(tokens / elapsed)
                    print(f"{rnd:>5}  {side:<36} {tokens:>7} {elapsed:>8.2f} {tokens / elapsed:>9.1f}", flush=True)
    finally:
        asyncio.run(backend.aclose())
        raw.close()

    assert reference is not None
    raw_rate, dist_rate = statistics.median(rates[RAW]), statistics.median(rates[DISTILL])
    ratio = dist_rate / raw_rate
    paired = statistics.median(d / r for d, r in zip(rates[DISTILL], rates[RAW]))
    width = 40
    print("\n" + "=" * (width + 40))
    print(f"{'side':<{width}} {'median tokens/s':>16} {'min':>10} {'max':>10}")
    print("-" * (width + 40))
    for side in (RAW, DISTILL):
        vals = rates[side]
        print(f"{side:<{width}} {statistics.median(vals):>16.1f} {min(vals):>10.1f} {max(vals):>10.1f}")
    print("-" * (width + 40))
    print(f"same texts and tokens on both sides: {len(prompts)} prompts, {reference[1]} tokens per run")
    verdict = "MET" if ratio >= GOAL else "NOT MET"
    print(f"ratio distill / raw = {ratio:.3f}    goal >= {GOAL:.2f}: {verdict}")
    print(f"(median of per-round ratios = {paired:.3f})")
    print("=" * (width + 40), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
