"""A run's final dataset in the Hub layout, loadable as is by `datasets.load_dataset(RUN_DIR)`.

    RUN_DIR/README.md                              dataset card; its YAML declares configs and splits
    RUN_DIR/data/<split>-0000i-of-0000n.parquet    the default config
    RUN_DIR/gen/<split>-0000i-of-0000n.parquet     the default config's train_gen/test_gen splits
    RUN_DIR/<config>/<split>-0000i-of-0000n.parquet  companion configs (e.g. every rating; `trl`)
    RUN_DIR/jsonl/[<config>/]<split>.jsonl         with --format jsonl, for reading

The `*_gen` splits are derived from the `*_sft` ones (see `hub_layout`), and kept out of data/:
distill's own readers of a run (`distill filter`, stats, inputs) read data/, the data itself, so a
filter never takes a derived row for a near-duplicate of the row it came from. The card declares
them as splits of the default config, so `load_dataset(RUN_DIR)` has the H4 datasets' splits.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from distill.errors import ConfigError, InputError, write_error

DEFAULT_CONFIG = "default"
MAX_SHARD_BYTES = 500 * 1024 * 1024  # as datasets' push_to_hub


@dataclass
class DatasetConfig:
    """One configuration of a dataset (in the Hub's sense: `load_dataset(path, name)`): its
    features and its splits' rows (Python dicts, or a datasets.Dataset written as it is)."""

    name: str
    features: Any  # datasets.Features; None: inferred from the rows
    splits: dict[str, Any]

    @property
    def folder(self) -> str:
        return "data" if self.name == DEFAULT_CONFIG else self.name

    def folder_of(self, split: str) -> str:
        """Where a split's shards go: the config's folder, but gen/ for the default config's `*_gen`."""
        return GEN_FOLDER if self.name == DEFAULT_CONFIG and split in GEN_SPLITS.values() else self.folder

    @property
    def folders(self) -> list[str]:
        return list(dict.fromkeys([self.folder, *(self.folder_of(split) for split in self.splits)]))


@dataclass
class Built:
    """What a pipeline makes of its records: the dataset's configs, what each filter
    removed ({"name", "removed"}, for the card and stats) and other post-processing counts."""

    configs: list[DatasetConfig]
    filters: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    card_notes: list[str] = field(default_factory=list)  # paragraphs for the card, e.g. a binarization rule
    reports: dict[str, bytes] = field(default_factory=dict)  # file name -> content, for RUN_DIR/results/


@dataclass
class Written:
    config: str
    split: str
    rows: int
    files: list[str] = field(default_factory=list)
    bytes: int = 0


def dataset_rows(configs: list["DatasetConfig"], written: list[Written]) -> dict[str, int]:
    """Rows per split of the dataset itself: the first config's splits, without the `*_gen`
    splits that repeat its rows (they sit in gen/)."""
    main = configs[0]
    return {w.split: w.rows for w in written if w.config == main.name and main.folder_of(w.split) == main.folder}


def train_test_split(
    rows: list[dict[str, Any]], test_size: float | None, seed: int, group: str | Callable[[dict], str] = "prompt_id"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded split that keeps every row of one prompt on the same side (no leakage); the
    prompt is the `group` column, or what `group` makes of a row.

    test_size < 1 is a fraction of the prompts, >= 1 a number of prompts.
    """
    if not test_size:
        return rows, []
    if not math.isfinite(test_size):
        raise ConfigError(f"--test-size is a fraction (<1) or a number of prompts, not {test_size:g}")
    key_of = group if callable(group) else (lambda row: row[group])
    keys = sorted({key_of(row) for row in rows})
    random.Random(seed).shuffle(keys)
    count = round(test_size * len(keys)) if test_size < 1 else int(test_size)
    if count >= len(keys):
        raise ConfigError(f"--test-size {test_size:g} leaves no training rows ({len(keys)} prompts in all)")
    test_keys = set(keys[:count])
    return [r for r in rows if key_of(r) not in test_keys], [r for r in rows if key_of(r) in test_keys]


# The Hub's rules: a split is word characters, maybe dotted (datasets' own check); a config
# name is a word of letters, digits, '_', '-' and '.'. Anything else never becomes a path.
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
CONFIG_NAME = re.compile(r"^\w[\w.-]*$")


def check_name(name: str, kind: str) -> None:
    pattern = SPLIT_NAME if kind == "split" else CONFIG_NAME
    if not isinstance(name, str) or not pattern.match(name) or ".." in name:
        allowed = "letters, digits, '_' and '.'" + (" and '-'" if kind == "config" else "")
        raise InputError(f"{name!r} is not a valid {kind} name ({allowed}, as on the Hub)")


def split_dataset(rows: list[dict[str, Any]], features: Any, test_size: float | None, seed: int,
                  names: tuple[str, str] = ("train", "test"), group: str | Callable[[dict], str] = "prompt_id",
                  **built: Any) -> Built:
    """The dataset of one config: the rows, and with a test size a seeded test split by
    prompt (`group`, see train_test_split; named like the H4 datasets: train_sft/test_sft for
    SFT data), in the layout of `hub_layout` (the `*_gen` splits, the `trl` config). `built`
    goes to Built (filters, notes, card notes)."""
    train, test = train_test_split(rows, test_size, seed, group) if rows else ([], [])
    splits = {names[0]: train, **({names[1]: test} if test else {})}
    configs = hub_layout(DatasetConfig(DEFAULT_CONFIG, features, splits))
    return Built(configs, **{**built, "card_notes": [*built.get("card_notes", []), *layout_notes(configs)]})


SFT_SPLITS = ("train_sft", "test_sft")
PREF_SPLITS = ("train_prefs", "test_prefs")
# HuggingFaceH4/ultrachat_200k and ultrafeedback_binarized: each *_sft split has a *_gen twin whose
# rows end at the last user turn, the prompts for on-policy generation (rejection sampling, PPO, ...).
GEN_SPLITS = {"train_sft": "train_gen", "test_sft": "test_gen"}
GEN_FOLDER = "gen"
# The config TRL's own CLI trains on as it is (`trl sft|dpo --dataset_name RUN --dataset_config trl`):
# splits train/test, only the columns its trainers read. On the default config TRL fails: it
# finds no `train` split, and takes the string `prompt` beside `messages`/`chosen` for its own.
TRL_CONFIG = "trl"
TRL_SOURCES = {  # the default config's splits each trl split comes from, first found
    "pairs": (("chosen", "rejected"), {"train": ("train_prefs", "train"), "test": ("test_prefs", "test")}),
    "dialogues": (("messages",), {"train": ("train_sft", "train"), "test": ("test_sft", "test")}),
}


def before_last_answer(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation up to the user turn its last answer replies to ([] without one).

    For a dialogue that ends on an answer this drops that answer; one that ends on a closing
    user turn (CAMEL's task-done message) loses the closing too, so the prompt asks something.
    """
    answered = [i for i in range(1, len(messages))
                if messages[i].get("role") == "assistant" and messages[i - 1].get("role") == "user"]
    if answered:
        return list(messages[:answered[-1]])
    users = [i for i, message in enumerate(messages) if message.get("role") == "user"]
    return list(messages[:users[-1] + 1]) if users else []


def _columns(rows: Any) -> list[str]:
    import datasets

    if isinstance(rows, datasets.Dataset):
        return list(rows.column_names)
    return list(rows[0]) if rows else []


def _gen_rows(rows: Any) -> Any:
    import datasets

    if isinstance(rows, datasets.Dataset):  # Arrow (a filter's output): mapped, never made Python rows at once
        kept = rows.map(lambda row: {"messages": before_last_answer(row["messages"])})
        return kept.filter(lambda row: bool(row["messages"]))
    cut = [{**row, "messages": before_last_answer(row["messages"])} for row in rows]
    return [row for row in cut if row["messages"]]


def _only(rows: Any, columns: tuple[str, ...]) -> Any:
    import datasets

    if isinstance(rows, datasets.Dataset):
        return rows.select_columns(list(columns))
    return [{column: row[column] for column in columns} for row in rows]


def hub_layout(default: DatasetConfig) -> list[DatasetConfig]:
    """The default config with the H4 datasets' `*_gen` splits beside its `*_sft` ones, and the
    `trl` config (pairs when it has chosen/rejected, else dialogues when it has messages).
    A config without conversations is returned alone."""
    columns = next((_columns(rows) for rows in default.splits.values() if len(rows)), [])
    splits = dict(default.splits)
    if "messages" in columns:
        for sft, gen in GEN_SPLITS.items():
            if sft in splits and gen not in splits:
                splits[gen] = _gen_rows(splits[sft])
    configs = [DatasetConfig(default.name, default.features, splits)]
    for wanted, sources in TRL_SOURCES.values():
        if set(wanted) <= set(columns):
            chosen = {name: next((s for s in names if s in default.splits), None) for name, names in sources.items()}
            trl_splits = {name: _only(default.splits[source], wanted) for name, source in chosen.items() if source}
            features = None if default.features is None else _features_of(default.features, wanted)
            if trl_splits.get("train") is not None:
                configs.append(DatasetConfig(TRL_CONFIG, features, trl_splits))
            break
    return configs


def _features_of(features: Any, columns: tuple[str, ...]) -> Any:
    from datasets import Features

    return Features({column: features[column] for column in columns})


def layout_notes(configs: list[DatasetConfig]) -> list[str]:
    """What the card says about the `*_gen` splits and the `trl` config, when there are any."""
    notes = []
    if any(gen in c.splits for c in configs if c.name == DEFAULT_CONFIG for gen in GEN_SPLITS.values()):
        notes.append("The `train_gen`/`test_gen` splits hold the rows of `train_sft`/`test_sft` with each conversation cut "
                     "before its last answer: prompts for on-policy generation, as in the H4 datasets.")
    trl = next((c for c in configs if c.name == TRL_CONFIG), None)
    if trl is not None:
        columns = _columns(next(iter(trl.splits.values())))
        stage = "dpo" if "chosen" in columns else "sft"
        listed = ", ".join(f"`{c}`" for c in columns)
        notes.append(f"The `{TRL_CONFIG}` config holds splits `train`/`test` with only {listed}, so that TRL's own "
                     f"command line trains on it as it is: `trl {stage} --dataset_name REPO --dataset_config {TRL_CONFIG}`.")
    return notes


def write_configs(run_path: Path, configs: list[DatasetConfig], jsonl: bool = False, stale: Iterable[str] = ()) -> list[Written]:
    """Write every config's splits as parquet shards (and JSON Lines), replacing the older
    export: its folders, and the `stale` ones of configs it no longer has, go once the new
    export is complete (a failure before leaves the older export as it was)."""
    import datasets

    datasets.disable_progress_bars()  # distill has its own progress display
    run_path = Path(run_path)
    staging = run_path / ".export"
    for config in configs:  # every name is checked before anything is written
        check_name(config.name, "config")
        for split in config.splits:
            check_name(split, "split")
    target = staging
    try:
        shutil.rmtree(staging, ignore_errors=True)
        written = _write_staged(staging, configs, jsonl)
        # Swap the new export in; the records and the cache stay the source of truth.
        stale = {name for name in stale if isinstance(name, str) and CONFIG_NAME.match(name) and ".." not in name}
        for folder in {f for c in configs for f in c.folders} | {"data", GEN_FOLDER, "jsonl"} | stale:
            target = run_path / folder
            shutil.rmtree(target, ignore_errors=True)
            if (staging / folder).exists():
                os.replace(staging / folder, target)
    except OSError as err:  # no space, no permission: one line; the older export stays (until the swap)
        raise write_error(err, getattr(err, "filename", None) or target) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a half-written export only takes space
    from distill.run_dir import own

    own(run_path, [f for c in configs for f in c.folders])  # so that --fresh removes gen/ too
    return written


def write_reports(run_path: Path, reports: dict[str, bytes]) -> None:
    """Replace RUN_DIR/results/ with these files (an evaluation's results.md and charts),
    swapped in whole once every file is written; no reports leave no folder."""
    from distill.run_dir import RESULTS

    run_path = Path(run_path)
    target, staging = run_path / RESULTS, run_path / f".{RESULTS}"
    written = staging
    try:
        shutil.rmtree(staging, ignore_errors=True)
        if reports:
            staging.mkdir()
            for name, content in reports.items():
                if "/" in name or name.startswith("."):
                    raise ValueError(f"a report file name is one plain name, not {name!r}")
                written = staging / name
                written.write_bytes(content)
        written = target
        shutil.rmtree(target, ignore_errors=True)
        if reports:
            os.replace(staging, target)
    except OSError as err:
        raise write_error(err, getattr(err, "filename", None) or written) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_staged(staging: Path, configs: list[DatasetConfig], jsonl: bool) -> list[Written]:
    """Every config's splits written under `staging`, as they will be in the run directory."""
    import datasets
    import pyarrow as pa

    written: list[Written] = []
    for config in configs:
        for split, rows in config.splits.items():
            try:
                if isinstance(rows, datasets.Dataset):  # Arrow already (memory-mapped): no Python rows made
                    ds = rows if config.features is None or rows.features == config.features else rows.cast(config.features)
                else:
                    ds = datasets.Dataset.from_list(rows, features=config.features)
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
                raise InputError(f"cannot write {_which(config, split)} as one table: {_unstorable(rows, err)}") from None
            config.features = ds.features
            shards = max(1, math.ceil(ds.data.nbytes / MAX_SHARD_BYTES))
            entry = Written(config.name, split, len(rows))
            for index in range(shards):
                name = f"{config.folder_of(split)}/{split}-{index:05d}-of-{shards:05d}.parquet"
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    ds.shard(shards, index, contiguous=True).to_parquet(str(target))
                except OSError as err:
                    raise write_error(err, target) from None
                except (pa.ArrowException, ValueError, TypeError) as err:
                    raise InputError(f"cannot write {_which(config, split)} as parquet: {_unstorable(rows, err)}") from None
                entry.files.append(name)
                entry.bytes += target.stat().st_size
            if jsonl:
                folder = staging / "jsonl" / ("" if config.name == DEFAULT_CONFIG else config.name)
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
                    for row in ds:
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written.append(entry)
    return written


def _which(config: DatasetConfig, split: str) -> str:
    return f"the {split} split" + ("" if config.name == DEFAULT_CONFIG else f" of the {config.name} config")


def _unstorable(rows: list[dict[str, Any]], err: BaseException) -> str:
    """Why rows cannot be one table, naming the first column whose values do not fit one type
    (an int here and a string there, a number past 64 bits, an empty object)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reason = " ".join(str(err).split())[:200]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        values = [row.get(column) for row in rows]
        try:
            table = pa.table({str(column): pa.array(values)})
            pq.write_table(table, pa.BufferOutputStream())
        except Exception as column_err:  # noqa: BLE001 - any library error names the column
            return f"column {column!r} ({' '.join(str(column_err).split())[:200]})"
    return reason


def card_configs(configs: list[DatasetConfig]) -> list[dict[str, Any]]:
    """The `configs:` block of the card's YAML header."""
    return [
        {
            "config_name": c.name,
            "data_files": [{"split": split, "path": f"{c.folder_of(split)}/{split}-*"} for split in c.splits],
        }
        for c in configs
    ]
