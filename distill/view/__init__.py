"""`distill view`: one self-contained HTML page to look at a run (or a dataset, or a folder of runs).

    collect.py     a source (run directory, dataset, folder of runs) -> a Report (plain dicts, below)
    samples.py     one row of each kind (dialogue, pair, instruction, removed, failed, eval) -> a Sample
    charts.py      the plots' data, binned here in Python
    page.py        a Report -> the HTML file: the vendored JS inlined, samples in gzip chunks
    assets/        the page's own JS and CSS, and the vendored Chart.js and markdown-it

The Report: what collect.py hands to page.py (JSON-able, all text untrusted)

    report  = {"title": str, "source": str, "runs": [run, ...]}
    run     = {"id": "r0", "name": str, "kind": str,            # kind: the command that made it, or "dataset"
               "overview": [table, ...],                         # rows per split, tokens and cost, filters, settings
               "notes": [str, ...],                              # plain lines shown under the overview
               "charts": [chart, ...],
               "results": [{"title": str, "markdown": str}],    # an eval's results.md, a recipe's results.md
               "images": [{"title": str, "png": bytes}],        # an eval's charts (PNG), inlined as data: URLs
               "samples": sampleset | None}
    table   = {"title": str, "columns": [str, ...], "rows": [[str | number | None, ...], ...]}
    chart   = {"id": str, "title": str, "type": "bar" | "line", "x": str, "y": str,
               "labels": [str, ...], "series": [{"label": str, "data": [number | None, ...]}],
               "stacked": bool, "histogram": bool}              # a histogram: bin counts, its bars touching
    sampleset = {"count": int,                                   # rows, in the order `rows` yields them (the page
                                                                 # keeps the number it read)
                 "rows": iterable of sample,                    # consumed once, by page.py
                 "facets": [{"name": str, "label": str, "values": [str, ...], "codes": [int, ...]}],
                                                                 # codes[i]: index into values of row i, -1: none
                 "numbers": [{"name": str, "label": str, "values": [float | None, ...]}]}
    sample  = {"id": str, "title": str, "meta": [[str, str], ...], "blocks": [block, ...]}
    block   = {"t": "chat", "messages": [{"role": str, "content": str}]}
            | {"t": "text", "label": str, "text": str}           # Markdown, rendered safely
            | {"t": "columns", "items": [{"label": str, "blocks": [block, ...]}]}   # side by side
            | {"t": "table", "columns": [str, ...], "rows": [[str | number | None, ...], ...]}
            | {"t": "note", "tone": "info" | "warn" | "error", "text": str}
            | {"t": "link", "label": str, "run": str, "row": int}                     # jump to a row (0-based) of a run

The page opens a row from its address too: page.html#RUNID/N shows card #N (counted from 1).

Model output is untrusted: the page renders every string as text (Markdown through markdown-it with
HTML off and images off), and its Content-Security-Policy runs only the page's own scripts.
"""
