import click


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="New run directory for the joined run.")
def merge(runs, output):
    """Join the run directories of one command run in shards (--shard K/N on N machines)
    into one run, and write its dataset. Every shard must be finished; inputs the command
    reads (--input, --materials, role files) must be at the paths the shards used."""
    from pathlib import Path

    from distill.commands.report import report
    from distill.merge import merge as merge_runs

    outcome = merge_runs([Path(r) for r in runs], Path(output))
    report(outcome, f"items joined from {len(runs)} shards")
