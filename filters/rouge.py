"""ROUGE-L novelty against a growing pool of texts (the Self-Instruct filter).

Self-Instruct keeps a new instruction only if its ROUGE-L F-measure with every
instruction already in the pool stays within a threshold (0.7: its code drops a score
above it, `strict` here), and the pool grows as instructions are accepted. Scoring
every pair is quadratic; `NoveltyPool` makes the same decisions as that brute-force
loop over the `rouge_score` package while scoring only the few pairs that could reach
the threshold:

1. Texts are tokenized exactly like rouge_score's default tokenizer and tokens are
   mapped to ints once.
2. The LCS of two texts is at most the size of their multiset token intersection (the
   overlap), itself at most min(len_a, len_b), so F <= 2 * overlap / (len_a + len_b);
   this bound subsumes the length bound 2 * min / (len_a + len_b). An inverted index
   from (token, k-th occurrence) to the pool entries holding that token at least k
   times gives the overlap with every entry in one `numpy.bincount`; entries sharing no
   token are never visited.
3. Only entries whose bound reaches the threshold get an exact LCS, computed
   bit-parallel over Python ints (Hyyro 2004), best bound first so a near-duplicate
   stops the search early.

Only the standard library and numpy are needed at run time.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = ["NoveltyPool", "rouge_l", "tokenize"]

# rouge_score.tokenize: lowercase, runs of characters outside [a-z0-9] become one space.
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# Slack on the float upper bounds, so that pruning never depends on the last bit of a
# rounding; the exact score of each surviving pair decides.
_EPS = 1e-9


def tokenize(text: str) -> list[str]:
    """Tokens of `text`, identical to rouge_score's DefaultTokenizer(use_stemmer=False).

    rouge_score lowercases, replaces non-[a-z0-9] runs by a space, splits on whitespace
    and drops empty tokens; after the substitution only ASCII letters, digits and
    spaces remain, so `str.split()` does the last two steps. Python's `str.lower` can
    turn some non-ASCII letters into ASCII ones (e.g. the Kelvin sign into "k"), as it
    does in rouge_score.
    """
    return _NON_ALNUM.sub(" ", text.lower()).split()


def _fmeasure(lcs: int, target_len: int, prediction_len: int) -> float:
    """rouge_score's ROUGE-L F-measure, with its float operations in its order."""
    if lcs == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall)


def _masks(tokens: Sequence[Hashable]) -> dict[Hashable, int]:
    """For each token, the bitmask of its positions in `tokens`."""
    masks: dict[Hashable, int] = {}
    for i, token in enumerate(tokens):
        masks[token] = masks.get(token, 0) | (1 << i)
    return masks


def _lcs_length(masks: dict[Hashable, int], length: int, other: Iterable[Hashable]) -> int:
    """LCS length of the sequence described by (`masks`, `length`) and `other`.

    Bit-parallel (Hyyro 2004): bit i of v is 0 where the LCS row grows at position i;
    the zeros among the low `length` bits count the LCS. Carries above bit `length`
    never reach lower bits, so v is masked once, at the end.
    """
    v = (1 << length) - 1
    for token in other:
        match = masks.get(token)
        if match:
            u = v & match
            v = (v + u) | (v - u)
    return length - (v & ((1 << length) - 1)).bit_count()


def rouge_l(a_tokens: Sequence[Hashable], b_tokens: Sequence[Hashable]) -> float:
    """ROUGE-L F-measure of target `a_tokens` and prediction `b_tokens`.

    Equals `RougeScorer(["rougeL"]).score(target, prediction)["rougeL"].fmeasure` for
    the tokens of `tokenize(target)` and `tokenize(prediction)`; 0.0 if either is empty.
    (The F-measure is symmetric, so the order of the arguments does not matter.)
    """
    if not a_tokens or not b_tokens:
        return 0.0
    lcs = _lcs_length(_masks(a_tokens), len(a_tokens), b_tokens)
    return _fmeasure(lcs, len(a_tokens), len(b_tokens))


class NoveltyPool:
    """A pool of texts that answers "is this text novel?" by ROUGE-L.

    A text is novel if its ROUGE-L F-measure with every pool entry is below
    `threshold` (it is dropped if some score is >= threshold). With `strict`, a score
    equal to the threshold still counts as novel: a text is dropped only if some score
    is > threshold, the rule of Self-Instruct's and Alpaca's code (`max(scores) > 0.7`).
    Pool entries are numbered from 0 in the order they were added.
    """

    def __init__(self, texts: Iterable[str] = (), threshold: float = 0.7, strict: bool = False):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        self.strict = strict
        self.texts: list[str] = []
        self._vocab: dict[str, int] = {}  # token -> int id
        self._entries: list[tuple[int, ...]] = []  # token ids of each entry
        self._lengths = np.zeros(1024, dtype=np.intc)  # token count of each entry (grows)
        # (token id, k) -> ids of the entries that hold the token at least k times.
        self._postings: dict[tuple[int, int], array] = {}
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        """Add `text` to the pool, whatever its similarity to the pool."""
        index = len(self.texts)
        ids = tuple(self._vocab.setdefault(token, len(self._vocab)) for token in tokenize(text))
        self.texts.append(text)
        self._entries.append(ids)
        if index == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        self._lengths[index] = len(ids)
        for token, count in Counter(ids).items():
            for k in range(1, count + 1):
                self._postings.setdefault((token, k), array("i")).append(index)

    def max_similarity(self, text: str) -> tuple[float, int | None]:
        """The highest ROUGE-L F-measure of `text` with a pool entry, and that entry.

        The search stops at the first entry found similar (scoring >= threshold, or >
        with `strict`): the score is then "at least that", not necessarily the
        maximum. Below the threshold the maximum is exact. (0.0, None) when no entry shares a token with `text`.
        """
        return self._search(self._encode(text), exhaustive=True)

    def is_novel(self, text: str) -> bool:
        """True if no pool entry is similar to `text` (scores >= threshold; > with `strict`)."""
        return self._match(self._encode(text)) is None

    def filter(self, candidates: Iterable[str], add_accepted: bool = True) -> list[int | None]:
        """Novelty decision for each candidate, in order.

        Returns, per candidate, None if it is novel (kept), else the index of a pool
        entry it is similar to (dropped). With `add_accepted`, each kept
        candidate joins the pool before the next one is judged, as in Self-Instruct,
        so a later near-copy of an accepted candidate is dropped against it.
        """
        decisions: list[int | None] = []
        for text in candidates:
            match = self._match(self._encode(text))
            if match is None and add_accepted:
                self.add(text)
            decisions.append(match)
        return decisions

    def _encode(self, text: str) -> list[int]:
        """Token ids of `text`; a token the pool has never seen gets -1 (it matches nothing)."""
        return [self._vocab.get(token, -1) for token in tokenize(text)]

    def _match(self, ids: list[int]) -> int | None:
        score, index = self._search(ids, exhaustive=False)
        return index if self._similar(score) else None

    def _similar(self, score: float) -> bool:
        return score > self.threshold if self.strict else score >= self.threshold

    def _search(self, ids: list[int], exhaustive: bool) -> tuple[float, int | None]:
        """Best (score, entry) among the entries that may matter, stopping at the threshold.

        With `exhaustive`, every entry that could beat the best score so far is scored
        (exact maximum below the threshold); otherwise only entries whose bound reaches
        the threshold are, which is all a keep/drop decision needs.
        """
        size = len(self._entries)
        if not ids or not size:
            return 0.0, None
        length = len(ids)
        # Multiset overlap with every entry: one posting list per (token, k-th occurrence).
        keys = [(token, k) for token, count in Counter(ids).items() for k in range(1, count + 1)]
        hits = b"".join([self._postings[key] for key in keys if key in self._postings])
        overlap = np.bincount(np.frombuffer(hits, dtype=np.intc), minlength=size)
        bound = 2.0 * overlap / (length + self._lengths[:size])
        floor = 0.0 if exhaustive else self.threshold - _EPS
        candidates = np.flatnonzero((overlap > 0) & (bound >= floor))
        candidates = candidates[np.argsort(-bound[candidates], kind="stable")]

        masks = _masks(ids)
        best, best_index = 0.0, None
        for index in candidates.tolist():
            if bound[index] + _EPS <= best or self._similar(best):
                break  # nothing left can beat `best`, or a similar entry is found
            entry = self._entries[index]
            score = _fmeasure(_lcs_length(masks, length, entry), length, len(entry))
            if score > best:
                best, best_index = score, index
        return best, best_index
