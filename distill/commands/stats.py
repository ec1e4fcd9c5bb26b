import click


@click.command()
@click.argument("source")
@click.option("--split", help="Only this split.  [default: every split]")
@click.option("--subset", help="Hub dataset config name, or a companion config folder of a run directory.")
@click.option("--revision", help="Hub dataset revision.")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the statistics as JSON, not tables.")
def stats(source: str, split: str | None, subset: str | None, revision: str | None, as_json: bool) -> None:
    """Describe a dataset: rows per split, turns, prompt and response lengths (in words),
    preference scores and margins, and what a run's filters removed.

    SOURCE is a run directory, a dataset saved by `datasets`, a .jsonl/.json/.parquet/.csv
    file or a Hub dataset id.
    """
    import json

    from distill.stats import describe_source, print_tables

    result = describe_source(source, split, subset, revision)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_tables(result)
