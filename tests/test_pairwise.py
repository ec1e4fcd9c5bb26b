"""`distill eval pairwise`: verdicts read from what judges write, both orders, flips as ties, win rates."""

from __future__ import annotations

import json
import re

import pytest

from distill.pipelines.pairwise import outcome, read_verdict, win_rates


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
    rows = [{"model": "m", "outcome": o} for o in ("win", "win", "tie", "loss", "unjudged")]
    (row,) = win_rates(rows)
    assert (row["win"], row["tie"], row["loss"], row["unjudged"]) == (2, 1, 1, 1)
    assert row["win_rate"] == pytest.approx(2.5 / 4) and row["flip_rate"] == pytest.approx(1 / 4)


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
                 "--backend", "fake", "-o", out, "-q", *extra)
    return result, out


def table(out):
    return {row["model"]: row for row in json.loads((out / "stats.json").read_text())["postprocess"]["win_rates"]}


def test_a_judge_that_prefers_one_model_gives_it_every_win(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, prefers("good"))
    assert result.code == 0, result.err
    rates = table(out)
    assert rates["good"]["win"] == 3 and rates["good"]["win_rate"] == 1.0 and rates["good"]["flip_rate"] == 0
    assert rates["bad"]["tie"] == 3  # the judge's rule does not tell bad from base: it answers "B" in both orders
    assert "| good | 100.0% | 3 | 0 | 0 | 0 |" in (out / "README.md").read_text()


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

    from distill.backends import fake

    asked = []
    monkeypatch.setattr(fake.FakeBackend, "complete", _recording(fake.FakeBackend.complete, asked))
    result, _ = run(cli, tmp_path, monkeypatch, judge)
    assert result.code == 0, result.err
    judged = [r for r in asked if r.json_schema is not None]
    assert judged and {r.params.temperature for r in judged} == {0.0}
    assert {r.params.max_tokens for r in judged} == {100}
    assert {r.params.temperature for r in asked if r.json_schema is None} == {0.7}
    # Each pair was shown once with the model first and once with the baseline first.
    assert sorted(seen) == sorted([f"an answer by {m}" for m in ("good", "bad", "base", "base")] * 3)


def _recording(complete, asked):
    async def recorded(self, request):
        asked.append(request)
        return await complete(self, request)
    return recorded
