"""`distill eval mt-bench`: ratings read by FastChat's rule, the two-turn flow, reference grading,
the tables, the results files, resume, and the smoke set."""

from __future__ import annotations

import json
import re
import signal
import sqlite3

import pytest
from conftest import (assert_one_line_error, kill_after_answers, read_dataset, record_fake_requests, start_distill,
                      write_jsonl)

from distill.pipelines.mt_bench import CATEGORIES, NEED_REF_CATS, _smoke_rows, read_json_rating, read_rating, results
from distill.testing.openai_server import LoopbackServer


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is right. Rating: [[7]]", 7.0),
    ("Rating: [[8.5]]", 8.5),
    ("Mostly fine [6]", 6.0),  # FastChat's backup: single brackets
    ("First [2] of the steps is wrong; overall [[4]]", 4.0),  # double brackets win over single ones
    ("[[3]] at first, then [[9]]", 3.0),  # the first one
    ("Rating: [[10]]", 10.0),
    ("Rating: [[11]]", None),  # outside 1-10
    ("Rating: [[0]]", None),
    ("Rating: 7/10", None),
    ("Rating: [[seven]]", None),
    ("Rating: [[-3]]", None),
    ("", None),
])
def test_read_rating(text, expected):
    assert read_rating(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('{"explanation": "Right.", "rating": 7}', 7.0),
    ('```json\n{"explanation": "Wrong.", "rating": 2}\n```', 2.0),
    ('{"explanation": "Too kind.", "rating": 12}', None),
    ('{"explanation": "cut off before the rat', None),
    ("No JSON, but Rating: [[4]]", 4.0),
])
def test_read_json_rating(text, expected):
    assert read_json_rating(text) == expected


def is_judge(request) -> bool:
    return request.messages[0]["role"] == "system" and request.messages[0]["content"].startswith("You grade")


def is_reference(request) -> bool:
    return request.messages[0]["role"] == "system" and "serve as the reference" in request.messages[0]["content"]


def scripted(judge):
    """Answers name their model and turn; references say so; judge(request) -> the judge's reply."""
    def reply(request):
        if is_judge(request):
            return judge(request)
        turn = sum(m["role"] == "user" for m in request.messages)
        if is_reference(request):
            return f"reference for turn {turn}"
        return f"answer by {request.model} to turn {turn}"
    return reply


def graded_answer(request) -> str:
    """The answer the judge grades: the last assistant line of the conversation shown."""
    text = request.messages[-1]["content"]
    return re.findall(r"answer by \S+ to turn \d", text)[-1]


def rate_by_model(request) -> str:
    return "Fine. Rating: [[8]]" if "answer by good" in graded_answer(request) else "Weak. Rating: [[3]]"


QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write a haiku.", "Now a limerick."]},
    {"question_id": 2, "category": "math", "turns": ["What is 2+3?", "And times 4?"], "reference": ["5", "20"]},
    {"question_id": 3, "category": "reasoning", "turns": ["Who is taller?", "And the shortest?"]},
]


def run(cli, tmp_path, monkeypatch, judge, *extra, questions=QUESTIONS, flag="--questions", out="run"):
    from distill.backends import fake

    monkeypatch.setattr(fake, "echo_reply", scripted(judge))
    path = write_jsonl(tmp_path / "q.jsonl", questions)
    result = cli("eval", "mt-bench", flag, path, "--models", "good,bad", "--judge", "j", "--backend", "fake",
                 "-o", tmp_path / out, "-q", *extra)
    return result, tmp_path / out


def table(out):
    return {row["model"]: row for row in json.loads((out / "stats.json").read_text())["postprocess"]["mt_bench"]}


def test_turn_two_follows_the_models_own_first_answer(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    result, out = run(cli, tmp_path, monkeypatch, rate_by_model, flag="--input")
    assert result.code == 0, result.err
    second = [r for r in asked if not is_judge(r) and not is_reference(r) and len(r.messages) == 3]
    assert len(second) == 6  # 3 questions x 2 models
    for request in second:
        assert request.messages[1] == {"role": "assistant", "content": f"answer by {request.model} to turn 1"}
    rows = read_dataset(out)
    assert {tuple(r["answers"]) for r in rows if r["model"] == "good"} == {("answer by good to turn 1",
                                                                              "answer by good to turn 2")}
    # The judge grades turn 2 seeing the whole conversation.
    turn_two = [r for r in asked if is_judge(r) and "answer by good to turn 2" in r.messages[-1]["content"]]
    assert turn_two and all("answer by good to turn 1" in r.messages[-1]["content"] for r in turn_two)


def test_sampling_follows_fastchat_and_the_judge_is_greedy(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    result, _ = run(cli, tmp_path, monkeypatch, rate_by_model)
    assert result.code == 0, result.err
    answers = [r for r in asked if not is_judge(r) and not is_reference(r)]
    by_turn = {r.messages[0]["content"]: r.params for r in answers}
    assert by_turn["Write a haiku."].temperature == 0.7 and by_turn["What is 2+3?"].temperature == 0.0
    assert {p.max_tokens for p in by_turn.values()} == {1024}
    judged = [r for r in asked if is_judge(r)]
    assert {(r.params.temperature, r.params.max_tokens) for r in judged} == {(0.0, 2048)}
    assert all(r.json_schema is None and "[[5]]" in r.messages[0]["content"] for r in judged)  # MT-Bench's format
    again = record_fake_requests(monkeypatch)
    result, _ = run(cli, tmp_path, monkeypatch, rate_by_model, "--temperature", "0.3", "--max-new-tokens", "64",
                    "--judge-max-new-tokens", "32", out="other")
    assert result.code == 0, result.err
    assert {(r.params.temperature, r.params.max_tokens) for r in again if not is_judge(r) and not is_reference(r)} \
        == {(0.3, 64)}
    assert {r.params.max_tokens for r in again if is_judge(r)} == {32}


def test_references_come_from_the_question_or_are_written_once_by_the_judge(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    result, out = run(cli, tmp_path, monkeypatch, rate_by_model)
    assert result.code == 0, result.err
    rows = {(r["question_id"], r["model"]): r for r in read_dataset(out)}
    for model in ("good", "bad"):
        assert rows["1", model]["reference"] == [] and rows["1", model]["reference_source"] is None
        assert rows["2", model]["reference"] == ["5", "20"] and rows["2", model]["reference_source"] == "question"
        assert rows["3", model]["reference"] == ["reference for turn 1", "reference for turn 2"]
        assert rows["3", model]["reference_source"] == "judge"
    # One request per turn for the only question without a reference, shared by both models, asked of the judge.
    written = [r for r in asked if is_reference(r)]
    assert len(written) == 2 and {r.model for r in written} == {"j"}
    assert {r.params.temperature for r in written} == {0.0}
    # The judge sees the reference: the question's own, and in turn 2 the reference of both turns.
    math = [r.messages[-1]["content"] for r in asked if is_judge(r) and "What is 2+3?" in r.messages[-1]["content"]]
    assert len(math) == 4 and all("5" in text for text in math)
    assert sum("20" in text for text in math) == 2
    plain = [r.messages[-1]["content"] for r in asked if is_judge(r) and "Write a haiku." in r.messages[-1]["content"]]
    assert plain and not any("eference" in text for text in plain)


def test_a_partial_reference_is_completed_by_the_judge(cli, tmp_path, monkeypatch):
    questions = [{"question_id": 7, "category": "coding", "turns": ["Sort a list.", "In place?"], "reference": ["sorted(x)"]}]
    result, out = run(cli, tmp_path, monkeypatch, rate_by_model, questions=questions)
    assert result.code == 0, result.err
    for row in read_dataset(out):
        assert row["reference"] == ["sorted(x)", "reference for turn 2"] and row["reference_source"] == "question+judge"


def test_scores_per_model_and_category_on_a_hand_computed_case(cli, tmp_path, monkeypatch):
    ratings = {("good", "Write a haiku.", 1): 9, ("good", "Write a haiku.", 2): 7, ("good", "What is 2+3?", 1): 6,
               ("good", "What is 2+3?", 2): 4, ("good", "Who is taller?", 1): 5, ("good", "Who is taller?", 2): 10,
               ("bad", "Write a haiku.", 1): 2, ("bad", "What is 2+3?", 1): 1, ("bad", "Who is taller?", 1): 3}

    def judge(request):
        text = request.messages[-1]["content"]
        model, turn = re.findall(r"answer by (\S+) to turn (\d)", text)[-1]
        question = next(q["turns"][0] for q in QUESTIONS if q["turns"][0] in text)
        rating = ratings.get((model, question, int(turn)))
        return f"Rating: [[{rating}]]" if rating else "I cannot decide."

    result, out = run(cli, tmp_path, monkeypatch, judge)
    assert result.code == 0, result.err
    good, bad = table(out)["good"], table(out)["bad"]
    assert good["turn_1"] == pytest.approx(20 / 3) and good["turn_2"] == pytest.approx(7)
    assert good["overall"] == pytest.approx(41 / 6) and good["unparseable"] == 0 and good["unparseable_share"] == 0
    assert good["categories"]["writing"] == {"turn_1": 9, "turn_2": 7, "overall": 8}
    assert good["categories"]["math"]["overall"] == 5 and good["categories"]["reasoning"]["overall"] == 7.5
    assert list(good["categories"]) == [c for c in CATEGORIES if c in ("writing", "math", "reasoning")]
    assert bad["turn_1"] == 2 and bad["turn_2"] is None and bad["overall"] == 2
    assert bad["unparseable"] == 3 and bad["grades"] == 6 and bad["unparseable_share"] == 0.5
    assert bad["categories"]["math"] == {"turn_1": 1, "turn_2": None, "overall": 1}
    rows = {(r["question_id"], r["model"]): r for r in read_dataset(out)}
    assert rows["1", "bad"]["score_turn_2"] is None and rows["1", "bad"]["judge_replies"][1] == "I cannot decide."
    card = (out / "README.md").read_text()
    assert "| good | 6.67 | 7.00 | 6.83 | 0 of 6 (0.0%) |" in card
    assert "| bad | 2.00 | – | 2.00 | 3 of 6 (50.0%) |" in card
    assert "| writing | 8.00 | 2.00 |" in card


def test_results_files_and_a_rerun_that_asks_nothing(cli, tmp_path, monkeypatch):
    result, out = run(cli, tmp_path, monkeypatch, rate_by_model)
    assert result.code == 0, result.err
    report = (out / "results" / "results.md").read_text()
    assert "| good | 8.00 | 8.00 | 8.00 | 0 of 6 (0.0%) |" in report and "How to read" in report
    assert "mt_bench_radar.png" in report
    assert (out / "results" / "mt_bench_radar.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    stats = json.loads((out / "stats.json").read_text())
    again, _ = run(cli, tmp_path, monkeypatch, lambda request: pytest.fail("asked again"))
    assert again.code == 0, again.err
    assert json.loads((out / "stats.json").read_text())["postprocess"] == stats["postprocess"]


def test_the_results_table_from_rows():
    rows = [{"model": "m", "category": "stem", "score_turn_1": 4.0, "score_turn_2": None},
            {"model": "m", "category": "coding", "score_turn_1": 6.0, "score_turn_2": 8.0}]
    (row,) = results(rows)
    assert (row["turn_1"], row["turn_2"], row["overall"]) == (5.0, 8.0, 6.0)
    assert list(row["categories"]) == ["coding", "stem"] and row["unparseable"] == 1


def test_the_hub_layout_of_mt_bench_prompts_is_read(cli, tmp_path, monkeypatch):
    questions = [{"prompt": ["Add 2 and 2.", "Now double it."], "prompt_id": 123, "category": "math", "reference": []},
                 {"prompt": ["Name a colour.", "Another?"], "prompt_id": 456, "category": "writing", "reference": []}]
    result, out = run(cli, tmp_path, monkeypatch, rate_by_model, questions=questions)
    assert result.code == 0, result.err
    rows = {(r["question_id"], r["model"]): r for r in read_dataset(out)}
    assert rows["123", "good"]["reference_source"] == "judge" and rows["456", "good"]["reference_source"] is None


def test_the_smoke_set():
    rows = _smoke_rows()
    assert [r["category"] for r in rows].count("writing") == 2
    assert {r["category"] for r in rows} == set(CATEGORIES) and len(rows) == 2 * len(CATEGORIES)
    # One round of every category first, so -n 8 still covers each one.
    assert [r["category"] for r in rows[:8]] == list(CATEGORIES)
    assert len({r["question_id"] for r in rows}) == len(rows)
    for row in rows:
        assert len(row["turns"]) == 2 and all(t.strip() for t in row["turns"])
        if row["category"] in NEED_REF_CATS:
            assert len(row["reference"]) == 2 and all(r.strip() for r in row["reference"])
        else:
            assert "reference" not in row


def test_the_smoke_set_runs_by_name(cli, tmp_path, monkeypatch):
    from distill.backends import fake

    monkeypatch.setattr(fake, "echo_reply", scripted(rate_by_model))
    result = cli("eval", "mt-bench", "--questions", "smoke", "-n", "8", "--models", "good", "--backend", "fake",
                 "-o", tmp_path / "run", "-q")
    assert result.code == 0, result.err
    assert list(table(tmp_path / "run")["good"]["categories"]) == list(CATEGORIES)


@pytest.mark.parametrize(("row", "needle"), [
    ({"question_id": 1, "category": "writing", "turns": ["only one turn"]}, "two non-empty strings"),
    ({"question_id": 1, "category": "writing", "turns": "a string"}, "two non-empty strings"),
    ({"question_id": 1, "category": "writing"}, "`turns` (or `prompt`)"),
    ({"category": "writing", "turns": ["a", "b"]}, "no `question_id`"),
    ({"question_id": 1, "turns": ["a", "b"]}, "`category`"),
    ({"question_id": 1, "category": "math", "turns": ["a", "b"], "reference": "5"}, "`reference`"),
])
def test_bad_question_files_give_one_line(cli, tmp_path, row, needle):
    path = write_jsonl(tmp_path / "q.jsonl", [row])
    result = cli("eval", "mt-bench", "--questions", path, "--models", "a", "--backend", "fake", "-o", tmp_path / "r", "-q")
    assert_one_line_error(result, needle)
    assert needle in result.err and "row 1" in result.err


def test_a_repeated_question_id_gives_one_line(cli, tmp_path):
    row = {"question_id": 1, "category": "writing", "turns": ["a", "b"]}
    path = write_jsonl(tmp_path / "q.jsonl", [row, row])
    result = cli("eval", "mt-bench", "--questions", path, "--models", "a", "--backend", "fake", "-o", tmp_path / "r", "-q")
    assert_one_line_error(result)
    assert "row 2" in result.err and "appears twice" in result.err


def test_without_the_eval_extra_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    path = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    result = cli("eval", "mt-bench", "--questions", path, "--models", "a", "--backend", "fake", "-o", tmp_path / "r", "-q")
    assert_one_line_error(result, "pip install 'distill[eval]'")
    assert "distill[eval]" in result.err and not (tmp_path / "r").exists()


# -- killed and resumed, against a real HTTP server ---------------------------------------------------


def loopback_reply(body: dict) -> str:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if system.startswith("You grade"):
        return "Good enough. Rating: [[6]]"
    return f"{body['model']} answers: {body['messages'][-1]['content'][:40]}"


def test_a_killed_run_resumes_without_asking_or_judging_again(tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", [
        {"question_id": i, "category": CATEGORIES[i % len(CATEGORIES)], "turns": [f"Question {i}, part one?",
                                                                                   f"Question {i}, part two?"]}
        for i in range(12)])
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    def start(server, out):
        return start_distill("eval", "mt-bench", "--questions", questions, "--models", "a,b", "--judge", "j",
                             "--backend", "openai", "--model", "j", "--base-url", server.url,
                             "--concurrency", "4", "-o", out, "-q",
                             env={"OPENAI_API_KEY": "k", "HF_HUB_OFFLINE": "1"})

    with LoopbackServer(reply=loopback_reply, latency=0.03) as server:
        proc = start(server, killed)
        kill_after_answers(proc, server, 40)
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(killed / "cache.sqlite") as db:
            kept = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        received = server.stats.received
        rerun = start(server, killed)
        assert rerun.wait(120) == 0, rerun.stderr.read()
        # Per question and model 2 answers and 2 gradings; per reasoning, math or coding question 2 references.
        total = 12 * 2 * 4 + 2 * sum(CATEGORIES[i % len(CATEGORIES)] in NEED_REF_CATS for i in range(12))
        assert server.stats.received - received == total - kept  # only what the cache did not hold
        # Asked twice: at most the requests in flight at the kill, whose replies never arrived.
        assert sum(n - 1 for n in server.stats.answered.values()) <= 4
        straight = start(server, whole)
        assert straight.wait(120) == 0, straight.stderr.read()
    assert read_dataset(killed) == read_dataset(whole)
    assert table(killed) == table(whole)


def test_a_structured_judge_answers_through_a_schema(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    result, out = run(cli, tmp_path, monkeypatch, lambda r: json.dumps({"explanation": "Fine.", "rating": 6}),
                      "--structured")
    assert result.code == 0, result.err
    judged = [r for r in asked if is_judge(r)]
    assert judged and all(r.json_schema is not None for r in judged)
    assert all(r.json_schema is None for r in asked if not is_judge(r))
    assert table(out)["good"]["overall"] == 6 and table(out)["bad"]["unparseable"] == 0
