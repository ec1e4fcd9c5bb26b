import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--score", help="mean, overall or an aspect (instruction_following, honesty, truthfulness, helpfulness).")
@click.option("--rejected", type=click.Choice(["random", "lowest"]))
@click.option("--keep-ties/--drop-ties", default=None)
@click.option("--test-size", type=float)
@click.option("--format", type=click.Choice(["parquet", "jsonl"]))
def binarize(run_dir: str, **changes) -> None:
    """Binarize the ratings of a `distill rate ultrafeedback` run again with other options,
    without calling any model. Options not given keep the run's values.
    """
    from distill.pipelines.ultrafeedback import rebinarize

    built = rebinarize(run_dir, **changes)
    pairs = sum(len(rows) for split, rows in built.configs[0].splits.items() if split.endswith("_prefs"))
    click.echo(f"done: {pairs} preference pairs in {run_dir}/data/")
