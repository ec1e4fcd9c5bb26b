"""Decontamination: drop rows whose prompt overlaps an evaluation set.

Two tests, as used for the benchmarks of instruction-tuned models:
  ngram    the row shares a word n-gram (13 by default) with a benchmark prompt; a
           benchmark prompt shorter than n words matches when the row contains all of it;
  minhash  the row's MinHash similarity with a benchmark prompt reaches a threshold.
Benchmarks are files, saved datasets or Hub datasets of prompts (MT-Bench, AlpacaEval, ...);
every split is read, and the prompt is taken from the first of these columns that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr

from distill.config import cli
from distill.errors import InputError
from distill.filters.base import Filter
from distill.filters.text import value_text
from distill.inputs import load_splits

if TYPE_CHECKING:
    from distill.filters.rows import Rows

WORD = re.compile(r"\w+", re.UNICODE)
PROMPT_COLUMNS = ("prompt", "instruction", "question", "turns", "messages", "text", "input")
ROW_PROMPTS = ("prompt", "instruction", "messages")  # where a row's prompt is, unless `column` names it


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def benchmark_name(source: str) -> str:
    path = Path(source)
    return path.stem if path.exists() else source


def benchmark_prompts(source: str) -> list[str]:
    """Every prompt of a benchmark, all splits; MT-Bench's `turns` gives each of its turns."""
    splits = load_splits(source)
    rows = [row for rows in splits.values() for row in rows]
    if not rows:
        raise InputError(f"benchmark {source} is empty")
    column = next((c for c in PROMPT_COLUMNS if c in rows[0]), None)
    if column is None:
        raise InputError(f"benchmark {source} has none of the columns {', '.join(PROMPT_COLUMNS)}")
    prompts = []
    for row in rows:
        value = row.get(column)
        if isinstance(value, str):
            prompts.append(value)
        elif isinstance(value, list):
            prompts.extend(v if isinstance(v, str) else v.get("content", "") for v in value
                           if isinstance(v, str) or (isinstance(v, dict) and v.get("role", "user") == "user"))
    return [p for p in prompts if p.strip()]


def prompt_of(row: dict[str, Any], column: str | None) -> str:
    """The row's prompt: `column`, else its `prompt`, else the user turns of `messages`."""
    if column is None:
        column = next((c for c in ROW_PROMPTS if c in row), None)
        if column is None:
            raise InputError(f"no prompt column (prompt, instruction, messages) in {', '.join(row)}; name one")
    if column not in row:
        raise InputError(f"no column {column!r} (columns: {', '.join(row)})")
    return value_text(row.get(column), column, roles=("user",))


class NgramIndex:
    """Word n-grams of the benchmark prompts, and the whole of those shorter than n."""

    def __init__(self, n: int):
        self.n = n
        self.grams: dict[tuple[str, ...], str] = {}  # gram -> benchmark
        self.lengths: set[int] = set()

    def add(self, prompt: str, benchmark: str) -> None:
        tokens = words(prompt)
        size = min(self.n, len(tokens))
        if size:
            self.lengths.add(size)
            for i in range(len(tokens) - size + 1):
                self.grams.setdefault(tuple(tokens[i:i + size]), benchmark)

    def match(self, text: str) -> tuple[str, str] | None:
        """(benchmark, the overlapping words), or None."""
        tokens = words(text)
        for size in sorted(self.lengths, reverse=True):
            for i in range(len(tokens) - size + 1):
                gram = tuple(tokens[i:i + size])
                if gram in self.grams:
                    return self.grams[gram], " ".join(gram)
        return None


class Decontaminate(Filter):
    """Drop rows whose prompt overlaps a benchmark's (n-gram overlap or MinHash similarity)."""

    name = "decontaminate"
    reads_column = False  # it finds the prompt itself: `column`, else prompt, instruction or messages
    column: str | None = Field(None, description="The row's prompt.",
                               json_schema_extra=cli(show="prompt, instruction, or the user turns of messages"))
    against: list[str] = Field(min_length=1, description="Benchmark prompts: a file, saved dataset or Hub id; "
                               "repeatable.")
    method: Literal["ngram", "minhash"] = Field("ngram", description="ngram: a shared run of --ngram words; minhash: "
                                                "similarity of at least --threshold.")
    ngram: int = Field(13, ge=1, description="Words of an overlap that counts.")
    threshold: float = Field(0.8, gt=0, lt=1, description="MinHash similarity that counts (--method minhash).")
    _num_perm: int = PrivateAttr(128)
    _index: Any = PrivateAttr(None)
    _names: list[str] = PrivateAttr(default_factory=list)

    def decide(self, rows: Rows) -> list[str | None]:
        if self._index is None:
            self._build()
        prompts = self._prompts(rows)
        if self.method == "ngram":
            reasons = []
            for prompt in prompts:
                found = self._index.match(prompt)
                reasons.append(f"{len(found[1].split())}-gram overlap with {found[0]}: {found[1]!r}" if found else None)
            return reasons
        reasons: list[str | None] = [None] * len(prompts)
        for row, bench, similarity in self._index.matches(prompts):
            if reasons[row] is None:
                reasons[row] = f"MinHash similarity {similarity:.2f} with {self._names[bench]}"
        return reasons

    def _build(self) -> None:
        benchmarks = {benchmark_name(source): benchmark_prompts(source) for source in self.against}
        if self.method == "ngram":
            index = NgramIndex(self.ngram)
            for name, texts in benchmarks.items():
                for text in texts:
                    index.add(text, name)
            self._index = index
            return
        from distill.filters.minhash import ReferenceIndex

        self._names = [name for name, texts in benchmarks.items() for _ in texts]
        self._index = ReferenceIndex([text for texts in benchmarks.values() for text in texts],
                                     threshold=self.threshold, num_perm=self._num_perm)

    def _prompts(self, rows: Rows) -> list[str]:
        """Each row's prompt: `column`, else its first of prompt, instruction, messages (the
        user turns of a chat) that holds a value."""
        columns = rows.columns
        if not len(rows):
            return []
        if self.column is not None:
            if self.column not in columns:
                raise InputError(f"no column {self.column!r} (columns: {', '.join(columns)})")
            return [value_text(v, self.column, ("user",)) for v in rows.values(self.column)]
        present = [c for c in ROW_PROMPTS if c in columns]
        if not present:
            raise InputError(f"no prompt column (prompt, instruction, messages) in {', '.join(columns)}; name one")
        values = [rows.values(c) for c in present]
        prompts = []
        for cells in zip(*values):
            at = next((i for i, v in enumerate(cells) if v is not None), 0)
            prompts.append(value_text(cells[at], present[at], ("user",)))
        return prompts


def decontaminate(rows: list[dict[str, Any]], against: list[str], column: str | None = None, method: str = "ngram",
                  ngram: int = 13, threshold: float = 0.8, num_perm: int = 128) -> list[str | None]:
    """Per row (Python dicts), None or the reason it was dropped, naming the benchmark it matched."""
    from distill.filters.rows import Rows

    if ngram < 1:
        raise InputError("--ngram must be at least 1")
    if method not in ("ngram", "minhash"):
        raise InputError(f"unknown decontamination method {method!r} (ngram or minhash)")
    judge = Decontaminate(against=against, column=column, method=method, ngram=ngram, threshold=threshold)
    judge._num_perm = num_perm
    return judge.decide(Rows.from_list(rows))
