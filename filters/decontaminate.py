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
from typing import Any

from distill.errors import InputError
from distill.filters.text import row_text
from distill.inputs import load_splits

WORD = re.compile(r"\w+", re.UNICODE)
PROMPT_COLUMNS = ("prompt", "instruction", "question", "turns", "messages", "text", "input")


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
        column = next((c for c in ("prompt", "instruction", "messages") if c in row), None)
        if column is None:
            raise InputError(f"no prompt column (prompt, instruction, messages) in {', '.join(row)}; name one")
    if column not in row:
        raise InputError(f"no column {column!r} (columns: {', '.join(row)})")
    return row_text(row, column, roles=("user",))


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


def decontaminate(rows: list[dict[str, Any]], against: list[str], column: str | None = None, method: str = "ngram",
                  ngram: int = 13, threshold: float = 0.8, num_perm: int = 128) -> list[str | None]:
    """Per row, None or the reason it was dropped, naming the benchmark it matched."""
    if ngram < 1:
        raise InputError("--ngram must be at least 1")
    benchmarks = {benchmark_name(source): benchmark_prompts(source) for source in against}
    prompts = [prompt_of(row, column) for row in rows]
    if method == "ngram":
        index = NgramIndex(ngram)
        for name, texts in benchmarks.items():
            for text in texts:
                index.add(text, name)
        reasons = []
        for prompt in prompts:
            found = index.match(prompt)
            reasons.append(f"{len(found[1].split())}-gram overlap with {found[0]}: {found[1]!r}" if found else None)
        return reasons
    if method == "minhash":
        return _minhash(prompts, benchmarks, threshold, num_perm)
    raise InputError(f"unknown decontamination method {method!r} (ngram or minhash)")


def _minhash(prompts: list[str], benchmarks: dict[str, list[str]], threshold: float, num_perm: int) -> list[str | None]:
    from distill.filters.minhash import similar_pairs

    names = [name for name, texts in benchmarks.items() for _ in texts]
    texts = [text for texts in benchmarks.values() for text in texts]
    reasons: list[str | None] = [None] * len(prompts)
    for row, bench, similarity in similar_pairs(prompts, texts, threshold=threshold, num_perm=num_perm):
        if reasons[row] is None:
            reasons[row] = f"MinHash similarity {similarity:.2f} with {names[bench]}"
    return reasons
