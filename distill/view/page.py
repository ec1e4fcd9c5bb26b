"""A Report (see distill.view) -> one self-contained HTML file, written as a stream.

The page holds: the report as JSON (samples' rows swapped for chunk ids), every run's sample rows in gzip+base64
chunks of CHUNK rows (inert `application/octet-stream` script elements, decoded by the page only when needed),
the vendored Chart.js and markdown-it and the page's own view.js/view.css. Its Content-Security-Policy runs only
the scripts carrying this page's nonce and lets nothing be fetched.
"""

import base64
import gzip
import html
import json
import math
import os
import secrets
from contextlib import suppress
from itertools import islice
from pathlib import Path

from distill.errors import write_error
from distill.view.output import GENERATOR

CHUNK = 200  # sample rows per chunk: what one page of samples decodes, and the step of a search's progress
ASSETS = Path(__file__).with_name("assets")
# Inlined in this order (view.js last: it uses the globals `Chart` and `markdownit`); versions as THIRD_PARTY.md.
SCRIPTS = (("chart.umd.min.js", "Chart.js 4.6.1, MIT License"),
           ("markdown-it.min.js", "markdown-it 15.0.3, MIT License"),
           ("view.js", "distill view"))


def write_page(report: dict, path: Path) -> int:
    """Write `report` as one HTML page at `path` (via path.tmp, then a rename); returns the bytes written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    nonce = secrets.token_urlsafe(18)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.write(_head(report, nonce))
            runs = [_write_run(out, index, run) for index, run in enumerate(report["runs"])]
            out.write(_json_script("distill-report", {**report, "runs": runs}))
            out.writelines(f'<!-- {notice} -->\n<script nonce="{nonce}">\n{_asset(name)}\n</script>\n'
                           for name, notice in SCRIPTS)
            out.write("</body>\n</html>\n")
        os.replace(tmp, path)
        return path.stat().st_size
    except OSError as err:
        raise write_error(err, path) from None
    finally:  # a page cut short (an error, ^C) leaves no half-written file behind
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def _head(report: dict, nonce: str) -> str:
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    title, source = html.escape(str(report.get("title", ""))), html.escape(str(report.get("source", "")))
    return ('<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'{GENERATOR}\n'
            f'<title>{title}</title>\n<link rel="icon" href="data:,">\n'
            f"<style>\n{_asset('view.css')}\n</style>\n</head>\n"
            '<body data-ready="0" data-busy="1">\n'
            f'<header class="top"><h1>{title}</h1><p class="source">{source}</p>\n'
            '<nav id="distill-tabs"></nav></header>\n'
            '<main id="distill-runs"><p class="loading">Loading…</p></main>\n')


def _write_run(out, index: int, run: dict) -> dict:
    """Write the run's sample chunks; return the run as the page's JSON holds it (rows -> chunk ids)."""
    images = [{**image, "png": base64.b64encode(image["png"]).decode("ascii")} for image in run.get("images", [])]
    run = {**run, "images": images}
    samples = run.get("samples")
    if samples is None:
        return run
    rows, chunks, count = iter(samples["rows"]), [], 0
    while batch := list(islice(rows, CHUNK)):
        chunk_id = f"distill-chunk-{index}-{len(chunks)}"
        data = base64.b64encode(gzip.compress(_dumps(batch).encode("utf-8"), compresslevel=6, mtime=0))
        out.write(f'<script type="application/octet-stream" id="{chunk_id}">{data.decode("ascii")}</script>\n')
        chunks.append(chunk_id)
        count += len(batch)
    index_only = {key: value for key, value in samples.items() if key != "rows"}
    run["samples"] = {**index_only, "count": count, "chunkSize": CHUNK, "chunks": chunks}
    return run


def _json_script(element_id: str, value) -> str:
    # No "<" may reach the element's text (it could close it: "</script>"); JSON's \u escapes keep the values.
    text = _dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>\n'


def _dumps(value) -> str:
    # JSON.parse refuses NaN and Infinity (a score column of a dataset may hold them): those become null.
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _asset(name: str) -> str:
    text = (ASSETS / name).read_text(encoding="utf-8")
    closer = "</style" if name.endswith(".css") else "</script"
    assert closer not in text.lower(), f"{name} contains {closer}: it would end its element early"
    return text
