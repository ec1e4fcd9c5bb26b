"""MinHash near-duplicate detection: distill.filters.minhash against datasketch and rensa.

    python benchmarks/dedup.py [--docs 20000 --words 200 --threshold 0.7 --seed 0]
    python benchmarks/dedup.py --memory 200000     # memory per short document, extrapolated to 1M

Corpus (seeded): documents of 3/4 to 5/4 of --words words, drawn from a Zipf-like
vocabulary of --vocab random words. 30 % of the documents are planted near-duplicates: each
is a distinct base document with a fraction of its word positions replaced, the fraction
chosen so that the word-5-gram Jaccard is spread over 0.5-1.0; the corpus is then shuffled.
Ground truth is the exact Jaccard of the word-5-gram shingle SETS (of every planted pair and
every reported pair).

Three sides, each timed end to end (text -> shingles -> signatures -> index -> candidates ->
verified pairs -> clusters, keep-first), best of --rounds, the sides taking turns:

  distill     distill.filters.minhash.find_duplicates(texts, threshold, num_perm, ngram), its
              signatures made by one thread per core (and, on a last line, by one thread)
  datasketch  MinHash.bulk over the n-gram byte strings (datasketch's sha1 hash per
              shingle) + MinHashLSH(threshold, num_perm) with its default (optimised)
              params; every document inserted, then queried; candidates verified with
              MinHash.jaccard >= threshold; union-find.
  rensa       rensa (Rust) RMinHash.from_token_sets over the same n-gram byte strings +
              RMinHashLSH(threshold, num_perm, --rensa-bands); every document inserted, then
              all queried at once (query_all); candidates verified with RMinHash.jaccard >=
              threshold; union-find. 32 bands of 4 rows is the banding of 128 slots that
              keeps P(candidate | J = 0.7) >= 0.95 (16 x 8 gives 0.61).
The two baselines split words with distill's own tokenizer and build the n-gram strings in
Python, so the comparison does not credit distill for tokenizing.

Reported per side: documents/s; candidate recall (planted pairs sharing an LSH bucket) for
true J >= 0.8 and 0.7-0.8; detected recall (planted pairs ending in one cluster) per J bin;
precision (reported (document, kept document) pairs with true J >= threshold, and, to show
how near the misses are, with true J >= threshold - 0.05); peak traced memory of the call
per document (tracemalloc, a separate untimed run; it sees Python and numpy, not Arrow's or
Rust's own allocators, so it is left out for rensa). Goals: distill/datasketch docs/s >= 2.5,
distill/rensa docs/s >= 1, candidate recall >= 0.95 (J >= 0.8) and >= 0.80 (0.7-0.8),
precision >= 0.95. The machine's other load moves docs/s by tens of percent from run to run:
run it more than once.

Precision is bounded by the estimator, not by the index: with 128 slots the estimated
Jaccard of a pair has a standard deviation of about 0.04 near 0.7; distill settles the pairs
within 0.1 of the threshold by their exact Jaccard, the baselines by the estimate alone.

--memory N runs find_duplicates on N and N/2 short documents (about 30 words, 5 % planted
duplicates) in fresh processes and reports peak RSS minus the RSS before the call, per
document, that slope extrapolated to 1,000,000 documents, and the recall on the planted pairs
(J >= threshold). It then runs the whole command, `distill filter dedup`, on the same N
documents as a parquet file, and reports its peak RSS over the RSS before (which counts the
pages of the memory-mapped Arrow files the kernel may drop at will) and its peak anonymous
memory (sampled every 10 ms), per document.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

from distill.filters import minhash

GOALS = {"speedup": 2.5, "vs_rensa": 1.0, "recall_08": 0.95, "recall_07": 0.80, "precision": 0.95}


def corpus(docs: int, words: int, vocab: int, seed: int, planted: float = 0.3) -> tuple[list[str], list[tuple[int, int]]]:
    """Shuffled texts and the planted (base, mutant) index pairs."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lexicon = ["".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(vocab)]
    p = 1.0 / (np.arange(vocab) + 10.0)  # Zipf-like: a few frequent words, a long tail
    p /= p.sum()
    n_mut = int(docs * planted)
    lengths = rng.integers(words * 3 // 4, words * 5 // 4 + 1, docs - n_mut)
    ids = rng.choice(vocab, int(lengths.sum()), p=p).tolist()
    bases = [ids[e - n : e] for n, e in zip(lengths.tolist(), np.cumsum(lengths).tolist())]
    texts = [" ".join(map(lexicon.__getitem__, b)) for b in bases]
    pairs = []
    for base in rng.choice(len(bases), n_mut, replace=False):
        target = rng.uniform(0.5, 1.0)
        # replacing a fraction f of words keeps about (1 - f)**5 of the 5-grams, so
        # J = q / (2 - q) with q = (1 - f)**5: solve for f.
        f = 1.0 - (2 * target / (1 + target)) ** (1 / 5)
        w = list(bases[base])
        for pos in rng.choice(len(w), round(f * len(w)), replace=False):
            w[pos] = int(rng.integers(vocab))
        pairs.append((int(base), len(texts)))
        texts.append(" ".join(map(lexicon.__getitem__, w)).capitalize() + ".")
    order = rng.permutation(len(texts))
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    return [texts[i] for i in order], [tuple(sorted((int(where[a]), int(where[b])))) for a, b in pairs]


def shingle_set(text: str, ngram: int) -> list[bytes]:
    """The word n-grams of `text` as byte strings (the whole text if shorter; none if no words)."""
    words = minhash._words(text)
    if len(words) < ngram:
        return [b" ".join(words)] if words else []
    return [b" ".join(gram) for gram in zip(*(words[k:] for k in range(ngram)))]


def find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def datasketch_dedup(texts: list[str], threshold: float, num_perm: int, ngram: int):
    """datasketch's default path, with the same semantics as find_duplicates."""
    sets = [shingle_set(t, ngram) for t in texts]
    mhs = MinHash.bulk(sets, num_perm=num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, (s, m) in enumerate(zip(sets, mhs)):
        if s:
            lsh.insert(i, m)
    parent = list(range(len(texts)))
    for i, (s, m) in enumerate(zip(sets, mhs)):
        for j in lsh.query(m) if s else ():
            if j < i and m.jaccard(mhs[j]) >= threshold:
                a, b = find(parent, i), find(parent, j)
                parent[max(a, b)] = min(a, b)
    roots = [find(parent, i) for i in range(len(texts))]
    return [None if r == i else r for i, r in enumerate(roots)], (mhs, lsh)


def rensa_dedup(texts: list[str], threshold: float, num_perm: int, ngram: int, bands: int):
    """rensa's path, with the same semantics as find_duplicates."""
    from rensa import RMinHash, RMinHashLSH

    sets = [shingle_set(t, ngram) for t in texts]
    mhs = RMinHash.from_token_sets(sets, num_perm=num_perm, seed=1)
    live = [i for i, s in enumerate(sets) if s]
    lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=bands)
    lsh.insert_pairs([(i, mhs[i]) for i in live])
    candidates = lsh.query_all([mhs[i] for i in live])
    parent = list(range(len(texts)))
    for i, found in zip(live, candidates):
        m = mhs[i]
        for j in found:
            if j < i and m.jaccard(mhs[j]) >= threshold:
                a, b = find(parent, i), find(parent, j)
                parent[max(a, b)] = min(a, b)
    roots = [find(parent, i) for i in range(len(texts))]
    return [None if r == i else r for i, r in enumerate(roots)], dict(zip(live, map(set, candidates)))


def shares_bucket(sig: np.ndarray, pairs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    eq = sig[pairs[:, 0], : bands * rows] == sig[pairs[:, 1], : bands * rows]
    return eq.reshape(len(pairs), bands, rows).all(axis=2).any(axis=1)


def timed(fn, rounds: int):
    best, result = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def peak_bytes(fn) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> None:
    """Forget the peak RSS so far (making the corpus in this process peaked higher than what
    is left of it): Linux resets it when 5 is written to clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _recall(texts: list[str], planted: list[tuple[int, int]], out: list[int | None], threshold: float) -> tuple[float, int]:
    """The share of planted pairs with J >= threshold that ended in one cluster."""
    sets = {}
    for i in {i for pair in planted for i in pair}:
        sets[i] = set(minhash.shingles(texts[i], 5).tolist())
    due = [(a, b) for a, b in planted if len(sets[a] & sets[b]) / max(len(sets[a] | sets[b]), 1) >= threshold]
    root = lambda i: i if out[i] is None else out[i]  # noqa: E731
    return sum(root(a) == root(b) for a, b in due) / max(len(due), 1), len(due)


def memory_child(docs: int, seed: int) -> None:
    texts, planted = corpus(docs, 30, 20000, seed, planted=0.05)
    minhash._permutations(128, 1)  # datasketch and pyarrow imported before "before"
    minhash._word_hashes(["warm up"])
    gc.collect()
    before = _rss()
    _reset_peak()
    t = time.perf_counter()
    out = minhash.find_duplicates(texts)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    recall, due = _recall(texts, planted, out, 0.7)
    print(json.dumps({"docs": docs, "before": before, "peak": peak, "secs": secs, "dups": sum(o is not None for o in out),
                      "recall": recall, "due": due}))


class _AnonPeak(threading.Thread):
    """The largest RssAnon of this process, sampled every 10 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0, True

    def run(self):
        while self.running:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.01)


def pipeline_child(source: str, out: str) -> None:
    import datasets  # noqa: F401 - everything the command imports, imported before "before"
    import pyarrow.compute  # noqa: F401

    from distill.filters.pipeline import FilterFile, filter_dataset

    minhash._permutations(128, 1)
    plan = FilterFile.model_validate({"column": "text", "filters": ["dedup"]})
    gc.collect()
    before = _rss()
    _reset_peak()
    with open("/proc/self/status") as status:
        anon_before = next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))
    sampler = _AnonPeak()
    sampler.start()
    t = time.perf_counter()
    counts = filter_dataset(source, plan, Path(out))
    secs = time.perf_counter() - t
    sampler.running = False
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak, "anon_before": anon_before, "anon_peak": sampler.peak, "secs": secs,
                      "removed": counts[0]["removed"]}))


def memory(n: int, seed: int) -> None:
    runs = []
    for docs in (n // 2, n):
        cmd = [sys.executable, __file__, "--memory-child", str(docs), "--seed", str(seed)]
        runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    for r in runs:
        print(f"{r['docs']:>9,} short docs: {r['secs']:6.1f} s, {r['docs'] / r['secs']:8,.0f} docs/s, "
              f"peak RSS - RSS before = {(r['peak'] - r['before']) / 2**20:7.1f} MiB "
              f"({(r['peak'] - r['before']) / r['docs']:,.0f} B/doc), {r['dups']} duplicates, "
              f"recall {r['recall']:.3f} of {r['due']} planted pairs with J >= 0.7")
    slope = ((runs[1]["peak"] - runs[1]["before"]) - (runs[0]["peak"] - runs[0]["before"])) / (runs[1]["docs"] - runs[0]["docs"])
    print(f"find_duplicates: marginal memory {slope:,.0f} B/doc -> 1,000,000 short docs ~ {slope * 1e6 / 2**30:.2f} GiB "
          f"(plus the texts themselves)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    runs = []
    try:
        for docs in (n // 2, n):
            texts, _ = corpus(docs, 30, 20000, seed, planted=0.05)
            pq.write_table(pa.table({"text": texts}), work / f"input-{docs}.parquet")
            del texts
            cmd = [sys.executable, __file__, "--pipeline-child", str(work / f"input-{docs}.parquet"), str(work / f"out-{docs}")]
            runs.append({"docs": docs, **json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in runs:
        rss, anon = r["peak"] - r["before"], r["anon_peak"] - r["anon_before"]
        print(f"distill filter dedup, {r['docs']:>9,} short docs in a parquet file: {r['secs']:5.1f} s, "
              f"{r['docs'] / r['secs']:7,.0f} docs/s, peak RSS - before {rss / 2**20:6.1f} MiB ({rss / r['docs']:,.0f} B/doc), "
              f"peak anonymous - before {anon / 2**20:6.1f} MiB ({anon / r['docs']:,.0f} B/doc), {r['removed']} removed")
    docs = runs[1]["docs"] - runs[0]["docs"]
    rss = ((runs[1]["peak"] - runs[1]["before"]) - (runs[0]["peak"] - runs[0]["before"])) / docs
    anon = ((runs[1]["anon_peak"] - runs[1]["anon_before"]) - (runs[0]["anon_peak"] - runs[0]["anon_before"])) / docs
    print(f"distill filter dedup: marginal peak RSS {rss:,.0f} B/doc -> 1,000,000 short docs ~ {rss * 1e6 / 2**30:.2f} GiB "
          f"(with the pages of memory-mapped files), marginal anonymous memory {anon:,.0f} B/doc ~ {anon * 1e6 / 2**30:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rensa-bands", type=int, default=32, help="bands of rensa's RMinHashLSH (divides --num-perm)")
    ap.add_argument("--memory", type=int, metavar="N", help="measure memory per short document instead")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pipeline-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.seed)
    if args.pipeline_child:
        return pipeline_child(*args.pipeline_child)
    if args.memory:
        return memory(args.memory, args.seed)

    t, P, n = args.threshold, args.num_perm, args.ngram
    texts, planted = corpus(args.docs, args.words, args.vocab, args.seed)
    cores = minhash._cores()
    print(f"{len(texts):,} docs, {sum(len(x.split()) for x in texts) / len(texts):.0f} words each on average, "
          f"{len(planted):,} planted pairs; threshold {t}, num_perm {P}, {n}-grams, best of {args.rounds}; "
          f"{cores} cores, load average {os.getloadavg()[0]:.2f} at the start")
    sets = [set(shingle_set(x, n)) for x in texts]

    def jaccard(i: int, j: int) -> float:
        return len(sets[i] & sets[j]) / max(len(sets[i] | sets[j]), 1)

    for warm_up in (minhash.find_duplicates, datasketch_dedup):  # imports and first calls, untimed
        warm_up(texts[:200], t, P, n)
    rensa_dedup(texts[:200], t, P, n, args.rensa_bands)
    # Interleave the sides round by round so that machine noise hits them alike.
    secs = {"distill": float("inf"), "datasketch": float("inf"), "rensa": float("inf"), "distill, 1 thread": float("inf")}
    for _ in range(args.rounds):
        s, ours = timed(lambda: minhash.find_duplicates(texts, t, P, n), 1)
        secs["distill"] = min(secs["distill"], s)
        s, (theirs, (mhs, lsh)) = timed(lambda: datasketch_dedup(texts, t, P, n), 1)
        secs["datasketch"] = min(secs["datasketch"], s)
        s, (rensas, rensa_candidates) = timed(lambda: rensa_dedup(texts, t, P, n, args.rensa_bands), 1)
        secs["rensa"] = min(secs["rensa"], s)
        s, _ = timed(lambda: minhash.find_duplicates(texts, t, P, n, workers=1), 1)
        secs["distill, 1 thread"] = min(secs["distill, 1 thread"], s)

    pairs = np.array(planted)
    true_j = np.array([jaccard(a, b) for a, b in planted])
    bins = {"J>=0.8": true_j >= 0.8, "0.7-0.8": (true_j >= 0.7) & (true_j < 0.8),
            "0.6-0.7": (true_j >= 0.6) & (true_j < 0.7), "0.5-0.6": (true_j >= 0.5) & (true_j < 0.6)}
    our_sig = minhash.signatures([minhash.shingles(x, n) for x in texts], P)
    ds_sig = np.array([m.hashvalues for m in mhs])
    cand = {"distill": shares_bucket(our_sig, pairs, *minhash.lsh_params(t, P)),
            "datasketch": shares_bucket(ds_sig, pairs, lsh.b, lsh.r),
            "rensa": np.array([b in rensa_candidates.get(a, ()) for a, b in planted])}
    rows = {}
    for name, out in (("distill", ours), ("datasketch", theirs), ("rensa", rensas)):
        roots = np.array([i if o is None else o for i, o in enumerate(out)])
        reported = [(i, o) for i, o in enumerate(out) if o is not None]
        good = sum(jaccard(i, o) >= t for i, o in reported)
        together = roots[pairs[:, 0]] == roots[pairs[:, 1]]
        rows[name] = {
            "docs/s": len(texts) / secs[name],
            "cand J>=0.8": cand[name][bins["J>=0.8"]].mean(),
            "cand 0.7-0.8": cand[name][bins["0.7-0.8"]].mean(),
            **{f"found {k}": together[v].mean() for k, v in bins.items()},
            "reported": len(reported),
            "precision": good / max(len(reported), 1),
            f"prec. J>={t - 0.05:.2f}": sum(jaccard(i, o) >= t - 0.05 for i, o in reported) / max(len(reported), 1),
        }
    rows["distill"]["B/doc peak"] = peak_bytes(lambda: minhash.find_duplicates(texts, t, P, n)) / len(texts)
    rows["datasketch"]["B/doc peak"] = peak_bytes(lambda: datasketch_dedup(texts, t, P, n)) / len(texts)
    rows["rensa"]["B/doc peak"] = None
    b, r = minhash.lsh_params(t, P)
    print("planted pairs by true J: " + ", ".join(f"{k} {v.sum()}" for k, v in bins.items()))
    print(f"LSH (bands, rows): distill {(b, r)}, datasketch default {(lsh.b, lsh.r)}, "
          f"rensa {(args.rensa_bands, P // args.rensa_bands)}\n")
    print(f"{'':16s}{'distill':>12s}{'datasketch':>12s}{'rensa':>12s}{'d/datasketch':>14s}{'d/rensa':>10s}")
    for key in rows["distill"]:
        values = [rows[side][key] for side in ("distill", "datasketch", "rensa")]
        fmt = (lambda v: f"{v:12,.0f}") if key in ("docs/s", "reported", "B/doc peak") else (lambda v: f"{v:12.3f}")
        cells = "".join(fmt(v) if v is not None else f"{'-':>12s}" for v in values)
        ratios = "".join(f"{values[0] / v:{w}.2f}" if v else f"{'-':>{w}s}" for v, w in ((values[1], 14), (values[2], 10)))
        print(f"{key:16s}{cells}{ratios}")
    ours_r = rows["distill"]
    checks = {
        "speedup": ours_r["docs/s"] / rows["datasketch"]["docs/s"], "vs_rensa": ours_r["docs/s"] / rows["rensa"]["docs/s"],
        "recall_08": ours_r["cand J>=0.8"], "recall_07": ours_r["cand 0.7-0.8"], "precision": ours_r["precision"],
    }
    print("\ngoals: " + ", ".join(f"{k} {v:.3f} (>= {GOALS[k]}) {'ok' if v >= GOALS[k] else 'MISSED'}" for k, v in checks.items()))
    one = len(texts) / secs["distill, 1 thread"]
    print(f"distill on one thread: {one:,.0f} docs/s (distill/rensa {one / rows['rensa']['docs/s']:.2f})")
    strings, _ = timed(lambda: [shingle_set(x, n) for x in texts], args.rounds)
    print(f"rensa and datasketch spend {strings:.2f} s building the n-gram strings in Python; without it rensa would make "
          f"{len(texts) / max(secs['rensa'] - strings, 1e-9):,.0f} docs/s; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
