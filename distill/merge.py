"""`distill merge`: join the runs of one command sharded over machines (`--shard K/N`).

The shards' records and request caches go into one new run directory, as if one process
had done every item; then the pipeline writes the dataset from those records
(`--export-only`: no backend, no request). The merged run is an ordinary run: the same
command on it (without --shard) resumes it.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from distill.config import stored_settings, validate_config
from distill.errors import ConfigError, DistillError
from distill.run import CACHE, CONFIG, FAILED, RECORDS, STATS, RecordLog, claim, write_atomic

# The commands whose runs can be sharded: their pipeline module and config class.
SHARDABLE = {
    "generate completions": ("completions", "CompletionsConfig"),
    "generate ultrachat": ("ultrachat", "UltraChatConfig"),
    "generate camel": ("camel", "CamelConfig"),
    "rate ultrafeedback": ("ultrafeedback", "UltraFeedbackConfig"),
}


def _read_config(run: Path) -> dict[str, Any]:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{run} is not a distill run (no {CONFIG})")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise ConfigError(f"{path} is unreadable: is {run} a shard of a distill run?") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not the config of a distill run")
    return config


def _check_cache(run: Path) -> None:
    """A shard's cache must be readable before anything is merged (it is opened read-only)."""
    path = Path(run) / CACHE
    if not path.is_file():
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            db.execute("SELECT COUNT(*) FROM responses").fetchone()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise ConfigError(f"{path} is damaged ({err}): run that shard again with --fresh, or move its cache away and "
                          "run it again, then merge") from None


def _shard_stats(run: Path) -> dict[str, Any]:
    path = Path(run) / STATS
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        raise ConfigError(f"{path} is unreadable: run that shard again (it resumes) to write it anew, then merge") from None
    return data if isinstance(data, dict) else {}


def check_shards(runs: list[Path]) -> tuple[str, dict[str, Any]]:
    """The command and settings the shards share; an error if they are not one sharded run."""
    configs = [_read_config(run) for run in runs]
    command = configs[0].get("command")
    if command not in SHARDABLE:
        raise ConfigError(f"{runs[0]} is a run of {command!r}, which cannot be sharded")
    module, name = SHARDABLE[command]
    config_class = getattr(importlib.import_module(f"distill.pipelines.{module}"), name)
    ignored = set(config_class.RUNTIME_KEYS) | {"shard", "output", "command"}
    first = {k: v for k, v in configs[0].items() if k not in ignored}
    seen: dict[int, Path] = {}
    total = None
    for run, config in zip(runs, configs):
        if config.get("command") != command:
            raise ConfigError(f"{run} is a run of {config.get('command')!r}, not {command!r}")
        shard = config.get("shard")
        if not shard:
            raise ConfigError(f"{run} is not a shard (it was run without --shard K/N)")
        try:
            k, n = map(int, str(shard).split("/"))
        except ValueError:
            raise ConfigError(f"{run} names its shard {shard!r}, not K/N") from None
        if total not in (None, n):
            raise ConfigError(f"{run} is shard {shard}, but another run was split into {total}")
        total = n
        if k in seen:
            raise ConfigError(f"{run} and {seen[k]} are both shard {shard}")
        seen[k] = run
        mine = {key: v for key, v in config.items() if key not in ignored}
        changed = sorted(key for key in set(first) | set(mine) if first.get(key) != mine.get(key))
        if changed:
            raise ConfigError(f"{run} was run with other settings than {runs[0]} ({changed[0]})")
    for run in runs:  # everything the merge will read, readable before anything is written
        _check_cache(run)
        _shard_stats(run)
    missing = sorted(set(range(total)) - set(seen))
    if missing:
        raise ConfigError(f"shard {missing[0]}/{total} is missing: give the run directories of all {total} shards")
    return command, configs[0]


def _merge_caches(out: Path, runs: list[Path]) -> None:
    from distill.cache import RequestCache

    RequestCache(out / CACHE).close()  # creates the table
    db = sqlite3.connect(out / CACHE)
    try:
        for run in runs:
            if (run / CACHE).is_file():
                db.execute("ATTACH DATABASE ? AS shard", (str(run / CACHE),))
                db.execute("INSERT OR IGNORE INTO responses SELECT * FROM shard.responses")
                if db.execute("SELECT 1 FROM shard.sqlite_master WHERE name = 'charges'").fetchone():
                    db.execute("INSERT INTO charges SELECT * FROM shard.charges")
                db.commit()
                db.execute("DETACH DATABASE shard")
    finally:
        db.close()


def _merge_logs(out: Path, runs: list[Path], name: str) -> None:
    merged = RecordLog(out / name)
    try:
        for run in runs:
            for row in RecordLog(run / name, read_only=True):
                if row["id"] not in merged:
                    merged.append(row)
    finally:
        merged.close()


def _merged_stats(command: str, runs: list[Path]) -> dict[str, Any]:
    shards = [_shard_stats(run) for run in runs]
    tokens = {kind: sum(s.get("tokens", {}).get(kind, 0) for s in shards) for kind in ("prompt", "completion", "total")}
    costs = [s.get("cost_usd") for s in shards]
    return {
        "command": command,
        "backend": shards[0].get("backend"),
        "models": list(dict.fromkeys(m for s in shards for m in s.get("models", []))),
        "tokens": tokens,
        "cost_usd": None if None in costs else round(sum(costs), 6),
        "merged_from": [str(run) for run in runs],
    }


def merge(runs: list[Path], out: Path):
    """Join the shards into `out` and write its dataset. Returns the pipeline's Outcome."""
    runs = [Path(run) for run in runs]
    out = Path(out)
    command, stored = check_shards(runs)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output directory {out} is not empty; choose a new -o")
    module, name = SHARDABLE[command]
    pipeline = importlib.import_module(f"distill.pipelines.{module}")
    settings = stored_settings(stored)
    config = validate_config(getattr(pipeline, name), {**settings, "output": out, "shard": None, "export_only": True})
    claim(out)
    write_atomic(out / CONFIG, yaml.safe_dump({"command": command, **config.model_dump(mode="json", exclude={"fresh", "export_only"})},
                                              sort_keys=False, allow_unicode=True))
    _merge_caches(out, runs)
    _merge_logs(out, runs, RECORDS)
    _merge_logs(out, runs, FAILED)
    write_atomic(out / STATS, json.dumps(_merged_stats(command, runs), indent=2) + "\n")
    try:
        return pipeline.run(config)
    except DistillError as err:
        raise DistillError(f"merged into {out}, but the dataset was not written: {err}") from None
