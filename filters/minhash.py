"""MinHash near-duplicate detection: shingles -> signatures -> LSH buckets -> verified clusters.

Shingles are the word n-grams of a text (lowercased; a word is a run of letters/digits),
each a 64-bit hash: every word is hashed with xxh64 (seed 0) and the n word hashes of an
n-gram are combined with numpy (distinct odd multipliers per position, summed mod 2**64,
then the MurmurHash3 64-bit finaliser). Nothing depends on Python's salted `hash()`, so
shingles and signatures are identical across processes, threads and runs. A batch of texts
is split into words without one Python object per word: the texts are joined into one
buffer (a non-ASCII text as its regex words), a lookup table maps it to lowercase letters,
digits and spaces, numpy finds the word boundaries, and Arrow's `dictionary_encode` leaves
one xxh64 call per distinct word of the batch.

Signatures use datasketch's own permutation family, the "affine32" scheme that is its
default since 2.0.0: the low 32 bits of a shingle hash are pre-mixed with the 32-bit
MurmurHash3 finaliser, then permuted by a*h + b mod 2**32 with datasketch's (a, b) for
`seed`. A row equals `datasketch.MinHash(num_perm, seed, hashfunc=lambda v: int(v) &
0xFFFFFFFF)` updated with the same shingles, bit for bit, and is stored like that MinHash's
`hashvalues` (uint32, 4 bytes a slot). The work is numpy over (permutation x shingle)
blocks. Batches of texts are signed on every core by threads (numpy and Arrow release the
GIL); each batch is a pure function of its texts, so the result does not depend on how many.

Buckets are datasketch's MinHashLSH semantics without its dictionaries: with (bands, rows)
from `lsh_params`, two documents share a bucket when some band of their signatures is equal
(a 64-bit hash of the band sorts the documents, and equal hashes are checked value by
value). A pair sharing a bucket is verified by its estimated Jaccard (the fraction of equal
signature slots, as `MinHash.jaccard`): far enough above the threshold it is kept, far
enough below it is dropped, and in between, where 128 slots cannot tell 0.68 from 0.72, the
exact Jaccard of the two shingle sets decides (the texts of those pairs only are shingled
again). The clusters are the connected components of the verified pairs; each keeps its
first member in input order. The pairs checked are chosen to stay linear when a bucket is
mostly one cluster (each bucket's first member against the others, then the rest only where
that left the bucket split), but the components, and so the result, are those of all
verified bucket-sharing pairs, whatever the order of the work.

Memory per document: the signature, 4 * num_perm bytes (512 at the defaults), 9 bytes of
labels, and while the buckets are formed (a band at a time on each core) about 80 bytes more
per core. A million short documents peak at about 0.65 GiB over their texts (`python
benchmarks/dedup.py --memory`); with datasketch's index and every shingle set kept, it was
6.7 GiB.
"""

from __future__ import annotations

import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import xxhash

# Runs of letters/digits (str.isalnum) in lowercased text; non-ASCII texts only.
_WORD = re.compile(r"[^\W_]+")
# The same for ASCII bytes in one C pass: letters/digits lowercased, everything else a space.
_ASCII_WORDS = bytes(ord(chr(c).lower()) if chr(c).isalnum() else 32 for c in range(128)) + bytes(range(128, 256))
_LOWER_WORDS = np.frombuffer(_ASCII_WORDS, np.uint8)  # the same as a lookup table (numpy: without the GIL)
_SPACE = 32

_U64 = np.uint64
_MAX32 = np.uint32(0xFFFFFFFF)  # the slot value of an empty document (datasketch's empty MinHash)
_MIN_RECALL = 0.95  # P(candidate | J = threshold) that lsh_params guarantees
_DOC_BATCH = 2048  # documents signed at a time (one task of the thread pool)
_BLOCK = 8192  # shingles permuted at a time: num_perm x _BLOCK uint32 (4 MiB at 128) stays in cache
_SURE = 0.1  # estimates this far from the threshold decide alone (about 2.5 standard deviations at 128)
_SMALL = 32  # a bucket up to this size has its remaining pairs listed at once; larger ones are linked one by one
_PAIRS = 16384  # pairs whose signatures are compared at a time
_EXACT = 1024  # documents shingled at a time for exact Jaccards (their sets are Python sets)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def words(text: str) -> list[bytes]:
    """The words of one text, as the batch path finds them (lowercased UTF-8)."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).split()
    return [w.encode() for w in _WORD.findall(text.lower())]


def _spaced(text: str) -> bytes:
    """The text's bytes, where `_LOWER_WORDS` leaves its words lowercased with only spaces
    (maybe several) between them: an ASCII text as is, any other as its words already."""
    if text.isascii():
        return text.encode()
    return b" ".join([w.encode() for w in _WORD.findall(text.lower())])


def _check(ngram: int = 1, num_perm: int = 2, threshold: float = 0.5) -> None:
    """Raise ValueError for a bad parameter (callers pass only those they take)."""
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """xxh64 of every word of `texts`, in order, and how many words each text has."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [_spaced(t) for t in texts]
    sizes = np.fromiter(map(len, parts), np.int64, len(parts))
    # A space between texts, and one at the end. Words of other texts are lowercased
    # letters/digits already, which the table leaves as they are.
    buf = _LOWER_WORDS[np.frombuffer(b" ".join(parts) + b" ", np.uint8)]
    data = pa.py_buffer(buf)
    word = buf != _SPACE
    starts = np.flatnonzero(word[1:] > word[:-1]) + 1  # a letter after a space
    if len(word) and word[0]:
        starts = np.concatenate(([0], starts))
    bounds = np.cumsum(sizes + 1)  # where each text's words end
    counts = np.diff(np.searchsorted(starts, bounds), prepend=0)
    if not len(starts):
        return np.empty(0, _U64), counts
    # Arrow reads each word, with the spaces after it, off the buffer as is; the distinct
    # values are hashed once each, without those spaces.
    offsets = np.append(starts, len(buf)).astype(np.int64)
    values = pa.Array.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), data])
    encoded = pc.dictionary_encode(values)
    vocabulary = encoded.dictionary.to_pylist()
    hashes = np.fromiter((xxhash.xxh64_intdigest(w.rstrip(b" ")) for w in vocabulary), _U64, len(vocabulary))
    return hashes[encoded.indices.to_numpy()], counts


def _multipliers(ngram: int) -> np.ndarray:
    return np.fromiter((xxhash.xxh64_intdigest(k.to_bytes(8, "little")) | 1 for k in range(ngram)), _U64, ngram)


def _shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """The shingles of all `texts`, concatenated, and how many each text has."""
    wh, counts = _word_hashes(texts)
    total = len(wh)
    mult = _multipliers(ngram)
    # acc[i]: sum of mult[k] * wh[i + k] over k < n. It runs past the end of a text, but
    # only n-grams inside their text are kept; a text shorter than n words yields one
    # shingle of all its words, at its first word, recomputed below.
    acc = wh * mult[0]
    tmp = np.empty(total, _U64)
    for k in range(1, min(ngram, total)):
        np.multiply(wh[k:], mult[k], out=tmp[: total - k])
        acc[: total - k] += tmp[: total - k]
    ends = np.cumsum(counts)
    left = np.repeat(ends, counts) - np.arange(total)  # words from word i to the end of its text
    chosen = left >= ngram
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):
        first, size = ends[short] - counts[short], counts[short]
        value = np.zeros(len(short), _U64)
        for k in range(int(size.max())):
            inside = size > k
            value[inside] += wh[first[inside] + k] * mult[k]
        acc[first] = value
        chosen[first] = True
    per_text = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    return _fmix64(acc[chosen]), per_text


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a[:, None], b[:, None]


def _minhash(hashes: np.ndarray, counts: np.ndarray, perms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Signatures (len(counts), num_perm) of the texts whose shingles are `hashes`, `counts` each."""
    a, b = perms
    sig = np.full((len(counts), len(a)), _MAX32, np.uint32)
    h = _fmix32((hashes & _U64(0xFFFFFFFF)).astype(np.uint32))
    doc = np.repeat(np.arange(len(counts)), counts)
    block = np.empty((len(a), _BLOCK), np.uint32)
    for s in range(0, len(h), _BLOCK):
        hv, dv = h[s : s + _BLOCK], doc[s : s + _BLOCK]
        phv = block[:, : len(hv)]
        np.multiply(a, hv, out=phv)  # uint32 arithmetic wraps: a*h + b mod 2**32
        np.add(phv, b, out=phv)
        # Minimum over each document's run of columns; a document may span blocks.
        first = np.flatnonzero(np.concatenate(([True], dv[1:] != dv[:-1])))
        rows = dv[first]
        sig[rows] = np.minimum(sig[rows], np.minimum.reduceat(phv, first, axis=1).T)
    return sig


def _sketch(texts: Sequence[str], ngram: int, perms) -> np.ndarray:
    return _minhash(*_shingle_hashes(texts, ngram), perms)


def _shingle_sets(texts: Sequence[str], ngram: int) -> list[frozenset[int]]:
    """The set of shingle hashes of each text (for exact Jaccards)."""
    hashes, counts = _shingle_hashes(texts, ngram)
    return [frozenset(part.tolist()) for part in np.split(hashes, np.cumsum(counts)[:-1])] if len(texts) else []


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
    hashes = np.concatenate([np.asarray(s, _U64) for s in shingle_arrays]) if shingle_arrays else np.empty(0, _U64)
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
    candidates, at the cost of comparing their signatures. When no (b, r) reaches the
    floor (very few permutations), (num_perm, 1) gives the most recall there is.
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


# -- buckets -----------------------------------------------------------------------------------


def _band_keys(cols: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a band (equal bands, equal keys; the converse is checked)."""
    key = cols[:, 0].astype(_U64)
    for j in range(1, cols.shape[1]):
        key *= _U64(0x9E3779B97F4A7C15)
        key += cols[:, j]
    return _fmix64(key)


def _groups(cols: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The buckets of one band: `ids` (ascending) grouped by equal rows of `cols`, groups of
    two or more only. Returns the members, ascending within each group, and the groups' bounds."""
    key = _band_keys(cols)
    order = np.argsort(key, kind="stable")
    key = key[order]
    cut = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate(([0], cut))
    sizes = np.diff(np.concatenate((starts, [len(key)])))
    starts, sizes = starts[sizes > 1], sizes[sizes > 1]
    if not len(starts):
        return np.empty(0, ids.dtype), np.zeros(1, np.int64)
    at = np.repeat(starts, sizes) + (np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    members = order[at]
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    # Equal keys, equal bands: almost always. A collision splits its group by value.
    same = (cols[members] == cols[members[np.repeat(bounds[:-1], sizes)]]).all(axis=1)
    if not same.all():
        out_members, out_sizes = [], []
        for g in range(len(sizes)):
            m = members[bounds[g] : bounds[g + 1]]
            if same[bounds[g] : bounds[g + 1]].all():
                out_members.append(m)
                out_sizes.append(len(m))
                continue
            _, inverse = np.unique(cols[m], axis=0, return_inverse=True)
            for value in np.unique(inverse):
                part = np.sort(m[inverse.ravel() == value])
                if len(part) > 1:
                    out_members.append(part)
                    out_sizes.append(len(part))
        members = np.concatenate(out_members) if out_members else np.empty(0, np.int64)
        bounds = np.concatenate(([0], np.cumsum(out_sizes))).astype(np.int64)
    return ids[members], bounds


def _root_all(label: np.ndarray) -> None:
    """Point every node at its root (in place)."""
    while True:
        up = label[label]
        if np.array_equal(up, label):
            return
        label[:] = up


def _join(label: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Merge the components of each pair (a[i], b[i]); every node points at its component's
    smallest member, which is its root (in place, vectorized)."""
    _root_all(label)
    while len(a):
        la, lb = label[a], label[b]
        apart = la != lb
        if not apart.any():
            return
        a, b, la, lb = a[apart], b[apart], la[apart], lb[apart]
        np.minimum.at(label, np.maximum(la, lb), np.minimum(la, lb))
        _root_all(label)


def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = int(parent[x])
    return x


def _union(parent: np.ndarray, x: int, y: int) -> None:
    x, y = _find(parent, x), _find(parent, y)
    if x != y:  # the smaller index stays the root: the first member in input order
        parent[max(x, y)] = min(x, y)


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Exact Jaccard of two sets of shingle hashes."""
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def _pairs_within(members: np.ndarray, bounds: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j, neither the first member) within each of `groups`."""
    firsts, seconds = [], []
    sizes = np.diff(bounds)[groups]
    for size in np.unique(sizes).tolist():
        chosen = groups[sizes == size]
        block = members[bounds[chosen][:, None] + np.arange(1, size)]  # (groups, size - 1): all but the first
        i, j = np.triu_indices(size - 1, 1)
        firsts.append(block[:, i].ravel())
        seconds.append(block[:, j].ravel())
    if not firsts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


class DuplicateFinder:
    """Near-duplicate clusters of a sequence of texts, fed in batches.

        finder = DuplicateFinder(len(texts), threshold=0.7)
        for batch in batches: finder.add(batch)          # signed on every core meanwhile
        roots = finder.roots(lambda idx: [texts[i] for i in idx])

    Only the signatures are kept (4 * num_perm bytes a text); `roots` asks for the texts of
    the few pairs whose estimated Jaccard is too close to the threshold to decide alone.
    """

    def __init__(self, size: int, threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1,
                 workers: int | None = None):
        _check(ngram=ngram, num_perm=num_perm, threshold=threshold)
        self.size, self.threshold, self.num_perm, self.ngram = size, threshold, num_perm, ngram
        self.sig = np.empty((size, num_perm), np.uint32)
        self._perms = _permutations(num_perm, seed)
        self._added = 0
        self._workers = 1 if size <= _DOC_BATCH else (workers or _cores())
        self._pool = ThreadPoolExecutor(self._workers) if self._workers > 1 else None
        self._pending: deque[Future] = deque()

    def add(self, texts: Sequence[str]) -> None:
        """Sign the next texts (in order)."""
        start = self._added
        if start + len(texts) > self.size:
            raise ValueError(f"more than the {self.size} texts announced")
        self._added += len(texts)
        for s in range(0, len(texts), _DOC_BATCH):
            batch = list(texts[s : s + _DOC_BATCH])
            if self._pool is None:
                self._sign(batch, start + s)
                continue
            self._pending.append(self._pool.submit(self._sign, batch, start + s))
            while len(self._pending) > 2 * self._workers:  # bounded: a few batches in flight
                self._pending.popleft().result()

    def _sign(self, texts: list[str], start: int) -> None:
        self.sig[start : start + len(texts)] = _sketch(texts, self.ngram, self._perms)

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Stop the threads (batches not started are dropped; an error of one is not raised)."""
        pending, self._pending = self._pending, deque()
        for future in pending:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def roots(self, texts_of: Callable[[np.ndarray], Sequence[str]]) -> np.ndarray:
        """For each text, the index of its cluster's first member (itself when kept).

        `texts_of(indices)` returns the texts at those (ascending) indices."""
        try:
            self._drain()
            if self._added != self.size:
                raise ValueError(f"{self._added} texts added, {self.size} announced")
            return self._cluster(texts_of)
        finally:
            self.close()

    def _cluster(self, texts_of) -> np.ndarray:
        n, sig = self.size, self.sig
        index = np.int32 if n < 2**31 else np.int64
        label = np.arange(n, dtype=index)
        docs = np.flatnonzero(_live(sig)).astype(index)  # empty texts match nothing
        bands, rows = lsh_params(self.threshold, self.num_perm)

        def band(b: int) -> tuple[np.ndarray, np.ndarray]:
            return _groups(sig[docs, b * rows : (b + 1) * rows], docs)

        mapped = self._pool.map(band, range(bands)) if self._pool else map(band, range(bands))
        buckets: list[tuple[np.ndarray, np.ndarray]] = []
        firsts, others = [], []
        for members, bounds in mapped:  # in band order, whatever thread made them
            if len(members):
                buckets.append((members, bounds))
                sizes = np.diff(bounds)
                head = np.repeat(members[bounds[:-1]], sizes)
                not_head = np.ones(len(members), bool)
                not_head[bounds[:-1]] = False
                firsts.append(head[not_head])
                others.append(members[not_head])
        # Each bucket's first member against the others: one cluster per bucket, usually.
        if firsts:
            self._link(label, np.concatenate(firsts), np.concatenate(others), texts_of)
        # Buckets left split: their other pairs whose members are still apart.
        big: list[np.ndarray] = []
        pairs_a, pairs_b = [], []
        for members, bounds in buckets:
            roots = label[members]
            split = np.minimum.reduceat(roots, bounds[:-1]) != np.maximum.reduceat(roots, bounds[:-1])
            sizes = np.diff(bounds)
            small = np.flatnonzero(split & (sizes > 2) & (sizes <= _SMALL))
            a, b = _pairs_within(members, bounds, small)
            apart = label[a] != label[b]
            pairs_a.append(a[apart])
            pairs_b.append(b[apart])
            big.extend(members[bounds[g] : bounds[g + 1]] for g in np.flatnonzero(split & (sizes > _SMALL)).tolist())
        if pairs_a:
            self._link(label, np.concatenate(pairs_a), np.concatenate(pairs_b), texts_of)
        for members in big:
            self._link_bucket(label, members, texts_of)
        _root_all(label)
        return label.astype(np.int64)

    def _close(self, a: np.ndarray, b: np.ndarray, texts_of) -> np.ndarray:
        """Whether each pair's Jaccard reaches the threshold (estimated; exact where too close to tell)."""
        t = self.threshold
        near = np.zeros(len(a), bool)
        unsure = np.zeros(len(a), bool)
        for s in range(0, len(a), _PAIRS):
            equal = np.count_nonzero(self.sig[a[s : s + _PAIRS]] == self.sig[b[s : s + _PAIRS]], axis=1)
            estimate = equal / self.num_perm
            near[s : s + _PAIRS] = estimate >= t + _SURE
            unsure[s : s + _PAIRS] = (estimate >= t - _SURE) & (estimate < t + _SURE)
        pending = np.flatnonzero(unsure)
        while len(pending):  # shingle sets for the pairs of a few thousand documents at a time
            docs = np.unique(np.concatenate((a[pending[:_EXACT // 2]], b[pending[:_EXACT // 2]])))
            take = pending[np.isin(a[pending], docs) & np.isin(b[pending], docs)]
            sets = dict(zip(docs.tolist(), _shingle_sets(list(texts_of(docs)), self.ngram)))
            for p, x, y in zip(take.tolist(), a[take].tolist(), b[take].tolist()):
                near[p] = _jaccard(sets[x], sets[y]) >= t
            pending = np.setdiff1d(pending, take, assume_unique=True)
        return near

    def _link(self, label: np.ndarray, a: np.ndarray, b: np.ndarray, texts_of) -> None:
        """Join the pairs (a[i], b[i]) whose Jaccard reaches the threshold."""
        if not len(a):
            return
        lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        key = np.unique(lo * self.size + hi)  # each pair once
        lo, hi = key // self.size, key % self.size
        close = self._close(lo, hi, texts_of)
        _join(label, lo[close], hi[close])

    def _link_bucket(self, label: np.ndarray, members: np.ndarray, texts_of) -> None:
        """Settle the pairs of one large bucket left split.

        Members with the same shingle set are one cluster at once (Jaccard 1), so the work
        is over the bucket's distinct sets: each set outside the bucket's largest cluster
        is compared, by estimate and where unsure by exact Jaccard (vectorized), with the
        sets it is still apart from. The bucket's members are shingled once, here."""
        roots = _roots(label, members)
        if (roots == roots[0]).all():
            return
        classes: dict[bytes, list[int]] = {}
        sets: list[np.ndarray] = []
        for s in range(0, len(members), _EXACT):
            part = members[s : s + _EXACT]
            hashes, counts = _shingle_hashes(list(texts_of(part)), self.ngram)
            for member, shingle in zip(part.tolist(), np.split(hashes, np.cumsum(counts)[:-1])):
                unique = np.unique(shingle)
                key = unique.tobytes()
                if key not in classes:
                    classes[key] = []
                    sets.append(unique)
                classes[key].append(member)
        groups = list(classes.values())
        del classes
        for group in groups:
            for y in group[1:]:
                _union(label, group[0], y)
        heads = np.array([group[0] for group in groups])
        sizes = np.fromiter(map(len, sets), np.int64, len(sets))
        data = np.concatenate(sets)
        starts = np.cumsum(sizes) - sizes
        del sets
        comp = _roots(label, heads)  # the cluster of each distinct set, as a global root
        values, counts = np.unique(comp, return_counts=True)
        largest = values[counts.argmax()]
        t = self.threshold
        for i in np.flatnonzero(comp != largest).tolist():
            others = np.flatnonzero(comp != comp[i])
            if not len(others):
                break
            close = np.count_nonzero(self.sig[heads[others]] == self.sig[heads[i]], axis=1) / self.num_perm
            near = close >= t + _SURE
            unsure = np.flatnonzero((close >= t - _SURE) & ~near)
            if len(unsure):
                j = others[unsure]
                mine = data[starts[i] : starts[i] + sizes[i]]
                at = np.repeat(starts[j], sizes[j]) + (np.arange(sizes[j].sum()) - np.repeat(np.cumsum(sizes[j]) - sizes[j], sizes[j]))
                theirs = data[at]
                found = np.searchsorted(mine, theirs)
                hit = mine[np.minimum(found, len(mine) - 1)] == theirs
                common = np.add.reduceat(hit.astype(np.int64), np.cumsum(sizes[j]) - sizes[j])
                near[unsure] = common / (sizes[i] + sizes[j] - common) >= t
            joined = np.unique(comp[others[near]])
            if len(joined):
                merged = np.isin(comp, joined) | (comp == comp[i])
                comp[merged] = min(int(comp[i]), int(joined.min()))
        for head, root in zip(heads.tolist(), comp.tolist()):
            _union(label, head, root)


def _roots(label: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The root of each of `nodes` (label is not changed)."""
    roots = label[nodes]
    while True:
        up = label[roots]
        if np.array_equal(up, roots):
            return roots
        roots = up


def _live(sig: np.ndarray) -> np.ndarray:
    """Whether each row is a signature of some shingles (not the empty one), a block at a time."""
    live = np.empty(len(sig), bool)
    for s in range(0, len(sig), 65536):
        live[s : s + 65536] = (sig[s : s + 65536] != _MAX32).any(axis=1)
    return live


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def find_duplicates(
    texts: Sequence[str], threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1,
    workers: int | None = None,
) -> list[int | None]:
    """For each text, None if kept, else the index of the kept text of its cluster (its first member).

    Texts with no words never match anything and are all kept. `workers` threads sign the
    texts (default: one per core); the result is the same for any number.
    """
    finder = DuplicateFinder(len(texts), threshold, num_perm, ngram, seed, workers)
    try:
        finder.add(texts)
    except BaseException:
        finder.close()
        raise
    roots = finder.roots(lambda idx: [texts[i] for i in idx.tolist()])
    return [None if root == i else root for i, root in enumerate(roots.tolist())]


# -- decontamination: queries against an index of references ----------------------------------


class ReferenceIndex:
    """LSH buckets of reference texts (benchmark prompts), queried by batches of texts."""

    def __init__(self, references: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
                 seed: int = 1):
        _check(ngram=ngram, num_perm=num_perm, threshold=threshold)
        self.threshold, self.ngram = threshold, ngram
        self._perms = _permutations(num_perm, seed)
        self.bands, self.rows = lsh_params(threshold, num_perm)
        sig = _sketch(references, ngram, self._perms) if len(references) else np.empty((0, num_perm), np.uint32)
        self._sets = _shingle_sets(references, ngram)
        docs = np.flatnonzero((sig != _MAX32).any(axis=1))
        self._tables = []
        for band in range(self.bands):
            cols = sig[docs, band * self.rows : (band + 1) * self.rows]
            key = _band_keys(cols)
            order = np.argsort(key, kind="stable")
            self._tables.append((key[order], docs[order], cols[order]))

    def matches(self, queries: Sequence[str]) -> Iterator[tuple[int, int, float]]:
        """(query index, reference index, Jaccard) for each pair whose exact Jaccard reaches
        the threshold, by query, then reference, in order."""
        if not len(queries):
            return
        sig = _sketch(queries, self.ngram, self._perms)
        live = np.flatnonzero((sig != _MAX32).any(axis=1))
        qs, rs = [], []
        for band, (keys, refs, cols) in enumerate(self._tables):
            q_cols = sig[live, band * self.rows : (band + 1) * self.rows]
            q_key = _band_keys(q_cols)
            lo, hi = np.searchsorted(keys, q_key, "left"), np.searchsorted(keys, q_key, "right")
            counts = hi - lo
            if not counts.any():
                continue
            q = np.repeat(np.arange(len(live)), counts)
            at = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
            same = (cols[at] == q_cols[q]).all(axis=1)  # equal keys, equal bands
            qs.append(live[q[same]])
            rs.append(refs[at[same]])
        if not qs:
            return
        pairs = np.unique(np.stack([np.concatenate(qs), np.concatenate(rs)], axis=1), axis=0)
        if not len(pairs):
            return
        asked = np.unique(pairs[:, 0])
        sets = dict(zip(asked.tolist(), _shingle_sets([queries[i] for i in asked.tolist()], self.ngram)))
        for q, r in pairs.tolist():
            jaccard = _jaccard(sets[q], self._sets[r])
            if jaccard >= self.threshold:
                yield q, r, jaccard


def similar_pairs(
    queries: Sequence[str], references: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
    seed: int = 1,
):
    """(query index, reference index, Jaccard) for each pair whose exact Jaccard reaches
    `threshold`, found through an LSH index of the references (decontamination)."""
    yield from ReferenceIndex(references, threshold, num_perm, ngram, seed).matches(queries)
