"""Reading an AI judge's verdicts (UltraFeedback, Cui et al. 2023) out of model text.

A judge rates the N completions of one prompt on one aspect (instruction following,
honesty, truthfulness, helpfulness): 1-5 each with a rationale; honesty may be "N/A";
truthfulness and helpfulness also name a type. A critique gives ONE completion an
overall score 1-10 with feedback.

The judge is asked for JSON (constrained by the schemas below where the backend
supports it), but real replies are messy, so the parsers are tolerant. They never
invent a rating: whatever they cannot read with confidence is unparseable (None),
never 0 and never a guess. In particular:

- JSON is looked for anywhere in the reply (code fences, prose around it); trailing
  commas, single quotes and Python literals are accepted, but a truncated structure is
  never completed.
- Several readable JSON answers that disagree make the reply unparseable.
- The plain-text fallback ("Text 1: / Rating: 4 / Rationale: ...") is not tried on a
  reply that attempted JSON (a quoted "rating"/"score"/... key followed by a colon):
  reading numbers out of broken JSON could pick them from the wrong place.
- A plain-text reply cut off by the token limit can look complete ("Overall score: 1"
  cut from "Overall score: 10"); callers should treat finish_reason == "length"
  replies as unparseable rather than rely on this module to notice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from distill.parsing import json_values

__all__ = [
    "Rating",
    "aspect_schema",
    "critique_schema",
    "parse_aspect_reply",
    "parse_critique_reply",
]


@dataclass(frozen=True)
class Rating:
    """One completion's rating on one aspect."""

    rating: int | None  # 1-5; None when N/A
    na: bool  # the judge said "N/A" (only ever True where N/A is allowed)
    rationale: str
    type: str | None = None  # one of the allowed type names; None if absent or unknown


# ============================================================ schemas
#
# Ranges are written as `enum`s, not minimum/maximum: enum is the one keyword that
# OpenAI structured outputs (strict mode), vLLM guided decoding (outlines, xgrammar)
# and llama.cpp's schema-to-grammar all enforce, while minimum/maximum were long
# unsupported or ignored by some of them. N/A is `anyOf` an integer enum and a string
# enum ["N/A"]: `const` is newer in some of these engines and a single mixed-type enum
# has no "type", which OpenAI's strict mode requires. Properties are ordered so the
# model writes its rationale before its rating (engines emit them in schema order).


def aspect_schema(n: int, allow_na: bool, types: list[str] | None) -> dict:
    """JSON schema for {"ratings": [{"text", ["type",] "rationale", "rating"}, ...]}
    with exactly n entries; "text" is the 1-based position of the completion."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rating: dict = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
    if allow_na:
        rating = {"anyOf": [rating, {"type": "string", "enum": ["N/A"]}]}
    properties: dict = {"text": {"type": "integer", "enum": list(range(1, n + 1))}}
    if types:
        properties["type"] = {"type": "string", "enum": list(_type_table(types).values())}
    properties["rationale"] = {"type": "string"}
    properties["rating"] = rating
    entry = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"ratings": {"type": "array", "items": entry, "minItems": n, "maxItems": n}},
        "required": ["ratings"],
        "additionalProperties": False,
    }


def critique_schema() -> dict:
    """JSON schema for {"feedback": str, "overall_score": 1..10}."""
    return {
        "type": "object",
        "properties": {
            "feedback": {"type": "string"},
            "overall_score": {"type": "integer", "enum": list(range(1, 11))},
        },
        "required": ["feedback", "overall_score"],
        "additionalProperties": False,
    }


# ============================================================ aspect ratings

# Key synonyms, after distill.parsing's key normalisation (case-folded, spaces and hyphens as "_").
_LIST_KEYS = ("ratings", "evaluations", "evaluation", "results", "scores", "annotations",
              "outputs", "judgments", "judgements", "assessments", "texts", "responses")
_INDEX_KEYS = ("text", "index", "id", "position", "text_index", "text_id", "text_number",
               "idx", "number", "no")
_RATING_KEYS = ("rating", "score", "rating_score", "grade")
_RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "justification",
                   "rationale_for_rating", "feedback", "comment", "comments")
_TYPE_KEYS = ("type", "types", "category", "label")

_NA = object()  # a rating that says "N/A"
_NA_WORDS = {"n/a", "na", "n.a", "n. a", "not applicable", "none", "null"}


def parse_aspect_reply(text: str, n: int, allow_na: bool, types: list[str] | None) -> list[Rating] | None:
    """Exactly n Ratings ordered by position 1..n, or None if the reply can't be read.

    Positions come from the entries' index field ("text"/"index"/"id"/"position", as a
    number or "Text 2"/"#2"), not from their order; only if no entry has one is the
    order of appearance used. Wrong count, duplicate or out-of-range positions, a
    rating outside 1-5 or non-integral, N/A where not allowed, or a missing rating
    make the whole reply unparseable. An unknown type keeps the rating, with type None.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    table = _type_table(types) if types else {}
    if not isinstance(text, str) or not text.strip():
        return None
    readings = [r for v in json_values(text) if (r := _aspect_from_json(v, n, allow_na, table)) is not None]
    if readings:
        return readings[0] if all(r == readings[0] for r in readings) else None
    if _JSON_ATTEMPT.search(text):
        return None
    return _aspect_from_text(text, n, allow_na, table)


def _aspect_from_json(value: Any, n: int, allow_na: bool, table: dict[str, str]) -> list[Rating] | None:
    items = _find_entries(value, 0)
    if items is None or len(items) != n:
        return None
    read = [_read_entry(entry, key_pos, allow_na, table) for key_pos, entry in items]
    if any(r is None for r in read):
        return None
    positions = [pos for pos, _ in read]
    if all(pos is None for pos in positions):
        positions = list(range(1, n + 1))  # no entry says where it belongs: order of appearance
    elif any(pos is None for pos in positions):
        return None
    return _by_position(list(zip(positions, (r for _, r in read))), n)


def _find_entries(value: Any, depth: int) -> list[tuple[int | None, dict]] | None:
    """The rating entries of a parsed reply, each with the position its key gives, if any."""
    if isinstance(value, list):
        return [(None, v) for v in value] if all(isinstance(v, dict) for v in value) else None
    if not isinstance(value, dict) or depth > 3:
        return None
    for key in _LIST_KEYS:
        if isinstance(value.get(key), list):
            return _find_entries(value[key], depth + 1)
    if value and all(isinstance(v, dict) for v in value.values()):
        keyed = [(_position(k), v) for k, v in value.items()]
        if all(pos is not None for pos, _ in keyed):  # {"Text 1": {...}, "Text 2": {...}}
            return keyed
    if any(k in value for k in _RATING_KEYS):  # a single entry
        return [(None, value)]
    lists = [v for v in value.values() if isinstance(v, list)]
    dicts = [v for v in value.values() if isinstance(v, dict)]
    if len(lists) + len(dicts) == 1:  # one wrapper: {"result": [...]} or {"answer": {...}}
        return _find_entries((lists or dicts)[0], depth + 1)
    return None


def _read_entry(entry: dict, key_pos: int | None, allow_na: bool, table: dict[str, str]):
    """(position or None, Rating) of one JSON entry, or None if it can't be read."""
    # An index field that does not read as a position (e.g. "text" echoing the
    # completion) counts as absent; two that disagree make the entry unreadable.
    positions = {p for k in _INDEX_KEYS if k in entry and (p := _position(entry[k])) is not None}
    if key_pos is not None:
        positions.add(key_pos)
    if len(positions) > 1:
        return None
    ratings = [_rating_value(entry[k], 5, allow_na) for k in _RATING_KEYS if k in entry]
    if not ratings or any(r is None for r in ratings) or any(r != ratings[0] for r in ratings):
        return None
    rationale = next((_as_text(entry[k]) for k in _RATIONALE_KEYS if k in entry), "")
    kind = next((_match_type(entry[k], table) for k in _TYPE_KEYS if k in entry), None)
    return (positions.pop() if positions else None), _make_rating(ratings[0], rationale, kind)


def _make_rating(value: Any, rationale: str, kind: str | None) -> Rating:
    if value is _NA:
        return Rating(rating=None, na=True, rationale=rationale, type=kind)
    return Rating(rating=value, na=False, rationale=rationale, type=kind)


def _by_position(pairs: list[tuple[int, Rating]], n: int) -> list[Rating] | None:
    """The ratings in position order, if the positions are exactly 1..n."""
    by_pos = dict(pairs)
    if len(pairs) != n or len(by_pos) != n or set(by_pos) != set(range(1, n + 1)):
        return None
    return [by_pos[i] for i in range(1, n + 1)]


# "Text 2", "text_2", "#2", "Output for Text 2", "2" -> 2
_POSITION = re.compile(
    r"[\W_]*(?:(?:output[\s_]+for[\s_]+)?(?:text|response|completion|output|answer|position|index|id|no\.?|number)[\W_]*)?"
    r"(\d{1,4})[\W_]*",
    re.I,
)


def _position(value: Any) -> int | None:
    """A position as written in an index field or key; 0 stays 0 (and is then rejected)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and (m := _POSITION.fullmatch(value.strip())):
        return int(m.group(1))
    return None


# A score written as text: "4", "4.0", "4/5", "4 (out of 5)", "Rating: 4", "**4**",
# "4 (good)". Anything with a second number after it ("3-4", "4 or 5") is unreadable.
_DECORATION = " \t\r\n*_`\"'[](){}"
_LABEL = re.compile(r"(?:overall[\s_]+)?(?:rating|score)\s*(?:of|is|[:=])?\s*", re.I)
_SCORE_TEXT = re.compile(
    r"(?P<int>[+-]?\d{1,6})(?P<frac>\.\d+)?"
    r"(?:\s*\(?\s*(?:/|out\s+of)\s*(?P<den>\d{1,6})(?:\.0+)?\)?)?"
    r"(?P<rest>[\s.,;:!\-\u2013\u2014(].*)?",
    re.I | re.S,
)


def _rating_value(value: Any, scale: int, allow_na: bool) -> Any:
    """An int in 1..scale, _NA, or None when the value is not a readable rating."""
    if isinstance(value, bool):  # True is an int in Python, not a rating
        return None
    if value is None:
        return _NA if allow_na else None
    if isinstance(value, int):
        return value if 1 <= value <= scale else None
    if isinstance(value, float):
        ok = math.isfinite(value) and value.is_integer() and 1 <= value <= scale
        return int(value) if ok else None
    if not isinstance(value, str):
        return None
    text = value.strip(_DECORATION)
    if m := _LABEL.match(text):
        text = text[m.end():].strip(_DECORATION)
    if text.rstrip(".").casefold() in _NA_WORDS:
        return _NA if allow_na else None
    m = _SCORE_TEXT.fullmatch(text)
    if not m or re.search(r"\d", m.group("rest") or ""):
        return None
    if m.group("frac") and m.group("frac").strip(".0"):  # 3.5
        return None
    if m.group("den") and int(m.group("den")) != scale:  # a score on another scale
        return None
    number = int(m.group("int"))
    return number if 1 <= number <= scale else None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(v.strip() for v in value).strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _norm_name(name: str) -> str:
    """A type name for matching: case-folded, leading "1." dropped, punctuation as spaces."""
    name = re.sub(r"^\s*\d+\s*[.):\-]\s*(?=\D)", "", name)
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


def _type_table(types: list[str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for t in types:
        if not isinstance(t, str) or not _norm_name(t):
            raise ValueError(f"type names must be non-empty strings, got {t!r}")
        if _norm_name(t) in table and table[_norm_name(t)] != t:
            raise ValueError(f"type names {table[_norm_name(t)]!r} and {t!r} are indistinguishable")
        table[_norm_name(t)] = t
    return table


def _match_type(value: Any, table: dict[str, str]) -> str | None:
    """The allowed type name the judge wrote (case and punctuation aside), else None."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return table.get(_norm_name(value)) if isinstance(value, str) and table else None


# ---------------------------------------------------------- plain-text fallback
#
#   Text 1:                         #### Output for Text 1
#   Rating: 4                       Type: Factual Error
#   Rationale: ...                  Rationale: ...
#                                   Rating: 2
#                                   Rationale: ...

# A line that opens a section: "Text 1:", "**Text 2**", "#### Output for Text 3",
# "Response 4 - ...". "Text 2 is better than ..." is prose, not a heading.
_HEADING = re.compile(
    r"[^\w\n]*(?:output\s+for\s+)?(?:text|response|completion|output)\s*#?\s*(\d{1,4})\s*[*_]*\s*"
    r"(?::|[-\u2013\u2014](?=\s|$)|$)(?P<rest>.*)",
    re.I,
)
# A labelled line: "Rating: 4", "**Rationale**: ...", "Rating for text 1: 4", "Type (1-3): ..."
_FIELD = re.compile(
    r"[^\w\n]*(?P<label>rating|score|rationale|reason|reasoning|explanation|justification|types?)"
    r"(?:\s*\([^)\n]*\)|\s+for\s+(?P<target>[^:\n=]{1,40}?))?\s*[*_]*\s*[:=]\s*(?P<value>.*)",
    re.I,
)
_FIELD_NAMES = {"rating": "rating", "score": "rating", "type": "type", "types": "type"}

# A reply that attempted JSON: a quoted key about ratings, followed by a colon.
_JSON_ATTEMPT = re.compile(r"""["'][\w \-]*(?:rating|score|feedback|rationale)[\w \-]*["']\s*:""", re.I)


def _aspect_from_text(text: str, n: int, allow_na: bool, table: dict[str, str]) -> list[Rating] | None:
    sections: dict[int, list[str]] = {}
    current: int | None = None
    for line in text.splitlines():
        if m := _HEADING.match(line):
            current = int(m.group(1))
            if current in sections:  # the same text rated twice
                return None
            sections[current] = [m.group("rest")]
        elif current is not None:
            sections[current].append(line)
    if not sections and n == 1:  # a single completion needs no heading
        sections = {1: text.splitlines()}
    pairs = []
    for pos, lines in sections.items():
        rating = _read_section(lines, pos, allow_na, table)
        if rating is None:
            return None
        pairs.append((pos, rating))
    return _by_position(pairs, n)


def _read_section(lines: list[str], pos: int, allow_na: bool, table: dict[str, str]) -> Rating | None:
    fields: dict[str, list[str]] = {"rating": [], "type": [], "rationale": []}
    rest: list[str] = []
    current = None  # the field an unlabelled line continues
    for line in lines:
        m = _FIELD.match(line)
        if m:
            current = _FIELD_NAMES.get(m.group("label").casefold(), "rationale")
            # "Rating for text 2: 4" inside the section of text 1 is a contradiction
            named = re.search(r"\d+", m.group("target") or "")
            if current == "rating" and named and int(named.group()) != pos:
                return None
            fields[current].append(m.group("value").strip())
        elif current == "rationale":
            fields["rationale"][-1] += "\n" + line
        elif current in ("rating", "type") and not fields[current][-1] and line.strip():
            fields[current][-1] = line.strip()  # "Rating:" with its value on the next line
        else:
            rest.append(line)
    values = [_rating_value(v, 5, allow_na) for v in fields["rating"]]
    if not values or any(v is None for v in values) or any(v != values[0] for v in values):
        return None
    rationale = "\n".join(r.strip() for r in fields["rationale"] if r.strip()) or "\n".join(rest).strip()
    kind = _match_type(fields["type"][0], table) if fields["type"] else None
    return _make_rating(values[0], rationale, kind)


# ============================================================ critiques

_SCORE_KEYS = ("overall_score", "score", "overall_rating", "rating", "overall", "final_score")
_FEEDBACK_KEYS = ("feedback", "critique", "rationale", "explanation", "reasoning", "reason",
                  "comment", "comments")

_NUMBER = (
    r"(?P<int>[+-]?\d{1,6})(?P<frac>\.\d+)?(?!\d)"
    r"(?:\s*\(?\s*(?:/|out\s+of)\s*(?P<den>\d{1,6})(?:\.0+)?(?!\d|\.\d))?"
)
_SEP = r"(?P<sep>[\s*_]*(?:(?:of|is|was|would\s+be|=|:|[-\u2013\u2014](?=\s))[\s*_]*){0,2})"
# Tiers, most specific first; the first tier with any match decides. A label with a
# colon and no number ("Overall score: ten") makes its tier unreadable, not skipped.
_CRITIQUE_TIERS = [
    [(re.compile(r"(?<!\w)overall[\s_]*(?:score|rating)" + _SEP + f"(?:{_NUMBER})?", re.I), True),
     (re.compile(r"(?<!\w)overall" + _SEP + _NUMBER, re.I), False)],
    [(re.compile(r"(?<!\w)(?:score|rating|grade)" + _SEP + f"(?:{_NUMBER})?", re.I), True)],
    [(re.compile(r"(?<![\w.])(?P<int>\d{1,6})(?P<frac>\.\d+)?\s*/\s*(?P<den>10)(?!\d|\.\d)"), False)],  # "7/10"
]
# A line that states the score ("Overall score: 7", "**Score**: 7/10"), left out of the feedback.
_SCORE_LINE = re.compile(
    r"^[^\w\n]*(?:overall[\s_]*(?:score|rating)?|score|rating|grade)" + _SEP.replace("?P<sep>", "?:") + r"[+-]?\d.*$",
    re.I | re.M,
)
_FEEDBACK_LABEL = re.compile(r"^[^\w\n]*(?:feedback|critique)[*_\s]*[:=][*_\s]*", re.I | re.M)


def parse_critique_reply(text: str) -> tuple[int | None, str]:
    """(overall score 1-10, or None if unreadable; feedback text, or "").

    "Overall score: 10" is 10 and "Overall score: 1" is 1: numbers are read whole
    (the upstream UltraFeedback parser read one as the other). A score on another
    scale ("4/5"), non-integral, out of range, or two different scores: None.
    """
    if not isinstance(text, str) or not text.strip():
        return None, ""
    readings = [r for v in json_values(text) if (r := _critique_from_json(v, 0)) is not None]
    if readings:
        # Only objects with a score key vote on the score; votes must agree.
        scores = {score for has_score, score, _ in readings if has_score}
        feedback = next((f for _, _, f in readings if f), "")
        return (scores.pop() if len(scores) == 1 else None), feedback
    if _JSON_ATTEMPT.search(text):
        return None, ""
    return _critique_score_from_text(text), _critique_feedback_from_text(text)


def _critique_from_json(value: Any, depth: int) -> tuple[bool, int | None, str] | None:
    """(has a score key, its score or None, feedback) of a JSON critique, or None if not one."""
    if not isinstance(value, dict):
        return None
    if not any(not isinstance(value.get(k, {}), dict) for k in _SCORE_KEYS + _FEEDBACK_KEYS):
        dicts = [v for v in value.values() if isinstance(v, dict)]  # {"critique": {...}}
        return _critique_from_json(dicts[0], depth + 1) if len(dicts) == 1 and depth < 3 else None
    scores = [_rating_value(value[k], 10, False) for k in _SCORE_KEYS if k in value]
    ok = bool(scores) and None not in scores and all(s == scores[0] for s in scores)
    feedback = next((_as_text(value[k]) for k in _FEEDBACK_KEYS if k in value), "")
    return bool(scores), (scores[0] if ok else None), feedback


def _critique_score_from_text(text: str) -> int | None:
    for tier in _CRITIQUE_TIERS:
        found: list[int | None] = []
        for pattern, strict in tier:
            for m in pattern.finditer(text):
                if m.group("int") is not None:
                    found.append(_score_of(m, 10))
                elif strict and re.search("[:=]", m.group("sep")):
                    found.append(None)  # "Overall score: ten"
        if found:
            return found[0] if None not in found and all(f == found[0] for f in found) else None
    return None


def _score_of(m: re.Match, scale: int) -> int | None:
    if m.group("frac") and m.group("frac").strip(".0"):
        return None
    if m.group("den") and int(m.group("den")) != scale:
        return None
    number = int(m.group("int"))
    return number if 1 <= number <= scale else None


def _critique_feedback_from_text(text: str) -> str:
    """The "Feedback:" section if labelled, else the reply; without its score lines."""
    if m := _FEEDBACK_LABEL.search(text):
        text = text[m.end():]
    return _SCORE_LINE.sub("", text).strip()
