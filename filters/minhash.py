"""MinHash near-duplicate detection: shingles -> signatures -> LSH candidates -> verified clusters.

Shingles are the word n-grams of a text (lowercased; a word is a run of letters/digits),
each a 64-bit hash: every word is hashed once with xxh64 (seed 0) and the n word hashes of
an n-gram are combined with numpy (distinct odd multipliers per position, summed mod 2**64,
then the MurmurHash3 64-bit finaliser). Nothing depends on Python's salted `hash()`, so
shingles and signatures are identical across processes and runs.

Signatures use datasketch's own permutation family, the "affine32" scheme that is its
default since 2.0.0: the low 32 bits of a shingle hash are pre-mixed with the 32-bit
MurmurHash3 finaliser, then permuted by a*h + b mod 2**32 with datasketch's (a, b) for
`seed`. A row equals `datasketch.MinHash(num_perm, seed, hashfunc=lambda v: int(v) &
0xFFFFFFFF)` updated with the same shingles, bit for bit, and is stored like that MinHash's
`hashvalues` (uint32, 4 bytes a slot), so datasketch's LSH semantics hold unchanged. The
work is numpy over (permutation x shingle) blocks, not one Python call per shingle.

Candidates come from a `datasketch.MinHashLSH` whose hash tables are filled with the band
keys datasketch itself would compute (big-endian bytes of each band), with (bands, rows)
from `lsh_params`. A pair sharing a bucket is verified by its estimated Jaccard (the fraction
of equal signature slots, as `MinHash.jaccard`): far enough above the threshold it is kept,
far enough below it is dropped, and in between, where 128 slots cannot tell 0.68 from 0.72,
the exact Jaccard of the two shingle sets decides. Verified pairs are joined by union-find;
each cluster keeps its first member in input order.

Memory per document, besides the texts: the signature, 4 * num_perm bytes, the sorted
shingle set for exact checks, 8 bytes a shingle, and the index,
about 350 bytes per band (datasketch's dict storage: a bytes key, a set and a dict slot),
17 bands at the defaults. `python benchmarks/dedup.py --memory 200000` measured about 7.0 KB
of peak RSS per short (30-word) document, so about 6.7 GiB for a million of them.
"""

from __future__ import annotations

import gc
import math
import re
from itertools import chain

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

# Runs of letters/digits (str.isalnum) in lowercased text; non-ASCII texts only.
_WORD = re.compile(r"[^\W_]+")
# The same for ASCII bytes in one C pass: letters/digits lowercased, everything else a space.
_ASCII_WORDS = bytes(ord(chr(c).lower()) if chr(c).isalnum() else 32 for c in range(128)) + bytes(range(128, 256))

_MAX32 = np.uint32(0xFFFFFFFF)  # the slot value of an empty document (datasketch's empty MinHash)
_MIN_RECALL = 0.95  # P(candidate | J = threshold) that lsh_params guarantees
_DOC_BATCH = 4096  # documents shingled at a time by find_duplicates
_BLOCK = 8192  # shingles permuted at a time: num_perm x _BLOCK uint32 (4 MiB at 128) stays in cache
_SURE = 0.1  # estimates this far from the threshold decide alone (about 2.5 standard deviations at 128)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _words(text: str) -> list[bytes]:
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).split()
    return [w.encode() for w in _WORD.findall(text.lower())]


def _check(ngram: int = 1, num_perm: int = 2, threshold: float = 0.5) -> None:
    """Raise ValueError for a bad parameter (callers pass only those they take)."""
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def _shingle_hashes(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """The shingles of all `texts`, concatenated, and how many each text has."""
    words = [_words(t) for t in texts]
    counts = np.fromiter(map(len, words), np.int64, len(words))
    total = int(counts.sum())
    wh = np.fromiter(map(xxhash.xxh64_intdigest, chain.from_iterable(words)), np.uint64, total)
    # left[i]: words from word i to the end of its text. The n-gram starting at i sums
    # mult[k] * wh[i + k] over the k < n that stay inside the text; a text shorter than n
    # words thus yields one shingle of all its words, at its first word.
    left = np.repeat(np.cumsum(counts), counts) - np.arange(total)
    mult = np.fromiter((xxhash.xxh64_intdigest(k.to_bytes(8, "little")) | 1 for k in range(ngram)), np.uint64, ngram)
    acc = wh * mult[0]
    for k in range(1, min(ngram, total)):
        term = np.zeros(total, np.uint64)
        term[: total - k] = wh[k:] * mult[k]
        term[left <= k] = 0
        acc += term
    starts = left >= np.minimum(ngram, np.repeat(counts, counts))
    per_text = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    return _fmix64(acc[starts]), per_text


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a[:, None], b[:, None]


def _minhash(hashes: np.ndarray, counts: np.ndarray, perms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Signatures (len(counts), num_perm) of the texts whose shingles are `hashes`, `counts` each."""
    a, b = perms
    sig = np.full((len(counts), len(a)), _MAX32, np.uint32)
    h = _fmix32((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    doc = np.repeat(np.arange(len(counts)), counts)
    block = np.empty((len(a), _BLOCK), np.uint32)
    for s in range(0, len(h), _BLOCK):
        hv, dv = h[s : s + _BLOCK], doc[s : s + _BLOCK]
        phv = block[:, : len(hv)]
        np.multiply(a, hv, out=phv)  # uint32 arithmetic wraps: a*h + b mod 2**32
        np.add(phv, b, out=phv)
        # Minimum over each document's run of columns; a document may span blocks.
        first = np.flatnonzero(np.r_[True, dv[1:] != dv[:-1]])
        rows = dv[first]
        sig[rows] = np.minimum(sig[rows], np.minimum.reduceat(phv, first, axis=1).T)
    return sig


def shingles(text: str, ngram: int) -> np.ndarray:
    """uint64 hashes of the word `ngram`-grams of `text` (one whole-text shingle if shorter; none if no words)."""
    _check(ngram=ngram)
    return _shingle_hashes([text], ngram)[0]


def signatures(shingle_arrays: list[np.ndarray], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signatures, shape (len(shingle_arrays), num_perm), uint32 like datasketch's MinHash.

    An empty shingle array gives a row of 0xFFFFFFFF (datasketch's empty MinHash);
    `find_duplicates` never matches such a document with anything, not even another empty one.
    """
    _check(num_perm=num_perm)
    counts = np.fromiter(map(len, shingle_arrays), np.int64, len(shingle_arrays))
    hashes = np.concatenate([np.asarray(s, np.uint64) for s in shingle_arrays]) if shingle_arrays else np.empty(0, np.uint64)
    return _minhash(hashes, counts, _permutations(num_perm, seed))


def _s_curve(j: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """P(a pair of Jaccard j shares at least one LSH bucket)."""
    return 1.0 - (1.0 - j**rows) ** bands


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for `threshold`: fewest false positives with P(candidate | J = threshold) >= 0.95.

    For each band width r the smallest b reaching the recall floor is the best b (more
    bands only add false positives); among those, pick the (b, r) with b * r <= num_perm
    whose S-curve has the least area below the threshold (datasketch's false-positive
    measure). datasketch's `_optimal_param` instead minimises false positives + false
    negatives with equal weights, which puts the S-curve's steep part above the threshold:
    for 0.7 and 128 permutations it picks (14, 9), whose P(candidate | J) is only 0.44 at
    J = 0.7 and 0.66 at 0.75 (0.87 at 0.8); this picks (17, 5): 0.96 at 0.7, 0.99 at 0.75,
    0.42 at 0.5, 0.005 at 0.2. Verification by estimated Jaccard then drops the extra
    candidates, at the cost of comparing their signatures.
    """
    _check(num_perm=num_perm, threshold=threshold)
    below = np.linspace(0.0, threshold, 257)
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm // 2 + 1):
        p = threshold**rows
        needed = math.log(1.0 - _MIN_RECALL) / math.log1p(-p) if p > 0.0 else math.inf
        if needed * rows > num_perm:
            break  # and so for every wider band
        bands = max(2, math.ceil(needed))
        if bands * rows > num_perm:
            continue
        area = float(np.trapezoid(_s_curve(below, bands, rows), below))
        if best is None or area < best[0]:
            best = (area, bands, rows)
    if best is None:  # too few permutations for the floor: as much recall as they allow
        return num_perm, 1
    return best[1], best[2]


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _union(parent: list[int], x: int, y: int) -> None:
    x, y = _find(parent, x), _find(parent, y)
    if x != y:  # the smaller index stays the root: the first member in input order
        parent[max(x, y)] = min(x, y)


def _index(sig: np.ndarray, bands: int, rows: int, threshold: float) -> tuple[MinHashLSH, list[set[int]]]:
    """A MinHashLSH of the non-empty rows of `sig`, and the buckets holding more than one row."""
    lsh = MinHashLSH(threshold=threshold, num_perm=sig.shape[1], params=(bands, rows))
    docs = np.flatnonzero((sig != _MAX32).any(axis=1))
    keys = _band_keys(sig[docs], bands, rows)
    shared = set()
    for n, doc in enumerate(docs.tolist()):
        for band, (table, key) in enumerate(zip(lsh.hashtables, keys[n * bands : (n + 1) * bands])):
            if key in table:
                shared.add((band, key))
            table.insert(key, doc)
    return lsh, [lsh.hashtables[band].get(key) for band, key in shared]


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> list:
    """datasketch's band keys, `bands` per row of `sig`: each band's values as big-endian bytes (MinHashLSH._H)."""
    return np.frombuffer(sig[:, : bands * rows].astype(">u4").tobytes(), f"V{4 * rows}").tolist()


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted sets of shingle hashes."""
    common = np.intersect1d(a, b, assume_unique=True).size
    return common / (a.size + b.size - common)


def _link(members: set[int], sig: np.ndarray, sets: list[np.ndarray], threshold: float, parent: list[int]) -> None:
    """Union the pairs of one bucket whose Jaccard reaches `threshold`.

    Every pair is settled, yet the work stays linear when the bucket is mostly one cluster:
    all members are first compared with the first member; then only members outside the
    bucket's largest cluster are compared with all the others (a pair inside that cluster
    is already joined). A bucket of k members that do not join costs k**2 comparisons.
    """
    m = np.array(sorted(members))
    roots = np.array([_find(parent, x) for x in m.tolist()])
    if (roots == roots[0]).all():
        return  # already one cluster: no pair here can change anything
    sm = sig[m]

    def close(i: int) -> np.ndarray:  # whether member i's Jaccard with each member reaches the threshold
        estimate = np.count_nonzero(sm == sm[i], axis=1) / sm.shape[1]
        near = estimate >= threshold + _SURE
        for j in np.flatnonzero((estimate >= threshold - _SURE) & ~near).tolist():
            near[j] = _jaccard(sets[m[i]], sets[m[j]]) >= threshold
        return near

    for y in m[close(0)].tolist():
        _union(parent, int(m[0]), y)
    roots = np.array([_find(parent, x) for x in m.tolist()])
    values, counts = np.unique(roots, return_counts=True)
    for i in np.flatnonzero(roots != values[counts.argmax()]).tolist():
        for y in m[close(i)].tolist():
            _union(parent, int(m[i]), y)


def find_duplicates(
    texts: list[str], threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> list[int | None]:
    """For each text, None if kept, else the index of the kept text of its cluster (its first member).

    Texts with no words never match anything and are all kept.
    """
    _check(ngram=ngram, num_perm=num_perm, threshold=threshold)
    # Millions of small acyclic objects (word lists, index sets): the cyclic collector
    # would only rescan them, for about a fifth of the run time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        perms = _permutations(num_perm, seed)
        sig = np.empty((len(texts), num_perm), np.uint32)
        sets: list[np.ndarray] = []
        for s in range(0, len(texts), _DOC_BATCH):
            hashes, counts = _shingle_hashes(texts[s : s + _DOC_BATCH], ngram)
            sig[s : s + _DOC_BATCH] = _minhash(hashes, counts, perms)
            sets.extend(np.unique(part) for part in np.split(hashes, np.cumsum(counts)[:-1]))
        _, buckets = _index(sig, *lsh_params(threshold, num_perm), threshold)
        parent = list(range(len(texts)))
        for members in buckets:
            _link(members, sig, sets, threshold, parent)
        roots = [_find(parent, i) for i in range(len(texts))]
        return [None if root == i else root for i, root in enumerate(roots)]
    finally:
        if collecting:
            gc.enable()


def _sketch(texts: list[str], ngram: int, perms) -> tuple[np.ndarray, list[np.ndarray]]:
    """Signatures and sorted shingle sets of `texts`."""
    hashes, counts = _shingle_hashes(texts, ngram)
    return _minhash(hashes, counts, perms), [np.unique(part) for part in np.split(hashes, np.cumsum(counts)[:-1])]


def similar_pairs(
    queries: list[str], references: list[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
):
    """(query index, reference index, Jaccard) for each pair whose exact Jaccard reaches
    `threshold`, found through an LSH index of the references (decontamination)."""
    _check(ngram=ngram, num_perm=num_perm, threshold=threshold)
    perms = _permutations(num_perm, seed)
    bands, rows = lsh_params(threshold, num_perm)
    ref_sig, ref_sets = _sketch(references, ngram, perms)
    lsh, _ = _index(ref_sig, bands, rows, threshold)
    query_sig, query_sets = _sketch(queries, ngram, perms)
    keys = _band_keys(query_sig, bands, rows)
    for q in np.flatnonzero((query_sig != _MAX32).any(axis=1)).tolist():
        candidates = set()
        for table, key in zip(lsh.hashtables, keys[q * bands : (q + 1) * bands]):
            candidates.update(table.get(key))
        for r in sorted(candidates):
            jaccard = _jaccard(query_sets[q], ref_sets[r])
            if jaccard >= threshold:
                yield q, r, jaccard
