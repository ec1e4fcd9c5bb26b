"""The closing lines of a generating command."""

import click


def report(outcome, what: str, next_step: str | None = None) -> None:
    """What was made, the rows written per split, what post-processing dropped and why, and
    the next step."""
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
