"""`distill eval pairwise`: verdicts read from what judges write, both orders, flips as ties, win rates."""

from __future__ import annotations

import json
import re

import pytest
from conftest import assert_one_line_error, kill_after_answers, record_fake_requests, start_distill, write_jsonl

from distill.eval_stats import length_controlled_win_rate
from distill.pipelines.pairwise import outcome, read_verdict, table_lines, win_rates


@pytest.mark.parametrize(("text", "expected"), [
    ('{"better": "A"}', "A"),
    ('```json\n{"better": "b"}\n```', "B"),
    ("B", "B"),
    ("**A**", "A"),
    ("Answer B.", "B"),
    ("Answer A is better than answer B because it is shorter.", "A"),
    ("I think B is the better one.", "B"),
    ("Both answers are fine.", None),
    ("A is better. No, B is better.", None),
    ('{"better": "C"}', None),
    ("", None),
])
def test_read_verdict(text, expected):
    assert read_verdict(text) == expected


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("A", "B", "win"), ("B", "A", "loss"), ("A", "A", "tie"), ("B", "B", "tie"), (None, "B", "unjudged"),
    ("A", None, "unjudged"),
])
def test_outcome_of_both_orders(first, second, expected):
    assert outcome(first, second) == expected


def test_win_rates_count_ties_as_half_over_judged_pairs():
    rows = [{"model": "m", "outcome": o, "answer": "x" * n, "baseline_answer": "yy"}
            for o, n in (("win", 5), ("win", 1), ("tie", 2), ("loss", 9), ("unjudged", 40))]
    (row,) = win_rates(rows, resamples=100)
    assert (row["win"], row["tie"], row["loss"], row["unjudged"]) == (2, 1, 1, 1)
    assert row["win_rate"] == pytest.approx(2.5 / 4) and row["flip_rate"] == pytest.approx(1 / 4)
    assert row["length_difference"] == pytest.approx((3 - 1 + 0 + 7) / 4)  # judged pairs only
    assert row["lc_win_rate"] == pytest.approx(length_controlled_win_rate([1, 1, 0.5, 0], [3, -1, 0, 7]))
    low, high = row["win_rate_interval"]
    assert low <= row["win_rate"] <= high and row["win_rate_interval"] == win_rates(rows, resamples=100)[0]["win_rate_interval"]
    assert win_rates(rows, resamples=0)[0]["win_rate_interval"] is None


def scripted(judge):
    """Answers name their model; judge(prompt_text) -> the judge's reply."""
    def reply(request):
        text = request.messages[-1]["content"]
        if request.json_schema is not None or text.startswith("Request:"):
            return judge(text)
        return f"an answer by {request.model}"
    return reply


def prefers(model):
    def judge(text):
        first = re.search(r"Answer A:\n(.*)", text).group(1)
        return json.dumps({"better": "A" if model in first else "B"})
    return judge


def run(cli, tmp_path, monkeypatch, judge, *extra):
    from distill.backends import fake

    monkeypatch.setattr(fake, "echo_reply", scripted(judge))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(3)))
    out = tmp_path / "run"
    result = cli("eval", "pairwise", "--input", prompts, "--models", "good,bad", "--baseline", "base", "--judge", "j",
                 "--backend", "fake", "-o", out, "-q", "--bootstrap", "100", *extra)
    return result, out


def table(out):
    return {row["model"]: row for row in json.loads((out / "stats.json").read_text())["postprocess"]["win_rates"]}


def test_a_judge_that_prefers_one_model_gives_it_every_win(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, prefers("good"))
    assert result.code == 0, result.err
    rates = table(out)
    assert rates["good"]["win"] == 3 and rates["good"]["win_rate"] == 1.0 and rates["good"]["flip_rate"] == 0
    assert rates["bad"]["tie"] == 3  # the judge's rule does not tell bad from base: it answers "B" in both orders
    assert "| good | 100.0% | 100.0–100.0% | 100.0% | 100.0–100.0% | 0.0% | 3 | 0 | 0 | 0 | +0 chars |" in (
        out / "README.md").read_text()


def test_a_judge_that_always_picks_the_first_answer_makes_every_pair_a_tie(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, lambda text: '{"better": "A"}')
    assert result.code == 0, result.err
    for row in table(out).values():
        assert row["tie"] == 3 and row["win_rate"] == 0.5 and row["flip_rate"] == 1.0


def test_unreadable_verdicts_are_unjudged_not_counted(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, lambda text: "Both are good answers.", "--no-structured")
    assert result.code == 0, result.err
    for row in table(out).values():
        assert row["unjudged"] == 3 and row["win_rate"] is None


def test_the_baseline_answers_each_prompt_once_and_a_rerun_asks_nothing(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, prefers("good"))
    assert result.code == 0, result.err
    import datasets

    rows = list(datasets.load_dataset(str(out), split="train"))
    assert len(rows) == 6
    for prompt in {r["prompt"] for r in rows}:  # one baseline answer per prompt, shared by both models
        assert len({r["baseline_answer"] for r in rows if r["prompt"] == prompt}) == 1
    stats = json.loads((out / "stats.json").read_text())
    again, _ = run(cli, tmp_path, monkeypatch, lambda text: pytest.fail("asked again"))
    assert again.code == 0, again.err
    assert json.loads((out / "stats.json").read_text())["postprocess"] == stats["postprocess"]


def test_chats_as_prompts_are_one_line(cli, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}]}) + "\n")
    result = cli("eval", "pairwise", "--input", prompts, "--models", "a", "--baseline", "b", "--backend", "fake",
                 "-o", tmp_path / "run", "-q")
    assert result.code != 0 and "prompts are strings" in result.err and "Traceback" not in result.err


def test_the_judge_is_greedy_and_sees_both_orders(cli, tmp_path, monkeypatch):
    seen = []

    def judge(text):
        seen.append(re.search(r"Answer A:\n(.*)", text).group(1))
        return '{"better": "A"}'

    asked = record_fake_requests(monkeypatch)
    result, _ = run(cli, tmp_path, monkeypatch, judge)
    assert result.code == 0, result.err
    judged = [r for r in asked if r.json_schema is not None]
    assert judged and {r.params.temperature for r in judged} == {0.0}
    assert {r.params.max_tokens for r in judged} == {100}
    assert {r.params.temperature for r in asked if r.json_schema is None} == {0.7}
    # Each pair was shown once with the model first and once with the baseline first.
    assert sorted(seen) == sorted([f"an answer by {m}" for m in ("good", "bad", "base", "base")] * 3)




def reference_file(tmp_path, generator=True, n=8):
    """AlpacaEval's layout: instruction, output (the reference answer), generator; answers of varied length."""
    rows = [{"instruction": f"Question {i}?", "output": "r" * (10 + 7 * i), **({"generator": "gpt4_ref"} if generator else {})}
            for i in range(n)]
    return write_jsonl(tmp_path / "ref.jsonl", rows)


def longer_wins(text):
    """A judge that likes length: the longer answer wins, equal lengths go to the first."""
    first, second = re.search(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n\nWhich", text, re.DOTALL).groups()
    return json.dumps({"better": "A" if len(first) >= len(second) else "B"})


def run_reference(cli, tmp_path, monkeypatch, judge, *extra, generator=True):
    from distill.backends import fake

    monkeypatch.setattr(fake, "echo_reply", scripted(judge))
    out = tmp_path / "run"
    result = cli("eval", "pairwise", "--prompts", reference_file(tmp_path, generator), "--baseline-column", "output",
                 "--models", "good,bad", "--judge", "j", "--backend", "fake", "-o", out, "-q", "--bootstrap", "100",
                 *extra)
    return result, out


def test_reference_answers_are_the_baseline_and_are_never_asked_for(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    result, out = run_reference(cli, tmp_path, monkeypatch, longer_wins)
    assert result.code == 0, result.err
    assert {r.model for r in asked} == {"good", "bad", "j"}  # no baseline model
    import datasets

    rows = list(datasets.load_dataset(str(out), split="train"))
    assert {r["baseline"] for r in rows} == {"gpt4_ref"}  # the file's generator names them
    assert {r["prompt"]: r["baseline_answer"] for r in rows} == {f"Question {i}?": "r" * (10 + 7 * i) for i in range(8)}
    assert "| model vs gpt4_ref |" in (out / "README.md").read_text()
    (tmp_path / "x").mkdir()
    again, out = run_reference(cli, tmp_path / "x", monkeypatch, longer_wins, generator=False)
    assert again.code == 0, again.err
    assert "| model vs output |" in (out / "README.md").read_text()  # no generator: the column's name


def test_length_controlled_rates_and_intervals_reach_stats_card_and_results(cli, tmp_path, monkeypatch):
    # "an answer by good" (17 characters) beats the shorter references and loses to the longer ones.
    result, out = run_reference(cli, tmp_path, monkeypatch, longer_wins, "--bootstrap", "200", "--seed", "5")
    assert result.code == 0, result.err
    import datasets

    rows = [r for r in datasets.load_dataset(str(out), split="train") if r["model"] == "good"]
    prefs = [{"win": 1, "tie": 0.5, "loss": 0}[r["outcome"]] for r in rows]
    row = table(out)["good"]
    assert row["win_rate"] == pytest.approx(sum(prefs) / len(prefs)) and 0 < row["win_rate"] < 1
    deltas = [len(r["answer"]) - len(r["baseline_answer"]) for r in rows]
    assert row["lc_win_rate"] == pytest.approx(length_controlled_win_rate(prefs, deltas))
    assert row["lc_win_rate"] != pytest.approx(row["win_rate"])  # the wins came from length alone
    for key in ("win_rate", "lc_win_rate"):
        low, high = row[f"{key}_interval"]
        assert low <= row[key] <= high
    line = next(line for line in (out / "README.md").read_text().splitlines() if line.startswith("| good |"))
    assert f"{100 * row['lc_win_rate']:.1f}%" in line and f"{100 * row['lc_win_rate_interval'][0]:.1f}–" in line
    results = (out / "results" / "results.md").read_text()
    assert line in results and "## How to read it" in results and "position bias" in results
    assert "200 times (seed 5)" in results
    assert (out / "results" / "win_rates.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_no_bootstrap_gives_no_intervals_and_a_rerun_may_change_it_without_asking_again(cli, tmp_path, monkeypatch):
    result, out = run_reference(cli, tmp_path, monkeypatch, longer_wins)
    assert result.code == 0, result.err
    assert table(out)["good"]["win_rate_interval"] is not None
    result, out = run_reference(cli, tmp_path, monkeypatch, lambda text: pytest.fail("asked again"), "--bootstrap", "0")
    assert result.code == 0, result.err
    for row in table(out).values():
        assert row["win_rate_interval"] is None and row["lc_win_rate_interval"] is None
        assert row["lc_win_rate"] is not None
    assert "not drawn (--bootstrap 0)" in (out / "results" / "results.md").read_text()
    assert (out / "results" / "win_rates.png").is_file()


def test_an_lc_rate_far_from_the_raw_one_is_marked():
    # The model's answers are longer on every prompt: equal lengths are an extrapolation.
    rows = [{"model": "m", "outcome": o, "answer": "x" * n, "baseline_answer": ""}
            for o, n in (("win", 300), ("loss", 100), ("win", 290), ("tie", 120), ("loss", 110), ("win", 310),
                         ("tie", 200))]
    (row,) = win_rates(rows, resamples=0)
    assert row["lc_far_from_raw"] and row["lc_win_rate"] < row["win_rate"] - 0.1
    assert "% ⚠ |" in table_lines([row], "b")[2]
    assert not win_rates(rows[:1] * 3, resamples=0)[0]["lc_far_from_raw"]


@pytest.mark.parametrize(("extra", "needle"), [
    (("--baseline", "base", "--baseline-column", "output"), "exactly one of --baseline"),
    ((), "exactly one of --baseline"),
    (("--baseline-column", "answer"), "no column 'answer'"),
    (("--baseline", "base", "--bootstrap", "-1"), "--bootstrap"),
])
def test_bad_combinations_are_one_line(cli, tmp_path, extra, needle):
    result = cli("eval", "pairwise", "--prompts", reference_file(tmp_path), "--models", "a", "--backend", "fake",
                 "-o", tmp_path / "run", "-q", *extra)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "run").exists()


def test_a_reference_answer_that_is_not_text_is_one_line(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "Hi?", "output": "Hello."},
                                                  {"instruction": "Bye?", "output": None}])
    result = cli("eval", "pairwise", "--prompts", prompts, "--baseline-column", "output", "--models", "a",
                 "--backend", "fake", "-o", tmp_path / "run", "-q")
    assert_one_line_error(result, "row 2", "not a string")


def test_a_killed_run_resumes_without_judging_again(tmp_path):
    from distill.testing.openai_server import LoopbackServer, default_reply

    def reply(body):
        text = body["messages"][-1]["content"]
        return '{"better": "A"}' if text.startswith("Request:") else default_reply(body)

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}?"} for i in range(12)])
    args = ["eval", "pairwise", "--prompts", prompts, "--models", "m1,m2", "--baseline", "base", "--model", "j",
            "--backend", "openai", "--concurrency", "2", "--bootstrap", "50", "-q"]

    def start(server, out):
        return start_distill(*args, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=reply, latency=0.02) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 10)
        records = tmp_path / "killed" / "records.jsonl"
        assert (records.read_text().count("\n") if records.exists() else 0) < 24
        resumed = start(server, tmp_path / "killed")
        assert resumed.wait(120) == 0, resumed.stderr.read()
        repeats = sum(count - 1 for count in server.stats.answered.values() if count > 1)
        assert repeats <= 2  # at most the requests in flight when it was killed
        assert start(server, tmp_path / "whole").wait(120) == 0
    killed, whole = (json.loads((tmp_path / name / "stats.json").read_text())["postprocess"]["win_rates"]
                     for name in ("killed", "whole"))
    assert killed == whole and sum(row["tie"] for row in whole) == 24
    assert (tmp_path / "killed" / "results" / "win_rates.png").is_file()


def test_without_the_eval_extra_it_says_what_to_install_before_asking_anything(cli, tmp_path, monkeypatch):
    from distill import eval_stats

    monkeypatch.setattr(eval_stats.importlib.util, "find_spec", lambda name: None)
    result = cli("eval", "pairwise", "--prompts", reference_file(tmp_path), "--baseline-column", "output", "--models",
                 "a", "--backend", "fake", "-o", tmp_path / "run", "-q")
    assert_one_line_error(result, "needs statsmodels and matplotlib: pip install 'distill[eval]'")
    assert not (tmp_path / "run").exists()
