"""Training data: a seeded mix of datasets in distill's formats, checked before any model loads.

SFT takes the `messages` column; DPO takes `chosen` and `rejected` (whose conversations
carry the prompt). Every other column is dropped: TRL 1.x reads a `prompt` column as
prompt-completion data, and the Zephyr datasets' string `prompt` would break it.

With `empty_system`, a conversation that does not open with a system turn gets an empty one,
as the alignment-handbook's `apply_chat_template` did (auto_insert_empty_system_msg).
"""

from __future__ import annotations

import random
from typing import Any

from distill.errors import InputError
from distill.inputs import load_splits, pick_split
from distill.train.recipe import DatasetSpec

COLUMNS = {"sft": ("messages",), "dpo": ("chosen", "rejected")}
DEFAULT_SPLITS = {"sft": ("train_sft", "train"), "dpo": ("train_prefs", "train")}


def _chat(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def on_hub(spec: DatasetSpec) -> bool:
    """Whether `spec` names a Hub dataset (an org/name that is no local path), which only a run that goes online can check."""
    from distill.inputs import _is_hub_id

    return _is_hub_id(spec.path)


EMPTY_SYSTEM = {"role": "system", "content": ""}


def with_empty_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return messages if messages and messages[0]["role"] == "system" else [dict(EMPTY_SYSTEM), *messages]


def load_training_rows(spec: DatasetSpec, stage: str, seed: int, default_splits=None,
                       empty_system: bool = False) -> list[dict[str, Any]]:
    splits = load_splits(spec.path, spec.subset, spec.revision)
    split = spec.split or next((s for s in (default_splits or DEFAULT_SPLITS[stage]) if s in splits), None)
    rows = pick_split(splits, spec.path, split)
    if not rows:
        raise InputError(f"dataset {spec.path} split {split!r} is empty")
    columns = COLUMNS[stage]
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise InputError(f"{stage} needs column {missing[0]!r}; dataset {spec.path} ({split}) has {', '.join(rows[0])}")
    for index, row in enumerate(rows):
        for column in columns:
            if not _chat(row[column]):
                raise InputError(f"dataset {spec.path} ({split}), row {index + 1}: {column!r} is not a list of {{role, content}}")
    if spec.fraction < 1:
        rows = random.Random(f"{seed}:{spec.path}:{split}").sample(rows, max(1, round(spec.fraction * len(rows))))
    if empty_system:
        return [{c: with_empty_system(row[c]) for c in columns} for row in rows]
    return [{c: row[c] for c in columns} for row in rows]


def mix(specs: list[DatasetSpec], stage: str, seed: int, default_splits=None, empty_system: bool = False):
    """One shuffled `datasets.Dataset` of every spec's rows."""
    import datasets

    rows = [row for spec in specs for row in load_training_rows(spec, stage, seed, default_splits, empty_system)]
    random.Random(seed).shuffle(rows)
    return datasets.Dataset.from_list(rows)
