"""distill view's page: the HTML file page.py writes from a Report, and (marked `browser`) what Chromium shows."""

import base64
import gzip
import json
import re
import struct
import zlib

import pytest
from view_browser import chromium, open_page, settled

from distill.errors import WriteFailed
from distill.view import page as page_module
from distill.view.page import CHUNK, write_page

ROWS = 1000
XSS_ROW, PAIR_ROW, LINK_ROW, LONG_ROW, NEEDLE_ROW = 2, 5, 7, 9, 937  # 0-based indexes
XSS = '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> [x](javascript:window.__pwned=1)'
CLOSER = "</script><script>alert(1)</script>"


def png_1x1() -> bytes:
    def part(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + part(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + part(b"IEND", b""))


def chat(i: int, answer: str) -> dict:
    return {"t": "chat", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": f"question {i}"},
                                      {"role": "assistant", "content": answer}]}


def side(label: str, text: str) -> dict:
    return {"label": label, "blocks": [{"t": "text", "label": "", "text": text}]}


def sample(i: int) -> dict:
    blocks = [chat(i, f"answer **{i}** with `code`")]
    if i == XSS_ROW:
        blocks = [chat(i, XSS), {"t": "text", "label": "output", "text": XSS},
                  {"t": "table", "columns": ["x"], "rows": [[XSS]]}, {"t": "note", "tone": "error", "text": XSS}]
    elif i == PAIR_ROW:
        blocks = [{"t": "columns", "items": [side("chosen", "good"), side("rejected", "bad")]}]
    elif i == LINK_ROW:
        blocks.append({"t": "link", "label": "the duplicated row", "run": "r0", "row": NEEDLE_ROW})
    elif i == LONG_ROW:
        blocks = [chat(i, "\n\n".join(f"paragraph {n} of a long answer" for n in range(60)))]
    elif i == NEEDLE_ROW:
        blocks = [chat(i, "only this row mentions Zanzibar")]
    return {"id": f"s{i}", "title": f"prompt {i}", "meta": [["split", split(i)], ["model", "m"]], "blocks": blocks}


def split(i: int) -> str | None:
    return None if i % 50 == 49 else "test" if i % 4 == 0 else "train"


def score(i: int) -> float | None:
    return None if i % 7 == 0 else float(i % 10)


def report(rows=None) -> dict:
    splits = ["train", "test"]
    r0 = {"id": "r0", "name": "generate", "kind": "ultrachat",
          "overview": [{"title": "rows", "columns": ["split", "rows", "share"],
                        "rows": [["train", 750, 0.75], ["test", None, CLOSER]]}],
          "notes": ["a note", CLOSER],
          "charts": [{"id": "turns", "title": "turns per dialogue", "type": "bar", "x": "turns", "y": "rows",
                      "histogram": True, "labels": ["1", "2", "3"], "stacked": False,
                      "series": [{"label": "rows", "data": [5, 9, 2]}]},
                     {"id": "len", "title": "lengths", "type": "line", "x": "tokens", "y": "rows",
                      "labels": ["0", "100", "200"], "stacked": False,
                      "series": [{"label": "user", "data": [1, None, 3]}, {"label": "assistant", "data": [2, 4, 1]}]},
                     {"id": "sectors", "title": "sectors", "type": "bar", "x": "", "y": "share", "labels": ["a", "b"],
                      "stacked": True,
                      "series": [{"label": "kept", "data": [3, 4]}, {"label": "removed", "data": [1, 2]}]}],
          "results": [{"title": "results.md", "markdown": "| a | b |\n|:-|-:|\n| 1 | 2 |\n\n[docs](https://example.org/x)"}],
          "images": [{"title": "a chart", "png": png_1x1()}],
          "samples": {"count": ROWS, "rows": (sample(i) for i in range(ROWS)) if rows is None else rows,
                      "facets": [{"name": "split", "label": "split", "values": splits,
                                  "codes": [-1 if split(i) is None else splits.index(split(i)) for i in range(ROWS)]}],
                      "numbers": [{"name": "score", "label": "score", "values": [score(i) for i in range(ROWS)]}]}}
    r1 = {"id": "r1", "name": "filter", "kind": "filter", "overview": [], "notes": [], "results": [], "images": [],
          "charts": [{"id": "removed", "title": "removed", "type": "bar", "x": "filter", "y": "rows",
                      "labels": ["dedup"],
                      "series": [{"label": "rows", "data": [3]}], "stacked": False}],
          "samples": {"count": 1, "rows": [{"id": "x", "title": "removed row", "meta": [], "blocks": [
              {"t": "note", "tone": "warn", "text": "near-duplicate"},
              {"t": "link", "label": "kept row", "run": "r0", "row": 599}]}], "facets": [], "numbers": []}}
    return {"title": f"run {CLOSER}", "source": "/data/run", "runs": [r0, r1]}


def embedded(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="distill-report">(.*?)</script>', html, re.DOTALL)
    return json.loads(found.group(1))


def chunk_rows(html: str, chunk_id: str) -> list:
    found = re.search(rf'<script type="application/octet-stream" id="{chunk_id}">(.*?)</script>', html, re.DOTALL)
    return json.loads(gzip.decompress(base64.b64decode(found.group(1))))


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("view") / "report.html"
    write_page(report(), path)
    return path


# ---- the file ----

def test_one_file_inlines_everything_and_runs_only_its_own_scripts(page_file, tmp_path):
    html = page_file.read_text(encoding="utf-8")
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", html).group(1)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert html.index("Content-Security-Policy") < min(html.index("<script"), html.index("<style"))
    tags = re.findall(r"<script[^>]*>", html)
    executable = [t for t in tags if "type=" not in t]
    assert executable == [f'<script nonce="{nonce}">'] * 3  # Chart.js, markdown-it, view.js
    assert sum('type="application/octet-stream"' in t for t in tags) == ROWS // CHUNK + 1  # r0's five, r1's one
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # nothing to fetch
    write_page(report(), tmp_path / "again.html")
    assert re.search(r"'nonce-([\w-]+)'", (tmp_path / "again.html").read_text()).group(1) != nonce


def test_report_round_trips_and_no_string_can_close_its_element(page_file):
    html = page_file.read_text(encoding="utf-8")
    assert CLOSER not in html and "alert(1)" in html  # present, but only as \u003c/script\u003e...
    data = embedded(html)
    assert data["title"] == f"run {CLOSER}" and data["runs"][0]["notes"] == ["a note", CLOSER]
    expected = report()
    r0 = data["runs"][0]
    assert r0["overview"] == expected["runs"][0]["overview"] and r0["charts"] == expected["runs"][0]["charts"]
    assert base64.b64decode(r0["images"][0]["png"]) == png_1x1()
    samples = r0["samples"]
    assert samples["count"] == ROWS and samples["chunkSize"] == CHUNK and len(samples["chunks"]) == ROWS // CHUNK
    assert samples["facets"] == expected["runs"][0]["samples"]["facets"] and "rows" not in samples
    assert samples["numbers"][0]["values"][:3] == [None, 1.0, 2.0]


def test_chunks_decode_to_the_rows_given(page_file):
    html = page_file.read_text(encoding="utf-8")
    r0, r1 = embedded(html)["runs"]
    rows = [row for chunk_id in r0["samples"]["chunks"] for row in chunk_rows(html, chunk_id)]
    assert rows == [sample(i) for i in range(ROWS)]
    assert chunk_rows(html, r1["samples"]["chunks"][0])[0]["title"] == "removed row"


def test_rows_are_consumed_once_chunk_by_chunk(tmp_path, monkeypatch):
    compressed, seen = [], []
    real = gzip.compress
    monkeypatch.setattr(page_module.gzip, "compress", lambda data, **kw: compressed.append(1) or real(data, **kw))

    def rows():
        for i in range(ROWS):
            seen.append(len(compressed))  # chunks already written when row i is asked for
            yield sample(i)

    write_page(report(rows()), tmp_path / "lazy.html")
    assert seen == [i // CHUNK for i in range(ROWS)]


def test_not_a_number_becomes_null(tmp_path):
    data = report([sample(0)])
    data["runs"][0]["charts"][0]["series"][0]["data"] = [float("nan"), 1.0, float("inf")]
    write_page(data, tmp_path / "nan.html")
    chart = embedded((tmp_path / "nan.html").read_text())["runs"][0]["charts"][0]
    assert chart["series"][0]["data"] == [None, 1.0, None]


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "missing" / "report.html"
    with pytest.raises(WriteFailed, match=r"^cannot write .*report\.html: No such file or directory$"):
        write_page(report([]), target)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "dir.html").mkdir()  # the rename onto a folder fails: the temporary file goes
    with pytest.raises(WriteFailed):
        write_page(report([]), tmp_path / "dir.html")
    assert not (tmp_path / "dir.html.tmp").exists()


# ---- in Chromium ----

@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def opened(browser, page_file):
    seen = open_page(browser, page_file)
    yield seen
    seen.page.close()


def card_numbers(page) -> list[str]:
    return page.locator("[data-run='r0'] .list .row-no").all_inner_texts()


def count_text(page, run="r0") -> str:
    return page.locator(f"[data-run='{run}'] .count").inner_text()


@pytest.mark.browser
def test_opens_with_no_error_no_request_and_every_chart_drawn(opened):
    page = opened.page
    assert opened.console == [] and opened.errors == [] and opened.requests == []
    assert page.evaluate("window.distillView.chartsDrawn") == 4
    blank = page.evaluate("""() => [...document.querySelectorAll('canvas')].filter(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return false;
        return true; }).length""")
    assert page.locator("canvas").count() == 4 and blank == 0
    assert page.locator("nav#distill-tabs button").all_inner_texts() == ["generate", "filter"]
    assert page.locator("[data-run='r0'] .overview td").first.inner_text() == "train"
    assert page.locator(".results table td[style]").count() == 2  # markdown-it's alignment (CSP allows styles)
    link = page.locator(".results a")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow" and link.get_attribute("target") == "_blank"
    assert page.evaluate("document.querySelector('.results img').naturalWidth") == 1
    assert count_text(page) == "1,000 rows" and card_numbers(page) == [f"#{n}" for n in range(1, 26)]


@pytest.mark.browser
def test_paging(opened):
    page = opened.page
    page.locator("[data-run='r0'] .pager button", has_text="next").click()
    settled(page)
    assert card_numbers(page) == [f"#{n}" for n in range(26, 51)]
    pager_input = page.locator("[data-run='r0'] .pager input")
    assert pager_input.input_value() == "2" and "of 40" in page.locator("[data-run='r0'] .pager").inner_text()
    pager_input.fill("40")
    pager_input.press("Enter")
    settled(page)
    assert card_numbers(page)[0] == "#976" and card_numbers(page)[-1] == "#1000"
    assert page.locator("[data-run='r0'] .pager button", has_text="next").is_disabled()
    assert opened.console == [] and opened.errors == []


@pytest.mark.browser
def test_search_reads_every_chunk(opened):
    page = opened.page
    search = page.locator("[data-run='r0'] input[type='search']")
    search.fill("answer **1")  # a newer search cancels this one
    search.fill("ZANZIBAR")
    settled(page)
    assert count_text(page) == "1 of 1,000 rows" and card_numbers(page) == [f"#{NEEDLE_ROW + 1}"]
    search.fill("prompt 99")  # titles too: 99, 990..999
    settled(page)
    assert count_text(page) == "11 of 1,000 rows"
    assert opened.console == [] and opened.errors == []


@pytest.mark.browser
def test_facet_and_number_range_filter_from_the_index(opened):
    page = opened.page
    tests = [i for i in range(ROWS) if split(i) == "test"]
    page.locator("[data-run='r0'] select[data-facet='split']").select_option(label=f"test ({len(tests)})")
    settled(page)
    assert count_text(page) == f"{len(tests)} of 1,000 rows"
    page.locator("[data-run='r0'] input[data-bound='min']").fill("3")
    page.locator("[data-run='r0'] input[data-bound='max']").fill("5.5")
    settled(page)
    expected = [i for i in tests if score(i) is not None and 3 <= score(i) <= 5.5]
    assert count_text(page) == f"{len(expected)} of 1,000 rows"
    assert card_numbers(page)[:3] == [f"#{i + 1}" for i in expected[:3]]


@pytest.mark.browser
def test_model_output_is_text_and_runs_nothing(opened):
    page = opened.page
    card = page.locator(f"[data-run='r0'] .sample[data-row='{XSS_ROW}']")
    text = card.inner_text()
    assert text.count("<script>window.__pwned=1</script>") == 4
    assert text.count('<img src=x onerror="window.__pwned=1">') == 4 and "[x](javascript:window.__pwned=1)" in text
    assert page.locator(".list script, .list img, .list iframe, .list [onerror]").count() == 0
    assert card.locator("a").count() == 0  # markdown-it refuses the javascript: link: it stays text
    card.get_by_text("[x](javascript:window.__pwned=1)").first.click()
    page.locator("[data-run='r0'] .filters input[type='checkbox']").check()  # raw text
    settled(page)
    assert card.locator(".raw").count() == 4 and page.locator(".list script, .list img").count() == 0
    assert page.evaluate("window.__pwned") is None and opened.console == [] and opened.errors == []


@pytest.mark.browser
def test_cards_chat_columns_and_long_text(opened):
    page = opened.page
    first = page.locator("[data-run='r0'] .sample").first
    assert first.locator(".msg .role").all_text_contents() == ["system", "user", "assistant"]
    user, assistant = first.locator(".msg.user").bounding_box(), first.locator(".msg.assistant").bounding_box()
    assert user["x"] + user["width"] > assistant["x"] + assistant["width"] and user["x"] > assistant["x"]
    assert first.locator(".msg.assistant strong").inner_text() == "0"
    assert first.locator(".msg.assistant code").count() == 1
    assert first.locator(".chip").all_inner_texts() == ["split test", "model m"]
    sides = page.locator(f"[data-run='r0'] .sample[data-row='{PAIR_ROW}'] .column")
    assert sides.locator(".block-label").all_text_contents() == ["chosen", "rejected"]
    left, right = sides.nth(0).bounding_box(), sides.nth(1).bounding_box()
    assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]
    long = page.locator(f"[data-run='r0'] .sample[data-row='{LONG_ROW}'] .msg.assistant")
    folded = long.locator(".markdown").bounding_box()["height"]
    long.get_by_role("button", name="show more").click()
    assert long.locator(".markdown").bounding_box()["height"] > folded
    assert long.get_by_role("button").inner_text() == "show less"


@pytest.mark.browser
def test_links_open_their_row(opened):
    page = opened.page
    page.locator(f"[data-run='r0'] .sample[data-row='{LINK_ROW}'] a.jump").click()
    settled(page)
    target = page.locator(f"[data-run='r0'] .sample[data-row='{NEEDLE_ROW}']")
    assert "target" in target.get_attribute("class") and target.is_visible()
    assert page.evaluate("location.hash") == f"#r0/{NEEDLE_ROW + 1}"
    page.locator("nav#distill-tabs button", has_text="filter").click()  # a link from the other run
    assert page.locator("[data-run='r0']").is_hidden()
    page.locator("[data-run='r1'] a.jump").click()
    settled(page)
    assert page.locator("[data-run='r1']").is_hidden()
    assert page.locator("[data-run='r0'] .sample.target .row-no").inner_text() == "#600"
    assert opened.console == [] and opened.errors == []


@pytest.mark.browser
def test_a_hash_opens_a_row(browser, page_file):
    seen = open_page(browser, page_file, hash="#r0/600")
    assert seen.page.locator("[data-run='r0'] .sample.target .row-no").inner_text() == "#600"
    seen.page.close()


@pytest.mark.browser
def test_a_damaged_chunk_shows_an_error(browser, tmp_path):
    path = tmp_path / "damaged.html"
    write_page(report(), path)
    html = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r'(id="distill-chunk-0-0">)[^<]+', r"\1H4sIAAAAAAAAA3z", html), encoding="utf-8")
    seen = open_page(browser, path)
    error = seen.page.locator("[data-run='r0'] .list .error").inner_text()
    assert "Could not decode the samples in distill-chunk-0-0" in error
    assert len(seen.console) == 1 and "error: distill view: cannot decode distill-chunk-0-0" in seen.console[0]
    assert seen.errors == [] and seen.page.locator("[data-run='r1'] .sample").count() == 1  # the rest still works
    seen.page.close()


@pytest.mark.browser
def test_empty_and_odd_reports_render_without_error(browser, tmp_path):
    bare = {"overview": [], "notes": [], "charts": [], "results": [], "images": []}
    odd = {"id": "1", "title": "", "meta": [["k", None]],
           "blocks": [{"t": "chat", "messages": [{"role": "tool", "content": [{"type": "text", "text": "in parts"}]}]},
                      {"t": "from a newer distill"}]}
    broken = {"id": "2", "title": "", "meta": [5], "blocks": []}
    data = {"title": "t", "source": "s", "runs": [
        {"id": "r0", "name": "empty", "kind": "dataset", **bare,
         "samples": {"count": 0, "rows": [], "facets": [{"name": "f", "label": "f", "values": [], "codes": []}],
                     "numbers": []}},
        {"id": "r1", "name": "no samples", "kind": "eval", **bare, "samples": None},
        {"id": "r2", "name": "odd", "kind": "x", **bare,
         "samples": {"count": 2, "rows": [odd, broken], "facets": [], "numbers": []}}]}
    write_page(data, tmp_path / "odd.html")
    seen = open_page(browser, tmp_path / "odd.html")
    text = seen.page.locator("main").text_content()  # hidden tabs too
    assert "No samples." in text and "from a newer distill" in text and '"text":"in parts"' in text
    assert "Could not show row 2" in text and len(seen.console) == 1 and "cannot show row 2" in seen.console[0]
    assert seen.errors == [] and seen.requests == []
    seen.page.close()
    write_page({**data, "runs": []}, tmp_path / "none.html")
    seen = open_page(browser, tmp_path / "none.html")
    assert "no runs" in seen.page.locator("main").inner_text() and seen.console == [] and seen.errors == []
    seen.page.close()
