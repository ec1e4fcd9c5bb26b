"""Filters run in order over a dataset; the kept rows and the removed ones are written out.

    filters.yaml
      column: messages            # the text every filter looks at, unless it names its own
      filters:
        - dedup: {threshold: 0.7}
        - decontaminate: {against: [mt_bench.jsonl]}
        - length: {min_words: 3, max_words: 4000}
        - blocklist: {words: [lorem, ipsum]}
        - refusal: {}
        - degenerate: {}
        - repetition: {max_repeated_ngrams: 0.3}
        - rouge: {threshold: 0.7}

Every split of the input goes through the same filters as one sequence (train first), so
a test row that duplicates a train row is caught. The output is a dataset in the Hub
layout: the kept rows in the input's splits, and a `removed` config with every dropped
row, the filter that dropped it and why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill.errors import ConfigError, InputError
from distill.filters import quality
from distill.filters.text import DEFAULT_ROLES, texts


class FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str | None = None  # None: the file's `column`
    roles: tuple[str, ...] = DEFAULT_ROLES


class Dedup(FilterSpec):
    threshold: float = Field(0.7, gt=0, lt=1)
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1)


class Decontaminate(FilterSpec):
    against: list[str] = Field(min_length=1)
    method: Literal["ngram", "minhash"] = "ngram"
    ngram: int = Field(13, ge=1)
    threshold: float = Field(0.8, gt=0, lt=1)


class Length(FilterSpec):
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=1)
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    turn_min_words: int | None = Field(None, ge=0)
    turn_max_words: int | None = Field(None, ge=1)


class Blocklist(FilterSpec):
    words: list[str] = Field(default_factory=list)
    file: Path | None = None


class Refusal(FilterSpec):
    patterns: list[str] | None = None  # None: the built-in list
    roles: tuple[str, ...] = ("assistant",)


class Degenerate(FilterSpec):
    pass


class Repetition(FilterSpec):
    ngram: int = Field(3, ge=1)
    max_repeated_ngrams: float = Field(0.3, ge=0, le=1)
    max_repeated_lines: float = Field(0.3, ge=0, le=1)


class Rouge(FilterSpec):
    threshold: float = Field(0.7, gt=0, le=1)
    pool: list[str] = Field(default_factory=list)  # files or datasets of texts the rows must differ from


SPECS: dict[str, type[FilterSpec]] = {
    "dedup": Dedup, "decontaminate": Decontaminate, "length": Length, "blocklist": Blocklist,
    "refusal": Refusal, "degenerate": Degenerate, "repetition": Repetition, "rouge": Rouge,
}


class FilterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = "messages"
    filters: list[tuple[str, FilterSpec]] = Field(min_length=1)

    @field_validator("filters", mode="before")
    @classmethod
    def _specs(cls, value: Any) -> list[tuple[str, FilterSpec]]:
        if not isinstance(value, list):
            raise ValueError("filters is a list of {name: {options}}")
        specs = []
        for entry in value:
            if isinstance(entry, str):  # `- refusal`: a filter with its defaults
                name, options = entry, {}
            elif isinstance(entry, dict) and len(entry) == 1:  # `- length: {min_words: 3}`
                name, options = next(iter(entry.items()))
            else:
                raise ValueError(f"a filter is NAME or {{NAME: {{options}}}}, not {entry!r}")
            if name not in SPECS:
                raise ValueError(f"unknown filter {name!r} (filters: {', '.join(SPECS)})")
            specs.append((name, SPECS[name].model_validate(options or {})))
        return specs


def decide(name: str, spec: FilterSpec, rows: list[dict[str, Any]], labels: list[str], column: str, source: str) -> list[str | None]:
    """Per row, None to keep it or the reason this filter drops it; `labels` name the rows
    ("split/index") so a duplicate can say which row it repeats."""
    if isinstance(spec, Decontaminate):  # it finds the prompt itself
        from distill.filters.decontaminate import decontaminate

        return decontaminate(rows, spec.against, spec.column, spec.method, spec.ngram, spec.threshold)
    column = spec.column or column
    if rows and column not in rows[0]:
        raise InputError(f"input {source} has no column {column!r} for the {name} filter (columns: {', '.join(rows[0])})")
    if isinstance(spec, Dedup):
        from distill.filters.minhash import find_duplicates

        duplicates = find_duplicates(texts(rows, column, source, spec.roles), spec.threshold, spec.num_perm, spec.ngram)
        return [None if d is None else f"near-duplicate of {labels[d]}" for d in duplicates]
    if isinstance(spec, Rouge):
        from distill.filters.rouge import NoveltyPool

        outside = [t for source_ in spec.pool for t in _pool_texts(source_, column)]
        pool = NoveltyPool(outside, spec.threshold)
        hits = pool.filter(texts(rows, column, source, spec.roles))
        # The pool holds the outside texts, then the rows kept so far, in order.
        names = [f"pool text {i}" for i in range(len(outside))] + [labels[i] for i, h in enumerate(hits) if h is None]
        return [None if h is None else f"ROUGE-L >= {spec.threshold:g} with {names[h]}" for h in hits]
    options = spec.model_dump(exclude={"column", "file"})
    if isinstance(spec, Blocklist):
        words = list(spec.words) + (_read_words(spec.file) if spec.file else [])
        return quality.blocklist(rows, column, words, spec.roles)
    function: Callable = getattr(quality, name)
    return function(rows, column, **options)


def _read_words(path: Path) -> list[str]:
    from distill.config import read_text_file

    lines = read_text_file(Path(path), "blocklist", InputError).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pool_texts(source: str, column: str) -> list[str]:
    from distill.inputs import load_splits

    rows = [row for rows in load_splits(source).values() for row in rows]
    return texts(rows, column if rows and column in rows[0] else next(iter(rows[0]), column), source)


def run_filters(splits: dict[str, list[dict[str, Any]]], plan: FilterFile, source: str):
    """Apply the filters in order. Returns the kept rows per split, the removed rows per
    split (with removed_by, reason and row), and how many rows each filter removed."""
    order = sorted(splits, key=lambda s: (not s.startswith("train"), s))
    rows = [(split, index, row) for split in order for index, row in enumerate(splits[split])]
    removed: list[tuple[str, dict[str, Any]]] = []
    counts = []
    for name, spec in plan.filters:
        labels = [f"{split}/{index}" for split, index, _ in rows]
        reasons = decide(name, spec, [r for _, _, r in rows], labels, plan.column, source)
        kept = []
        for (split, index, row), reason in zip(rows, reasons):
            if reason is None:
                kept.append((split, index, row))
            else:
                removed.append((split, {**row, "removed_by": name, "reason": reason, "row": f"{split}/{index}"}))
        counts.append({"name": name, "removed": len(rows) - len(kept)})
        rows = kept
    kept_splits = {split: [row for s, _, row in rows if s == split] for split in splits}
    removed_splits: dict[str, list[dict[str, Any]]] = {}
    for split, row in removed:
        removed_splits.setdefault(split, []).append(row)
    return kept_splits, removed_splits, counts


def filter_dataset(source: str, plan: FilterFile, out: Path, subset: str | None = None) -> list[dict[str, Any]]:
    """The whole job: read every split, filter, write the output. Returns the counts.

    The output (new, empty, or this command's earlier output, which is replaced, in place
    too) is locked while the job runs, and the new dataset is staged and swapped in whole
    at the end: a job that fails leaves the earlier output as it was."""
    from distill.inputs import load_splits
    from distill.run import RunDir

    run = RunDir.open_output(out, "filter")
    try:
        splits = load_splits(source, subset)
        if not any(splits.values()):
            raise InputError(f"input {source} is empty")
        kept, removed, counts = run_filters(splits, plan, source)
        write_output(run, source, kept, removed, counts, plan)
    except BaseException:
        run.close()
        run.discard_if_empty()  # a folder made for an output that never came
        raise
    run.close()
    return counts


def read_plan(path: Path) -> FilterFile:
    from distill.config import read_yaml_config, validate_config

    values = read_yaml_config(path, "filter plan")
    if "filters" not in values:
        raise ConfigError(f"filter plan {path} has no `filters:` list (e.g. filters: [dedup, refusal])")
    try:
        return validate_config(FilterFile, values)
    except ConfigError as err:
        raise ConfigError(f"filter plan {path}: {err}") from None


def write_output(run, source: str, kept, removed, counts, plan: FilterFile) -> None:
    from distill.card import Method, public_input, public_value, render_card
    from distill.export import DEFAULT_CONFIG, Config, write_configs
    from distill.run import own, read_mark, write_atomic

    out = run.path
    if not any(kept.values()):
        raise InputError("the filters removed every row; nothing to write")
    configs = [Config(DEFAULT_CONFIG, None, {s: rows for s, rows in kept.items() if rows})]
    if removed:
        configs.append(Config("removed", None, removed))
    # An earlier output's removed rows do not belong to this one: replaced, or removed at the swap.
    written = write_configs(out, configs, stale=["removed", *(read_mark(out) or {}).get("folders", [])])
    own(out, [c.folder for c in configs])
    source_stats = _source_stats(source)
    stats = {
        "command": "filter",
        "source": source,
        "filters": counts,
        "splits": {f"{w.config}/{w.split}": w.rows for w in written},
        **{k: source_stats[k] for k in ("tokens", "cost_usd", "models") if k in source_stats},
    }
    run.write_stats(stats)
    method = Method(
        name="Filtered dataset",
        command="distill filter",
        description=f"A filtered copy of {public_input(source)}: the filters below ran in order over every split; "
                    "the `removed` config holds each dropped row with the filter that dropped it and why.",
    )
    settings = {f"{i}. {name}": public_value(spec.model_dump(exclude_none=True, exclude_defaults=True)) or "defaults"
                for i, (name, spec) in enumerate(plan.filters, start=1)}
    card = render_card(method, configs, written, {"column": plan.column, **settings}, stats,
                       source_stats.get("models") or ["(see the source dataset)"])
    write_atomic(out / "README.md", card)


def _source_stats(source: str) -> dict[str, Any]:
    return _read_json(Path(source) / "stats.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
