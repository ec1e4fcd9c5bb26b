"""Options every generating command shares: backend, client limits, run directory.

Defaults live in the pydantic config (distill.config), not here, so a value from
--config is only overridden by a flag the user actually typed.
"""

from __future__ import annotations

from pathlib import Path

import click

BACKENDS = ["llamacpp", "openai", "vllm", "fake"]

_ENGINE_OPTIONS = [
    click.option("-o", "--output", type=click.Path(path_type=Path), help="Run directory. The same command on it resumes."),
    click.option("--fresh", is_flag=True, default=False, help="Delete the run in --output and start over."),
    click.option("--config", type=click.Path(path_type=Path), help="YAML file of options (keys as flag names); flags override it."),
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        help="llamacpp: embedded CPU model, for demos and tests (default when no endpoint is set); "
        "openai: any OpenAI-compatible server; vllm: in-process on GPUs; fake: no model, replies shaped as each prompt asks (offline dry runs).",
    ),
    click.option("--model", help="Model name; for llamacpp a .gguf path (default: the embedded Gemma 3 270M base model)."),
    click.option("--base-url", multiple=True, help="OpenAI-compatible endpoint; repeat to spread requests over several."),
    click.option("--api-key-env", help="Environment variable holding the API key.  [default: OPENAI_API_KEY]"),
    click.option("--tensor-parallel-size", type=int, help="vllm: GPUs per model.  [default: 1]"),
    click.option("--n-ctx", type=int, help="llamacpp: context length.  [default: 4096]"),
    click.option("--n-threads", type=int, help="llamacpp: CPU threads.  [default: all]"),
    click.option("--concurrency", type=int, help="Requests in flight at once.  [default: 64]"),
    click.option("--rpm", type=float, help="Requests-per-minute limit."),
    click.option("--tpm", type=float, help="Tokens-per-minute limit."),
    click.option("--max-retries", type=int, help="Retries on 429, 5xx, timeouts and dropped connections.  [default: 6]"),
    click.option("--timeout", type=float, help="Seconds before a request times out; a server's Retry-After is honoured "
                 "up to this long, and at most 600 s.  [default: 600]"),
    click.option("--max-cost-usd", type=float, help="Stop cleanly before spending more than this."),
    click.option("--max-tokens", type=int, help="Stop cleanly before using more tokens than this (prompt + completion)."),
    click.option("--prices", type=click.Path(path_type=Path), help="YAML price table that extends the built-in one."),
    click.option("--batch-api", is_flag=True, default=None, help="openai: send requests through the provider's Batch API "
                 "(cheaper, answered within a day); up to 10,000 requests are gathered at once."),
    click.option("--batch-window", type=float, help="Seconds a batch gathers requests before it is sent.  [default: 10]"),
    click.option("--batch-poll", type=float, help="Seconds between looks at a running batch.  [default: 30]"),
    click.option("--seed", type=int, help="Seed from which all randomness derives.  [default: 0]"),
    click.option("--shard", help="K/N: do items K, K+N, K+2N, ... only (one of N machines); `distill merge` joins the runs."),
    click.option("--export-only", is_flag=True, default=None, help="Write the dataset from the run's records; ask nothing."),
    click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bar."),
    click.option("--test-size", type=float, help="Seeded test split: a fraction (<1) or a number of prompts."),
    click.option("--format", type=click.Choice(["parquet", "jsonl"]), help="jsonl also writes JSON Lines beside the parquet shards."),
]

_INPUT_OPTIONS = [
    click.option("--input", "input", help="A .jsonl/.json/.parquet/.csv/.txt file, a saved dataset, a run directory or a Hub id."),
    click.option("--split", help="Split to read.  [default: train, train_sft or train_prefs]"),
    click.option("--subset", help="Hub dataset config name."),
    click.option("--revision", help="Hub dataset revision."),
    click.option("--column-map", multiple=True, help="Rename an input column, OLD=NEW; repeatable."),
    click.option("-n", "--limit", type=int, help="Take only the first N rows."),
    click.option("--shuffle", is_flag=True, default=False, help="Shuffle the rows (seeded) before --limit."),
]


def engine_options(command):
    for option in reversed(_ENGINE_OPTIONS):
        command = option(command)
    return command


def input_options(command):
    for option in reversed(_INPUT_OPTIONS):
        command = option(command)
    return command


def run_pipeline(ctx: click.Context, module: str, config_class: str, what: str, next_step: str) -> None:
    """The body of a generating command: its config (the --config YAML, then the flags the
    user typed), its pipeline `distill.pipelines.<module>.run`, the closing lines.
    `next_step` says what to do with the data, `{out}` standing for the run directory."""
    import importlib

    from distill.config import resolve_config

    pipeline = importlib.import_module(f"distill.pipelines.{module}")
    config = resolve_config(getattr(pipeline, config_class), ctx, ctx.params.get("config"))
    report(pipeline.run(config), what, next_step.format(out=config.output))


def report(outcome, what: str, next_step: str | None = None) -> None:
    """The closing lines of a generating command: what was made, the rows written per split,
    what post-processing dropped and why, and the next step."""
    exported = outcome.export
    splits = ", ".join(f"{split} {rows:,}" for split, rows in exported.rows.items())
    parts = [f"{outcome.done:,} {what}", f"{sum(exported.rows.values()):,} rows written to {exported.path}/data/ ({splits})"]
    if exported.dropped:
        reasons = ", ".join(f"{reason} {rows:,}" for reason, rows in exported.dropped.items())
        parts.append(f"{sum(exported.dropped.values()):,} dropped ({reasons})")
    if outcome.failed:
        parts.append(f"{outcome.failed:,} rejected by the backend, listed in failed.jsonl")
    click.echo("done: " + "; ".join(parts))
    if next_step:
        click.echo(f"next: {next_step}")
