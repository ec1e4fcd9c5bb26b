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

Each filter is one class (distill.filters.base.Filter: its options are its fields, and
`decide(rows)` judges a batch). The rows never become one Python list: the input is read
into memory-mapped Arrow files (in a work folder inside the output, removed at the end),
each filter streams the rows the earlier ones kept a batch at a time (dedup takes them all
at once, keeping only their MinHash signatures), and what is left is just the positions of
the kept rows and, per filter, those of the rows it dropped with their reasons. The kept
and removed rows are then copied, a batch at a time, into Arrow files that the export
writes as the output's parquet shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from distill.errors import ConfigError, InputError
from distill.filters.base import Filter
from distill.filters.decontaminate import Decontaminate
from distill.filters.quality import Blocklist, Degenerate, Length, Refusal, Repetition
from distill.filters.similarity import Dedup, Rouge

if TYPE_CHECKING:
    import numpy as np

    from distill.filters.rows import Source

FILTERS: dict[str, type[Filter]] = {
    f.name: f for f in (Dedup, Decontaminate, Length, Blocklist, Refusal, Degenerate, Repetition, Rouge)
}
# The names these had when they were only options.
SPECS = FILTERS
FilterSpec = Filter


class FilterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = "messages"
    filters: list[tuple[str, SerializeAsAny[Filter]]] = Field(min_length=1)  # dumped with each filter's own options

    @field_validator("filters", mode="before")
    @classmethod
    def _specs(cls, value: Any) -> list[tuple[str, Filter]]:
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
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r} (filters: {', '.join(FILTERS)})")
            specs.append((name, FILTERS[name].model_validate(options or {})))
        return specs


@dataclass
class Outcome:
    """What the filters decided: positions (in the filters' order of rows) of the rows every
    filter kept, and per filter the rows it dropped and why."""

    kept: np.ndarray
    removed: list[tuple[str, np.ndarray, list[str]]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)


def run_filters(source: Source, plan: FilterFile, where: str) -> Outcome:
    """Apply the filters in order, each to the rows the earlier ones kept."""
    import numpy as np

    alive = np.arange(len(source))
    outcome = Outcome(alive)
    for name, spec in plan.filters:
        judge = spec.model_copy(update={"column": spec.column or plan.column}) if spec.reads_column else spec.model_copy()
        rows = source.rows(alive)
        if judge.reads_column and len(rows) and judge.column not in rows.columns:
            raise InputError(f"input {where} has no column {judge.column!r} for the {name} filter "
                             f"(columns: {', '.join(rows.columns)})")
        dropped: list[int] = []
        reasons: list[str] = []
        done = 0
        for batch in ([rows] if judge.whole or not len(rows) else rows.batches()):
            why = judge.decide(batch)
            if len(why) != len(batch):
                raise RuntimeError(f"the {name} filter judged {len(why)} of {len(batch)} rows")
            for i, reason in enumerate(why):
                if reason is not None:
                    dropped.append(done + i)
                    reasons.append(reason)
            done += len(batch)
        drop = np.array(dropped, np.int64)
        outcome.removed.append((name, alive[drop], reasons))
        outcome.counts.append({"name": name, "removed": len(drop)})
        alive = np.delete(alive, drop)
    outcome.kept = alive
    return outcome


def filter_dataset(source: str, plan: FilterFile, out: Path, subset: str | None = None) -> list[dict[str, Any]]:
    """The whole job: read every split, filter, write the output. Returns the counts.

    The output (new, empty, or this command's earlier output, which is replaced, in place
    too) is locked while the job runs, and the new dataset is staged and swapped in whole
    at the end: a job that fails leaves the earlier output as it was."""
    from distill.filters.rows import WORK, open_source, remove_work
    from distill.run_dir import RunDir

    run = RunDir.open_output(out, "filter")
    work = run.path / WORK
    try:
        remove_work(work)  # a killed run's
        data = open_source(source, subset, work)
        if not len(data):
            raise InputError(f"input {source} is empty")
        outcome = run_filters(data, plan, source)
        write_output(run, source, data, outcome, plan, work)
    except BaseException:
        remove_work(work)
        run.close()
        run.discard_if_empty()  # a folder made for an output that never came
        raise
    remove_work(work)
    run.close()
    return outcome.counts


def read_plan(path: Path) -> FilterFile:
    from distill.config import read_yaml_config, validate_config

    values = read_yaml_config(path, "filter plan")
    if "filters" not in values:
        raise ConfigError(f"filter plan {path} has no `filters:` list (e.g. filters: [dedup, refusal])")
    try:
        return validate_config(FilterFile, values)
    except ConfigError as err:
        raise ConfigError(f"filter plan {path}: {err}") from None


def _splits(data: Source, outcome: Outcome, work: Path):
    """The kept rows per split (the input's order) and the removed ones (with removed_by,
    reason and row; splits in the order their first row was dropped), as datasets."""
    import numpy as np

    from distill.filters.rows import write_rows

    where = data.split_of(outcome.kept)
    kept, schema = {}, None
    for name in data.names:
        index = data.splits.index(name)
        positions = outcome.kept[where == index]
        if len(positions):
            kept[name] = write_rows(work / f"kept-{index}.arrow", data, positions, schema)
            schema = schema or kept[name].data.schema
    parts: dict[int, list[tuple[str, np.ndarray, list[str]]]] = {}
    for name, positions, reasons in outcome.removed:
        splits = data.split_of(positions)
        for index in dict.fromkeys(splits.tolist()):
            mine = np.flatnonzero(splits == index)
            parts.setdefault(index, []).append((name, positions[mine], [reasons[i] for i in mine.tolist()]))
    removed, schema = {}, None
    for index, pieces in parts.items():
        positions = np.concatenate([p for _, p, _ in pieces])
        offset = int(data.offsets[index])
        extra = {
            "removed_by": [name for name, p, _ in pieces for _ in range(len(p))],
            "reason": [r for _, _, reasons in pieces for r in reasons],
            "row": [f"{data.splits[index]}/{p - offset}" for p in positions.tolist()],
        }
        removed[data.splits[index]] = write_rows(work / f"removed-{index}.arrow", data, positions, schema, extra)
        schema = schema or removed[data.splits[index]].data.schema
    return kept, removed


def write_output(run, source: str, data: Source, outcome: Outcome, plan: FilterFile, work: Path) -> None:
    from distill.card import MethodCard, public_input, public_value, render_card
    from distill.export import DEFAULT_CONFIG, DatasetConfig, hub_layout, layout_notes, write_configs
    from distill.run_dir import own, read_mark, write_atomic

    out = run.path
    if not len(outcome.kept):
        raise InputError("the filters removed every row; nothing to write")
    kept, removed = _splits(data, outcome, work)
    configs = hub_layout(DatasetConfig(DEFAULT_CONFIG, None, kept))  # with its *_gen splits and `trl` config
    if removed:
        configs.append(DatasetConfig("removed", None, removed))
    # An earlier output's removed rows do not belong to this one: replaced, or removed at the swap.
    written = write_configs(out, configs, stale=["removed", *(read_mark(out) or {}).get("folders", [])])
    own(out, [f for c in configs for f in c.folders])
    source_stats = _source_stats(source)
    stats = {
        "command": "filter",
        "source": source,
        "filters": outcome.counts,
        "splits": {f"{w.config}/{w.split}": w.rows for w in written},
        **{k: source_stats[k] for k in ("tokens", "cost_usd", "models") if k in source_stats},
    }
    run.write_stats(stats)
    method = MethodCard(
        name="Filtered dataset",
        command="distill filter",
        description=f"A filtered copy of {public_input(source)}: the filters below ran in order over every split; "
                    "the `removed` config holds each dropped row with the filter that dropped it and why.",
    )
    settings = {f"{i}. {name}": public_value(spec.model_dump(exclude_none=True, exclude_defaults=True)) or "defaults"
                for i, (name, spec) in enumerate(plan.filters, start=1)}
    card = render_card(method, configs, written, {"column": plan.column, **settings}, stats,
                       source_stats.get("models") or ["(see the source dataset)"], layout_notes(configs))
    write_atomic(out / "README.md", card)


def _source_stats(source: str) -> dict[str, Any]:
    return _read_json(Path(source) / "stats.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
