"""Heuristic quality filters: length, blocklist, refusal, degenerate, repetition.

Each judges one row at a time, from the row's text (a chat's turns of `roles`, joined) or
its turns one by one; a batch is just many rows.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, PrivateAttr

from distill.errors import InputError
from distill.filters.base import Filter
from distill.filters.text import value_text, value_turns

if TYPE_CHECKING:
    from distill.filters.rows import Rows

WORD = re.compile(r"\w+", re.UNICODE)

# Replies that refuse, or disown being able to answer, as assistants of the ChatGPT era did.
REFUSALS = (
    r"\bas an ai(?: language model| assistant)?\b",
    r"\bi(?:'m| am) (?:just |only )?an? (?:ai|language model|artificial intelligence)\b",
    r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:can(?:no|')t|am (?:not able|unable)|won't)\b",
    r"\bi (?:can(?:no|')t|am unable to|won't) (?:help|assist|comply|provide|fulfil)",
    r"\bi (?:do not|don't) have (?:personal )?(?:opinions|feelings|emotions|beliefs)\b",
    r"\bmy (?:knowledge cutoff|training data)\b",
)


class Length(Filter):
    """Total length in words and characters, and the words of each turn, within bounds."""

    name = "length"
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=1)
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    turn_min_words: int | None = Field(None, ge=0)
    turn_max_words: int | None = Field(None, ge=1)

    def decide(self, rows: Rows) -> list[str | None]:
        return [self._why(parts) for parts in rows.turns(self.column_name, self.roles)]

    def _why(self, parts: list[str]) -> str | None:
        text = "\n".join(parts)
        words = len(WORD.findall(text))
        per_turn = [len(WORD.findall(part)) for part in parts]
        checks = (
            (self.min_words is not None and words < self.min_words, lambda: f"{words} words < {self.min_words}"),
            (self.max_words is not None and words > self.max_words, lambda: f"{words} words > {self.max_words}"),
            (self.min_chars is not None and len(text) < self.min_chars, lambda: f"{len(text)} characters < {self.min_chars}"),
            (self.max_chars is not None and len(text) > self.max_chars, lambda: f"{len(text)} characters > {self.max_chars}"),
            (self.turn_min_words is not None and min(per_turn, default=0) < self.turn_min_words,
             lambda: f"a turn under {self.turn_min_words} words"),
            (self.turn_max_words is not None and max(per_turn, default=0) > self.turn_max_words,
             lambda: f"a turn over {self.turn_max_words} words"),
        )
        return next((why() for failed, why in checks if failed), None)


class Blocklist(Filter):
    """Rows containing any of `words` (or phrases) as a whole word, case-insensitively."""

    name = "blocklist"
    words: list[str] = Field(default_factory=list)
    file: Path | None = None  # one word or phrase a line; `#` starts a comment line
    _pattern: re.Pattern | None = PrivateAttr(None)
    _empty: bool = PrivateAttr(False)

    def decide(self, rows: Rows) -> list[str | None]:
        if self._pattern is None and not self._empty:
            words = list(self.words) + (_read_words(self.file) if self.file else [])
            self._empty = not words
            if words:
                self._pattern = re.compile(
                    r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?!\w)",
                    re.IGNORECASE)
        if self._pattern is None:
            return [None] * len(rows)
        found = map(self._pattern.search, rows.texts(self.column_name, self.roles))
        return [f"blocklisted {hit.group(0).lower()!r}" if hit else None for hit in found]


class Refusal(Filter):
    """Assistant turns that refuse or say "as an AI language model" (regular expressions)."""

    name = "refusal"
    patterns: list[str] | None = None  # None: the built-in list
    roles: tuple[str, ...] = ("assistant",)
    _compiled: list[re.Pattern] | None = PrivateAttr(None)

    def decide(self, rows: Rows) -> list[str | None]:
        if self._compiled is None:
            self._compiled = [re.compile(p, re.IGNORECASE) for p in (self.patterns if self.patterns is not None else REFUSALS)]
        reasons = []
        for text in rows.texts(self.column_name, self.roles):
            found = next((m for m in (p.search(text) for p in self._compiled) if m), None)
            reasons.append(f"refusal {found.group(0)!r}" if found else None)
        return reasons


class Degenerate(Filter):
    """Empty turns, a turn that repeats an earlier one, a chat not ending with the assistant.

    A last user turn that only closes the dialogue (CAMEL's task-done message, which the original
    dataset keeps) is not a question left unanswered.
    """

    name = "degenerate"
    closing_user_turns: list[str] = Field(default_factory=lambda: ["<CAMEL_TASK_DONE>"])

    def decide(self, rows: Rows) -> list[str | None]:
        column = self.column_name
        reasons = []
        for value in rows.values(column):
            parts = value_turns(value, column, self.roles)
            why = None
            if any(not part.strip() for part in parts):
                why = "an empty turn"
            elif len({" ".join(p.lower().split()) for p in parts}) < len(parts):
                why = "a repeated turn"
            elif (isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "user"
                  and str(value[-1].get("content") or "").strip() not in self.closing_user_turns):
                why = "ends on a user turn"
            reasons.append(why)
        return reasons


class Repetition(Filter):
    """Text that loops: the share of word n-grams, or of non-empty lines, that are repeats."""

    name = "repetition"
    ngram: int = Field(3, ge=1)
    max_repeated_ngrams: float = Field(0.3, ge=0, le=1)
    max_repeated_lines: float = Field(0.3, ge=0, le=1)

    def decide(self, rows: Rows) -> list[str | None]:
        column, n = self.column_name, self.ngram
        reasons = []
        for value in rows.values(column):
            text = value_text(value, column, self.roles)
            words = [w.lower() for w in WORD.findall(text)]
            repeated_grams = _repeated_share([tuple(words[i:i + n]) for i in range(len(words) - n + 1)])
            repeated_lines = _repeated_share([line.strip().lower() for line in text.splitlines() if line.strip()])
            if repeated_grams > self.max_repeated_ngrams:
                reasons.append(f"{repeated_grams:.0%} of its {n}-grams are repeats")
            elif repeated_lines > self.max_repeated_lines:
                reasons.append(f"{repeated_lines:.0%} of its lines are repeats")
            else:
                reasons.append(None)
        return reasons


def _repeated_share(items: list) -> float:
    if not items:
        return 0.0
    counts = Counter(items)
    return sum(c - 1 for c in counts.values()) / len(items)


def _read_words(path: Path) -> list[str]:
    from distill.config import read_text_file

    lines = read_text_file(Path(path), "blocklist", InputError).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
