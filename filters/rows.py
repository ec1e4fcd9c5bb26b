"""Rows as the filters see them: Arrow tables on disk, memory-mapped, read a batch at a time.

An input (a run's parquet shards, a parquet file, or anything else `distill.inputs` reads)
becomes one Arrow IPC file per split in a work folder; the tables are memory-mapped from
there, so a million rows cost the pages being read, not a million Python dicts. A filter
gets `Rows`: a batch of those rows (or all of them, for dedup), whose columns it reads as
Python values one batch at a time. The kept and removed rows are written back the same way,
to Arrow files that `datasets` memory-maps for the export.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from distill.errors import InputError, write_error
from distill.filters.text import DEFAULT_ROLES, value_text, value_turns

WORK = ".filter"  # the work folder inside the output, removed when the command ends
BATCH = 2048  # rows a streaming filter judges at a time
_TAKE_BYTES = 16 * 1024 * 1024  # about this much of a table is copied at a time when rows are written


class Source:
    """Every split of an input as Arrow tables, and the order the filters see them in:
    the train splits first, so that a test row repeating a train row is the one dropped."""

    def __init__(self, names: list[str], tables: list[pa.Table]):
        self.names = list(names)  # the input's order (the output's)
        order = sorted(range(len(names)), key=lambda i: (not names[i].startswith("train"), names[i]))
        self.splits = [names[i] for i in order]
        self.tables = [tables[i] for i in order]
        self.offsets = np.cumsum([0] + [t.num_rows for t in self.tables])
        self._batches: dict[int, tuple[list[pa.RecordBatch], np.ndarray]] = {}

    def take(self, split: int, local: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Rows of one split's table by index (any order), taken batch by batch: Arrow's
        take on a table of many record batches first concatenates each whole column."""
        table = self.tables[split]
        if split not in self._batches:
            batches = table.to_batches()
            self._batches[split] = (batches, np.cumsum([0] + [b.num_rows for b in batches]))
        batches, starts = self._batches[split]
        local = np.asarray(local, np.int64)
        which = np.searchsorted(starts, local, "right") - 1
        cut = np.flatnonzero(which[1:] != which[:-1]) + 1
        schema = table.schema if columns is None else pa.schema([table.schema.field(c) for c in columns])
        pieces = []
        for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(local)])).tolist()):
            if b > a:
                batch = batches[int(which[a])]
                batch = batch if columns is None else batch.select(columns)
                pieces.append(batch.take(pa.array(local[a:b] - starts[which[a]])))
        return pa.Table.from_batches(pieces, schema)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, positions: np.ndarray | None = None) -> Rows:
        return Rows(self, np.arange(len(self)) if positions is None else np.asarray(positions, np.int64))

    def split_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, positions, "right") - 1

    def label(self, position: int) -> str:
        """A row's name in reasons and in the `removed` config: "split/index within the split"."""
        split = int(self.split_of(np.array([position]))[0])
        return f"{self.splits[split]}/{position - int(self.offsets[split])}"


class Rows:
    """A batch of rows: the `positions` of a `Source` (ascending)."""

    def __init__(self, source: Source, positions: np.ndarray):
        self.source, self.positions = source, positions

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]], split: str = "train") -> Rows:
        """Rows from Python dicts (tests, library use): one in-memory table."""
        return Source([split], [_table_of_rows(rows, split, "the rows")]).rows()

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def columns(self) -> list[str]:
        """The columns of the first row (of the first split, with no rows)."""
        split = int(self.source.split_of(self.positions[:1])[0]) if len(self) else 0
        return self.source.tables[split].column_names if self.source.tables else []

    def _segments(self) -> Iterator[tuple[int, np.ndarray]]:
        """(split, indices in its table) for each split the rows span."""
        if not len(self):
            return
        splits = self.source.split_of(self.positions)
        cut = np.flatnonzero(splits[1:] != splits[:-1]) + 1
        for lo, hi in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(self)])).tolist()):
            split = int(splits[lo])
            yield split, self.positions[lo:hi] - self.source.offsets[split]

    def values(self, column: str) -> list[Any]:
        """The column's values as Python objects (None where a split lacks the column)."""
        out: list[Any] = []
        for split, local in self._segments():
            table = self.source.tables[split]
            if column not in table.column_names:
                out.extend([None] * len(local))
            elif int(local[-1]) - int(local[0]) + 1 == len(local):  # ascending, so contiguous: a slice
                out.extend(table.column(column).slice(int(local[0]), len(local)).to_pylist())
            else:
                out.extend(self.source.take(split, local, [column]).column(0).to_pylist())
        return out

    def texts(self, column: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> list[str]:
        """The text a filter compares: a string column as is, a chat's turns of `roles` joined."""
        return [value_text(v, column, roles) for v in self.values(column)]

    def turns(self, column: str, roles: tuple[str, ...] = DEFAULT_ROLES) -> list[list[str]]:
        """The turns a filter checks one by one: a chat's turns of `roles`, or the one text."""
        return [value_turns(v, column, roles) for v in self.values(column)]

    def label(self, i: int) -> str:
        return self.source.label(int(self.positions[i]))

    def labels(self) -> list[str]:
        splits = self.source.split_of(self.positions)
        local = self.positions - self.source.offsets[splits]
        return [f"{self.source.splits[s]}/{i}" for s, i in zip(splits.tolist(), local.tolist())]

    def batches(self, size: int | None = None) -> Iterator[Rows]:
        size = size or BATCH
        for s in range(0, len(self), size):
            yield Rows(self.source, self.positions[s : s + size])

    def subset(self, indices: np.ndarray) -> Rows:
        """The rows at these (ascending) indices of this batch."""
        return Rows(self.source, self.positions[np.asarray(indices, np.int64)])


# -- reading an input -----------------------------------------------------------------------------


def open_source(source: str, subset: str | None, work: Path) -> Source:
    """Every split of `source` as memory-mapped Arrow tables, written under `work`."""
    from distill.export import check_name

    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failed(err, work) from None
    names, tables = [], []
    shards = _parquet_splits(Path(source), subset)
    if shards is not None:  # parquet: streamed into Arrow files a row group at a time
        for split, files in shards.items():
            check_name(split, "split")
            path = work / f"input-{len(names)}.arrow"
            if not _copy_parquet(files, path):  # shards of one split that disagree on types
                from distill.inputs import _read_table

                _write_table(path, _table_of_rows(_read_table(files, "parquet"), split, source))
            names.append(split)
            tables.append(_map(path))
        return Source(names, tables)
    from distill.inputs import load_splits

    splits = load_splits(source, subset)
    for split in list(splits):
        check_name(split, "split")
    for split in list(splits):
        rows = splits.pop(split)  # the Python rows go as soon as their table is written
        path = work / f"input-{len(names)}.arrow"
        _write_table(path, _table_of_rows(rows, split, source))
        del rows
        names.append(split)
        tables.append(_map(path))
    return Source(names, tables)


def _parquet_splits(path: Path, subset: str | None) -> dict[str, list[Path]] | None:
    """The parquet files of each split, as `distill.inputs.load_splits` would read them, or
    None for an input that is not parquet (or has none, or an error to report)."""
    from distill.inputs import SHARD

    if path.is_file():
        return {"train": [path]} if subset is None and path.suffix.lower() == ".parquet" else None
    if not path.is_dir():
        return None
    folder = path / ("data" if subset in (None, "default") else subset)
    shards = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not shards:
        return None
    by_split: dict[str, list[Path]] = {}
    for shard in shards:
        by_split.setdefault(SHARD.match(shard.name).group("split"), []).append(shard)
    return by_split


def _copy_parquet(files: list[Path], target: Path) -> bool:
    """Stream parquet files into one Arrow file; False when their columns' types differ."""
    import pyarrow.parquet as pq

    from distill.inputs import _printable

    readers = []
    for file in files:
        try:
            readers.append((file, pq.ParquetFile(file, buffer_size=1 << 20, pre_buffer=False)))  # a page at a time
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{file}: cannot read as parquet: {_printable(err)}") from None
    schema = readers[0][1].schema_arrow
    if any(not r.schema_arrow.equals(schema) for _, r in readers[1:]):
        return False
    try:
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for file, reader in readers:
                for batch in _batches(file, reader):
                    writer.write_batch(batch)
    except OSError as err:
        raise _write_failed(err, target) from None
    return True


def _batches(file: Path, reader) -> Iterator[pa.RecordBatch]:
    from distill.inputs import _printable

    batches = reader.iter_batches(batch_size=8192)
    while True:
        try:
            batch = next(batches)
            batch.validate(full=True)  # a string column holding bytes that are not UTF-8
        except StopIteration:
            return
        except pa.ArrowInvalid as err:
            if "utf8" in str(err).lower() or "utf-8" in str(err).lower():
                raise InputError(f"{file}: a text column holds bytes that are not UTF-8 ({_printable(err, 80)})") from None
            raise InputError(f"{file}: cannot read as parquet: {_printable(err)}") from None
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{file}: cannot read as parquet: {_printable(err)}") from None
        yield batch


def _table_of_rows(rows: list[dict[str, Any]], split: str, source: str) -> pa.Table:
    """Python rows as one table, typed as `datasets` types them when it writes them."""
    import datasets

    from distill.export import _unstorable

    try:
        return datasets.Dataset.from_list(rows).data.table
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
        raise InputError(f"input {source}: the {split} split cannot be one table: {_unstorable(rows, err)}") from None


def _write_table(path: Path, table: pa.Table) -> None:
    try:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=8192)
    except OSError as err:
        raise _write_failed(err, path) from None


def _map(path: Path) -> pa.Table:
    """The table of an Arrow file, memory-mapped (its pages are read as they are used)."""
    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all()


# -- writing rows out -------------------------------------------------------------------------------


def write_rows(path: Path, source: Source, positions: np.ndarray, schema: pa.Schema | None = None,
               extra: dict[str, list[str] | np.ndarray] | None = None):
    """The rows at `positions` (of one split; in any order) as a memory-mapped `datasets.Dataset`,
    with `extra` string columns (replacing columns of the same name in place), cast to `schema`
    when one is given (the schema the config's first split was written with)."""
    import datasets

    if not len(positions):
        raise ValueError("no rows to write")
    split = int(source.split_of(positions[:1])[0])
    table = source.tables[split]
    local = np.asarray(positions, np.int64) - int(source.offsets[split])
    extra = extra or {}
    own_schema = _with_strings(table.schema, list(extra))
    target = schema or own_schema
    per_row = max(1, table.nbytes // max(table.num_rows, 1))
    step = max(1, min(65536, _TAKE_BYTES // per_row))
    try:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, target) as writer:
            for s in range(0, len(local), step):
                part = local[s : s + step]
                contiguous = int(part[-1]) - int(part[0]) + 1 == len(part) and bool((np.diff(part) == 1).all())
                chunk = table.slice(int(part[0]), len(part)) if contiguous else source.take(split, part)
                for name, values in extra.items():
                    column = pa.array(list(values[s : s + step]), pa.string())
                    if name in chunk.column_names:
                        chunk = chunk.set_column(chunk.column_names.index(name), name, column)
                    else:
                        chunk = chunk.append_column(name, column)
                chunk = chunk.replace_schema_metadata(own_schema.metadata)
                if not chunk.schema.equals(target, check_metadata=False):
                    chunk = _cast(chunk, target, source.splits[split])
                writer.write_table(chunk.replace_schema_metadata(target.metadata))
    except OSError as err:
        raise _write_failed(err, path) from None
    return datasets.Dataset.from_file(str(path))


def _cast(chunk: pa.Table, schema: pa.Schema, split: str) -> pa.Table:
    """A split's rows in the types of the config's first split (as `datasets` writes a
    config's splits with one set of features)."""
    try:
        if chunk.column_names != schema.names:
            raise ValueError(f"its columns are {', '.join(chunk.column_names)}, not {', '.join(schema.names)}")
        return chunk.cast(schema)
    except (pa.ArrowException, ValueError, TypeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"cannot write the {split} split with the other splits' columns: {reason}") from None


def _with_strings(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """`schema` with string columns `names` (replaced in place, else appended), and the
    `datasets` features of its metadata updated to match."""
    if not names:
        return schema
    fields = list(schema)
    for name in names:
        field = pa.field(name, pa.string())
        if name in schema.names:
            fields[schema.names.index(name)] = field
        else:
            fields.append(field)
    metadata = dict(schema.metadata or {})
    if b"huggingface" in metadata:
        import datasets

        features = datasets.Features.from_arrow_schema(schema)
        for name in names:
            features[name] = datasets.Value("string")
        metadata[b"huggingface"] = json.dumps({"info": {"features": features.to_dict()}}).encode()
    return pa.schema(fields, metadata=metadata or None)


def _write_failed(err: OSError, path: Path) -> Exception:
    """The one-line error for a failed write; Arrow's errors carry the errno in their text only."""
    if not getattr(err, "errno", None):
        found = re.search(r"errno (\d+)", str(err), re.IGNORECASE)
        if found:
            err = OSError(int(found.group(1)), str(err))
    return write_error(err, path)


def remove_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


__all__ = ["BATCH", "WORK", "Rows", "Source", "open_source", "remove_work", "write_rows"]
