"""Throughput of the distill client against a bare AsyncOpenAI loop, on a loopback server.

    python benchmarks/client_throughput.py [--requests 2000 --concurrency 64 --latency 0.02]

The loopback OpenAI-compatible server runs in its own process (so it does not share the
GIL with the clients being measured). Two sides send the same N distinct chat requests:

  A  "bare AsyncOpenAI + semaphore": openai.AsyncOpenAI(max_retries=0) with an
     asyncio.Semaphore(concurrency) around each chat.completions.create;
  B  "distill Client": Client(OpenAIBackend(...), RequestCache(fresh temp file),
     concurrency=...) and asyncio.gather of client.complete -- cache on, every response
     committed to SQLite before its caller gets it (the responses that arrive together are
     committed in one transaction).

Every run uses its own prompt prefix, so the server never sees a repeat and the distill
cache always misses. Both sides are warmed up once, then run alternately (AB BA AB ...) and
the median requests/s of each is reported with the ratio distill/bare (goal >= 0.95),
plus the client process's CPU time per request (microseconds; user + system), which
is what bounds throughput when the client is CPU-bound and is less disturbed by other
load on the machine than requests/s.
A last line re-runs the distill client over its last requests with the warm cache (all
hits), as extra information. Timing covers sending the requests only, not building or
closing clients.

`--profile FILE` additionally runs the distill side once under cProfile and writes the
stats to FILE (and prints the top entries); it does not affect the figures above.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from distill.backends.openai_backend import OpenAIBackend
from distill.cache import RequestCache
from distill.client import Client
from distill.request import Request, SamplingParams

MODEL = "loopback"
KEY_ENV = "DISTILL_BENCH_API_KEY"
MAX_TOKENS = 64
TEMPERATURE = 0.7
GOAL = 0.95
BARE = "bare AsyncOpenAI + semaphore"
DISTILL = "distill Client (cache on)"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill.testing.openai_server", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the loopback server did not print its URL (got {url!r})")
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prompt(prefix: str, i: int) -> str:
    return f"{prefix} question {i}"


async def run_bare(url: str, prefix: str, n: int, concurrency: int) -> tuple[float, float]:
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    try:
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with slots:
                raw = await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": prompt(prefix, i)}],
                    max_tokens=MAX_TOKENS,
                    temperature=TEMPERATURE,
                    top_p=1.0,  # what OpenAIBackend sends too: identical request bodies
                )
                return raw.choices[0].message.content

        start, cpu = time.perf_counter(), time.process_time()
        texts = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await client.close()
    if len(texts) != n or not all(texts):
        raise RuntimeError(f"{BARE}: {sum(1 for t in texts if t)} of {n} replies had text")
    return n / elapsed, cpu / n * 1e6  # requests/s, client-process CPU microseconds per request


def make_requests(prefix: str, n: int) -> list[Request]:
    params = SamplingParams(temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
    return [Request.chat(MODEL, [{"role": "user", "content": prompt(prefix, i)}], params) for i in range(n)]


async def run_distill(
    url: str, prefix: str, n: int, concurrency: int, cache_path: Path, expect_hits: bool = False
) -> tuple[float, float]:
    backend = OpenAIBackend(MODEL, [url], api_key_env=KEY_ENV, timeout=60)
    cache = RequestCache(cache_path)
    client = Client(backend, cache, concurrency=concurrency)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        # Building the requests is timed, as the bare side builds its messages in the loop.
        responses = await asyncio.gather(*(client.complete(r) for r in make_requests(prefix, n)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await backend.aclose()
        cache.close()
    stats = client.stats
    if len(responses) != n or not all(r.text for r in responses):
        raise RuntimeError(f"{DISTILL}: {sum(1 for r in responses if r.text)} of {n} replies had text")
    want = (0, n) if expect_hits else (n, 0)
    if (stats.requests, stats.cache_hits) != want:
        raise RuntimeError(f"{DISTILL}: expected (backend, hits) = {want}, got ({stats.requests}, {stats.cache_hits})")
    return n / elapsed, cpu / n * 1e6  # requests/s, client-process CPU microseconds per request


async def bench(url: str, args: argparse.Namespace, tmp: Path) -> None:
    n, conc = args.requests, args.concurrency
    counter = iter(range(1_000_000))

    def fresh_prefix(side: str) -> str:
        return f"[{side}{next(counter)}]"

    def new_cache_path() -> Path:
        path = tmp / f"cache{next(counter)}" / "cache.sqlite"
        path.parent.mkdir()
        return path

    print(f"loopback server {url} (own process), latency {args.latency * 1000:.0f} ms, "
          f"{n} requests, concurrency {conc}, {args.rounds} rounds, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs", flush=True)

    # Warm-up: lazy imports, first connections, SQLite.
    warm = min(n, 500)
    await run_bare(url, fresh_prefix("wb"), warm, conc)
    await run_distill(url, fresh_prefix("wd"), warm, conc, new_cache_path())

    results: dict[str, list[float]] = {BARE: [], DISTILL: []}
    cpus: dict[str, list[float]] = {BARE: [], DISTILL: []}
    last_distill: tuple[str, Path] | None = None
    print(f"\n{'round':>5}  {'side':<30} {'req/s':>9} {'CPU us/req':>12}", flush=True)
    for rnd in range(1, args.rounds + 1):
        order = [BARE, DISTILL] if rnd % 2 else [DISTILL, BARE]  # AB, BA, AB...: neither side always goes first
        for side in order:
            if side == BARE:
                rate, cpu = await run_bare(url, fresh_prefix("b"), n, conc)
            else:
                prefix, path = fresh_prefix("d"), new_cache_path()
                rate, cpu = await run_distill(url, prefix, n, conc, path)
                last_distill = (prefix, path)
            results[side].append(rate)
            cpus[side].append(cpu)
            print(f"{rnd:>5}  {side:<30} {rate:>9.0f} {cpu:>12.0f}", flush=True)

    assert last_distill is not None
    hits_rate, hits_cpu = await run_distill(url, last_distill[0], n, conc, last_distill[1], expect_hits=True)

    bare = statistics.median(results[BARE])
    dist = statistics.median(results[DISTILL])
    ratio = dist / bare
    # Each round's two runs are adjacent in time: their ratio is less sensitive to load drift.
    paired = statistics.median(d / b for d, b in zip(results[DISTILL], results[BARE]))
    width = 44
    print("\n" + "=" * (width + 49))
    print(f"{'side':<{width}} {'median req/s':>14} {'min':>9} {'max':>9} {'CPU us/req':>12}")
    print("-" * (width + 49))
    for side in (BARE, DISTILL):
        vals = results[side]
        print(f"{side:<{width}} {statistics.median(vals):>14.0f} {min(vals):>9.0f} {max(vals):>9.0f} {statistics.median(cpus[side]):>12.0f}")
    print(f"{'distill Client, warm cache (all hits, extra)':<{width}} {hits_rate:>14.0f} {'':>9} {'':>9} {hits_cpu:>12.0f}")
    print("-" * (width + 49))
    verdict = "MET" if ratio >= GOAL else "NOT MET"
    print(f"ratio distill / bare = {ratio:.3f}    goal >= {GOAL:.2f}: {verdict}")
    cpu_ratio = statistics.median(cpus[BARE]) / statistics.median(cpus[DISTILL])
    print(f"(median of per-round ratios = {paired:.3f}; bare/distill client CPU per request = {cpu_ratio:.3f})")
    print("=" * (width + 49), flush=True)

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        rate, _ = await run_distill(url, fresh_prefix("p"), n, conc, new_cache_path())
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"\ncProfile of one distill run ({rate:.0f} req/s under the profiler) -> {args.profile}")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)  # cumulative double-counts coroutine resumptions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="server-side latency per request, seconds")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; each runs both sides once")
    parser.add_argument("--profile", metavar="FILE", help="also run the distill side once under cProfile")
    args = parser.parse_args()

    os.environ[KEY_ENV] = "bench"
    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
            asyncio.run(bench(url, args, Path(tmp)))
    finally:
        stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
