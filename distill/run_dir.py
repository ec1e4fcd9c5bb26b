"""A run directory: config, request cache, records as they finish, final dataset, stats.

    RUN_DIR/.distill        the mark that distill made this folder, and what it wrote there
    RUN_DIR/.lock           held (flock) by the one process writing the run
    RUN_DIR/config.yaml     the resolved config (never a secret), with the plan files' digests
    RUN_DIR/cache.sqlite    every model response, committed before anyone sees it (+ -wal, -shm)
    RUN_DIR/records.jsonl   finished items, one JSON line each, appended as they complete
    RUN_DIR/failed.jsonl    items the backend rejected, with the reason
    RUN_DIR/batches.jsonl   the provider batches sent (--batch-api), journaled as they are made
    RUN_DIR/data/           the final dataset (parquet shards, Hub layout); <config>/ for the others
    RUN_DIR/jsonl/          the same as JSON Lines, with --format jsonl
    RUN_DIR/.export/        an export being written, swapped in whole when it is done
    RUN_DIR/README.md       its dataset card
    RUN_DIR/results/        an evaluation's report: results.md and its charts (PNG)
    RUN_DIR/stats.json      counts, tokens, cost, time
    RUN_DIR/view.html       the page `distill view` writes to look at the run (when asked)

`distill filter -o` folders are written through `RunDir.open_output` (mark, lock, staged
export); `distill merge` joins shards through `absorb`.

Running the same command on the same directory resumes it; --fresh starts over, deleting
only the files above (and the dataset folders the mark lists), never anything else.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from distill.config import PLAN_DIGESTS
from distill.errors import ConfigError, write_error
from distill.secrets import redact_all

MARKER = ".distill"
LOCK = ".lock"
CONFIG = "config.yaml"
CACHE = "cache.sqlite"
RECORDS = "records.jsonl"
FAILED = "failed.jsonl"
STATS = "stats.json"
CARD = "README.md"
DATA = "data"
JSONL = "jsonl"
BATCHES = "batches.jsonl"
STAGING = ".export"
RESULTS = "results"
VIEW = "view.html"
# Everything distill may write at the top of a run directory; --fresh deletes these and
# the dataset folders its mark lists, and nothing else.
RUN_FILES = (CONFIG, CACHE, f"{CACHE}-wal", f"{CACHE}-shm", f"{CACHE}-journal", RECORDS, FAILED, STATS, CARD,
             DATA, JSONL, BATCHES, STAGING, RESULTS, f".{RESULTS}", VIEW)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it over the target: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise write_error(err, path) from None


# -- the mark: which folders distill made, and what it wrote in them ------------------------


def read_mark(path: Path) -> dict[str, Any] | None:
    """The folder's mark, or None if distill did not mark it."""
    try:
        mark = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return mark if isinstance(mark, dict) else None


def lock_folder(path: Path):
    """Hold the folder's lock (flock on its .lock file) until the returned file is closed;
    a ConfigError when another process holds it."""
    try:
        lock = open(path / LOCK, "w")
    except OSError as err:
        raise write_error(err, path / LOCK) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(f"another distill process is writing to {path}") from None
    return lock


def _write_mark(path: Path, mark: dict[str, Any]) -> None:
    write_atomic(Path(path) / MARKER, json.dumps(mark, indent=1) + "\n")


def claim(path: Path) -> bool:
    """Create `path` if needed and mark it as distill's when it is new or empty. Returns
    whether distill created it (then --fresh may delete it whole, as for a training output)."""
    path = Path(path)
    mark = read_mark(path)
    if mark is not None:
        return bool(mark.get("created"))
    new = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, path) from None
    if new:
        _write_mark(path, {"created": True, "folders": []})
    return new


def remove_created(path: Path, what: str, check_only: bool = False) -> None:
    """--fresh for a folder distill created whole (a training output): delete it. One that
    distill did not create is refused, never deleted."""
    path = Path(path)
    if not path.exists():
        return
    mark = read_mark(path)
    if not (mark and mark.get("created")):
        raise ConfigError(f"--fresh would delete {what} {path}, which distill did not create: "
                          "delete it yourself or choose another directory")
    if check_only:
        return
    try:
        shutil.rmtree(path)
    except OSError as err:
        raise write_error(err, path) from None


def own(path: Path, folders: list[str]) -> None:
    """Note dataset folders written into a marked folder, so that --fresh removes them too."""
    mark = read_mark(path)
    if mark is None:
        return
    known = list(dict.fromkeys([*mark.get("folders", []), *folders]))
    if known != mark.get("folders"):
        _write_mark(path, {**mark, "folders": known})


class RunDir:
    """The one owner of a run directory's files: opens, locks, checks, resumes or starts over."""

    def __init__(self, path: Path, command: str = "", config=None):
        """A view of the folder; `open` and `open_output` check, lock and prepare it for writing."""
        self.path = Path(path)
        self.command = command
        self.config = config
        self._lock_file = None

    @classmethod
    def open(cls, command: str, config, save_config: bool = True) -> "RunDir":
        """The run directory of a generating command (config.output), checked and locked.
        With save_config=False the stored config is left as it was until `save_config()`."""
        run = cls(config.output, command, config)
        run._prepare(config.fresh)
        if save_config:
            run.save_config()
        return run

    @classmethod
    def open_output(cls, path: Path, command: str) -> "RunDir":
        """A dataset folder a command writes whole each time (`distill filter -o`): new, empty,
        or that command's earlier output (replaced); locked while it is written."""
        run = cls(path, command)
        path = run.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output path {path} is a file, not a directory")
        mark = read_mark(path)
        made_by = run.read_stats().get("command")
        if (path / CONFIG).is_file() or (made_by not in (None, command)) or (
                mark is None and made_by is None and path.is_dir() and any(p.name != LOCK for p in path.iterdir())):
            raise ConfigError(f"output directory {path} is not empty and holds no earlier output of distill {command}; "
                              "choose another -o")
        claim(path)
        run._lock()
        if read_mark(path) is None:  # an earlier output, from before distill marked its folders
            _write_mark(path, {"created": False, "folders": []})
        return run

    @classmethod
    def check_path(cls, path: Path) -> None:
        """The refusals of an output path, before anything is made there (for dry runs too)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output path {path} is a file, not a directory")
        above = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if above is not None:
            raise ConfigError(f"output path {path} is inside {above}, which is a file, not a directory")
        if path.is_dir() and read_mark(path) is None and not cls(path, "")._earlier_run() and any(
                p.name != LOCK for p in path.iterdir()):
            raise ConfigError(f"output directory {path} is not empty and holds no distill run; choose another -o")

    def _prepare(self, fresh: bool) -> None:
        path = self.path
        self.check_path(path)
        mark = read_mark(path)
        earlier = mark is None and self._earlier_run()
        claim(path)
        self._lock()
        if fresh:
            if mark is None and earlier:
                raise ConfigError(f"--fresh deletes only what distill marked as its own, and {path} has no mark "
                                  "(an older run?): delete its run files yourself, or choose another -o")
            self._remove_run_files()
        elif mark is not None or earlier:
            self._check_same_run()
        if read_mark(path) is None:  # an earlier run, now marked
            _write_mark(path, {"created": False, "folders": []})

    def _earlier_run(self) -> bool:
        """A run of a distill from before folders were marked: its config names a command."""
        try:
            return isinstance((self.stored_config() or {}).get("command"), str)
        except ConfigError:
            return False

    def _remove_run_files(self) -> None:
        mark = read_mark(self.path) or {}
        for name in [*RUN_FILES, *mark.get("folders", [])]:
            target = self.path / name
            if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not (target.exists() or target.is_symlink()):
                continue
            try:
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
            except OSError as err:
                raise write_error(err, target) from None
        _write_mark(self.path, {**mark, "folders": []})

    def _lock(self) -> None:
        self._lock_file = lock_folder(self.path)

    def stored_config(self) -> dict[str, Any] | None:
        """The config a run was started with, or None when there is none."""
        path = self.path / CONFIG
        if not path.is_file():
            return None
        try:
            stored = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            raise ConfigError(f"{path} is unreadable; use --fresh to start over") from None
        return stored if isinstance(stored, dict) else {}

    def _check_same_run(self) -> None:
        stored = self.stored_config()
        if stored is None:
            return
        if stored.get("command") != self.command:
            raise ConfigError(
                f"{self.path} holds a run of '{stored.get('command')}', not '{self.command}'; use another -o or --fresh"
            )
        mine = self.config.identity()
        digests = mine.pop(PLAN_DIGESTS, {})
        theirs = {k: self._as_now(k, stored.get(k)) for k in mine}
        changed = [k for k in mine if mine[k] != theirs[k]]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"{self.path} holds a run with {k}={theirs[k]!r}, not {mine[k]!r}; "
                "re-run with the same settings to resume, or pass --fresh to start over"
            )
        earlier = stored.get(PLAN_DIGESTS) or {}
        for name, digest in digests.items():
            if name in earlier and earlier[name] != digest:  # (runs from before digests were kept have none)
                raise ConfigError(f"the content of --{name.replace('_', '-')} {getattr(self.config, name)} changed since "
                                  f"{self.path} was started; restore it to resume, or pass --fresh to start over")

    def _as_now(self, key: str, value: Any) -> Any:
        """A stored setting as this version writes it (a model spec stored as a string, say)."""
        try:
            config = type(self.config).model_validate({**self.config.model_dump(), key: value})
        except Exception:  # a value this version refuses: it differs
            return value
        return config.identity().get(key, value)

    def save_config(self) -> None:
        stored = {"command": self.command, **self.config.model_dump(mode="json", exclude={"fresh", "export_only"})}
        digests = self.config.identity().get(PLAN_DIGESTS)
        if digests:
            stored[PLAN_DIGESTS] = digests
        write_atomic(self.path / CONFIG, yaml.safe_dump(stored, sort_keys=False, allow_unicode=True))

    @property
    def cache_path(self) -> Path:
        return self.path / CACHE

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    @property
    def batches_path(self) -> Path:
        """The journal of the provider batches a run has sent (the openai backend's --batch-api)."""
        return self.path / BATCHES

    def records(self, read_only: bool = False) -> "RecordLog":
        return RecordLog(self.path / RECORDS, read_only)

    def failures(self, read_only: bool = False) -> "RecordLog":
        return RecordLog(self.path / FAILED, read_only)

    def read_stats(self, strict: bool = False) -> dict[str, Any]:
        """stats.json, or {} when there is none (or, unless `strict`, when it cannot be read)."""
        path = self.path / STATS
        try:
            stats = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError, RecursionError):
            if strict:
                raise ConfigError(f"{path} is unreadable: run that again (it resumes) to write it anew") from None
            return {}
        return stats if isinstance(stats, dict) else {}

    def absorb(self, others: list["RunDir"]) -> None:
        """Take in the cache, records and failed items of other runs (`distill merge`'s shards),
        which are only read; an item another run already gave is kept once."""
        from distill.cache import RequestCache

        cache = RequestCache(self.cache_path)
        try:
            for other in others:
                if other.cache_path.is_file():
                    cache.absorb(other.cache_path)
        finally:
            cache.close()
        for name in (RECORDS, FAILED):
            joined = RecordLog(self.path / name)
            try:
                for other in others:
                    for row in RecordLog(other.path / name, read_only=True):
                        if row["id"] not in joined:
                            joined.append(row)
            finally:
                joined.close()

    def write_stats(self, stats: dict[str, Any]) -> None:
        text = json.dumps(redact_all(stats), indent=2, ensure_ascii=False, allow_nan=False)
        write_atomic(self.path / STATS, text + "\n")

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def discard_if_empty(self) -> None:
        """Remove the folder if distill made it and it holds nothing but the mark and the lock."""
        mark = read_mark(self.path)
        if mark and mark.get("created") and {p.name for p in self.path.iterdir()} <= {MARKER, LOCK}:
            shutil.rmtree(self.path, ignore_errors=True)


class RecordLog:
    """Append-only JSON Lines, one line per finished item, flushed as each one lands.

    A process killed mid-write can leave a torn last line (no newline at its end): opening
    the log cuts it off, so the item is simply done again (its responses come from the
    cache). Any other line that cannot be read is skipped with a warning, and its item is
    done again too; the lines after it are kept. `read_only` never changes the file (for
    another run's logs, as `distill merge` reads its shards).
    """

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        self._load(read_only)
        self._file = None  # opened on the first append, so an empty log leaves no file

    def _load(self, read_only: bool) -> None:
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read {self.path}: {err.strerror}") from None
        whole = data.rfind(b"\n") + 1  # a last line without its newline is torn
        bad = []
        for number, line in enumerate(data[:whole].split(b"\n")[:-1], start=1):
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise ValueError("not a record")
            except (ValueError, RecursionError):
                if line.strip():
                    bad.append(number)
                continue
            self.rows[row["id"]] = row
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            print(f"warning: {self.path}: line {bad[0]}{more} cannot be read and is skipped; its item will be done "
                  "again from the cache", file=sys.stderr)
        self.skipped = len(bad)
        if whole != len(data) and not read_only:
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(whole)
            except OSError as err:
                raise write_error(err, self.path) from None

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self.rows.get(item_id)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
        except OSError as err:
            self.close()  # a half-written line is a torn tail, cut off on the next open
            raise write_error(err, self.path) from None
        self.rows[row["id"]] = row

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the data was flushed line by line; a failed close loses nothing
            self._file = None
