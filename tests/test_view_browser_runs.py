"""`distill view` on real runs, opened in headless Chromium: a folder of runs (completions whose model
output is hostile HTML, UltraFeedback pairs, a filtered dataset with removed rows, an MT-Bench grading)
shown as one page with a tab each."""

from __future__ import annotations

import pytest
from conftest import write_jsonl
from view_browser import chromium, open_page, settled

from distill.view.collect import collect

pytestmark = pytest.mark.browser

HOSTILE = ('Here you go: <script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> '
           "[click](javascript:window.__pwned=1) and **bold**.")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from test_view import distill

    root = tmp_path_factory.mktemp("views") / "runs"
    prompts = write_jsonl(root.parent / "prompts.jsonl", [{"prompt": f"Prompt {i}"} for i in range(30)])
    fake = ["--backend", "fake", "-q"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("distill.backends.fake.echo_reply", lambda request: HOSTILE)
        distill("generate", "completions", "--input", prompts, *fake, "-o", root / "completions")
    distill("generate", "ultrachat", "-n", 6, *fake, "-o", root / "ultrachat")
    distill("rate", "ultrafeedback", "--input", root / "ultrachat", "--models", "a,b,c,d", *fake, "-o", root / "feedback")
    words = "water carves the valley floor a little more each spring when the snow melts".split()
    rows = [{"messages": [{"role": "user", "content": f"Q{i}"},
                          {"role": "assistant", "content": " ".join(words[i % 4:] + words[:i % 4])}]} for i in range(8)]
    distill("filter", "dedup", write_jsonl(root.parent / "dup.jsonl", rows), "-o", root / "clean")
    distill("eval", "mt-bench", "--models", "a", "--judge", "j", "--questions", "smoke", "-n", 2, *fake,
            "-o", root / "mt-bench")
    distill("view", root)
    return root


@pytest.fixture(scope="module")
def seen(folder):
    with chromium() as browser:
        yield open_page(browser, folder / "view.html")


def test_every_tab_opens_with_no_error_no_request_and_every_chart_drawn(folder, seen):
    report = collect(str(folder))
    page = seen.page
    assert seen.console == [] and seen.errors == [] and seen.requests == []
    tabs = page.locator("nav#distill-tabs button").all_inner_texts()
    assert tabs == [run["name"] for run in report["runs"]] == ["completions", "ultrachat", "feedback", "clean", "mt-bench"]
    charts = sum(len(run["charts"]) for run in report["runs"])
    assert charts >= 15 and page.evaluate("window.distillView.chartsDrawn") == charts
    blank = page.evaluate("""[...document.querySelectorAll('canvas')].filter(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return false;
        return true; }).length""")
    assert blank == 0
    for run in report["runs"]:  # each tab shows its first page of samples
        page.locator("nav#distill-tabs button", has_text=run["name"]).first.click()
        cards = page.locator(f"[data-run='{run['id']}'] .sample")
        assert cards.count() == min(25, run["samples"]["count"]), run["name"]


def test_hostile_model_output_is_shown_as_text_and_runs_nothing(seen):
    page = seen.page
    page.locator("nav#distill-tabs button", has_text="completions").click()
    answer = page.locator("[data-run='r0'] .sample").first.locator(".msg.assistant")
    text = answer.inner_text()
    assert "<script>window.__pwned=1</script>" in text and '<img src=x onerror="window.__pwned=1">' in text
    assert answer.locator("strong").inner_text() == "bold"  # Markdown still renders
    assert answer.locator("a").count() == 0 and page.locator(".list script, .list img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_search_and_paging_on_a_real_run(seen):
    page = seen.page
    page.locator("nav#distill-tabs button", has_text="completions").click()
    run = page.locator("[data-run='r0']")
    run.locator(".pager button", has_text="next").click()
    settled(page)
    assert run.locator(".sample").count() == 5  # 30 rows: 25, then 5
    run.locator("input[type='search']").fill("Prompt 17")
    settled(page)
    assert run.locator(".count").inner_text().startswith("1 of 30")
    assert "Prompt 17" in run.locator(".sample").first.inner_text()


def test_a_removed_row_links_to_the_row_it_duplicates(folder, seen):
    page = seen.page
    clean = next(r for r in collect(str(folder))["runs"] if r["name"] == "clean")
    page.locator("nav#distill-tabs button", has_text="clean").click()
    run = page.locator(f"[data-run='{clean['id']}']")
    run.locator("select[data-facet='set']").select_option(label="removed (4)")
    settled(page)
    removed = run.locator(".sample").first
    answer = removed.locator(".msg.assistant").inner_text()
    assert "removed by dedup" in removed.inner_text()
    removed.locator(".block.link a, a.link, a").filter(has_text="duplicates").first.click()
    settled(page)
    target = run.locator(".sample.target")
    assert target.count() == 1 and target.locator(".msg.assistant").inner_text() == answer
