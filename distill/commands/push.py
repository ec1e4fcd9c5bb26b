import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--repo-id", required=True, help="Dataset repository, org/name (created if needed).")
@click.option("--private", is_flag=True, default=False, help="Create the repository as private.")
@click.option("--revision", help="Branch to push to (created if needed).  [default: main]")
def push(run_dir: str, repo_id: str, private: bool, revision: str | None) -> None:
    """Upload a run's dataset (its card and parquet shards) to the Hugging Face Hub.

    The token comes from HF_TOKEN or `hf auth login`; it is never taken as a flag.
    """
    from distill.hub import push_run

    url = push_run(run_dir, repo_id, private=private, revision=revision)
    click.echo(f"pushed {run_dir} to {url}")
