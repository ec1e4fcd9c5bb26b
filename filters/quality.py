"""Heuristic quality filters. Each returns, per row, None to keep it or the reason to drop it."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from distill.filters.text import DEFAULT_ROLES, row_text

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


def turns(row: dict[str, Any], column: str, roles: tuple[str, ...]) -> list[str]:
    """The turns a filter checks one by one: a chat's turns of `roles`, or the one text."""
    value = row.get(column)
    if isinstance(value, list):
        return [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") in roles]
    return [row_text(row, column, roles)]


def length(rows, column: str, roles=DEFAULT_ROLES, min_words=None, max_words=None, min_chars=None, max_chars=None,
           turn_min_words=None, turn_max_words=None) -> list[str | None]:
    """Total length in words and characters, and the words of each turn, within bounds."""
    reasons = []
    for row in rows:
        parts = turns(row, column, roles)
        text = "\n".join(parts)
        words = len(WORD.findall(text))
        per_turn = [len(WORD.findall(part)) for part in parts]
        checks = [
            (min_words is not None and words < min_words, f"{words} words < {min_words}"),
            (max_words is not None and words > max_words, f"{words} words > {max_words}"),
            (min_chars is not None and len(text) < min_chars, f"{len(text)} characters < {min_chars}"),
            (max_chars is not None and len(text) > max_chars, f"{len(text)} characters > {max_chars}"),
            (turn_min_words is not None and min(per_turn, default=0) < turn_min_words, f"a turn under {turn_min_words} words"),
            (turn_max_words is not None and max(per_turn, default=0) > turn_max_words, f"a turn over {turn_max_words} words"),
        ]
        reasons.append(next((why for failed, why in checks if failed), None))
    return reasons


def blocklist(rows, column: str, words: list[str], roles=DEFAULT_ROLES) -> list[str | None]:
    """Rows containing any of `words` (or phrases) as a whole word, case-insensitively."""
    if not words:
        return [None] * len(rows)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?!\w)",
                         re.IGNORECASE)
    reasons = []
    for row in rows:
        found = pattern.search(row_text(row, column, roles))
        reasons.append(f"blocklisted {found.group(0).lower()!r}" if found else None)
    return reasons


def refusal(rows, column: str, patterns: list[str] | None = None, roles=("assistant",)) -> list[str | None]:
    """Assistant turns that refuse or say "as an AI language model" (regular expressions)."""
    compiled = [re.compile(p, re.IGNORECASE) for p in (patterns if patterns is not None else REFUSALS)]
    reasons = []
    for row in rows:
        text = row_text(row, column, roles)
        found = next((m for m in (p.search(text) for p in compiled) if m), None)
        reasons.append(f"refusal {found.group(0)!r}" if found else None)
    return reasons


def degenerate(rows, column: str, roles=DEFAULT_ROLES) -> list[str | None]:
    """Empty turns, a turn that repeats an earlier one, a chat not ending with the assistant."""
    reasons = []
    for row in rows:
        value = row.get(column)
        parts = turns(row, column, roles)
        why = None
        if any(not part.strip() for part in parts):
            why = "an empty turn"
        elif len({" ".join(p.lower().split()) for p in parts}) < len(parts):
            why = "a repeated turn"
        elif isinstance(value, list) and value and value[-1].get("role") == "user":
            why = "ends on a user turn"
        reasons.append(why)
    return reasons


def repetition(rows, column: str, roles=DEFAULT_ROLES, ngram: int = 3, max_repeated_ngrams: float = 0.3,
               max_repeated_lines: float = 0.3) -> list[str | None]:
    """Text that loops: the share of word n-grams, or of non-empty lines, that are repeats."""
    reasons = []
    for row in rows:
        text = row_text(row, column, roles)
        words = [w.lower() for w in WORD.findall(text)]
        grams = [tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]
        repeated_grams = _repeated_share(grams)
        lines = [line.strip().lower() for line in text.splitlines() if line.strip()]
        repeated_lines = _repeated_share(lines)
        if repeated_grams > max_repeated_ngrams:
            reasons.append(f"{repeated_grams:.0%} of its {ngram}-grams are repeats")
        elif repeated_lines > max_repeated_lines:
            reasons.append(f"{repeated_lines:.0%} of its lines are repeats")
        else:
            reasons.append(None)
    return reasons


def _repeated_share(items: list) -> float:
    if not items:
        return 0.0
    counts = Counter(items)
    return sum(c - 1 for c in counts.values()) / len(items)
