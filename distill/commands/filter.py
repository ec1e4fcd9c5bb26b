import click

from distill.cli import LazyGroup


@click.group(cls=LazyGroup, lazy_subcommands={
    "dedup": "distill.commands.filter:dedup",
    "decontaminate": "distill.commands.filter:decontaminate",
    "run": "distill.commands.filter:run",
})
def filter() -> None:  # noqa: A001 - the command is `distill filter`
    """Clean a dataset: near-duplicates, benchmark contamination, quality.

    Every split goes through the filters; the output (-o) holds the kept rows in the same
    splits and a `removed` config with each dropped row, the filter and the reason.
    """


def _common(command):
    command = click.option("-o", "--output", required=True, type=click.Path(), help="Output directory.")(command)
    command = click.option("--subset", help="Config of the input (e.g. completions).")(command)
    return click.argument("source")(command)


def _one_filter(name: str, help: str) -> click.Command:
    """`distill filter NAME`: one filter, its options the fields of its class (filters/)."""
    from distill.cli_options import config_options
    from distill.filters.pipeline import FILTERS

    def callback(source, output, subset, **options):
        given = {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()
                 if value is not None and value != ()}
        _run(source, output, subset, {name: given})

    return _common(click.Command(name, params=config_options(FILTERS[name]), callback=callback, help=help))


dedup = _one_filter("dedup", "MinHash near-duplicate removal: the first row of each cluster (input order) is kept.")
decontaminate = _one_filter("decontaminate", "Drop rows whose prompt overlaps an evaluation set (MT-Bench, AlpacaEval, "
                                             "...): by default prompt, instruction, or the user turns of messages.")


@click.command()
@_common
@click.option("--config", "config_file", required=True, type=click.Path(), help="YAML list of filters, run in order.")
def run(source, output, subset, config_file):
    """Run the filters of a YAML file in order (dedup, decontaminate, length, blocklist,
    refusal, degenerate, repetition, rouge)."""
    from distill.filters.pipeline import filter_dataset, read_plan

    _report(filter_dataset(source, read_plan(config_file), output, subset), output)


def _run(source, output, subset, entry):
    from distill.config import validate_config
    from distill.filters.pipeline import FILTERS, FilterFile, filter_dataset

    (name, options), = entry.items()
    validate_config(FILTERS[name], options)  # a bad value is named by its flag
    plan = validate_config(FilterFile, {"filters": [entry]})
    _report(filter_dataset(source, plan, output, subset), output)


def _report(counts, output):
    removed = ", ".join(f"{c['name']} {c['removed']}" for c in counts)
    click.echo(f"done: removed {removed}; kept rows in {output}/data/, removed ones in {output}/removed/")
