"""Prompt templates and word lists shipped in distill.prompts/<method>/ as package data."""

from __future__ import annotations

import functools
import re
from importlib import resources

import jinja2


def _file(method: str, name: str):
    return resources.files("distill.prompts").joinpath(method, name)


@functools.lru_cache(maxsize=None)
def template(method: str, name: str) -> jinja2.Template:
    text = _file(method, name).read_text(encoding="utf-8")
    return jinja2.Template(text, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(method: str, name: str, **values) -> str:
    return template(method, name).render(**values).strip()


def names(method: str, folder: str) -> list[str]:
    """The template names in a folder of a method's prompts, sorted."""
    return sorted(entry.name for entry in _file(method, folder).iterdir() if entry.name.endswith(".j2"))


def word_list(method: str, name: str) -> list[str]:
    """Non-empty lines of a list file; lines starting with # are comments."""
    lines = _file(method, name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def patterns(lines: list[str]) -> list[re.Pattern]:
    return [re.compile(line, re.IGNORECASE) for line in lines]
