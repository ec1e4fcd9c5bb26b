"""Reading a command's input: a local file, a saved dataset, a run directory or a Hub dataset id.

Everything is checked before any model is called; problems are InputErrors that name
the file, and the line where there is one.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from distill.errors import InputError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt", ".parquet", ".csv")
# Hub-style shard names: train-00000-of-00003.parquet, or a single train.parquet.
SHARD = re.compile(r"^(?P<split>.+?)(?:-\d+-of-\d+)?\.parquet$")


def load_rows(source: str, split: str | None = None, subset: str | None = None, revision: str | None = None) -> list[dict[str, Any]]:
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        return _read_dir(path, split)
    # A relative path like data/prompts.jsonl also matches org/name: a missing local file
    # must not be looked up on the Hub (slow retries, then a misleading error).
    if HUB_ID.match(source) and not source.startswith((".", "/")) and path.suffix.lower() not in FILE_SUFFIXES:
        return _read_hub(source, split, subset, revision)
    raise InputError(f"input {source} does not exist (expected a file, a directory or a Hub dataset id org/name)")


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".json":
        data = _json(path, _text(path))
        if isinstance(data, dict):  # {"data": [...]} (maybe beside metadata) or a dict of columns
            lists = [v for v in data.values() if isinstance(v, list)]
            wrapped = [v for v in lists if v and all(isinstance(r, dict) for r in v)]
            inner = data.get("data")
            if isinstance(inner, list) and all(isinstance(r, dict) for r in inner):
                data = inner
            elif len(data) == 1 and wrapped:
                data = wrapped[0]
            elif lists and len(lists) == len(data) and len({len(v) for v in lists}) == 1:
                data = [dict(zip(data, row)) for row in zip(*data.values())]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".txt":
        return [{"text": line.strip()} for line in _lines(_text(path)) if line.strip()]
    if suffix in (".parquet", ".csv"):
        return _read_table([path], suffix[1:])
    raise InputError(f"{path}: unsupported file type {suffix or '(none)'} (use .jsonl, .json, .parquet, .csv or .txt)")


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as err:
        # utf-8-sig reports offsets past a BOM it stripped: count lines in the same bytes.
        start = err.start + len(data) - len(err.object)
        line = data[:start].count(b"\n") + 1
        raise InputError(f"{path}: not UTF-8 text (line {line})") from None


def _lines(text: str) -> list[str]:
    """Lines split on \\n only: str.splitlines would also split inside JSON strings at
    U+2028, U+0085 and other characters json.dumps(ensure_ascii=False) writes raw."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None


def _read_jsonl(path: Path, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    rows = []
    text = _text(path)
    lines = _lines(text)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if torn_tail_ok and number == len(lines) and not text.endswith("\n"):
                break  # a run killed mid-append: its resume cuts this line off too (RecordLog)
            raise InputError(f"{path}: line {number} is not valid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _read_table(paths: list[Path], kind: str) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            table = pyarrow.parquet.read_table(path) if kind == "parquet" else pyarrow.csv.read_csv(path)
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: cannot read as {kind}: {' '.join(str(err).split())[:200]}") from None
        rows.extend(table.to_pylist())
    return rows


def _read_dir(path: Path, split: str | None) -> list[dict[str, Any]]:
    shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
    if shards:  # a run directory or a Hub-layout export
        split_of = {s: SHARD.match(s.name).group("split") for s in shards}
        names = set(split_of.values())
        wanted = split or ("train" if "train" in names else sorted(names)[0])
        chosen = [s for s in shards if split_of[s] == wanted]
        if not chosen:
            raise InputError(f"{path}: no split {wanted!r} (has: {', '.join(sorted(names))})")
        return _read_table(chosen, "parquet")
    if (path / "records.jsonl").is_file():  # a run that has not exported yet
        return _read_jsonl(path / "records.jsonl", torn_tail_ok=True)
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: a directory with no dataset in it") from None
    if isinstance(loaded, datasets.DatasetDict):
        wanted = split or ("train" if "train" in loaded else next(iter(loaded)))
        if wanted not in loaded:
            raise InputError(f"{path}: no split {wanted!r} (has: {', '.join(loaded)})")
        loaded = loaded[wanted]
    return loaded.to_list()


def _read_hub(name: str, split: str | None, subset: str | None, revision: str | None) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset, split=split or "train", revision=revision)
    except Exception as err:  # offline, unknown repo, unknown split: all end the same way
        raise InputError(f"cannot load Hub dataset {name}: {' '.join(str(err).split())[:300]}") from None
    return loaded.to_list()


def select(rows: list[dict[str, Any]], source: str, limit: int | None = None, shuffle_seed: int | None = None) -> list[dict[str, Any]]:
    if not rows:
        raise InputError(f"input {source} is empty")
    if shuffle_seed is not None:
        rows = rows[:]
        random.Random(shuffle_seed).shuffle(rows)
    return rows[:limit] if limit is not None else rows


def pick_column(rows: list[dict[str, Any]], source: str, column: str | None, candidates: tuple[str, ...]) -> str:
    if not rows:
        raise InputError(f"input {source} is empty")
    present = list(rows[0])
    if column is not None:
        if column not in rows[0]:
            raise InputError(f"input {source} has no column {column!r} (columns: {', '.join(present)})")
        return column
    for name in candidates:
        if name in rows[0]:
            return name
    raise InputError(f"input {source} has none of the columns {', '.join(candidates)} (columns: {', '.join(present)}); name one with --column")


def check_prompt(value: Any, source: str, row: int, column: str) -> None:
    """A prompt is a non-empty string or a chat: a non-empty list of {role, content} strings."""
    where = f"input {source}, row {row + 1}, column {column!r}"
    if isinstance(value, str):
        if not value.strip():
            raise InputError(f"{where}: empty prompt")
        return
    if isinstance(value, list):
        if not value:
            raise InputError(f"{where}: empty list of messages")
        for turn in value:
            if not (isinstance(turn, dict) and isinstance(turn.get("role"), str) and isinstance(turn.get("content"), str)):
                raise InputError(f"{where}: messages must be a list of {{role, content}} strings")
        return
    if value is None:
        raise InputError(f"{where}: missing or null (expected a string or a list of messages)")
    raise InputError(f"{where}: expected a string or a list of messages, got {type(value).__name__}")
