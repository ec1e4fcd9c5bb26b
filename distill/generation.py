"""Wires a generating command together: run directory, backend, cache, client, runner, stats.

A command supplies its items, a `make_work(client)` factory giving the coroutine for one
item, and a `build(records)` that turns the finished records into the dataset's configs
(and what its filters removed). Everything else is here, once: the run directory, the
backends and their routes, prices and budget, the client, the runner, stats, the export
and the card.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from distill.accounting import FREE, Ledger, Price, load_prices, price_for
from distill.backends import choose_backend, route
from distill.backends.router import ModelSpec, parse_model_spec
from distill.cache import RequestCache
from distill.card import MethodCard, public_input, public_value, render_card
from distill.client import Client, RetryPolicy
from distill.config import PLAN_DIGESTS, EngineConfig
from distill.errors import DistillError, StoppedEarly
from distill.export import Built, DatasetConfig, dataset_rows, write_configs, write_reports
from distill.items import INPUT_HASH, Outcome, current, run_items
from distill.progress import Progress
from distill.ratelimit import RateLimiter
from distill.run_dir import RecordLog, RunDir, own, read_mark, write_atomic

Work = Callable[[str, Any], Awaitable[dict[str, Any]]]
if TYPE_CHECKING:
    from distill.methods import GenerationMethod
BATCH_DISCOUNT = 0.5  # OpenAI's price for batched requests, relative to direct ones


def execute(
    method: GenerationMethod,
    config: EngineConfig,
    items: list[tuple[str, Any]],
    make_work: Callable[[Client], Work],
    build: Callable[[list[dict[str, Any]]], Built],
    models: list[ModelSpec | str | None] | None = None,
) -> Outcome:
    """Generate every item (resuming what is done), then export the dataset `build` makes
    from the records, with its card, into the run directory.

    `models` are the models the pipeline asks, as names or specs of where they live
    (None: the backend's own model); they set the routes, the prices and the card.
    """
    shard = config.shard_of()
    if shard:
        k, n = shard
        items = [item for index, item in enumerate(items) if index % n == k]
    command = method.command
    if config.export_only:
        return export_only(command, config, items, build, method.card)
    # Everything that can refuse the options comes before the run directory is touched.
    backend, backend_name, run_models, prices, ledger = prepare(config, models)
    try:
        run = RunDir.open(command, config)
    except BaseException:
        asyncio.run(backend.aclose())
        raise
    try:
        try:
            cache = RequestCache(run.cache_path)
        except BaseException:
            asyncio.run(backend.aclose())
            raise
        client = make_client(config, backend, cache, ledger, Progress(enabled=not config.quiet, description=command))
        records, failures = run.records(), run.failures()
        started = time.monotonic()

        async def generate() -> Outcome:
            try:
                window = 2 * config.requests_in_flight()
                return await run_items(items, make_work(client), records, failures, client.progress, window)
            finally:
                await backend.aclose()

        ended_by: str | None = None
        try:
            outcome = _run(generate)
            if ledger.reached:  # said with the spend at the end, in-flight requests included
                outcome.stopped = ledger.stop_message()
            ended_by = outcome.stopped
        except DistillError as err:
            ended_by = str(err)
            raise
        finally:
            try:
                _write_run_stats(run, command, backend_name, run_models, prices, cache, records, failures, items,
                                 ended_by, started, client)
            except DistillError:
                pass  # a full disk: the stats are rebuilt from the cache by the next session
            cache.close()
            records.close()
            failures.close()
        if outcome.stopped:
            raise StoppedEarly(
                f"stopped: {outcome.stopped}; {outcome.done} of {outcome.total} done, kept in {run.path} (the same command resumes)"
            )
        finished = _finished(records, items)
        outcome.export = export(run, build(finished), config, method.card, [public_input(m) for m in run_models])
        return outcome
    finally:
        run.close()


def prepare(config: EngineConfig, models: list[ModelSpec | str | None] | None = None):
    """The run's backend (a Router when models live elsewhere), its name, the models asked,
    their prices and the ledger: every check of the backends, models, prices and budget a
    run makes before its first request. The caller closes the backend."""
    backend_name = choose_backend(config)
    specs = [parse_model_spec(m) if m else None for m in (models or [None])]
    backend, kinds = route(config, [s for s in specs if s])
    try:
        run_models = list(dict.fromkeys(s.model if s else backend.model_id() for s in specs))
        kinds.setdefault(backend.model_id(), backend_name)
        table = load_prices(config.prices)
        prices: dict[str, Price | None] = {m: price_for(m, table) if kinds[m] == "openai" else FREE for m in run_models}
        if config.batch_api:  # the Batch API costs half the price of direct calls
            prices = {m: p.discounted(BATCH_DISCOUNT) if p else p for m, p in prices.items()}
        ledger = Ledger(prices, config.max_cost_usd, config.max_tokens)
    except BaseException:
        asyncio.run(backend.aclose())
        raise
    return backend, backend_name, run_models, prices, ledger


def make_client(config: EngineConfig, backend, cache: RequestCache, ledger: Ledger, progress: Progress) -> Client:
    """The client of a run: the config's limits and retries over the backend and the cache.
    The ledger counts what the cache records as already spent: the budget holds for the run
    (every session), not one invocation."""
    ledger.add_earlier(cache.usage_by_model())
    return Client(
        backend,
        cache,
        concurrency=config.requests_in_flight(),
        limiter=RateLimiter(config.rpm, config.tpm),
        ledger=ledger,
        retry=RetryPolicy(max_retries=config.max_retries, max_retry_after=config.max_retry_after()),
        progress=progress,
    )


def check(config: EngineConfig, models: list[ModelSpec | str | None] | None = None) -> None:
    """What a run checks before it starts, for a dry run: backends made (a model loaded, a key
    looked up) and closed again, prices and budget, the output folder; nothing is written."""
    RunDir.check_path(config.output)
    backend = prepare(config, models)[0]
    asyncio.run(backend.aclose())


def _write_run_stats(run: RunDir, command: str, backend_name: str, run_models: list[str], prices, cache: RequestCache,
                     records: RecordLog, failures: RecordLog, items, ended_by: str | None, started: float,
                     client: Client) -> None:
    usage = cache.usage_by_model()  # every session, killed ones too, and charged timeouts
    prompt_tokens = sum(p for p, _ in usage.values())
    completion_tokens = sum(c for _, c in usage.values())
    costs = [prices.get(m) for m in usage]
    run.write_stats({
        "command": command,
        "backend": backend_name,
        "models": run_models,
        "items": {"done": len(current(records, items)), "total": len(items), "failed": len(current(failures, items))},
        "stopped": ended_by,
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens, "total": prompt_tokens + completion_tokens},
        "cost_usd": None if None in costs else round(sum(p.cost(*usage[m]) for m, p in zip(usage, costs)), 6),
        "last_session": {"elapsed_s": round(time.monotonic() - started, 3), **client.stats.to_dict()},
    })


def _finished(records: RecordLog, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The current records of this run's items, in item order, without the engine's own fields.
    (An earlier session may have done more items, for a larger -n, or other content.)"""
    found = current(records, items)
    rows = [{k: v for k, v in found[item_id].items() if k != INPUT_HASH} for item_id, _ in items if item_id in found]
    return sorted(rows, key=lambda r: _order(r["id"]))


def export_only(command: str, config: EngineConfig, items: list[tuple[str, Any]],
                build: Callable[[list[dict[str, Any]]], Built], card: MethodCard) -> Outcome:
    """Write the dataset from the run's records (after `distill merge`, or to re-export with
    another --test-size or --format); no backend, no request."""
    if RunDir(config.output).stored_config() is None:
        raise DistillError(f"{config.output} holds no run to export")
    run = RunDir.open(command, config)
    try:
        records, failures = run.records(), run.failures()
        finished = _finished(records, items)
        failed = len(current(failures, items))
        missing = len(items) - len(finished) - failed
        records.close()
        failures.close()
        if missing:
            raise DistillError(f"{missing} of {len(items)} items of {run.path} are not generated yet: "
                               "run the command without --export-only to finish them")
        models = run.read_stats().get("models") or []
        outcome = Outcome(total=len(items), done=len(finished), failed=failed)
        outcome.export = export(run, build(finished), config, card, [public_input(m) for m in models])
        return outcome
    finally:
        run.close()


class Interrupted(StoppedEarly):
    exit_code = 130


def _run(generate: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run to completion; Ctrl-C or SIGTERM cancel cleanly, keeping every finished response."""

    async def main() -> Outcome:
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        try:
            return await generate()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # remove_signal_handler restores the default: not ours

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted("interrupted: every finished response is kept; run the same command again to resume") from None


@dataclass
class Exported:
    """What an export wrote: rows per split of the dataset, and what post-processing dropped."""

    path: Path
    rows: dict[str, int]  # split -> rows of the default config
    dropped: dict[str, int]  # reason -> rows


def export(run: RunDir, built: Built, config: EngineConfig, method: MethodCard, models: list[str]) -> Exported:
    """Write the dataset in the Hub layout and its card; record splits and filters in the stats.

    When no row survived post-processing, the companion configs (what was paid for, such as
    every completion and the judge's raw replies) are still written, then it is an error."""
    stats = run.read_stats()
    stats["filters"] = built.filters
    if built.notes:
        stats["postprocess"] = built.notes
    empty = not any(built.configs[0].splits.values())
    # Empty splits are left out (datasets cannot load one), and configs left with none.
    configs = [DatasetConfig(c.name, c.features, {s: rows for s, rows in c.splits.items() if rows}) for c in built.configs]
    configs = [c for c in configs if c.splits]
    if not configs:
        run.write_stats(stats)
        raise DistillError(f"no row survived post-processing, nothing to export: see {run.path / 'stats.json'}")
    earlier = (read_mark(run.path) or {}).get("folders", [])
    written = write_configs(run.path, configs, jsonl=config.format == "jsonl", stale=earlier)
    own(run.path, [c.folder for c in configs])
    stats["splits"] = {f"{w.config}/{w.split}": w.rows for w in written}
    run.write_stats(stats)
    settings = card_settings(config, models)
    notes = list(built.card_notes)
    if config.test_size:
        share = f"{config.test_size:.0%} of the prompts" if config.test_size < 1 else f"{config.test_size:g} prompts"
        notes.append(f"The test splits hold {share}, drawn with the seed; all rows of a prompt stay on one side.")
    card = render_card(method, configs, written, settings, stats, models, notes, local_path=shown_path(run.path))
    write_atomic(run.path / "README.md", card)
    write_reports(run.path, built.reports)
    if empty:
        kept = ", ".join(f"{c.folder}/" for c in configs)
        raise DistillError(f"no row of the dataset survived post-processing (see {run.path / 'stats.json'}); "
                           f"what was generated is written in {run.path}/{kept}")
    return Exported(run.path, dataset_rows(configs, written),  # the closing line counts the data, not gen/
                    {f["name"]: f["removed"] for f in built.filters if f.get("removed")})


def shown_path(path: Path) -> str:
    """A run's folder as a card may show it: the relative path the user gave, else its name."""
    return str(path) if not path.is_absolute() and ".." not in path.parts else path.name


def card_settings(config: EngineConfig, models: list[str]) -> dict[str, Any]:
    """What the card says about how the data was made: no secret, no local path, no endpoint."""
    settings: dict[str, Any] = {"backend": choose_backend(config), "model": ", ".join(models)}
    for key, value in config.identity().items():
        if key in ("backend", "model", "column_map", PLAN_DIGESTS) or value is None or value is False or value in ([], {}, ""):
            continue
        settings[key] = public_value(value)
    return settings


def _order(item_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in item_id.split(":"))
