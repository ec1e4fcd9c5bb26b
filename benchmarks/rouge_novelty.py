"""ROUGE-L novelty filtering: NoveltyPool against the plain rouge_score loop.

    python benchmarks/rouge_novelty.py [--pool 10000 --candidates 200 --seed 0]
                                       [--reference-candidates 40 --threshold 0.7]

Data (seeded): a pool of instruction-like texts, 10-30 words drawn from a Zipf-weighted
vocabulary of 3000 words behind a leading verb, 5% of them near-duplicates of earlier
entries; candidates of which 40% are fresh and 60% are near-duplicates (1-12 word edits,
so their best score straddles the threshold) of pool entries or of earlier candidates.

Two sides judge the candidates in order, keeping a candidate only if its ROUGE-L
F-measure with every pool entry is < threshold, accepted candidates joining the pool:

  A  the Self-Instruct loop on rouge_score: RougeScorer(["rougeL"]).score(entry,
     candidate) against every pool entry. It takes about 1 s per candidate on a 10k
     pool, so it runs on the first --reference-candidates only, and the two sides are
     compared by time per candidate;
  B  NoveltyPool(pool).filter(candidates) on all candidates (building the pool's index
     is timed separately and reported too).

Decisions must be identical: B's first --reference-candidates decisions against A's,
and all of B's against a brute-force loop of distill's own rouge_l (pre-tokenized; the
tests show it equals rouge_score bit for bit). Goal: A/B per candidate >= 50.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import sys
import time

from rouge_score import rouge_scorer

from distill.filters.rouge import NoveltyPool, rouge_l, tokenize

VERBS = ["Write", "Explain", "List", "Describe", "Generate", "Summarize", "Give", "Create",
         "Classify", "Translate", "Suggest", "Compare", "Find", "Rewrite", "Identify"]


def make_data(pool_size: int, n_candidates: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < 3000:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    cum_weights = list(itertools.accumulate(1 / rank for rank in range(1, len(vocab) + 1)))

    def word() -> str:
        return vocab[bisect.bisect(cum_weights, rng.random() * cum_weights[-1])]

    def fresh() -> str:
        words = [rng.choice(VERBS)] + [word() for _ in range(rng.randint(9, 29))]
        return " ".join(words) + rng.choice([".", "?", ":", "!"])

    def near_duplicate(text: str) -> str:
        words = text.split()
        for _ in range(rng.randint(1, 12)):
            op = rng.randrange(3)
            if op == 0:
                words[rng.randrange(len(words))] = word()
            elif op == 1 and len(words) > 5:
                del words[rng.randrange(len(words))]
            else:
                words.insert(rng.randrange(len(words) + 1), word())
        return " ".join(words)

    pool: list[str] = []
    for _ in range(pool_size):
        pool.append(near_duplicate(rng.choice(pool)) if pool and rng.random() < 0.05 else fresh())
    candidates: list[str] = []
    for _ in range(n_candidates):
        if rng.random() < 0.4:
            candidates.append(fresh())
        else:
            source = rng.choice(candidates) if candidates and rng.random() < 0.2 else rng.choice(pool)
            candidates.append(near_duplicate(source))
    return pool, candidates


def rouge_score_loop(pool: list[str], candidates: list[str], threshold: float) -> list[bool]:
    """Side A: keep[i] for each candidate, rouge_score against every pool entry."""
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pool, kept = list(pool), []
    for candidate in candidates:
        keep = max((scorer.score(entry, candidate)["rougeL"].fmeasure for entry in pool), default=0.0) < threshold
        if keep:
            pool.append(candidate)
        kept.append(keep)
    return kept


def rouge_l_loop(pool: list[str], candidates: list[str], threshold: float) -> list[bool]:
    """Brute-force check of all decisions with distill's rouge_l on pre-tokenized texts."""
    pool_tokens, kept = [tokenize(t) for t in pool], []
    for candidate in candidates:
        tokens = tokenize(candidate)
        keep = all(rouge_l(entry, tokens) < threshold for entry in pool_tokens)
        if keep:
            pool_tokens.append(tokens)
        kept.append(keep)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=10000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--reference-candidates", type=int, default=40,
                        help="candidates the rouge_score loop judges (about 1 s each on a 10k pool)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pool, candidates = make_data(args.pool, args.candidates, args.seed)
    n_ref = min(args.reference_candidates, len(candidates))
    print(f"pool {len(pool)} texts, {len(candidates)} candidates, threshold {args.threshold}, seed {args.seed}")

    start = time.perf_counter()
    novelty = NoveltyPool(pool, threshold=args.threshold)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    decisions = novelty.filter(candidates)
    filter_s = time.perf_counter() - start
    kept = [d is None for d in decisions]
    print(f"NoveltyPool: index {build_s:.3f} s, filter {filter_s:.3f} s for {len(candidates)} candidates "
          f"({filter_s / len(candidates) * 1e3:.3f} ms/candidate); kept {sum(kept)}, dropped {len(kept) - sum(kept)}")

    start = time.perf_counter()
    reference = rouge_score_loop(pool, candidates[:n_ref], args.threshold)
    reference_s = time.perf_counter() - start
    partial = " (first %d candidates only; compared per candidate)" % n_ref if n_ref < len(candidates) else ""
    print(f"rouge_score loop: {reference_s:.2f} s for {n_ref} candidates "
          f"({reference_s / n_ref * 1e3:.1f} ms/candidate){partial}; kept {sum(reference)}")
    if reference != kept[:n_ref]:
        print("FAIL: decisions differ from the rouge_score loop", file=sys.stderr)
        return 1

    start = time.perf_counter()
    check = rouge_l_loop(pool, candidates, args.threshold)
    print(f"brute-force rouge_l check of all {len(candidates)} decisions: {time.perf_counter() - start:.1f} s")
    if check != kept:
        print("FAIL: decisions differ from the brute-force rouge_l loop", file=sys.stderr)
        return 1

    per_ref = reference_s / n_ref
    ratio = per_ref / (filter_s / len(candidates))
    ratio_with_index = per_ref / ((filter_s + build_s) / len(candidates))
    print(f"decisions identical; speed-up per candidate: {ratio:.0f}x "
          f"({ratio_with_index:.0f}x counting the index build over {len(candidates)} candidates); goal >= 50x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
