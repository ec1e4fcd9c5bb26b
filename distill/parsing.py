"""Reading structured answers out of model text."""

from __future__ import annotations

import re

_NUMBER_AT_LINE_START = re.compile(r"(?m)^\s*\(?(\d{1,3})[.):]\s+")
_NUMBER = re.compile(r"(?:^|(?<=\s))\(?(\d{1,3})[.):]\s+")
_BULLET = re.compile(r"^\s*[-*•]\s+(?P<item>\S.*)$")


def list_items(text: str, truncated: bool = False, first: int = 1) -> list[str]:
    """The items of a numbered list (one per line or run together on one line) or of a
    bulleted list, in order, without duplicates.

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
        item = " ".join(chunk.replace("**", "").split()).strip('"').strip()
        if item and item.casefold() not in seen:
            seen.add(item.casefold())
            items.append(item)
    return items


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
