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


@click.command()
@_common
@click.option("--column", default="messages", show_default=True, help="Text to compare; a chat's user and assistant turns are joined.")
@click.option("--roles", default="user,assistant", show_default=True, help="Which turns of a chat count.")
@click.option("--threshold", default=0.7, show_default=True, type=float, help="Jaccard similarity at which rows are near-duplicates.")
@click.option("--num-perm", default=128, show_default=True, type=int, help="MinHash permutations.")
@click.option("--ngram", default=5, show_default=True, type=int, help="Words per shingle.")
def dedup(source, output, subset, column, roles, threshold, num_perm, ngram):
    """MinHash near-duplicate removal: the first row of each cluster (input order) is kept."""
    _run(source, output, subset, column, {"dedup": {"threshold": threshold, "num_perm": num_perm, "ngram": ngram,
                                                    "roles": roles.split(",")}})


@click.command()
@_common
@click.option("--against", multiple=True, required=True, help="Benchmark prompts: a file, saved dataset or Hub id; repeatable.")
@click.option("--column", help="The row's prompt.  [default: prompt, instruction, or the user turns of messages]")
@click.option("--method", type=click.Choice(["ngram", "minhash"]), default="ngram", show_default=True)
@click.option("--ngram", default=13, show_default=True, type=int, help="Words of an overlap that counts.")
@click.option("--threshold", default=0.8, show_default=True, type=float, help="MinHash similarity that counts (--method minhash).")
def decontaminate(source, output, subset, against, column, method, ngram, threshold):
    """Drop rows whose prompt overlaps an evaluation set (MT-Bench, AlpacaEval, ...)."""
    _run(source, output, subset, "messages", {"decontaminate": {"against": list(against), "column": column, "method": method,
                                                                "ngram": ngram, "threshold": threshold}})


@click.command()
@_common
@click.option("--config", "config_file", required=True, type=click.Path(), help="YAML list of filters, run in order.")
def run(source, output, subset, config_file):
    """Run the filters of a YAML file in order (dedup, decontaminate, length, blocklist,
    refusal, degenerate, repetition, rouge)."""
    from distill.filters.pipeline import filter_dataset, read_plan

    _report(filter_dataset(source, read_plan(config_file), output, subset), output)


def _run(source, output, subset, column, entry):
    from distill.config import validate_config
    from distill.filters.pipeline import SPECS, FilterFile, filter_dataset

    (name, options), = entry.items()
    validate_config(SPECS[name], options)  # a bad value is named by its flag
    plan = validate_config(FilterFile, {"column": column, "filters": [entry]})
    _report(filter_dataset(source, plan, output, subset), output)


def _report(counts, output):
    removed = ", ".join(f"{c['name']} {c['removed']}" for c in counts)
    click.echo(f"done: removed {removed}; kept rows in {output}/data/, removed ones in {output}/removed/")
