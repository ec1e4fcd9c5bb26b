"""The filters that compare rows with one another: MinHash near-duplicates and ROUGE-L novelty."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr

from distill.filters.base import Filter

if TYPE_CHECKING:
    from distill.filters.rows import Rows

DEDUP_BATCH = 4096  # rows whose texts are read at a time while their signatures are made


class Dedup(Filter):
    """MinHash near-duplicates: each cluster keeps its first row (input order, train first).

    Only the signatures are held (4 * num_perm bytes a row); the texts are read a batch at a
    time from the memory-mapped rows, and read again only for the few pairs whose estimated
    Jaccard is too close to the threshold to decide alone (see distill.filters.minhash)."""

    name = "dedup"
    whole = True
    threshold: float = Field(0.7, gt=0, lt=1, description="Jaccard similarity at which rows are near-duplicates.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    ngram: int = Field(5, ge=1, description="Words per shingle.")

    def decide(self, rows: Rows) -> list[str | None]:
        import numpy as np

        from distill.filters.minhash import DuplicateFinder

        column, roles = self.column_name, self.roles
        finder = DuplicateFinder(len(rows), self.threshold, self.num_perm, self.ngram)
        try:
            for batch in rows.batches(DEDUP_BATCH):
                finder.add(batch.texts(column, roles))
        except BaseException:
            finder.close()
            raise
        roots = finder.roots(lambda idx: rows.subset(idx).texts(column, roles))
        reasons: list[str | None] = [None] * len(rows)
        for i in np.flatnonzero(roots != np.arange(len(rows))).tolist():
            reasons[i] = f"near-duplicate of {rows.label(int(roots[i]))}"
        return reasons


class Rouge(Filter):
    """ROUGE-L novelty, as Self-Instruct: a row is dropped if its ROUGE-L F-measure with a
    text of `pool` or with an earlier kept row is above the threshold (the original's rule)."""

    name = "rouge"
    threshold: float = Field(0.7, gt=0, le=1)
    pool: list[str] = Field(default_factory=list)  # files or datasets of texts the rows must differ from
    _novelty: Any = PrivateAttr(None)
    _names: list[str] = PrivateAttr(default_factory=list)  # what each pool entry is, for the reasons

    def decide(self, rows: Rows) -> list[str | None]:
        from distill.filters.rouge import NoveltyPool

        column = self.column_name
        if self._novelty is None:
            outside = [t for source in self.pool for t in _pool_texts(source, column)]
            self._novelty = NoveltyPool(outside, self.threshold, strict=True)
            self._names = [f"pool text {i}" for i in range(len(outside))]
        hits = self._novelty.filter(rows.texts(column, self.roles))
        reasons: list[str | None] = []
        # The pool holds the outside texts, then the rows kept so far, in order.
        for label, hit in zip(rows.labels(), hits):
            if hit is None:
                self._names.append(label)
                reasons.append(None)
            else:
                reasons.append(f"ROUGE-L > {self.threshold:g} with {self._names[hit]}")
        return reasons


def _pool_texts(source: str, column: str) -> list[str]:
    from distill.filters.text import texts
    from distill.inputs import load_splits

    rows = [row for rows in load_splits(source).values() for row in rows]
    if not rows:
        return []
    return texts(rows, column if rows and column in rows[0] else next(iter(rows[0]), column), source)
