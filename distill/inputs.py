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
    """The rows of one split (by default train, else train_sft, train_prefs, else the first)."""
    if _is_hub_id(source):
        return _read_hub(source, split or _hub_default_split(source, subset, revision), subset, revision)
    return pick_split(load_splits(source, subset, revision), source, split)


def _hub_default_split(name: str, subset: str | None, revision: str | None) -> str:
    """train, else train_sft, else train_prefs, else the first split the Hub dataset has (as
    for local inputs); train when its split names cannot be looked up."""
    import datasets

    try:
        names = datasets.get_dataset_split_names(name, subset, revision=revision)
    except Exception:  # offline and not cached, unknown repo, ...: the load then says why, once
        return "train"
    return next((n for n in DEFAULT_SPLITS if n in names), names[0] if names else "train")


def load_splits(source: str, subset: str | None = None, revision: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every split of an input; a single file is one split, "train"."""
    path = Path(source)
    if (path.is_file() or path.is_dir()) and revision is not None:
        raise InputError(f"--revision names a version of a Hub dataset; {source} is a local "
                         f"{'file' if path.is_file() else 'directory'}")
    if path.is_file():
        if subset is not None:
            raise InputError(f"--subset names a config of a Hub dataset or a run directory; {source} is a file")
        return {"train": _read_file(path)}
    if path.is_dir():
        return _read_dir(path, subset)
    if path.exists():  # a FIFO, a socket, a device: reading one could block or never end
        raise InputError(f"input {source} is not a regular file or a directory")
    if _is_hub_id(source):
        return _read_hub(source, None, subset, revision)
    raise InputError(f"input {source} does not exist (expected a file, a directory or a Hub dataset id org/name)")


def pick_split(splits: dict[str, list[dict[str, Any]]], source: str, split: str | None) -> list[dict[str, Any]]:
    wanted = split or next((name for name in DEFAULT_SPLITS if name in splits), next(iter(splits)))
    if wanted not in splits:
        raise InputError(f"input {source} has no split {wanted!r} (has: {', '.join(splits)})")
    return splits[wanted]


DEFAULT_SPLITS = ("train", "train_sft", "train_prefs")


def _is_hub_id(source: str) -> bool:
    # A relative path like data/prompts.jsonl also matches org/name: a missing local file
    # must not be looked up on the Hub (slow retries, then a misleading error).
    path = Path(source)
    return (
        not path.exists()
        and bool(HUB_ID.match(source))
        and not source.startswith((".", "/"))
        and path.suffix.lower() not in FILE_SUFFIXES
    )


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
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
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
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply at line {_too_deep_line(text)}") from None
    if _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(data)
        if bad is not None:
            line = _escape_line(text, bad)
            raise InputError(f"{path}: line {line} holds {_describe_surrogate(bad)}") from None
    return data


# json.loads turns an escape like \ud800 without its pair into a lone surrogate: a str that
# no file, terminal or tokenizer can encode. Only text holding such an escape can hold one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_DEEP = 200  # nesting no dataset row reaches: where a text too deep to parse is pointed at


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a parsed JSON value (keys included), or None."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        return err.object[err.start]
    except (RecursionError, ValueError):
        return None
    return None


def _describe_surrogate(char: str) -> str:
    return (f"the escape \\u{ord(char):04x}, half of a UTF-16 surrogate pair without its other half: "
            "not a character (fix or drop the row)")


def _escape_line(text: str, char: str) -> int:
    """The line of the first escape of `char` that is not half of a pair."""
    escape = rf"\\u{ord(char):04x}"
    lone = (rf"{escape}(?!\\u[dD][c-fC-F])" if ord(char) < 0xDC00
            else rf"(?<!\\u[dD][89abAB][0-9a-fA-F]{{2}}){escape}")
    found = re.search(lone, text, flags=re.IGNORECASE)
    return text.count("\n", 0, found.start()) + 1 if found else 1


def _too_deep_line(text: str) -> int:
    """The line where JSON text nests deeper than Python can parse (strings skipped)."""
    depth, line = 0, 1
    for token in re.finditer(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}\n]', text):
        kind = token.group()
        if kind == "\n":
            line += 1
        elif kind in "[{":
            depth += 1
            if depth > _DEEP:
                return line
        elif kind in "]}":
            depth -= 1
    return line


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
        except RecursionError:
            raise InputError(f"{path}: line {number} is JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        if _SURROGATE_ESCAPE.search(line):
            bad = _lone_surrogate(row)
            if bad is not None:
                raise InputError(f"{path}: line {number} holds {_describe_surrogate(bad)}")
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
            if kind == "csv":  # arrow reads a column that is not UTF-8 as bytes
                binary = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
                if binary:
                    raise InputError(f"{path}: column {binary[0]!r} is not UTF-8 text")
            rows.extend(table.to_pylist())
        except UnicodeDecodeError as err:  # a string column holding bytes that are not UTF-8
            raise InputError(f"{path}: a text column holds bytes that are not UTF-8 ({err.reason})") from None
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: cannot read as {kind}: {_printable(err)}") from None
    return rows


def _printable(err: BaseException, limit: int = 200) -> str:
    """An error message from a library, on one line, without the control characters of the
    binary file it may quote (they could drive the terminal)."""
    text = " ".join(str(err).split())
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def _read_dir(path: Path, subset: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """A Hub-layout export (a run): data/ holds the default config, <name>/ the others."""
    folder = path / ("data" if subset in (None, "default") else subset)
    shards = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if subset not in (None, "default") and not shards:
        configs = sorted(p.name for p in path.iterdir() if p.is_dir() and any(p.glob("*.parquet")))
        named = ["default" if c == "data" else c for c in configs]
        raise InputError(f"{path} has no subset {subset!r} (has: {', '.join(named) or 'none'})")
    if shards:
        by_split: dict[str, list[Path]] = {}
        for shard in shards:
            by_split.setdefault(SHARD.match(shard.name).group("split"), []).append(shard)
        return {name: _read_table(files, "parquet") for name, files in by_split.items()}
    from distill.run_dir import RunDir

    records = RunDir(path).records_path
    if records.is_file():  # a run that has not exported yet
        return {"train": _read_jsonl(records, torn_tail_ok=True)}
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            return {name: ds.to_list() for name, ds in loaded.items()}
        return {"train": loaded.to_list()}
    except FileNotFoundError:
        raise InputError(f"{path}: a directory with no dataset in it") from None
    except Exception as err:  # a damaged save: its JSON, its arrow files (many libraries' errors)
        raise InputError(f"{path}: cannot read the saved dataset: {type(err).__name__}: {_printable(err)}") from None


def _read_hub(name: str, split: str | None, subset: str | None, revision: str | None):
    """One split's rows, or (split=None) every split's."""
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset, split=split, revision=revision)
    except Exception as err:  # offline, unknown repo, unknown split: all end the same way
        raise InputError(f"cannot load Hub dataset {name}: {_printable(err, 300)}") from None
    if split is None:
        return {key: ds.to_list() for key, ds in loaded.items()}
    return loaded.to_list()


def rename_columns(rows: list[dict[str, Any]], mapping: dict[str, str], source: str) -> list[dict[str, Any]]:
    """--column-map old=new: use an input whose columns are named otherwise."""
    if not mapping or not rows:
        return rows
    missing = [old for old in mapping if old not in rows[0]]
    if missing:
        raise InputError(f"input {source} has no column {missing[0]!r} to rename (columns: {', '.join(rows[0])})")
    return [{mapping.get(key, key): value for key, value in row.items()} for row in rows]


def parse_column_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--column-map takes OLD=NEW, not {pair!r}")
        mapping[old.strip()] = new.strip()
    return mapping


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
    present = list(rows[0]) or ["none"]
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


def load_input(config) -> list[dict[str, Any]]:
    """An InputConfig's rows: loaded, columns renamed, shuffled (seeded) and limited."""
    rows = load_rows(config.input, config.split, config.subset, config.revision)
    rows = rename_columns(rows, config.column_map, config.input)
    return select(rows, config.input, config.limit, config.seed if config.shuffle else None)
