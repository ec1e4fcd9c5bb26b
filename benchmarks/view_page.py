"""`distill view` on a 100k-row run: the page's size, the time to write it, and how it opens and pages
in a real headless Chromium, against the same page for a 1,000-row run (the baseline) in the same process.

    python benchmarks/view_page.py [--rows 100000 --baseline-rows 1000 --seed 0] [-o DIR]

The runs are made here (no model), shaped like UltraChat at its paper's sizes (Ding et al. 2023, table 2:
3.85 turns and 1,467 tokens per dialogue on average): 1 to 8 assistant turns (mean about 3.9), user
messages of about 45 words and answers of about 220, in the Hub layout of a `distill generate ultrachat`
run (data/train_sft shards, stats.json, config.yaml), with a sector and a topic per row. The texts are
drawn from a Zipf-like vocabulary of random words, a pool of 20,000 distinct messages combined at random,
so gzip sees text about as compressible as English (about 3:1), not a repeated string. The last row holds
one word no other row has, for the search.

Measured per run: `distill view` wall time and peak RSS (a child process each), the page's bytes; in
Chromium (Debian's /usr/bin/chromium driven by playwright, one fresh browser per page): the time from
navigation to the page's `ready` mark (overview, every chart drawn, first page of samples shown), the JS
heap then, the time to show the last page, and the time for a search that must decode every chunk to find
the one row with the planted word. The ratios are 100k-row / baseline: how much of the work grows with the
rows (the search must) and how much does not (opening, paging).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLANTED = "quetzalcoatlus"  # in the last row only
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def vocabulary(rng: random.Random, size: int = 30000) -> tuple[list[str], list[float]]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [1 / (i + 1) for i in range(len(letters))]
    words = ["".join(rng.choices(letters, weights, k=rng.randint(2, 10))) for _ in range(size)]
    return words, [1 / (rank + 1) for rank in range(size)]


def message_pool(rng: random.Random, count: int, mean_words: int) -> list[str]:
    words, zipf = vocabulary(rng)
    pool = []
    for _ in range(count):
        n = max(3, int(rng.gauss(mean_words, mean_words / 3)))
        sentence = rng.choices(words, zipf, k=n)
        pool.append(". ".join(" ".join(sentence[i:i + 12]).capitalize() for i in range(0, n, 12)) + ".")
    return pool


def make_run(folder: Path, rows: int, seed: int) -> Path:
    """A `distill generate ultrachat`-shaped run of `rows` dialogues (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    users, answers = message_pool(rng, 20000, 45), message_pool(rng, 20000, 220)
    topics = [f"topic {i}" for i in range(30)]
    shard_rows = 20000
    shards = (rows + shard_rows - 1) // shard_rows
    (folder / "data").mkdir(parents=True)
    for shard in range(shards):
        batch = []
        for i in range(shard * shard_rows, min(rows, (shard + 1) * shard_rows)):
            turns = min(8, max(1, round(rng.gauss(3.85, 1.6))))
            messages = []
            for _ in range(turns):
                messages += [{"role": "user", "content": rng.choice(users)},
                             {"role": "assistant", "content": rng.choice(answers)}]
            if i == rows - 1:
                messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + f" {PLANTED}."}
            batch.append({"prompt": messages[0]["content"], "prompt_id": f"{i:064x}", "messages": messages,
                          "sector": rng.choice(["world", "creation", "materials"]), "topic": rng.choice(topics),
                          "num_turns": turns, "stop_reason": "completed", "assistant_model": "teacher",
                          "user_model": "teacher"})
        pq.write_table(pa.Table.from_pylist(batch), folder / "data" / f"train_sft-{shard:05d}-of-{shards:05d}.parquet")
    (folder / "stats.json").write_text(json.dumps({
        "command": "generate ultrachat", "backend": "openai", "models": ["teacher"],
        "items": {"done": rows, "total": rows, "failed": 0}, "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "filters": [{"name": "min-turns", "removed": 0}]}))
    (folder / "config.yaml").write_text(f"command: generate ultrachat\nnum_dialogues: {rows}\nseed: {seed}\n")
    return folder


def view(run: Path) -> tuple[Path, float, int]:
    page = run / "view.html"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "distill", "view", str(run), "-o", str(page)], capture_output=True, check=False,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"distill view failed: {done.stderr.strip()}")
    return page, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def in_browser(page: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        tab.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        tab.goto(page.resolve().as_uri(), wait_until="commit", timeout=600_000)
        tab.wait_for_selector('body[data-ready="1"]', timeout=600_000)
        opened = time.perf_counter() - start
        heap = tab.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        last = _timed(tab, lambda: _go_to_last_page(tab))
        searched = _timed(tab, lambda: _search(tab, PLANTED))
        found = _matches(tab)
        browser.close()
    if errors:
        sys.exit(f"the page logged errors: {errors[:3]}")
    if found != 1:
        sys.exit(f"the search found {found} rows, not 1")
    return {"open_s": opened, "heap_mb": heap / 1e6, "last_page_s": last, "search_s": searched}


def _timed(tab, action) -> float:
    start = time.perf_counter()
    action()
    tab.wait_for_selector('body[data-busy="0"]', timeout=600_000)
    return time.perf_counter() - start


def _go_to_last_page(tab) -> None:
    pager = tab.locator("[data-run='r0'] .pager input")
    last = int(tab.locator("[data-run='r0'] .pager").inner_text().split("of")[-1].split()[0].replace(",", ""))
    pager.fill(str(last))
    pager.dispatch_event("change")


def _search(tab, word: str) -> None:
    tab.locator("[data-run='r0'] input[type='search']").fill(word)


def _matches(tab) -> int:
    return int(tab.locator("[data-run='r0'] .count").inner_text().split()[0].replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--baseline-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, help="Keep the runs and pages here.  [default: a temporary folder]")
    args = parser.parse_args()
    root = args.output or Path(tempfile.mkdtemp(prefix="view-bench-"))
    figures = {}
    for name, rows in (("baseline", args.baseline_rows), ("run", args.rows)):  # the bigger last: RSS is a running peak
        run = make_run(root / f"{name}-{rows}", rows, args.seed)
        page, written, rss = view(run)
        figures[name] = {"rows": rows, "page_mb": page.stat().st_size / 1e6, "write_s": written,
                         "view_rss_mb": rss / 1e6, **in_browser(page)}
        print(json.dumps({name: figures[name]}), flush=True)
    base, big = figures["baseline"], figures["run"]
    print(f"\n{'':18}{base['rows']:>12,} rows{big['rows']:>12,} rows{'ratio':>10}")
    for key, label in (("page_mb", "page (MB)"), ("write_s", "distill view (s)"), ("view_rss_mb", "its peak RSS (MB)"),
                       ("open_s", "open to ready (s)"), ("heap_mb", "JS heap (MB)"), ("last_page_s", "last page (s)"),
                       ("search_s", "search all (s)")):
        print(f"{label:18}{base[key]:>17,.2f}{big[key]:>17,.2f}{big[key] / max(base[key], 1e-9):>10.1f}")
    print(f"\nruns and pages in {root}")


if __name__ == "__main__":
    main()
