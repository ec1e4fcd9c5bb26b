import click


@click.command()
@click.argument("source")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="The page to write.  [default: SOURCE/view.html for a run, a training output or a folder of runs; "
                   "NAME.view.html in the current directory for any other dataset]")
@click.option("--open", "open_page", is_flag=True, default=False, help="Open the page in the default browser.")
@click.option("--serve", type=click.IntRange(0, 65535), metavar="PORT",
              help="Also serve the page on http://127.0.0.1:PORT/ until Ctrl-C (0: any free port).")
@click.option("--subset", help="Hub dataset config name, or a companion config folder of a run directory.")
@click.option("--revision", help="Hub dataset revision.")
def view(source: str, output: str | None, open_page: bool, serve: int | None, subset: str | None,
         revision: str | None) -> None:
    """Write one self-contained HTML page to look at a run: an overview (rows, tokens, cost, filters,
    settings), plots (turns, lengths per role, scores and margins, sectors and categories, judge ratings,
    win rates, training curves) and every sample, paged, searchable and filterable (dialogues as chat
    bubbles, preference pairs side by side with their ratings, removed rows with the filter's reason,
    failed items with their error). The page needs no network and no server; model output is shown as
    text, never run.

    SOURCE is a run directory, a `distill zephyr` folder (one tab per step), a training output, a dataset
    saved by `datasets`, a .jsonl/.json/.parquet/.csv file or a Hub dataset id.
    """
    from pathlib import Path

    from distill.view.collect import collect
    from distill.view.output import check_output, default_output, make_folder
    from distill.view.page import write_page

    target = Path(output) if output else default_output(source, subset, revision)
    check_output(target)
    report = collect(source, subset, revision)
    make_folder(target)
    size = write_page(report, target)
    samples = sum(run["samples"]["count"] for run in report["runs"] if run["samples"])
    runs = len(report["runs"])
    click.echo(f"done: wrote {target} ({size / 1e6:,.1f} MB; {samples:,} samples"
               f"{f' in {runs} tabs' if runs > 1 else ''})")
    if serve is not None:
        from distill.view.serve import serve_page

        serve_page(target, serve, open_page)
    elif open_page:
        import webbrowser

        if not webbrowser.open(target.resolve().as_uri()):
            click.echo(f"no browser found to open it: open {target.resolve().as_uri()} yourself")
