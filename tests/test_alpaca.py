"""Alpaca (stanford_alpaca): whole tasks asked for in batches, its filters, ROUGE-L novelty, resume."""

import hashlib
import json
import random
import re

import datasets
import pytest
from conftest import assert_one_line_error, kill_after_answers, record_fake_requests, start_distill, write_jsonl

from distill.errors import BackendError
from distill.filters.rouge import rouge_l, tokenize
from distill.pipelines import alpaca as al
from distill.request import Response, Usage
from distill.schemas import ALPACA
from distill.testing.openai_server import LoopbackServer

VOCAB = [f"{a}{b}" for a in ("mar", "tel", "kin", "sol", "vor", "pel", "dun", "fra", "gos", "lim")
         for b in ("ab", "ek", "ir", "on", "us", "ath", "ol", "em", "ix", "ur")]

# Seeds of ten distinct words each, so that ROUGE-L against them is easy to set exactly.
SEED_WORDS = [VOCAB[i * 10:(i + 1) * 10] for i in range(6)]
SEEDS = [{"instruction": " ".join(words).capitalize() + ".", "instances": [{"input": "" if i % 2 else f"input {i}",
                                                                             "output": f"output {i}"}]}
         for i, words in enumerate(SEED_WORDS)]
AT_THRESHOLD = " ".join(SEED_WORDS[0][:7] + ["alpha", "beta", "gamma"]).capitalize() + "."  # ROUGE-L exactly 0.7
ABOVE = " ".join(SEED_WORDS[1][:8] + ["delta", "epsilon"]).capitalize() + "."  # ROUGE-L 0.8

# Tasks the filters must drop, by reason (instruction, output).
BAD = {
    ("Draw the harbour at dawn in soft light.", "Done."): "blacklisted-word",
    ("Plan a trip: go to the old harbour first.", "Done."): "blacklisted-word",
    ("Say hi now.", "Hi."): "too-short",
    ("Write a program that prints the first ten primes.", "print(2)"): "write-a-program",
    ("(Optional) summarise the text about the old harbour.", "Done."): "starts-with-punctuation",
    ("Élucidate the text about the old harbour.", "Done."): "starts-non-ascii",
    ("Explain why the harbour was quiet at dawn.", ""): "empty-output",
}


def new_task(rng: random.Random) -> str:
    verb = rng.choice(["Explain", "Classify", "Describe", "Summarise", "Compare"])
    return f"{verb} the " + " ".join(rng.sample(VOCAB, 6)) + "."


def block(number: int, instruction: str, given: str, output: str) -> str:
    return f"{number}. Instruction: {instruction}\n{number}. Input:\n{given or '<noinput>'}\n{number}. Output:\n{output}\n"


def scripted(text: str, chat: bool) -> str:
    """A teacher that follows Alpaca's request: the rest of the list of 20, bad tasks among them."""
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    numbers = [int(n) for n in re.findall(r"(?m)^(\d+)\. Instruction:", text)]
    first = max(numbers) + (1 if chat else 0)
    tasks = [(AT_THRESHOLD, "", "kept"), (ABOVE, "", "dropped")] + [(i, "", o) for i, o in BAD]
    tasks += [(new_task(rng), rng.choice(["", "some input"]), "some output") for _ in range(19 - first + 1 - len(tasks))]
    blocks = [block(n, *task) for n, task in enumerate(tasks, first)]
    reply = "###\n".join(blocks)
    return reply if chat else reply.split("Instruction:", 1)[1]  # a plain prompt ended with "4. Instruction:"


def fake_teacher(request):
    if request.prompt is not None:
        return scripted(request.prompt, chat=False)
    return scripted(request.messages[-1]["content"], chat=True)


def body_reply(body):
    if "prompt" in body:
        return scripted(body["prompt"], chat=False)
    return scripted(body["messages"][-1]["content"], chat=True)


@pytest.fixture
def seeds(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", SEEDS)


def run_fake(cli, tmp_path, *args, name="run"):
    out = tmp_path / name
    return cli("generate", "alpaca", "--backend", "fake", "-o", out, "-q", *args), out


@pytest.fixture
def calls(monkeypatch):
    """Every request the fake backend receives."""
    return record_fake_requests(monkeypatch)


def config(tmp_path, **values):
    return al.AlpacaConfig(output=tmp_path / "o", backend="fake", **values)


def rows_of(out):
    return datasets.load_dataset(str(out), split="train").to_list()


# -- reading replies and the filters ---------------------------------------------------------------


def test_replies_are_read_as_numbered_blocks():
    text = ("4. Instruction: Name a river.\n4. Input:\n<noinput>\n4. Output:\nThe Nile.\n###\n"
            "5. Instruction: Sort the numbers.\n5. Input:\n3, 1, 2\nand 5\n5. Output:\n1, 2, 3, 5\n###\n"
            "7. Instruction: Wrong number.\n7. Input:\nx\n7. Output:\ny\n###\n"  # task 6 is not numbered 6
            "7. Instruction: No output.\n7. Input:\nx\n###\n")
    tasks, dropped = al.parse_tasks(text, 4, truncated=False)
    assert tasks == [{"instruction": "Name a river.", "input": "", "output": "The Nile."},
                     {"instruction": "Sort the numbers.", "input": "3, 1, 2\nand 5", "output": "1, 2, 3, 5"}]
    assert dropped == {"malformed": 2}
    chatty = "Here are the tasks:\n###\n" + text.split("###")[0] + "###\n"
    assert al.parse_tasks(chatty, 4, truncated=False)[0] == tasks[:1]  # a chat preamble and a leading ### are skipped


def test_a_reply_cut_off_by_the_token_limit_loses_its_last_task():
    text = "".join(block(n, f"Explain thing number {n} in detail.", "", f"Answer {n}.") + "###\n" for n in (4, 5, 6))
    whole, _ = al.parse_tasks(text, 4, truncated=False)
    cut, dropped = al.parse_tasks(text.rstrip("#\n"), 4, truncated=True)
    assert len(whole) == 3 and cut == whole[:2] and dropped == {"cut-off": 1}
    # Through the pool, from the finish reason the backend gave.
    pool = al.TaskPool.__new__(al.TaskPool)
    pool.style = "chat"
    reply = Response(text.rstrip("#\n"), "length", Usage(), "m")
    assert pool.read(reply, 3)[0] == whole[:2]
    assert pool.read(Response(text, "stop", Usage(), "m"), 3)[0] == whole


def test_filters_drop_what_the_original_drops(tmp_path):
    c = config(tmp_path)
    blacklist = al.keyword_pattern(c.blacklist)
    for (instruction, output), reason in BAD.items():
        assert al.unsuited({"instruction": instruction, "output": output}, c, blacklist) == reason, instruction
    keep = {"output": "ok"}
    assert al.unsuited({"instruction": " ".join(["word"] * 151), **keep}, c, blacklist) == "too-long"
    assert al.unsuited({"instruction": " ".join(["word"] * 150), **keep}, c, blacklist) is None
    assert al.unsuited({"instruction": "Say hi right now.", **keep}, c, blacklist) is None  # 4 words are enough
    assert al.unsuited({"instruction": "Profile the mapping code for speed.", **keep}, c, blacklist) is None  # whole words
    assert al.unsuited({"instruction": "write a program that adds two numbers.", **keep}, c, blacklist) is None  # as cased
    assert al.unsuited({"instruction": "“Quoted” tasks start with a non-ASCII mark.", **keep}, c, blacklist) == "starts-non-ascii"


def test_rouge_keeps_a_task_at_exactly_the_threshold_and_drops_one_above(cli, tmp_path, monkeypatch, seeds):
    assert rouge_l(tokenize(AT_THRESHOLD), tokenize(SEEDS[0]["instruction"])) == 0.7
    assert rouge_l(tokenize(ABOVE), tokenize(SEEDS[1]["instruction"])) > 0.7
    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    result, out = run_fake(cli, tmp_path, "--seeds", seeds, "-n", "3", "--batch-size", "1")
    assert result.code == 0, result.err
    instructions = [r["instruction"] for r in rows_of(out)]
    assert instructions[0] == AT_THRESHOLD and ABOVE not in instructions  # the original drops only above 0.7
    stats = json.loads((out / "stats.json").read_text())
    assert {f["name"]: f["removed"] for f in stats["filters"]}["similar"] == 1


# -- the requests ----------------------------------------------------------------------------------


def test_each_request_shows_three_seed_tasks_and_asks_for_a_list_of_twenty(cli, tmp_path, monkeypatch, calls, seeds):
    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    result, _ = run_fake(cli, tmp_path, "--seeds", seeds, "-n", "40", "--prompt-style", "completion")
    assert result.code == 0, result.err
    assert len(calls) == 10  # two rounds of 5 requests: the first keeps 36 (7 new tasks a reply, 1 at the threshold)
    seed_instructions = {s["instruction"] for s in SEEDS}
    for request in calls:
        prompt = request.prompt
        shown = re.findall(r"(?m)^\d+\. Instruction: (.+)$", prompt)
        assert len(shown) == 3 and set(shown) <= seed_instructions  # only seeds, in every round
        assert prompt.endswith("\n###\n4. Instruction:") and "list of 20 varied tasks" in prompt
        assert "1. Input:\ninput 0" in prompt or "<noinput>" in prompt
        params = request.params
        assert (params.temperature, params.top_p, params.max_tokens) == (1.0, 1.0, 3072)
        assert params.stop == ("\n20", "20.") and params.presence_penalty is None
    assert len({r.params.seed for r in calls}) == 10 and len({r.prompt for r in calls}) > 1  # seeded per request


def test_seed_tasks_are_shown_with_their_first_instance(tmp_path):
    c = config(tmp_path, seeds_per_prompt=2)
    seeds = [al.SeedTask("Sort these numbers:", (("", "1, 2, 3"), ("4, 2", "2, 4"))),
             al.SeedTask("Name a river in Asia.", (("", "The Mekong."),))]
    pool = al.TaskPool.__new__(al.TaskPool)
    pool.config, pool.seeds = c, seeds
    shown = sorted(pool.shown(0, 0), key=lambda t: t["instruction"])
    assert shown == [{"instruction": "Name a river in Asia.", "input": "", "output": "The Mekong."},
                     {"instruction": "Sort these numbers", "input": "", "output": "1, 2, 3"}]  # trailing ":" dropped
    prompt = al.render(al.PROMPTS, "tasks.j2", chat=False, examples=shown, total=20)
    assert "2. Instruction: Sort these numbers\n2. Input:\n<noinput>\n2. Output:\n1, 2, 3\n###\n3. Instruction:" in prompt
    loaded = al.load_alpaca_seeds(config(tmp_path))
    assert len(loaded) == 25 and all(s.instances for s in loaded)  # the built-in seeds


def test_chat_prompts_carry_the_same_request(cli, tmp_path, monkeypatch, calls, seeds):
    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    result, _ = run_fake(cli, tmp_path, "--seeds", seeds, "-n", "4", "--batch-size", "2")
    assert result.code == 0, result.err
    assert calls and all(c.prompt is None and len(c.messages) == 1 for c in calls)
    text = calls[0].messages[0]["content"]
    assert "Continue the list with tasks 4 to 20" in text and text.count("\n###\n") == 4
    for rule in ("different verb", "questions with direct commands", "classification, editing", "seen or heard",
                 "reminder", "English", "one or two sentences", "never a bare placeholder", "within 100 words",
                 "<noinput>", "fewer than 100 words"):
        assert rule in text, rule


# -- whole runs ------------------------------------------------------------------------------------


def test_fake_backend_run_end_to_end(cli, tmp_path):
    result, out = run_fake(cli, tmp_path, "-n", "40")
    assert result.code == 0, result.err
    assert "40 tasks made; 40 rows written" in result.out
    data = datasets.load_dataset(str(out), split="train")
    assert list(data.features)[:4] == list(ALPACA) == ["instruction", "input", "output", "messages"]
    rows = data.to_list()
    assert len({r["instruction"] for r in rows}) == 40 and any(r["input"] for r in rows) and not all(r["input"] for r in rows)
    for row in rows:
        user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        assert row["messages"] == [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        assert row["output"] and row["input"] != "<noinput>" and row["model"] == "fake-model"
    card = (out / "README.md").read_text()
    assert "Alpaca" in card and "stanford_alpaca" in card
    again, out_b = run_fake(cli, tmp_path, "-n", "40", name="again")
    assert again.code == 0 and rows_of(out_b) == rows  # a function of the seed
    other, out_c = run_fake(cli, tmp_path, "-n", "40", "--seed", "1", name="other")
    assert other.code == 0 and rows_of(out_c) != rows


def test_bad_tasks_are_dropped_and_counted(cli, tmp_path, monkeypatch, seeds):
    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    result, out = run_fake(cli, tmp_path, "--seeds", seeds, "-n", "12", "--batch-size", "2")
    assert result.code == 0, result.err
    rows = rows_of(out)
    assert len(rows) == 12
    assert not {r["instruction"] for r in rows} & {i for i, _ in BAD}
    removed = {f["name"]: f["removed"] for f in json.loads((out / "stats.json").read_text())["filters"]}
    for reason in set(BAD.values()):
        assert removed[reason] >= 2, reason  # every request's reply held them
    assert removed["blacklisted-word"] == 2 * removed["too-short"]


def test_a_run_that_failed_half_way_resumes_to_the_same_dataset(cli, tmp_path, monkeypatch, seeds):
    asked = []

    def failing(request):
        asked.append(request)
        if len(asked) == 4:  # the second round's second request
            raise BackendError("the teacher is gone")  # as when retries run out
        return fake_teacher(request)

    args = ("--seeds", seeds, "-n", "40", "--batch-size", "3", "--max-retries", "0")
    monkeypatch.setattr("distill.backends.fake.echo_reply", failing)
    broken, out = run_fake(cli, tmp_path, *args, name="broken")
    assert_one_line_error(broken, "the teacher is gone")
    done = (out / "records.jsonl").read_text().count("\n")
    assert 0 < done < 40  # the first round's tasks are recorded
    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    resumed, _ = run_fake(cli, tmp_path, *args, name="broken")
    whole, out_whole = run_fake(cli, tmp_path, *args, name="whole")
    assert resumed.code == whole.code == 0, resumed.err
    assert rows_of(out) == rows_of(out_whole) and len(rows_of(out)) == 40


def test_killed_run_resumes_and_makes_the_same_dataset(tmp_path, seeds):
    args = ["generate", "alpaca", "--backend", "openai", "--model", "m", "--seeds", seeds, "-n", "60", "--batch-size",
            "2", "--concurrency", "4", "-q"]

    def start(server, out, *extra):
        return start_distill(*args, *extra, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=body_reply, latency=0.05) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 3)
        records = tmp_path / "killed" / "records.jsonl"
        assert (records.read_text().count("\n") if records.exists() else 0) < 60
        assert start(server, tmp_path / "killed").wait(120) == 0
        repeats = sum(count - 1 for count in server.stats.answered.values() if count > 1)
        assert repeats <= 2  # at most the requests in flight when it was killed
        assert start(server, tmp_path / "whole").wait(120) == 0
        completion = start(server, tmp_path / "completion", "--prompt-style", "completion")
        assert completion.wait(120) == 0
    killed, whole = rows_of(tmp_path / "killed"), rows_of(tmp_path / "whole")
    assert killed == whole and len(whole) == 60
    assert len(rows_of(tmp_path / "completion")) == 60  # /v1/completions works too


def test_a_model_that_writes_nothing_new_ends_the_run(cli, tmp_path, monkeypatch, seeds):
    def stuck(request):
        text = request.messages[-1]["content"]
        return block(4, re.findall(r"(?m)^1\. Instruction: (.+)$", text)[0], "", "again")  # a seed: never novel

    monkeypatch.setattr("distill.backends.fake.echo_reply", stuck)
    result, out = run_fake(cli, tmp_path, "--seeds", seeds, "-n", "3", "--patience", "2", "--batch-size", "2")
    assert_one_line_error(result, "no row survived")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["exhausted"] == 3 and stats["postprocess"]["rounds"] == 2


def test_bad_inputs_are_one_line(cli, tmp_path):
    bare = write_jsonl(tmp_path / "bare.jsonl", [{"instruction": f"Seed task number {i} here."} for i in range(5)])
    few = write_jsonl(tmp_path / "few.jsonl", SEEDS[:2])
    for args, needle in [
        (("--seeds", bare), "has no input and output"),
        (("--seeds", few), "--seeds-per-prompt needs at least 3"),
        (("--seeds", tmp_path / "missing.jsonl"), "missing.jsonl"),
        (("--seeds-per-prompt", "19"), "--list-length"),
        (("--min-words", "10", "--max-words", "2"), "--min-words"),
        (("--rouge-threshold", "1.5"), "--rouge-threshold"),
        (("--shard", "0/2"), "cannot be split"),
    ]:
        result, out = run_fake(cli, tmp_path, *args)
        assert_one_line_error(result, needle)
        assert not (out / "records.jsonl").exists()


def test_short_real_run_on_the_embedded_model(cli, tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "run"
    result = cli("generate", "alpaca", "-n", "2", "--batch-size", "1", "--patience", "2", "--max-new-tokens", "256",
                 "-o", out, "-q")
    # A 270M base model may or may not write usable tasks: the run must end cleanly either way,
    # with a dataset and exit 0, or with exit 1 and the one line that says no row survived.
    stats = json.loads((out / "stats.json").read_text())
    assert stats["backend"] == "llamacpp" and stats["tokens"]["completion"] > 0
    assert stats["postprocess"]["prompt_style"] == "completion" and stats["last_session"]["requests"] <= 2
    if result.code == 0:
        assert "Traceback" not in result.err and not any(line.startswith("error:") for line in result.err.splitlines())
        rows = rows_of(out)
        assert rows and all(r["instruction"].strip() and r["output"].strip() for r in rows)
    else:
        assert_one_line_error(result, "no row survived post-processing")
        assert not (out / "data").exists()
