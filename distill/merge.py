"""`distill merge`: join the runs of one command sharded over machines (`--shard K/N`).

The shards' records and request caches go into one new run directory, as if one process
had done every item; then the pipeline writes the dataset from those records
(`--export-only`: no backend, no request). The merged run is an ordinary run: the same
command on it (without --shard) resumes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.cache import RequestCache
from distill.config import stored_settings, validate_config
from distill.errors import ConfigError, DistillError
from distill.run_dir import RunDir


def shardable(command: Any):
    """The declared method of a command whose runs shard, or None."""
    from distill.methods import method

    declared = method(command) if isinstance(command, str) else None
    return declared if declared is not None and declared.shards else None


def _stored(shard: RunDir) -> dict[str, Any]:
    try:
        config = shard.stored_config()
    except ConfigError:
        raise ConfigError(f"{shard.path / 'config.yaml'} is unreadable: is {shard.path} a shard of a distill run?") from None
    if config is None:
        raise ConfigError(f"{shard.path} is not a distill run (no config.yaml)")
    return config


def check_shards(shards: list[RunDir]) -> tuple[str, dict[str, Any]]:
    """The command and settings the shards share; an error if they are not one sharded run."""
    runs = [shard.path for shard in shards]
    configs = [_stored(shard) for shard in shards]
    command = configs[0].get("command")
    declared = shardable(command)
    if declared is None:
        raise ConfigError(f"{runs[0]} is a run of {command!r}, which cannot be sharded")
    ignored = set(declared.config.RUNTIME_KEYS) | {"shard", "output", "command"}
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
    for shard in shards:  # everything the merge will read, readable before anything is written
        if shard.cache_path.is_file():
            RequestCache.check(shard.cache_path)
        shard.read_stats(strict=True)
    missing = sorted(set(range(total)) - set(seen))
    if missing:
        raise ConfigError(f"shard {missing[0]}/{total} is missing: give the run directories of all {total} shards")
    return command, configs[0]


def _merged_stats(command: str, shards: list[RunDir]) -> dict[str, Any]:
    stats = [shard.read_stats(strict=True) for shard in shards]
    tokens = {kind: sum(s.get("tokens", {}).get(kind, 0) for s in stats) for kind in ("prompt", "completion", "total")}
    costs = [s.get("cost_usd") for s in stats]
    return {
        "command": command,
        "backend": stats[0].get("backend"),
        "models": list(dict.fromkeys(m for s in stats for m in s.get("models", []))),
        "tokens": tokens,
        "cost_usd": None if None in costs else round(sum(costs), 6),
        "merged_from": [str(shard.path) for shard in shards],
    }


def merge(runs: list[Path], out: Path):
    """Join the shards into `out` and write its dataset. Returns the pipeline's Outcome."""
    shards = [RunDir(run) for run in runs]
    out = Path(out)
    command, stored = check_shards(shards)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output directory {out} is not empty; choose a new -o")
    declared = shardable(command)
    config = validate_config(declared.config, {**stored_settings(stored), "output": out, "shard": None, "export_only": True})
    joined = RunDir.open(command, config)
    try:
        joined.absorb(shards)
        joined.write_stats(_merged_stats(command, shards))
    finally:
        joined.close()
    try:
        return declared.run(config)
    except DistillError as err:
        raise DistillError(f"merged into {out}, but the dataset was not written: {err}") from None
