"""Reading structured answers out of model text: numbered lists, repeated turns, and JSON
values wherever a reply holds them (`json_values`, tolerant of what models write instead)."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def parse_weights(value: Any, names: tuple[str, ...], what: str, example: str) -> dict[str, float]:
    """`a=0.6,b=0.4` (or a mapping) -> the weight of each named `what` (a sector, a principle):
    known names only, each a number >= 0, not all 0."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for part in value.split(","):
            name, sep, weight = part.partition("=")
            pairs[name.strip()] = weight if sep else None
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f"give {what} weights as {example}, not {value!r}")
    unknown = [name for name in value if name not in names]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r} ({what}s: {', '.join(names)})")
    try:
        weights = {str(name): float(weight) for name, weight in value.items()}
    except (TypeError, ValueError):
        weights = {}
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights.values()) or not sum(weights.values()):
        raise ValueError(f"give each {what} a weight >= 0, not all 0, as {example}")
    return weights


# A list marker: "1." "1)" "(1)" "1:", bare or in bold ("**1.**", "**1. Title**"); at a line's
# start also "1 -" (inside a line that is a range: "1 - 2 hours") and a heading's "## 1.".
_NUMBER_AT_LINE_START = re.compile(r"(?m)^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?\(?(\d{1,3})(?:[.):]|[ \t]+[-–])(?:\*\*)?[ \t]+")
_NUMBER = re.compile(r"(?:^|(?<=\s))(?:\*\*)?\(?(\d{1,3})[.):](?:\*\*)?\s+")
_BULLET = re.compile(r"^\s*[-*•]\s+(?P<item>\S.*)$")
# What a model writes before the item itself: "Question:", "**New question:**", "Request 1:".
_ITEM_LABEL = re.compile(r"^(?:(?:new|related|follow-up|next|sample|example|my)\s+)?"
                         r"(?:question|request|instruction|task|subtopic|topic|prompt)(?:\s+\d{1,3})?\s*:\s*", re.IGNORECASE)
_QUOTES = ('"', '“”', "'")


def list_items(text: str, truncated: bool = False, first: int = 1) -> list[str]:
    """The items of a numbered list (one per line or run together on one line) or of a
    bulleted list, in order, without duplicates (each without bold marks, a "Question:"
    label or the quotes around it).

    Numbered items are found by their markers first., first+1., ... in sequence (1., 2.,
    3., ... by default; a continued list starts further on), at line starts
    when the list has one item per line, so numbers inside an item do not split it. A preamble before the first item is skipped; when the
    reply was cut off by the token limit its last item may be partial, so it is dropped.
    """
    markers = _sequence(_NUMBER_AT_LINE_START, text, first)
    if len(markers) < 2:  # not one item per line: items run together on a line
        markers = _sequence(_NUMBER, text, first)
    if markers:
        ends = [m.start() for m in markers[1:]] + [len(text)]
        raw = [text[m.end():end] for m, end in zip(markers, ends)]
        # The last item ends at its line: what follows it is a closing remark.
        raw[-1] = raw[-1].strip().split("\n", 1)[0]
    else:
        raw = [m.group("item") for m in map(_BULLET.match, text.splitlines()) if m]
    if truncated and raw:
        raw = raw[:-1]
    items: list[str] = []
    seen: set[str] = set()
    for chunk in raw:
        item = _bare(chunk)
        if item and item.casefold() not in seen:
            seen.add(item.casefold())
            items.append(item)
    return items


def one_item(text: str, truncated: bool = False) -> str | None:
    """The one item of a reply that was asked for one (a question, a request), or None.

    A list anyway gives its first item. Otherwise the item is the reply's one line, once lead-in
    lines ending in ":" ("Here is a question:") are skipped and a label ("Question:") and the
    quotes around it are taken off; a reply of several lines is prose, not one item, and a reply
    cut off by the token limit may be partial: both give None.
    """
    if truncated:
        return None
    items = list_items(text)
    if items:
        return items[0]
    lines = after_lead_in(text).splitlines()
    return (_bare(lines[0]) or None) if len(lines) == 1 and not _is_lead_in(lines[0]) else None


def after_lead_in(text: str) -> str:
    """The text from its first line that is not a lead-in ending in ":" ("Here is the rewritten
    request:"), without blank lines around it; the text as it is when nothing else follows."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if not _is_lead_in(line)), None)
    return "\n".join(lines[start:] if start is not None else lines)


def _is_lead_in(line: str) -> bool:
    return line.rstrip("*").endswith(":")


def _bare(chunk: str) -> str:
    """An item without bold marks, a label and the quotes around it, on one line."""
    item = _ITEM_LABEL.sub("", " ".join(chunk.replace("**", "").split()))
    for quote in _QUOTES:
        opening, closing = quote[0], quote[-1]
        if len(item) > 1 and item[0] == opening and item[-1] == closing and opening not in item[1:-1] \
                and closing not in item[1:-1]:
            item = _ITEM_LABEL.sub("", item[1:-1].strip())
    return item.strip()


def _sequence(pattern: re.Pattern, text: str, first: int = 1) -> list[re.Match]:
    """The markers numbered first, first+1, ... in order; other numbers are text."""
    markers: list[re.Match] = []
    for match in pattern.finditer(text):
        if int(match.group(1)) == first + len(markers):
            markers.append(match)
    return markers


def same_text(a: str, b: str) -> bool:
    """Equal but for case and whitespace: a model repeating a turn."""
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


# -- JSON values in a reply ------------------------------------------------------------

_OPEN = re.compile(r"[\[{]")
_MAX_STARTS = 256  # bounds the work on replies full of brackets


def json_values(text: str) -> list[Any]:
    """Every outermost JSON value (object or array) that can be read in the text, in order.

    Each "{" or "[" is tried as the start of a value, first with the json module, then
    with a lenient reader; after a success the scan resumes past that value, after a
    failure just past the bracket (so a complete inner value of a broken outer one is
    still found, and must then stand on its own).
    """
    values: list[Any] = []
    pos = 0
    for _ in range(_MAX_STARTS):
        m = _OPEN.search(text, pos)
        if not m:
            break
        read = _decode(text, m.start())
        if read is None:
            pos = m.start() + 1
        else:
            values.append(read[0])
            pos = read[1]
    return values


def _decode(text: str, start: int) -> tuple[Any, int] | None:
    try:
        return _STRICT.raw_decode(text, start)
    except (ValueError, RecursionError):
        pass
    try:
        return _Lenient(text).value(start, 0)
    except (_Unreadable, RecursionError, ValueError):  # ValueError: int() of 5000 digits
        return None


def _norm_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().casefold())


def _object(pairs: list[tuple[str, Any]]) -> dict:
    """An object with normalised keys; the same key twice with different values is unreadable."""
    obj: dict = {}
    for key, value in pairs:
        key = _norm_key(key)
        if key in obj and obj[key] != value:
            raise ValueError(f"conflicting values for {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


_STRICT = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constant, strict=False)


class _Unreadable(Exception):
    pass


class _Lenient:
    """JSON plus what models write in its place: single-quoted strings, trailing commas,
    bare keys, True/False/None. It never completes a truncated value."""

    _WS = re.compile(r"\s*")
    _STRING = {'"': re.compile(r'"((?:[^"\\]|\\.)*)"', re.S), "'": re.compile(r"'((?:[^'\\]|\\.)*)'", re.S)}
    _NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
    _WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    _LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
    _MAX_DEPTH = 32

    def __init__(self, text: str):
        self.text = text

    def _skip(self, i: int) -> int:
        return self._WS.match(self.text, i).end()

    def value(self, i: int, depth: int) -> tuple[Any, int]:
        if depth > self._MAX_DEPTH:
            raise _Unreadable
        i = self._skip(i)
        c = self.text[i : i + 1]
        if c in ("{", "["):
            return self._container(i, depth)
        if c in self._STRING:
            return self._string(i)
        if m := self._NUMBER.match(self.text, i):
            number = m.group()
            return (float(number) if any(ch in number for ch in ".eE") else int(number)), m.end()
        if (m := self._WORD.match(self.text, i)) and m.group() in self._LITERALS:
            return self._LITERALS[m.group()], m.end()
        raise _Unreadable

    def _container(self, i: int, depth: int) -> tuple[Any, int]:
        is_object = self.text[i] == "{"
        close = "}" if is_object else "]"
        pairs: list = []
        i += 1
        while True:
            i = self._skip(i)
            if self.text[i : i + 1] == close:  # also the end after a trailing comma
                break
            if is_object:
                key, i = self._key(i)
                i = self._skip(i)
                if self.text[i : i + 1] != ":":
                    raise _Unreadable
                item, i = self.value(i + 1, depth + 1)
                pairs.append((key, item))
            else:
                item, i = self.value(i, depth + 1)
                pairs.append(item)
            i = self._skip(i)
            if self.text[i : i + 1] == ",":
                i += 1
            elif self.text[i : i + 1] != close:
                raise _Unreadable
        if not is_object:
            return pairs, i + 1
        try:
            return _object(pairs), i + 1
        except ValueError:
            raise _Unreadable from None

    def _key(self, i: int) -> tuple[str, int]:
        if self.text[i : i + 1] in self._STRING:
            return self._string(i)
        if m := self._WORD.match(self.text, i):
            return m.group(), m.end()
        raise _Unreadable

    def _string(self, i: int) -> tuple[str, int]:
        quote = self.text[i]
        m = self._STRING[quote].match(self.text, i)
        if not m:
            raise _Unreadable
        body = m.group(1)
        if quote == "'":  # as a JSON string: \' is ', a bare " needs escaping
            body = re.sub(r'\\.|"', lambda e: {"\\'": "'", '"': '\\"'}.get(e.group(), e.group()), body, flags=re.S)
        try:
            return json.loads(f'"{body}"', strict=False), m.end()
        except ValueError:
            raise _Unreadable from None
