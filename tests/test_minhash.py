"""MinHash near-duplicate detection (distill.filters.minhash)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from distill.filters import minhash
from distill.filters.minhash import find_duplicates, lsh_params, shingles, signatures

WORDS = [f"w{i}x" for i in range(3000)]


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def mutate(rng: random.Random, t: str, changes: int) -> str:
    words = t.split()
    for pos in rng.sample(range(len(words)), changes):
        words[pos] = rng.choice(WORDS)
    return " ".join(words)


def ngram_set(t: str, n: int) -> set[str]:
    words = re.findall(r"[^\W_]+", t.lower())
    return {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))} if words else set()


def jaccard(a: str, b: str, n: int = 5) -> float:
    x, y = ngram_set(a, n), ngram_set(b, n)
    return len(x & y) / len(x | y)


def test_planted_near_duplicates_are_found_and_distinct_texts_kept():
    rng = random.Random(0)
    originals = [text(rng, 120) for _ in range(200)]
    copies = [mutate(rng, originals[i], 2) for i in range(0, 200, 4)]  # J about 0.85
    texts = originals + copies
    out = find_duplicates(texts)
    assert out[:200] == [None] * 200
    assert out[200:] == list(range(0, 200, 4))


def test_keep_first_and_cluster_representative():
    rng = random.Random(1)
    w = [rng.choice(WORDS) for _ in range(120)]
    a, b, c = (" ".join(w[k : k + 100]) for k in (0, 10, 20))  # J(a,b) = J(b,c) = 0.81, J(a,c) = 0.66
    other = text(rng, 100)
    assert find_duplicates([a, other, b, c, a]) == [None, None, 0, 0, 0]
    # The representative is the cluster's first member in input order, even when only
    # linked through another member.
    assert find_duplicates([c, other, a, b]) == [None, None, 0, 0]
    assert find_duplicates([b, a, c]) == [None, 0, 0]
    # Normalisation: case and punctuation do not matter.
    assert find_duplicates([a, a.upper().replace(" ", ", ")]) == [None, 0]


def test_against_exact_jaccard():
    rng = random.Random(2)
    originals = [text(rng, 100) for _ in range(300)]
    texts, pairs = list(originals), []
    for i in range(200):
        texts.append(mutate(rng, originals[i], rng.randint(0, 10)))  # J from 1 down to about 0.5
        pairs.append((i, len(texts) - 1))
    out = find_duplicates(texts, threshold=0.7)
    truth = {p: jaccard(texts[p[0]], texts[p[1]]) for p in pairs}
    high = [p for p, j in truth.items() if j >= 0.8]
    low = [p for p, j in truth.items() if j < 0.55]
    assert len(high) > 40 and len(low) > 10
    assert sum(out[b] == a for a, b in high) / len(high) >= 0.95
    assert all(out[b] is None for a, b in low)
    reported = [(i, o) for i, o in enumerate(out) if o is not None]
    assert all(jaccard(texts[i], texts[o]) >= 0.55 for i, o in reported)  # estimator noise: 128 slots
    assert sum(jaccard(texts[i], texts[o]) >= 0.7 for i, o in reported) / len(reported) >= 0.9


def test_shingles_are_the_word_ngrams():
    rng = random.Random(3)
    a = text(rng, 80)
    b = mutate(rng, a, 6)
    ha, hb = set(shingles(a, 5).tolist()), set(shingles(b, 5).tolist())
    assert len(ha) == len(ngram_set(a, 5)) and len(hb) == len(ngram_set(b, 5))  # no collisions
    assert len(ha & hb) / len(ha | hb) == pytest.approx(jaccard(a, b))
    assert shingles(a, 5).dtype == np.uint64
    assert len(shingles("one two three four", 2)) == 3
    assert not np.array_equal(shingles("one two", 2), shingles("two one", 2))


def test_empty_and_short_texts():
    assert shingles("", 5).dtype == np.uint64 and len(shingles("", 5)) == 0
    assert len(shingles(" ,;!? _ ", 5)) == 0  # no letters or digits: no words
    short = shingles("Hello, world", 5)
    assert len(short) == 1  # fewer than n words: one whole-text shingle
    assert np.array_equal(short, shingles("hello WORLD!", 5))
    assert not np.array_equal(short, shingles("world hello", 5))
    assert not np.array_equal(short, shingles("hello", 5))
    sig = signatures([shingles("", 5), short])
    assert (sig[0] == 0xFFFFFFFF).all() and not (sig[1] == 0xFFFFFFFF).all()
    # Empty texts match nothing, not even each other; identical short texts match.
    assert find_duplicates(["", "Hello, world", "...", "", "hello world"]) == [None, None, None, None, 1]
    assert find_duplicates([]) == []


def test_words_unicode_and_ascii_paths_agree():
    rng = random.Random(4)
    alphabet = "aZ9_-'., \t\n!?xyzQ0"
    for _ in range(200):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert minhash.words(s) == [w.encode() for w in re.findall(r"[^\W_]+", s.lower())]
    assert minhash.words("Café Déjà-vu, naïve ÉTÉ 2024") == [w.encode() for w in ["café", "déjà", "vu", "naïve", "été", "2024"]]


def test_signatures_match_datasketch_minhash():
    rng = random.Random(5)
    arrays = [shingles(text(rng, n), 3) for n in (0, 1, 2, 50, 30000, 7)]  # one spans many blocks
    sig = signatures(arrays, num_perm=64, seed=7)
    assert sig.shape == (6, 64) and sig.dtype == np.uint32
    for arr, row in zip(arrays, sig):
        m = MinHash(num_perm=64, seed=7, hashfunc=lambda v: int(v) & 0xFFFFFFFF)
        m.update_batch(arr.tolist())
        assert np.array_equal(m.hashvalues, row)
    assert not np.array_equal(signatures(arrays, 64, seed=8), sig)


def datasketch_buckets(sig: np.ndarray, bands: int, rows: int) -> set[frozenset[int]]:
    """Every bucket of two or more documents of a datasketch MinHashLSH holding the rows of `sig`."""
    lsh = MinHashLSH(threshold=0.5, num_perm=sig.shape[1], params=(bands, rows))
    for i, row in enumerate(sig):
        if not (row == 0xFFFFFFFF).all():
            lsh.insert(i, MinHash(num_perm=sig.shape[1], seed=1, hashvalues=row, scheme="affine32"))
    return {frozenset(members) for table in lsh.hashtables for members in (table.get(k) for k in table)
            if len(members) > 1}


def our_buckets(sig: np.ndarray, bands: int, rows: int) -> set[frozenset[int]]:
    docs = np.flatnonzero((sig != 0xFFFFFFFF).any(axis=1))
    found = set()
    for band in range(bands):
        members, bounds = minhash._groups(sig[docs, band * rows : (band + 1) * rows], docs)
        found |= {frozenset(members[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])}
    return found


def test_buckets_are_datasketch_lsh_buckets(monkeypatch):
    rng = random.Random(6)
    a = text(rng, 100)
    texts = [a, text(rng, 100), mutate(rng, a, 2), "", mutate(rng, a, 4), "one two three", "one two three"]
    texts += [mutate(rng, texts[1], rng.randint(1, 8)) for _ in range(30)]
    sig = signatures([shingles(t, 5) for t in texts])
    bands, rows = lsh_params(0.7, 128)
    expected = datasketch_buckets(sig, bands, rows)
    assert frozenset({0, 2}) in expected and frozenset({5, 6}) in expected
    assert our_buckets(sig, bands, rows) == expected
    # A band is sorted by a 64-bit hash of its values; equal hashes of unequal bands
    # (collisions, forced here) are told apart by the values themselves.
    monkeypatch.setattr(minhash, "_band_keys", lambda cols: np.zeros(len(cols), np.uint64))
    assert our_buckets(sig, bands, rows) == expected


def reference_duplicates(texts: list[str], threshold: float, ngram: int) -> list[int | None]:
    """find_duplicates' definition, done plainly: datasketch's LSH buckets, every pair of every
    bucket verified (estimate, exact Jaccard where the estimate is within 0.1 of the threshold),
    clusters as connected components keeping their first member."""
    sets = [set(shingles(t, ngram).tolist()) for t in texts]
    sig = signatures([shingles(t, ngram) for t in texts])
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for bucket in datasketch_buckets(sig, *lsh_params(threshold, 128)):
        for i in bucket:
            for j in bucket:
                if i < j:
                    estimate = np.count_nonzero(sig[i] == sig[j]) / 128
                    if estimate >= threshold + 0.1:
                        close = True
                    elif estimate >= threshold - 0.1:
                        close = len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold
                    else:
                        close = False
                    if close:
                        x, y = find(i), find(j)
                        parent[max(x, y)] = min(x, y)
    return [None if find(i) == i else find(i) for i in range(len(texts))]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.9])
def test_clusters_are_the_components_of_all_verified_bucket_pairs(threshold):
    rng = random.Random(7)
    originals = [text(rng, 40) for _ in range(60)]
    texts = originals + [mutate(rng, rng.choice(originals), rng.randint(0, 12)) for _ in range(140)]
    # Large buckets (> 32 members) that are not one cluster: documents sharing one word
    # and otherwise apart ({x, y_i}: J = 1/3 with each other; {x, y_i, z_i}: J = 1/5).
    texts += [f"x y{i}" for i in range(40)] + [f"x y{i}b z{i}" for i in range(40)]
    rng.shuffle(texts)
    for ngram in (1, 3):
        assert find_duplicates(texts, threshold=threshold, ngram=ngram) == reference_duplicates(texts, threshold, ngram)


def test_same_clusters_however_many_threads_and_batches():
    rng = random.Random(8)
    originals = [text(rng, 60) for _ in range(3000)]
    texts = originals + [mutate(rng, rng.choice(originals), rng.randint(0, 2)) for _ in range(2000)]
    rng.shuffle(texts)
    one = find_duplicates(texts, workers=1)
    assert find_duplicates(texts, workers=2) == one and find_duplicates(texts, workers=3) == one
    finder = minhash.DuplicateFinder(len(texts), workers=2)
    for s in range(0, len(texts), 777):  # fed in uneven batches
        finder.add(texts[s : s + 777])
    roots = finder.roots(lambda idx: [texts[i] for i in idx.tolist()])
    assert [None if r == i else r for i, r in enumerate(roots.tolist())] == one
    assert sum(o is not None for o in one) > 1200


def test_reference_index_finds_what_exact_jaccard_says():
    rng = random.Random(9)
    references = [text(rng, 30) for _ in range(50)] + [""]
    queries = [mutate(rng, rng.choice(references[:50]), rng.randint(0, 5)) for _ in range(100)] + [text(rng, 30), ""]
    found = list(minhash.similar_pairs(queries, references, threshold=0.6))
    assert found == sorted(found) and all(j >= 0.6 for _, _, j in found)
    for q, r, j in found:
        assert j == pytest.approx(jaccard(queries[q], references[r]))
    sig_q = signatures([shingles(t, 5) for t in queries])
    sig_r = signatures([shingles(t, 5) for t in references])
    bands, rows = lsh_params(0.6, 128)
    candidates = {(q, r) for q in range(len(queries)) for r in range(len(references))
                  if (sig_q[q] != 0xFFFFFFFF).any() and (sig_r[r] != 0xFFFFFFFF).any()
                  and (sig_q[q, : bands * rows] == sig_r[r, : bands * rows]).reshape(bands, rows).all(axis=1).any()}
    assert {(q, r) for q, r, _ in found} == {(q, r) for q, r in candidates if jaccard(queries[q], references[r]) >= 0.6}


def test_signatures_identical_across_processes():
    code = (
        "import sys; from distill.filters.minhash import shingles, signatures, find_duplicates\n"
        "t = ['Hello, world! Déjà vu again and again', 'one two three four five six', '', 'x']\n"
        "sys.stdout.write(signatures([shingles(s, 3) for s in t]).tobytes().hex())\n"
        "sys.stdout.write(' ' + repr(find_duplicates(t + t, threshold=0.5, ngram=3)))\n"
    )
    outs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1]
    assert outs[0].endswith("[None, None, None, None, 0, 1, None, 3]")
    # Pinned, so that a change of hashing (which would silently change results) is seen.
    assert shingles("Hello, world", 5).tolist() == [12243795514299522979]


def test_bad_parameters():
    for threshold in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            find_duplicates(["a"], threshold=threshold)
        with pytest.raises(ValueError):
            lsh_params(threshold, 128)
    with pytest.raises(ValueError):
        find_duplicates(["a"], num_perm=1)
    with pytest.raises(ValueError):
        find_duplicates(["a"], ngram=0)
    with pytest.raises(ValueError):
        shingles("a", 0)
    with pytest.raises(ValueError):
        signatures([], num_perm=1)


@pytest.mark.parametrize("num_perm", [16, 64, 128, 256])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.75, 0.8, 0.9, 0.95])
def test_lsh_params_recall_at_threshold(threshold, num_perm):
    """What lsh_params promises: P(candidate | J = threshold) >= 0.95, with the fewest false
    positives (least S-curve area below the threshold) of every (bands, rows) that keeps it."""
    bands, rows = lsh_params(threshold, num_perm)
    assert bands >= 2 and bands * rows <= num_perm
    assert minhash._MIN_RECALL == 0.95
    assert 1 - (1 - threshold**rows) ** bands >= 0.95
    below = np.linspace(0.0, threshold, 257)
    area = float(np.trapezoid(minhash._s_curve(below, bands, rows), below))
    for r in range(1, num_perm + 1):
        for b in range(2, num_perm // r + 1):
            if 1 - (1 - threshold**r) ** b >= 0.95:
                assert float(np.trapezoid(minhash._s_curve(below, b, r), below)) >= area - 1e-12, (b, r)


def test_lsh_params_with_too_few_permutations_for_the_floor():
    # 4 permutations cannot reach 0.95 at J = 0.3: one-slot bands give the most recall there is.
    assert lsh_params(0.3, 4) == (4, 1)
    best = max(1 - (1 - 0.3**r) ** b for r in range(1, 5) for b in range(1, 4 // r + 1))
    assert 1 - (1 - 0.3) ** 4 == pytest.approx(best) and best < 0.95


def test_lsh_params_beats_datasketch_default_at_threshold():
    bands, rows = lsh_params(0.7, 128)
    default = MinHashLSH(threshold=0.7, num_perm=128)
    ours, theirs = (1 - (1 - 0.7**r) ** b for b, r in ((bands, rows), (default.b, default.r)))
    assert ours >= 0.95
    assert theirs < 0.5
    assert 1 - (1 - 0.3**rows) ** bands < 0.05  # and dissimilar pairs stay rare candidates
