"""The text a filter looks at in a row."""

from __future__ import annotations

from typing import Any

from distill.errors import InputError

DEFAULT_ROLES = ("user", "assistant")


def value_text(value: Any, column: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> str:
    """A string as is; a chat (`messages`, `chosen`, ...) as its turns of `roles`, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(m.get("content") or "" for m in value if isinstance(m, dict) and m.get("role") in roles)
    if value is None:
        return ""
    raise InputError(f"column {column!r} holds {type(value).__name__}, not text or a chat")


def value_turns(value: Any, column: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> list[str]:
    """The turns a filter checks one by one: a chat's turns of `roles`, or the one text."""
    if isinstance(value, list):
        return [m.get("content") or "" for m in value if isinstance(m, dict) and m.get("role") in roles]
    return [value_text(value, column, roles)]


def row_text(row: dict[str, Any], column: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> str:
    """A row's text in `column` (see value_text)."""
    return value_text(row.get(column), column, roles)


def texts(rows: list[dict[str, Any]], column: str, source: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> list[str]:
    if rows and column not in rows[0]:
        raise InputError(f"input {source} has no column {column!r} (columns: {', '.join(rows[0])})")
    return [row_text(row, column, roles) for row in rows]
