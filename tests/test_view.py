"""distill view: what the page shows of every kind of run (the Report collect.py builds), and the command.

The page in a real browser: tests/test_view_page.py (hand-made reports) and tests/test_view_browser_runs.py
(pages of real runs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import assert_one_line_error, write_jsonl

from distill.backends.base import RejectedError
from distill.cli import main
from distill.view.collect import collect

PROMPTS = [{"prompt": f"Question number {i}: how do rivers shape valleys?"} for i in range(6)]


def distill(*args) -> None:
    """`distill ...` in this process, for a module's fixtures (the `cli` fixture is per test)."""
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        assert not done.code, f"distill {' '.join(map(str, args))} exited {done.code}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run of each kind, made on the fake backend."""
    root = tmp_path_factory.mktemp("runs")
    prompts = write_jsonl(root / "prompts.jsonl", PROMPTS)
    fake = ["--backend", "fake", "-q"]
    distill("generate", "completions", "--input", prompts, *fake, "-o", root / "completions")
    distill("generate", "ultrachat", "-n", 12, *fake, "-o", root / "ultrachat")
    distill("generate", "camel", "-n", 3, *fake, "-o", root / "camel")
    distill("generate", "self-instruct", "-n", 4, *fake, "-o", root / "self-instruct")
    distill("rate", "ultrafeedback", "--input", root / "ultrachat", "--models", "a,b,c,d", *fake, "-o", root / "feedback")
    distill("generate", "ultrachat", "-n", 8, "--shard", "0/2", *fake, "-o", root / "shard0")
    distill("generate", "ultrachat", "-n", 8, "--shard", "1/2", *fake, "-o", root / "shard1")
    distill("merge", root / "shard0", root / "shard1", "-o", root / "merged")
    distill("eval", "pairwise", "--prompts", prompts, "--models", "a", "--baseline", "b", "--judge", "j", *fake,
            "-o", root / "pairwise")
    distill("eval", "mt-bench", "--models", "a", "--judge", "j", "--questions", "smoke", "-n", 3, *fake,
            "-o", root / "mt-bench")
    return root


def only_run(source, **kwargs) -> dict:
    report = collect(str(source), **kwargs)
    assert len(report["runs"]) == 1
    return report["runs"][0]


def samples(run) -> list[dict]:
    return list(run["samples"]["rows"])


def chart_ids(run) -> set[str]:
    return {c["id"].split("-", 1)[1] for c in run["charts"]}


def facet(run, name) -> dict:
    return next(f for f in run["samples"]["facets"] if f["name"] == name)


def blocks(sample, kind) -> list[dict]:
    found = []
    for block in sample["blocks"]:
        if block["t"] == kind:
            found.append(block)
        for item in block.get("items", ()):
            found += blocks(item, kind)
    return found


def test_a_dialogue_run_shows_each_dialogue_as_a_chat_with_its_sectors(runs):
    run = only_run(runs / "ultrachat")
    assert run["kind"] == "generate ultrachat"
    shown = samples(run)
    assert run["samples"]["count"] == len(shown) == 12  # the *_gen copy and the trl config are not shown again
    import datasets

    rows = datasets.load_dataset(str(runs / "ultrachat"), split="train_sft").to_list()
    for sample, row in zip(shown, rows):
        chat = blocks(sample, "chat")[0]["messages"]
        assert chat == [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        assert ["sector", row["sector"]] in sample["meta"]
    sectors = facet(run, "sector")
    assert [sectors["values"][c] for c in sectors["codes"]] == [r["sector"] for r in rows]
    turns = next(n for n in run["samples"]["numbers"] if n["name"] == "turns")
    assert turns["values"] == [sum(m["role"] == "assistant" for m in r["messages"]) for r in rows]
    assert {"rounds", "prompt", "roles", "filters", "facet-sector"} <= chart_ids(run)
    rounds = next(c for c in run["charts"] if c["id"].endswith("-rounds"))
    assert sum(rounds["series"][0]["data"]) == 12  # a histogram counts every dialogue once
    overview = {t["title"]: t for t in run["overview"]}
    assert ["default", "train_sft", 12] in overview["Rows per config and split"]["rows"]
    assert any(r[0] == "total tokens" for r in overview["Run"]["rows"])
    assert ["num_dialogues", 12] in overview["Settings (config.yaml)"]["rows"]
    assert any(r["title"] == "dataset card (README.md)" for r in run["results"])


@pytest.mark.parametrize("kind,text_label", [("camel", "specified_task"), ("completions", None),
                                             ("self-instruct", None), ("merged", None)])
def test_every_generating_run_shows_its_rows(runs, kind, text_label):
    run = only_run(runs / kind)
    shown = samples(run)
    assert shown and len(shown) == run["samples"]["count"]
    assert all(blocks(s, "chat") for s in shown)
    assert all(s["id"] and s["title"] for s in shown)
    if text_label:
        assert all(any(b.get("label") == text_label for b in s["blocks"]) for s in shown)
    assert {"prompt", "roles"} <= chart_ids(run)


def test_preference_pairs_show_side_by_side_with_each_side_s_ratings(runs):
    import datasets

    run = only_run(runs / "feedback")
    pairs = datasets.load_dataset(str(runs / "feedback"), split="train_prefs").to_list()
    rated = {(r["prompt_id"], r["model"]): r for r in datasets.load_dataset(str(runs / "feedback"), "completions",
                                                                            split="train").to_list()}
    shown = samples(run)
    assert len(shown) == len(pairs)  # train_sft holds the same rows: shown once, and said so
    assert any("train_sft holds the same rows as train_prefs" in note for note in run["notes"])
    for sample, pair in zip(shown, pairs):
        chosen, rejected = blocks(sample, "columns")[0]["items"]
        assert chosen["label"].startswith(f"chosen · {pair['chosen_model']}")
        assert blocks(chosen, "chat")[0]["messages"][-1]["content"] == pair["chosen"][-1]["content"]
        assert blocks(rejected, "chat")[0]["messages"][-1]["content"] == pair["rejected"][-1]["content"]
        table = blocks(chosen, "table")[0]
        completion = rated[(pair["prompt_id"], pair["chosen_model"])]
        for aspect, rating, rationale in table["rows"]:
            assert completion[f"{aspect}_rating"] == rating and completion[f"{aspect}_rationale"] == rationale
    margins = next(n for n in run["samples"]["numbers"] if n["name"] == "margin")["values"]
    assert margins == [p["score_chosen"] - p["score_rejected"] for p in pairs]
    assert {"scores", "margins", "aspects", "ratings"} <= chart_ids(run)
    aspects = next(c for c in run["charts"] if c["id"].endswith("-aspects"))
    assert {s["label"] for s in aspects["series"]} == {"a", "b", "c", "d"}


def test_a_binarized_run_shows_its_new_pairs(runs, tmp_path):
    import shutil

    import datasets

    copy = tmp_path / "feedback"
    shutil.copytree(runs / "feedback", copy)
    distill("binarize", copy, "--rejected", "lowest")
    pairs = datasets.load_dataset(str(copy), split="train_prefs").to_list()
    shown = samples(only_run(copy))
    assert [blocks(s, "columns")[0]["items"][1]["label"].split(" · ")[1] for s in shown] == \
           [p["rejected_model"] for p in pairs]


def test_removed_rows_show_their_filter_reason_and_link_to_the_row_they_duplicate(tmp_path):
    words = "rivers carve valleys slowly over thousands of years as water wears the stone away".split()
    rows = []
    for i in range(8):  # rows 5, 6 and 7 repeat rows 1, 2 and 3
        text = " ".join(words[i:] + words[:i]) if i < 5 else " ".join(words[i - 4:] + words[:i - 4])
        rows.append({"prompt": f"Q{i}", "messages": [{"role": "user", "content": f"Q{i % 5 if i < 5 else i - 4}"},
                                                      {"role": "assistant", "content": text}]})
    source = write_jsonl(tmp_path / "dialogues.jsonl", rows)
    out = tmp_path / "clean"
    distill("filter", "dedup", source, "-o", out)
    run = only_run(out)
    shown = samples(run)
    kept = [s for s in shown if s["id"].startswith("train/")]
    removed = [s for s in shown if s["id"].startswith("removed/")]
    assert len(kept) == 5 and len(removed) == 3
    sets = facet(run, "set")
    assert [sets["values"][c] for c in sets["codes"]] == ["dataset"] * 5 + ["removed"] * 3
    for sample in removed:
        note = blocks(sample, "note")[0]
        assert note["tone"] == "warn" and note["text"].startswith("removed by dedup: near-duplicate of train/")
        link = blocks(sample, "link")[0]
        target = shown[link["row"]]
        assert link["run"] == run["id"]
        assert blocks(target, "chat")[0]["messages"][1]["content"] == blocks(sample, "chat")[0]["messages"][1]["content"]
    assert "facet-removed_by" in chart_ids(run) or facet(run, "removed_by")
    assert any(t["title"] == "Filters (rows removed)" and ["dedup", 3] in t["rows"] for t in run["overview"])


def test_failed_items_show_with_their_error(tmp_path, monkeypatch):
    def reply(request):
        if "number 2" in request.messages[-1]["content"]:
            raise RejectedError("scripted 400: this prompt is refused")
        return "An answer."

    monkeypatch.setattr("distill.backends.fake.echo_reply", reply)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    distill("generate", "completions", "--input", prompts, "--backend", "fake", "-q", "-o", tmp_path / "run")
    run = only_run(tmp_path / "run")
    failed = [s for s in samples(run) if s["id"].startswith("failed/")]
    assert len(failed) == 1
    assert blocks(failed[0], "note") == [{"t": "note", "tone": "error", "text": "fake: scripted 400: this prompt is refused"}]
    assert any(r == ["items", "5 of 6 done, 1 failed"] for t in run["overview"] for r in t["rows"])


def test_a_pairwise_evaluation_shows_both_answers_verdicts_and_its_results(runs):
    import datasets

    run = only_run(runs / "pairwise")
    rows = datasets.load_dataset(str(runs / "pairwise"), split="train").to_list()
    shown = samples(run)
    assert len(shown) == len(rows)
    for sample, row in zip(shown, rows):
        model, baseline = blocks(sample, "columns")[0]["items"]
        assert blocks(model, "chat")[0]["messages"][0]["content"] == row["answer"]
        assert blocks(baseline, "chat")[0]["messages"][0]["content"] == row["baseline_answer"]
        assert ["outcome", row["outcome"]] in sample["meta"]
        assert [b["text"] for b in sample["blocks"] if b.get("label", "").startswith("judge")] == row["judge_replies"]
    assert {"outcomes", "winrates"} <= chart_ids(run)
    results = run["results"][0]
    assert results["title"] == "results/results.md" and "win rate" in results["markdown"].lower()
    assert "![" not in results["markdown"]  # its chart is shown as an image of the page instead
    assert [i["title"] for i in run["images"]] == ["win_rates.png"] and run["images"][0]["png"].startswith(b"\x89PNG")


def test_an_mt_bench_evaluation_shows_two_turn_chats_and_the_judge(runs):
    import datasets

    run = only_run(runs / "mt-bench")
    rows = datasets.load_dataset(str(runs / "mt-bench"), split="train").to_list()
    for sample, row in zip(samples(run), rows):
        chat = blocks(sample, "chat")[0]["messages"]
        assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in chat[1::2]] == row["answers"]
        judged = [b for b in sample["blocks"] if b.get("label", "").startswith("judge, turn")]
        assert [b["text"] for b in judged] == row["judge_replies"]
    assert "categories" in chart_ids(run) and facet(run, "category")
    assert run["images"][0]["title"] == "mt_bench_radar.png"


def test_a_folder_of_runs_is_one_tab_per_step_after_its_results(runs, tmp_path):
    import shutil

    folder = tmp_path / "recipe"
    for step in ("ultrachat", "feedback"):
        shutil.copytree(runs / step, folder / step)
        time.sleep(0.02)
        (folder / step / ".distill").touch()  # made in this order
    sft = folder / "sft"
    sft.mkdir()
    (sft / "train_metrics.json").write_text(json.dumps({"train_loss": 2.5, "train_runtime": 3.0}))
    (sft / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "train_loss": 2.5}]}))
    (sft / "recipe.yaml").write_text("model:\n  name_or_path: tiny\ntraining:\n  learning_rate: 2.0e-05\n")
    (folder / "results.md").write_text("# Results\n\n| model | score |\n|---|---|\n| dDPO | 7 |\n")
    report = collect(str(folder))
    assert [r["name"] for r in report["runs"]] == ["summary", "ultrachat", "feedback", "sft"]
    assert report["runs"][0]["results"][0]["markdown"].startswith("# Results")
    training = report["runs"][3]
    loss = next(c for c in training["charts"] if c["id"].endswith("-loss"))
    assert loss["type"] == "line" and loss["labels"] == ["1", "2"] and loss["series"][0]["data"] == [3.0, 2.0]
    assert ["model.name_or_path", "tiny"] in training["overview"][1]["rows"]
    assert len({r["id"] for r in report["runs"]}) == 4


def test_any_dataset_file_is_shown_as_a_dataset(tmp_path):
    rows = [{"instruction": "Name a river.", "input": "", "output": "The Nile."},
            {"prompt": "Hi", "response": "Hello."}, {"text": "a plain row", "label": 3}]
    run = only_run(write_jsonl(tmp_path / "mixed.jsonl", rows))
    shown = samples(run)
    assert blocks(shown[0], "chat")[0]["messages"] == [{"role": "user", "content": "Name a river."},
                                                      {"role": "assistant", "content": "The Nile."}]
    assert blocks(shown[1], "chat")[0]["messages"][1]["content"] == "Hello."
    assert shown[2]["title"] == "a plain row" and ["label", "3"] in shown[2]["meta"]


def test_histograms_bin_every_value_once():
    from distill.view.charts import histogram

    values = list(range(0, 1000, 7))
    made = histogram("h", "t", "x", {"a": values, "b": [5, 999]}, integer=True)
    assert sum(made["series"][0]["data"]) == len(values) and sum(made["series"][1]["data"]) == 2
    assert len(made["labels"]) <= 31
    few = histogram("h", "t", "x", {"a": [1, 2, 2, 4]}, integer=True)
    assert few["labels"] == ["1", "2", "3", "4"] and few["series"][0]["data"] == [1, 2, 0, 1]
    assert histogram("h", "t", "x", {"a": []}) is None


# -- the command --------------------------------------------------------------------------------------------


def page_report(path) -> dict:
    html = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="distill-report">(.*?)</script>', html, re.DOTALL)
    return json.loads(found.group(1))


def test_the_page_goes_into_the_run_and_a_dataset_s_page_into_the_current_folder(cli, runs, tmp_path, monkeypatch):
    result = cli("view", runs / "ultrachat")
    assert result.code == 0, result.err
    page = runs / "ultrachat" / "view.html"
    assert page.is_file() and f"wrote {page}" in result.out and "12 samples" in result.out
    assert page_report(page)["runs"][0]["samples"]["count"] == 12
    monkeypatch.chdir(tmp_path)
    source = write_jsonl(tmp_path / "data" / "rows.jsonl", PROMPTS) if (tmp_path / "data").mkdir() is None else None
    assert cli("view", source).code == 0
    assert (tmp_path / "rows.view.html").is_file() and sorted(p.name for p in source.parent.iterdir()) == ["rows.jsonl"]
    assert cli("view", runs / "ultrachat", "-o", tmp_path / "pages" / "uc.html").code == 0  # its folder is made
    assert cli("view", runs / "ultrachat", "-o", tmp_path / "pages" / "uc.html").code == 0  # and rewritten


def test_fresh_deletes_the_run_s_page_with_the_run(cli, runs, tmp_path):
    import shutil

    run = tmp_path / "uc"
    shutil.copytree(runs / "ultrachat", run)
    assert cli("view", run).code == 0 and (run / "view.html").is_file()
    assert cli("generate", "ultrachat", "-n", 2, "--backend", "fake", "-q", "--fresh", "-o", run).code == 0
    assert not (run / "view.html").exists()


@pytest.mark.parametrize("case", ["not ours", "a directory", "inside a file", "missing source", "empty dataset",
                                  "bad parquet"])
def test_bad_input_is_one_line_and_nothing_is_overwritten(cli, runs, tmp_path, case):
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my own notes</html>")
    (tmp_path / "file").write_text("x")
    source, output, needle = runs / "ultrachat", tmp_path / "out.html", ""
    if case == "not ours":
        output, needle = mine, "is not a page distill view wrote"
    elif case == "a directory":
        output, needle = tmp_path, "is a directory"
    elif case == "inside a file":
        output, needle = tmp_path / "file" / "page.html", "which is a file"
    elif case == "missing source":
        source, needle = tmp_path / "nothing-here.jsonl", "does not exist"
    elif case == "empty dataset":
        source, needle = tmp_path / "empty.jsonl", "empty"
        source.write_text("")
    elif case == "bad parquet":
        import shutil

        source = tmp_path / "broken"
        shutil.copytree(runs / "completions", source)
        shard = next((source / "data").glob("*.parquet"))
        shard.write_bytes(shard.read_bytes()[:200])
        needle = "cannot read"
    result = cli("view", source, "-o", output)
    assert_one_line_error(result, needle)
    assert mine.read_text() == "<html>my own notes</html>"
    assert not (tmp_path / "out.html").exists() and not list(tmp_path.glob("*.tmp"))


def test_serve_answers_on_loopback_with_the_page_until_interrupted(runs, tmp_path):
    import signal

    out = tmp_path / "page.html"
    proc = subprocess.Popen([sys.executable, "-m", "distill", "view", runs / "completions", "-o", out, "--serve", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for _ in range(5):
            lines.append(proc.stdout.readline())
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1])
            if found:
                break
        assert found, lines
        with urllib.request.urlopen(found.group(0), timeout=10) as response:
            assert response.read() == out.read_bytes()
            assert response.headers["Content-Type"].startswith("text/html")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(found.group(0) + "config.yaml", timeout=10)  # only the page is served
        assert missing.value.code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err, err
