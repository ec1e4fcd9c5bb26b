"""Prompt templates and word lists shipped in distill.prompts/<method>/ as package data."""

from __future__ import annotations

import functools
import re
from importlib import resources

import jinja2


def _file(method: str, name: str):
    return resources.files("distill.prompts").joinpath(method, name)


@functools.lru_cache(maxsize=None)
def environment(method: str) -> jinja2.Environment:
    """Templates of one method; `{% include "x.j2" %}` finds its siblings in the same folder."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _file(method, name).read_text(encoding="utf-8")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def template(method: str, name: str) -> jinja2.Template:
    return environment(method).get_template(name)


def render(method: str, name: str, **values) -> str:
    return template(method, name).render(**values).strip()


def names(method: str, folder: str) -> list[str]:
    """The template names in a folder of a method's prompts, sorted (partials, _x.j2, left out)."""
    return sorted(e.name for e in _file(method, folder).iterdir() if e.name.endswith(".j2") and not e.name.startswith("_"))


def data(method: str, name: str):
    """A YAML file of a method's prompts."""
    import yaml

    return yaml.safe_load(_file(method, name).read_text(encoding="utf-8"))


def word_list(method: str, name: str) -> list[str]:
    """Non-empty lines of a list file; lines starting with # are comments."""
    lines = _file(method, name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def patterns(lines: list[str]) -> list[re.Pattern]:
    return [re.compile(line, re.IGNORECASE) for line in lines]
