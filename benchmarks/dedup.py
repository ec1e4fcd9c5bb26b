"""MinHash near-duplicate detection: distill.filters.minhash against datasketch's default path.

    python benchmarks/dedup.py [--docs 20000 --words 200 --threshold 0.7 --seed 0]
    python benchmarks/dedup.py --memory 200000     # peak RSS per short document, extrapolated to 1M

Corpus (seeded): documents of 3/4 to 5/4 of --words words, drawn from a Zipf-like
vocabulary of --vocab random words. 30 % of the documents are planted near-duplicates: each
is a distinct base document with a fraction of its word positions replaced, the fraction
chosen so that the word-5-gram Jaccard is spread over 0.5-1.0; the corpus is then shuffled.
Ground truth is the exact Jaccard of the word-5-gram shingle SETS (of every planted pair and
every reported pair).

Two sides, each timed end to end (text -> shingles -> signatures -> index -> candidates ->
verified pairs -> clusters, keep-first), best of --rounds:

  distill     distill.filters.minhash.find_duplicates(texts, threshold, num_perm, ngram)
  datasketch  MinHash.bulk over the n-gram byte strings (datasketch's sha1 hash per
              shingle) + MinHashLSH(threshold, num_perm) with its default (optimised)
              params; every document inserted, then queried; candidates verified with
              MinHash.jaccard >= threshold; union-find. It splits words with distill's
              own tokenizer, so the comparison does not credit distill for tokenizing.

Reported per side: documents/s; candidate recall (planted pairs sharing an LSH bucket) for
true J >= 0.8 and 0.7-0.8; detected recall (planted pairs ending in one cluster) per J bin;
precision (reported (document, kept document) pairs with true J >= threshold, and, to show
how near the misses are, with true J >= threshold - 0.05); peak traced memory of the call
per document (tracemalloc, a separate untimed run). Goals: distill/datasketch docs/s >= 2.5,
candidate recall >= 0.95 (J >= 0.8) and >= 0.80 (0.7-0.8), precision >= 0.95.

Precision is bounded by the estimator, not by the index: with 128 slots the estimated
Jaccard of a pair has a standard deviation of about 0.04 near 0.7, so on a corpus as dense
in pairs just below the threshold as this one, some 5 % of reported pairs have a true J in
0.6-0.7 (0.944-0.947 measured at 128 permutations, 0.966 at --num-perm 256). datasketch's
default path scores higher because its index misses many pairs on both sides of the
threshold (a third of those at 0.7-0.8).

distill.filters.minhash turns Python's cyclic garbage collector off while it runs (it makes
millions of small objects and no cycles); a last line times the datasketch side with the
collector off as well, so the ratio can be read without that effect.

--memory N runs find_duplicates on N and N/2 short documents (about 30 words, 5 % planted
duplicates) in fresh processes and reports peak RSS minus the RSS before the call, per
document, and that slope extrapolated to 1,000,000 documents.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from datasketch import MinHash, MinHashLSH

from distill.filters import minhash

GOALS = {"speedup": 2.5, "recall_08": 0.95, "recall_07": 0.80, "precision": 0.95}


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
    words = minhash._words(text)
    return [b" ".join(words[i : i + ngram]) for i in range(max(len(words) - ngram + 1, 1))] if words else []


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


def memory_child(docs: int, seed: int) -> None:
    texts, _ = corpus(docs, 30, 20000, seed, planted=0.05)
    gc.collect()
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1]) * resource.getpagesize()
    t = time.perf_counter()
    out = minhash.find_duplicates(texts)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"docs": docs, "before": before, "peak": peak, "secs": secs, "dups": sum(o is not None for o in out)}))


def memory(n: int, seed: int) -> None:
    runs = []
    for docs in (n // 2, n):
        cmd = [sys.executable, __file__, "--memory-child", str(docs), "--seed", str(seed)]
        runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    for r in runs:
        print(f"{r['docs']:>9,} short docs: {r['secs']:6.1f} s, {r['docs'] / r['secs']:8,.0f} docs/s, "
              f"peak RSS - RSS before = {(r['peak'] - r['before']) / 2**20:7.1f} MiB "
              f"({(r['peak'] - r['before']) / r['docs']:,.0f} B/doc), {r['dups']} duplicates")
    slope = ((runs[1]["peak"] - runs[1]["before"]) - (runs[0]["peak"] - runs[0]["before"])) / (runs[1]["docs"] - runs[0]["docs"])
    print(f"marginal memory {slope:,.0f} B/doc -> 1,000,000 short docs ~ {slope * 1e6 / 2**30:.1f} GiB "
          f"(plus the texts themselves)")


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
    ap.add_argument("--memory", type=int, metavar="N", help="measure RSS per short document instead")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.seed)
    if args.memory:
        return memory(args.memory, args.seed)

    t, P, n = args.threshold, args.num_perm, args.ngram
    texts, planted = corpus(args.docs, args.words, args.vocab, args.seed)
    print(f"{len(texts):,} docs, {sum(len(x.split()) for x in texts) / len(texts):.0f} words each on average, "
          f"{len(planted):,} planted pairs; threshold {t}, num_perm {P}, {n}-grams, best of {args.rounds}")
    sets = [set(shingle_set(x, n)) for x in texts]

    def jaccard(i: int, j: int) -> float:
        return len(sets[i] & sets[j]) / max(len(sets[i] | sets[j]), 1)

    # Interleave the sides round by round so that machine noise hits both alike.
    ours_s = theirs_s = float("inf")
    for _ in range(args.rounds):
        s, ours = timed(lambda: minhash.find_duplicates(texts, t, P, n), 1)
        ours_s = min(ours_s, s)
        s, (theirs, (mhs, lsh)) = timed(lambda: datasketch_dedup(texts, t, P, n), 1)
        theirs_s = min(theirs_s, s)

    pairs = np.array(planted)
    true_j = np.array([jaccard(a, b) for a, b in planted])
    bins = {"J>=0.8": true_j >= 0.8, "0.7-0.8": (true_j >= 0.7) & (true_j < 0.8),
            "0.6-0.7": (true_j >= 0.6) & (true_j < 0.7), "0.5-0.6": (true_j >= 0.5) & (true_j < 0.6)}
    our_sig = minhash.signatures([minhash.shingles(x, n) for x in texts], P)
    ds_sig = np.array([m.hashvalues for m in mhs])
    cand = {"distill": shares_bucket(our_sig, pairs, *minhash.lsh_params(t, P)),
            "datasketch": shares_bucket(ds_sig, pairs, lsh.b, lsh.r)}
    rows = {}
    for name, out, secs in (("distill", ours, ours_s), ("datasketch", theirs, theirs_s)):
        roots = np.array([i if o is None else o for i, o in enumerate(out)])
        reported = [(i, o) for i, o in enumerate(out) if o is not None]
        good = sum(jaccard(i, o) >= t for i, o in reported)
        together = roots[pairs[:, 0]] == roots[pairs[:, 1]]
        rows[name] = {
            "docs/s": len(texts) / secs,
            "cand J>=0.8": cand[name][bins["J>=0.8"]].mean(),
            "cand 0.7-0.8": cand[name][bins["0.7-0.8"]].mean(),
            **{f"found {k}": together[v].mean() for k, v in bins.items()},
            "reported": len(reported),
            "precision": good / max(len(reported), 1),
            f"prec. J>={t - 0.05:.2f}": sum(jaccard(i, o) >= t - 0.05 for i, o in reported) / max(len(reported), 1),
        }
    rows["distill"]["B/doc peak"] = peak_bytes(lambda: minhash.find_duplicates(texts, t, P, n)) / len(texts)
    rows["datasketch"]["B/doc peak"] = peak_bytes(lambda: datasketch_dedup(texts, t, P, n)) / len(texts)
    b, r = minhash.lsh_params(t, P)
    print("planted pairs by true J: " + ", ".join(f"{k} {v.sum()}" for k, v in bins.items()))
    print(f"LSH (bands, rows): distill {(b, r)}, datasketch default {(lsh.b, lsh.r)}\n")
    print(f"{'':16s}{'distill':>14s}{'datasketch':>14s}{'ratio':>10s}")
    for key in rows["distill"]:
        a, d = rows["distill"][key], rows["datasketch"][key]
        fmt = (lambda v: f"{v:14,.0f}") if key in ("docs/s", "reported", "B/doc peak") else (lambda v: f"{v:14.3f}")
        print(f"{key:16s}{fmt(a)}{fmt(d)}" + (f"{a / d:10.2f}" if d else f"{'-':>10s}"))
    ours_r = rows["distill"]
    checks = {
        "speedup": rows["distill"]["docs/s"] / rows["datasketch"]["docs/s"],
        "recall_08": ours_r["cand J>=0.8"], "recall_07": ours_r["cand 0.7-0.8"], "precision": ours_r["precision"],
    }
    print("\ngoals: " + ", ".join(f"{k} {v:.3f} (>= {GOALS[k]}) {'ok' if v >= GOALS[k] else 'MISSED'}" for k, v in checks.items()))
    gc.disable()
    try:
        secs, _ = timed(lambda: datasketch_dedup(texts, t, P, n), 1)
    finally:
        gc.enable()
    print(f"datasketch side with the garbage collector off: {len(texts) / secs:,.0f} docs/s "
          f"(distill/datasketch {rows['distill']['docs/s'] * secs / len(texts):.2f})")


if __name__ == "__main__":
    main()
