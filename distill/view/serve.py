"""`distill view --serve PORT`: the page, and only the page, on http://127.0.0.1:PORT/ until Ctrl-C.

For a page on another machine (a GPU box reached over ssh -L), or a browser that will not open file:// pages.
Loopback only: the run folder beside the page (its cache, its config) is never served.
"""

from __future__ import annotations

import shutil
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from distill.errors import ConfigError

HOST = "127.0.0.1"


class PageHandler(BaseHTTPRequestHandler):
    def __init__(self, *args, page: Path, **kwargs):
        self.page = page
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        if self.path.split("?", 1)[0] not in ("/", "/" + self.page.name):
            self.send_error(404, "only the page is served here")
            return
        try:
            with open(self.page, "rb") as page:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(self.page.stat().st_size))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if send_body:
                    shutil.copyfileobj(page, self.wfile)
        except OSError:
            self.send_error(500, "the page cannot be read")  # (the client may also have gone: nothing to do)

    def log_message(self, format: str, *args) -> None:  # the terminal shows the one line below, not each request
        pass


def serve_page(page: Path, port: int, open_page: bool) -> None:
    try:
        server = ThreadingHTTPServer((HOST, port), partial(PageHandler, page=Path(page).resolve()))
    except OSError as err:
        raise ConfigError(f"cannot serve on {HOST}:{port}: {err.strerror}") from None
    url = f"http://{HOST}:{server.server_address[1]}/"
    click.echo(f"serving {url} (Ctrl-C to stop)")
    if open_page:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
