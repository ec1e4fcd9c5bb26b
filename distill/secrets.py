"""Secrets in use (API keys, the Hub token), redacted from every message before it is shown or written.

A server that echoes request headers in an error body, or a Hub endpoint that does, must
not put a key on the terminal, in stats.json or in failed.jsonl. Every key distill reads
is registered here; `redact` replaces them, and anything shaped like a bearer token or a
well-known key format, with `***`.
"""

from __future__ import annotations

import os
import re

MASK = "***"
_MIN_LENGTH = 8  # shorter values (EMPTY, none, x) are placeholders for servers without auth, not secrets
_known: set[str] = set()
_SHAPES = re.compile(
    r"(?i)(?<=bearer )[^\s'\",}]+"  # an Authorization header's token
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # OpenAI-style keys
    r"|\bhf_[A-Za-z0-9]{16,}"  # Hugging Face tokens
)
# Environment variables whose values are secrets wherever they appear.
SECRET_ENV = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def register(value: str | None) -> None:
    """A secret from now on: it never appears in what distill prints or writes."""
    if is_secret(value):
        _known.add(value.strip())


def is_secret(value: str | None) -> bool:
    """Whether a value is a real secret, not a placeholder like EMPTY."""
    return bool(value) and len(value.strip()) >= _MIN_LENGTH


def register_env(*names: str) -> None:
    for name in names:
        register(os.environ.get(name))


def redact(text: str) -> str:
    if not isinstance(text, str):
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _SHAPES.sub(MASK, text)


def redact_all(value):
    """`redact` through a JSON-like value (stats, failure records)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v) for v in value]
    return value
