"""A run directory: config, request cache, records as they finish, final dataset, stats.

    RUN_DIR/config.yaml     the resolved config (never a secret)
    RUN_DIR/cache.sqlite    every model response, committed as it arrives
    RUN_DIR/records.jsonl   finished items, one JSON line each, appended as they complete
    RUN_DIR/failed.jsonl    items the backend rejected, with the reason
    RUN_DIR/data/           the final dataset (parquet shards, Hub layout)
    RUN_DIR/README.md       its dataset card
    RUN_DIR/stats.json      counts, tokens, cost, time

Running the same command on the same directory resumes it; --fresh starts over.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import yaml

from distill.config import EngineConfig
from distill.errors import ConfigError

CONFIG = "config.yaml"
CACHE = "cache.sqlite"
RECORDS = "records.jsonl"
FAILED = "failed.jsonl"
STATS = "stats.json"
DATA = "data"


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it over the target: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: Path, command: str, config: EngineConfig):
        self.path = Path(path)
        self.command = command
        self.config = config
        self._lock_file = None

    @classmethod
    def open(cls, command: str, config: EngineConfig) -> "RunDir":
        run = cls(config.output, command, config)
        run._prepare()
        return run

    def _prepare(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output path {path} is a file, not a directory")
        is_run = (path / CONFIG).is_file()
        if path.is_dir() and any(path.iterdir()) and not is_run:
            raise ConfigError(f"output directory {path} is not empty and holds no distill run; choose another -o")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create output directory {path}: {err.strerror}") from None
        self._lock()
        if is_run and self.config.fresh:
            for child in path.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            is_run = False
        if is_run:
            self._check_same_run()
        stored = {"command": self.command, **self.config.model_dump(mode="json", exclude={"fresh", "export_only"})}
        write_atomic(path / CONFIG, yaml.safe_dump(stored, sort_keys=False, allow_unicode=True))

    def _lock(self) -> None:
        self._lock_file = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another distill process is writing to {self.path}") from None

    def _check_same_run(self) -> None:
        try:
            stored = yaml.safe_load((self.path / CONFIG).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            raise ConfigError(f"{self.path / CONFIG} is unreadable; use --fresh to start over") from None
        if stored.get("command") != self.command:
            raise ConfigError(
                f"{self.path} holds a run of '{stored.get('command')}', not '{self.command}'; use another -o or --fresh"
            )
        mine = self.config.identity()
        theirs = {k: stored.get(k) for k in mine}
        changed = [k for k in mine if mine[k] != theirs[k]]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"{self.path} holds a run with {k}={theirs[k]!r}, not {mine[k]!r}; "
                "re-run with the same settings to resume, or pass --fresh to start over"
            )

    @property
    def cache_path(self) -> Path:
        return self.path / CACHE

    def records(self) -> "RecordLog":
        return RecordLog(self.path / RECORDS)

    def failures(self) -> "RecordLog":
        return RecordLog(self.path / FAILED)

    def read_stats(self) -> dict[str, Any]:
        path = self.path / STATS
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def write_stats(self, stats: dict[str, Any]) -> None:
        write_atomic(self.path / STATS, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


class RecordLog:
    """Append-only JSON Lines, one line per finished item, flushed as each one lands.

    A process killed mid-write can leave a torn last line; opening the log cuts it off,
    so the item is simply done again (its responses come from the cache).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self._load()
        self._file = None  # opened on the first append, so an empty log leaves no file

    def _load(self) -> None:
        if not self.path.exists():
            return
        good = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    break
                self.rows[row["id"]] = row
                good += len(line)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())

    def append(self, row: dict[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.rows[row["id"]] = row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
