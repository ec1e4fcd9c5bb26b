"""docs/fidelity.md is checked: every row that says "same" is pinned to the code, every other row gives a reason.

A row of the page's tables is `| what | original | source | distill | pinned by |`. The pin column holds one
or more pins in backticks, separated by `;`:

- `generate ultrachat: subtopics_per_topic = 20`: a method's config field (dotted into dicts) has that default;
- `config distill.some.module.Class: field = value`: the same for a config class that is not a method;
- `recipe sft_handbook: training.learning_rate = 2.0e-5`: a shipped training recipe holds that value;
- `test tests/test_x.py::test_name`: a behaviour test that exists (and runs in the suite).

Values are YAML. A later change that drifts from the original fails here.
"""

from __future__ import annotations

import ast
import importlib
import math
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "fidelity.md"
PIN = re.compile(r"`([^`]+)`")


def _rows() -> list[tuple[int, list[str]]]:
    rows = []
    for number, line in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= set("-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0].lower() == "what":
            continue
        rows.append((number, cells))
    return rows


ROWS = _rows()


def _default(owner, dotted: str):
    first, *rest = dotted.split(".")
    fields = owner.model_fields
    assert first in fields, f"{owner.__name__} has no field {first!r}"
    value = fields[first].get_default(call_default_factory=True)
    for key in rest:
        value = value[key] if isinstance(value, dict) else getattr(value, key)
    return value


def _resolve(pin: str):
    """(the value the code has, the value the page says) for a value pin."""
    target, _, expected = pin.partition(" = ")
    where, _, dotted = target.partition(": ")
    kind, _, name = where.partition(" ")
    if kind in ("generate", "rate", "eval"):
        from distill.methods import method

        declared = method(where)
        assert declared is not None, f"no method `distill {where}`"
        actual = _default(declared.config, dotted)
    elif kind == "config":
        module, _, cls = name.rpartition(".")
        actual = _default(getattr(importlib.import_module(module), cls), dotted)
    elif kind == "recipe":
        from distill.train.recipe import find_recipe

        actual = yaml.safe_load(find_recipe(name).read_text(encoding="utf-8"))
        for key in dotted.split("."):
            actual = actual[key]
    else:
        raise AssertionError(f"unknown pin kind in `{pin}`")
    return actual, yaml.safe_load(expected)


def _same(actual, expected) -> bool:
    if hasattr(actual, "model_dump"):
        actual = actual.model_dump()
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)) and not isinstance(actual, bool):
        return math.isclose(actual, expected, rel_tol=1e-9)
    if isinstance(actual, tuple):
        actual = list(actual)
    return actual == expected


def _test_exists(reference: str) -> bool:
    path, _, name = reference.partition("::")
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
               for node in ast.walk(tree))


def test_the_page_has_rows_for_every_method():
    text = PAGE.read_text(encoding="utf-8")
    for heading in ("Self-Instruct", "Alpaca", "UltraChat", "CAMEL", "UltraFeedback", "Zephyr", "MT-Bench", "Pairwise"):
        assert re.search(rf"^## .*{heading}", text, re.M), heading
    assert len(ROWS) >= 40


@pytest.mark.parametrize("number,cells", ROWS, ids=[f"line{n}" for n, _ in ROWS])
def test_each_row_is_pinned_or_explained(number, cells):
    assert len(cells) == 5, f"line {number}: a row has five cells"
    what, original, source, ours, pins = cells
    assert what and original and source, f"line {number}: what, original and source are given"
    if ours.lower().startswith("same"):
        found = PIN.findall(pins)
        assert found, f"line {number}: a 'same' row names what pins it"
        for pin in found:
            if pin.startswith("test "):
                assert _test_exists(pin[5:]), f"line {number}: no test {pin[5:]}"
            else:
                actual, expected = _resolve(pin)
                assert _same(actual, expected), f"line {number}: `{pin}` but the code has {actual!r}"
    else:
        reason = ours.split("—", 1)[-1] if "—" in ours else ""
        assert len(reason.strip()) >= 15, f"line {number}: a row that differs says why (`value — reason`)"
