"""Self-Instruct: the bootstrap, its filters, classification, instances, resume."""

import asyncio
import hashlib
import json
import random
import re

import datasets
import pytest
from conftest import assert_one_line_error, kill_after_answers, record_fake_requests, start_distill, write_jsonl

from distill.filters.rouge import NoveltyPool, rouge_l, tokenize
from distill.pipelines import self_instruct as si
from distill.request import Response, Usage
from distill.schemas import SELF_INSTRUCT
from distill.seeding import derive_seed
from distill.testing.openai_server import LoopbackServer

VOCAB = [f"{a}{b}" for a in ("mar", "tel", "kin", "sol", "vor", "pel", "dun", "fra", "gos", "lim")
         for b in ("ab", "ek", "ir", "on", "us", "ath", "ol", "em", "ix", "ur")]

# Instructions the filters must drop, by reason.
BAD = {
    "Draw a picture of a quiet harbour at dawn.": "unsuited-keyword",
    "Say hi.": "too-short",
    "Write a program that prints the first ten primes.": "write-a-program",
    "(optional) summarise the text about the old harbour.": "starts-with-punctuation",
}


def new_task(rng: random.Random) -> str:
    verb = rng.choice(["Explain", "Classify", "Describe", "Summarise", "Compare"])
    return f"{verb} the " + " ".join(rng.sample(VOCAB, 6)) + "."


def shown_tasks(text: str) -> list[str]:
    return re.findall(r"(?m)^\d+\. (.+)$", text)


def scripted(text: str, chat: bool) -> str:
    """A teacher that follows Self-Instruct's prompts (text: the prompt, or the user message)."""
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    if "list of varied tasks" in text or "Continue the list" in text:
        shown = len(shown_tasks(text))
        tasks = list(BAD) + [new_task(rng) for _ in range(4)]
        first = shown + 1
        listed = "\n".join(f"{first + i}. {task}" for i, task in enumerate(tasks))
        # A base model continues after the number the prompt ended with.
        return listed if chat else listed.split(".", 1)[1]
    if "Classification:" in text:
        instruction = re.findall(r"Task: (.+)\nClassification:", text)[-1]
        return " Yes" if instruction.startswith("Classify") else " No"
    instruction = re.findall(r"Task: (.+)", text)[-1]
    if "Class label:" in text:
        return "Class label: Alpha\nInput: first thing\nClass label: Beta\nInput: second thing\n"
    if instruction.startswith("Compare"):  # the same input with two outputs: both dropped
        return "Example 1\nInput: x\nOutput: one\nExample 2\nInput: x\nOutput: two\n"
    if instruction.startswith("Summarise"):
        return "Output: A short summary.\n"
    return ("Example 1\nInput: some input\nOutput: some output\nExample 2\nInput: None\nOutput: \n"
            "Example 3\nInput: same\nOutput: same\nExample 4\nInput: some input\nOutput: some output\n")


def fake_teacher(request):
    if request.prompt is not None:
        return scripted(request.prompt, chat=False)
    return scripted(request.messages[-1]["content"], chat=True)


def run_fake(cli, tmp_path, monkeypatch, *args, reply=fake_teacher, name="run"):
    monkeypatch.setattr("distill.backends.fake.echo_reply", reply)
    out = tmp_path / name
    return cli("generate", "self-instruct", "--backend", "fake", "-o", out, "-q", *args), out


@pytest.fixture
def calls(monkeypatch):
    """Every request the fake backend receives."""
    return record_fake_requests(monkeypatch)


def config(tmp_path, **values):
    return si.SelfInstructConfig(output=tmp_path / "o", backend="fake", **values)


class Teacher:
    """Stands in for the client: `answer(request)` gives (text, finish reason); every request is kept."""

    model = "teacher"

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    async def complete(self, request):
        self.requests.append(request)
        text, finish = self.answer(request)
        return Response(text, finish, Usage(), self.model)


def one_round(tmp_path, answer, **values):
    """A pipeline on a scripted teacher after one bootstrap round."""
    c = config(tmp_path, **values)
    teacher = Teacher(answer)
    pipeline = si.SelfInstruct(c, teacher, si.load_seeds(c))
    asyncio.run(pipeline.bootstrap.round())
    return pipeline, teacher.requests


def instances_for(tmp_path, instruction, is_classification, reply, finish="stop", **values):
    """The record one instruction gets, and the requests asked for it (completion style)."""
    def answer(request):
        if request.prompt.rstrip().endswith("Classification:"):
            return (" Yes" if is_classification else " No"), "stop"
        return reply, finish

    c = config(tmp_path, prompt_style="completion", **values)
    teacher = Teacher(answer)
    pipeline = si.SelfInstruct(c, teacher, si.load_seeds(c))

    async def found(index):
        return instruction, 0, {}

    pipeline.bootstrap.instruction = found
    return asyncio.run(pipeline.task("0", 0)), teacher.requests


# -- parsing and filters -------------------------------------------------------------------


def test_input_first_parsing():
    assert si.parse_input_first("Output: Forty-two.") == [("", "Forty-two.")]
    text = "Example 1\nInput: 3, 1, 2\nOutput: 1, 2, 3\nExample 2: Input: None\nOutput: nothing to sort\n"
    assert si.parse_input_first(text) == [("3, 1, 2", "1, 2, 3"), ("", "nothing to sort")]
    multi = "Example 1\nInput: line one\nline two\nOutput: out one\nout two"
    assert si.parse_input_first(multi) == [("line one\nline two", "out one\nout two")]
    assert si.parse_input_first("no fields at all") == []


def test_output_first_parsing_and_classification_answers():
    text = "Class label: Positive\nInput: I loved it.\nClass label: Negative\nSentence: Never again.\n"
    assert si.parse_output_first(text) == [("I loved it.", "Positive"), ("Sentence: Never again.", "Negative")]
    assert si.parse_output_first("Input: without a label") == []
    assert si.parse_classification(" Yes") is True and si.parse_classification("no, it is open-ended") is False
    assert si.parse_classification("Yes.\nNo.") is True and si.parse_classification("Maybe") is None


def test_invalid_and_repeated_instances_are_dropped():
    kept, dropped = si.clean_instances(
        [("a", "b"), ("", ""), ("x", ""), ("same", "same"), ("same", "SAME"), ("a", "b"), ("", "free"),
         ("Sentence:", "Positive"), ("Translate this", "Here is the translation:")], limit=5)
    assert kept == [("a", "b"), ("same", "SAME"), ("", "free")]  # exact comparisons, as the original
    assert dropped == {"empty-output": 2, "output-is-input": 1, "ends-with-colon": 2, "duplicate": 1}


def test_a_task_whose_instances_conflict_is_dropped_whole():
    instances = [("a", "b"), ("x", "1"), ("c", "d"), ("x", "2")]
    assert si.clean_instances(instances, limit=5) == ([], {"conflicting-outputs": 4})
    # An empty input is no input: several no-input outputs do not conflict.
    assert si.clean_instances([("", "one"), ("", "two")], limit=5)[0] == [("", "one"), ("", "two")]


def test_at_most_five_instances_are_kept_drawn_at_random():
    instances = [(f"input {i}", f"output {i}") for i in range(9)]
    draws = [si.clean_instances(instances, 5, rng=random.Random(seed)) for seed in range(6)]
    assert all(len(kept) == 5 and dropped == {"over-limit": 4} for kept, dropped in draws)
    assert all(kept == sorted(kept, key=instances.index) for kept, _ in draws)  # in the reply's order
    assert len({tuple(kept) for kept, _ in draws}) > 1  # not always the first five
    assert draws[0] == si.clean_instances(instances, 5, rng=random.Random(0))  # seeded
    c = si.SelfInstructConfig(output="o", backend="fake")
    assert c.max_instances == 5


def test_instances_that_copy_the_prompts_own_examples_are_dropped():
    shown = si.demonstration_texts("instances_input_first.j2")
    copied = ("library, rain, book, afternoon", "On a rainy afternoon she read a book in the library.")
    kept, dropped = si.clean_instances([copied, ("", "Small steps, taken every day, will climb any mountain."),
                                        ("rain, park", "We walked in the park in the rain.")], limit=5, demonstrations=shown)
    assert kept == [("rain, park", "We walked in the park in the rain.")]
    assert dropped == {"copies-demonstration": 2}
    labels = si.demonstration_texts("instances_output_first.j2")
    kept, _ = si.clean_instances([("148", "Even"), ("The classroom was a zoo.", "Metaphor")], limit=5, demonstrations=labels)
    assert kept == [("148", "Even")]  # a short input or a class label may recur; a whole example may not


def test_instruction_filters(tmp_path):
    c = config(tmp_path)
    keywords = si.keyword_pattern(c.keywords())
    for text, reason in BAD.items():
        assert si.unsuited(text, c, keywords) == reason
    assert si.unsuited("Ünïcode first letter in this task.", c, keywords) == "starts-non-ascii"
    assert si.unsuited("¿Qué hora es ahora mismo?", c, keywords) == "starts-non-ascii"
    assert si.unsuited("Tell me three things.", c, keywords) is None  # 4 words: kept
    assert si.unsuited("Tell me things.", c, keywords) == "too-short"  # 3 words: dropped
    assert si.unsuited(" ".join(["word"] * 150), c, keywords) is None
    assert si.unsuited(" ".join(["word"] * 151), c, keywords) == "too-long"
    assert si.unsuited("WRITE A PROGRAM to sort the list.", c, keywords) == "write-a-program"
    assert si.unsuited("'Hello' in five languages, please.", c, keywords) == "starts-with-punctuation"
    assert si.unsuited("Explain how tides work on Earth.", c, keywords) is None
    assert si.unsuited("Profile the mapping code for speed.", c, keywords) is None  # whole words only: not "map"
    assert si.unsuited("Plan how to go to the museum.", c, keywords) == "unsuited-keyword"


def test_only_the_originals_13_keywords_by_default(tmp_path):
    c = config(tmp_path)
    assert c.unsuited_keywords == ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
                                   "maps", "draw", "plot", "go to"]
    video = "Describe the video of the rocket launch in detail."
    assert si.unsuited(video, c, si.keyword_pattern(c.keywords())) is None
    more = config(tmp_path, extra_unsuited_keywords=True)
    assert si.unsuited(video, more, si.keyword_pattern(more.keywords())) == "unsuited-keyword"
    assert {"photo", "video", "audio", "music", "flowchart", "diagram"} <= set(more.keywords()) > set(c.keywords())


def test_new_instructions_get_a_capital_first_letter_only():
    assert si.tidy("explain  the SQL JOIN\nto a Python user.") == "Explain the SQL JOIN to a Python user."


def test_rouge_l_of_exactly_0_7_is_kept_above_is_dropped(tmp_path):
    seed = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    tie = "alpha beta gamma delta epsilon zeta eta xi omicron pi"  # 7 of 10 words in order: F = 0.7 exactly
    above = "alpha beta gamma delta epsilon zeta eta theta omicron pi"  # 8 of 10: 0.8
    assert rouge_l(tokenize(seed), tokenize(tie)) == 0.7
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": seed}] + [
        {"instruction": f"Seed task number {i} about {word}."} for i, word in enumerate(VOCAB[:7])])
    boot = si.Bootstrap(config(tmp_path, seeds=str(seeds)), si.load_seeds(config(tmp_path, seeds=str(seeds))), None)
    assert boot.pool.is_novel(tie) and not boot.pool.is_novel(above)
    # `distill filter`'s rouge filter keeps its own rule: reaching the threshold is enough to drop.
    assert not NoveltyPool([seed], 0.7).is_novel(tie)


def bootstrap_answer(request):
    """Seven new tasks after the eight shown, as a base model continues the list."""
    text = request.prompt if request.prompt is not None else request.messages[-1]["content"]
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    return "\n".join(f"{9 + i}. {new_task(rng)}" for i in range(7))[3:], "stop"


def test_bootstrap_requests_are_the_originals(tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": f"Rewrite the {word} text\nbelow:"} for word in VOCAB[:12]])
    pipeline, requests = one_round(tmp_path, bootstrap_answer, seeds=str(seeds), prompt_style="completion")
    assert len(requests) == 5  # a round: 5 prompts, then the pool grows
    for request in requests:
        shown = shown_tasks(request.prompt)
        assert len(shown) == 8 and request.prompt.endswith("\n9.")  # 8 shown; the model continues at 9
        assert all(task.startswith("Rewrite the") and task.endswith("text below") for task in shown)  # one line, no ":"
        params = request.params
        assert (params.temperature, params.top_p, params.presence_penalty, params.max_tokens) == (0.7, 0.5, 2.0, 1024)
        assert getattr(params, "frequency_penalty", None) in (None, 0)
        assert params.stop == ("\n\n", "\n16", "16.", "16 .")  # tasks 9 to 15: 7 new ones
    assert len(pipeline.bootstrap.machine) == 35
    _, chat = one_round(tmp_path, bootstrap_answer, seeds=str(seeds), prompt_style="chat")
    assert "numbered 9 to 15" in chat[0].messages[-1]["content"]


def test_a_reply_cut_off_by_the_token_limit_is_dropped_whole(tmp_path):
    cut = derive_seed(0, "bootstrap", 0, 0)  # the first prompt of round 0

    def answer(request):
        return bootstrap_answer(request)[0], "length" if request.params.seed == cut else "stop"

    pipeline, requests = one_round(tmp_path, answer, prompt_style="completion")
    reply = bootstrap_answer(next(r for r in requests if r.params.seed == cut))[0]
    accepted = {task for task, _, _ in pipeline.bootstrap.machine}
    assert len(accepted) == 4 * 7  # the other four replies, whole
    assert not any(line.split(". ", 1)[-1] in accepted for line in ("9. " + reply).splitlines())
    assert pipeline.bootstrap.dropped == {"cut-off-reply": 1}


def test_a_round_judges_each_new_task_against_those_accepted_before_it(tmp_path):
    first = "Compare the marab telek kinir solon vorus pelath."
    near = "Compare the marab telek kinir solon vorus dunol."  # ROUGE-L 6/7 with the first
    pipeline, _ = one_round(tmp_path, lambda r: (f"{first}\n10. {near}", "stop"), prompt_style="completion",
                            batch_size=1)
    assert [task for task, _, _ in pipeline.bootstrap.machine] == [first]
    assert pipeline.bootstrap.dropped == {"similar": 1}


def test_the_last_instance_of_a_cut_off_reply_is_dropped(tmp_path):
    reply = "Example 1\nInput: 3, 1\nOutput: 1, 3\nExample 2\nInput: 9, 4\nOutput: 4, 9\nExample 3\nInput: 5, 2\nOutput: 2,"
    record, _ = instances_for(tmp_path, "Sort the numbers in the list.", False, reply, finish="length")
    assert record["instances"] == [{"input": "3, 1", "output": "1, 3"}, {"input": "9, 4", "output": "4, 9"}]
    record, _ = instances_for(tmp_path, "Sort the numbers in the list.", False, reply)
    assert len(record["instances"]) == 3


def test_the_classification_prompt_shows_12_yes_and_19_no():
    shown = si.render(si.PROMPTS, "classify.j2", chat=False, instruction="Sort the words.")
    answers = re.findall(r"(?m)^Classification: (Yes|No)$", shown)
    assert answers.count("Yes") == 12 and answers.count("No") == 19
    assert shown.endswith("Task: Sort the words.\nClassification:")


def test_classification_and_instance_requests_are_the_originals(tmp_path):
    reply = "Example 1\nInput: 3, 1, 2\nOutput: 1, 2, 3\n"
    record, requests = instances_for(tmp_path, "Sort the numbers in the list.", False, reply)
    classify, instances = requests
    assert (classify.params.temperature, classify.params.max_tokens, classify.params.stop) == (0.0, 3, ("\n", "Task"))
    assert instances.prompt.startswith("Write examples for each task")  # input first
    assert (instances.params.temperature, instances.params.presence_penalty, instances.params.max_tokens) == (0.0, 1.5, 350)
    assert instances.params.stop == ("Example 6", "Task:")
    assert record["instances"] == [{"input": "3, 1, 2", "output": "1, 2, 3"}] and not record["is_classification"]
    record, requests = instances_for(tmp_path, "Is the number even or odd?", True, "Class label: Even\nInput: 4\n")
    instances = requests[1]
    assert "Class label:" in instances.prompt and instances.params.max_tokens == 300  # output first
    assert instances.params.stop == ("Example 6", "Task:") and instances.params.presence_penalty == 1.5
    assert record["instances"] == [{"input": "4", "output": "Even"}] and record["is_classification"]


def test_the_built_in_seeds_and_seed_files(tmp_path):
    seeds = si.load_seeds(config(tmp_path))
    assert len(seeds) == 25 and all(s.instances for s in seeds) and any(s.is_classification for s in seeds)
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"instruction": f"Task number {i} to do well."} for i in range(6)]
                        + [{"instruction": "Task number 0 to do well."}])
    loaded = si.load_seeds(config(tmp_path, seeds=str(plain)))
    assert len(loaded) == 6 and loaded[0].instances == ()


# -- the bootstrap -------------------------------------------------------------------------


def test_bootstrap_prompts_mix_seeds_and_machine_tasks(tmp_path):
    c = config(tmp_path)
    boot = si.Bootstrap(c, si.load_seeds(c), pipeline=None)
    first = boot.shown_tasks(0, 0)
    assert len(first) == 8 and set(first) <= set(boot.seeds)  # nothing written yet: all seeds
    boot.machine = [(f"machine task {i}", 0, {}) for i in range(5)]
    later = boot.shown_tasks(3, 1)
    assert len(later) == 8 and sum(t.startswith("machine task") for t in later) == 2
    assert later == boot.shown_tasks(3, 1) and later != boot.shown_tasks(3, 2)  # seeded per round and prompt


def test_chat_run_end_to_end(cli, tmp_path, monkeypatch, calls):
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "12", "--batch-size", "3")
    assert result.code == 0, result.err
    made = re.search(r"12 instructions made; (\d+) rows written", result.out)
    data = datasets.load_dataset(str(out), split="train")
    assert made and int(made.group(1)) == data.num_rows
    assert list(data.features)[:5] == list(SELF_INSTRUCT) and data.features["messages"] == SELF_INSTRUCT["messages"]
    rows = data.to_list()
    instructions = list(dict.fromkeys(r["instruction"] for r in rows))
    assert not set(instructions) & set(BAD) and all(r["source"] == "machine" for r in rows)
    for row in rows:
        user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        assert row["messages"] == [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        assert row["is_classification"] == row["instruction"].startswith("Classify")
        if row["is_classification"]:
            assert row["output"] in ("Alpha", "Beta")
    assert not any(r["instruction"].startswith("Compare") for r in rows)  # its only instances conflicted
    explain = [r for r in rows if r["instruction"].startswith(("Explain", "Describe"))]
    assert explain and all((r["input"], r["output"]) == ("some input", "some output") for r in explain)
    # Bootstrap prompts: chat, 8 tasks shown, a round of 3 at a time.
    boot = [c for c in calls if "Continue the list" in c.messages[-1]["content"]]
    assert boot and len(boot) % 3 == 0 and all(len(shown_tasks(c.messages[-1]["content"])) == 8 for c in boot)
    assert {c.params.presence_penalty for c in boot} == {2.0} and {c.params.top_p for c in boot} == {0.5}
    examples = [c for c in calls if "Write examples for each task" in c.messages[-1]["content"]]
    assert examples and {c.params.presence_penalty for c in examples} == {1.5}
    assert all(c.prompt is None for c in calls)
    stats = json.loads((out / "stats.json").read_text())
    removed = {f["name"]: f["removed"] for f in stats["filters"]}
    assert removed["instructions: unsuited-keyword"] >= 1 and removed["instructions: write-a-program"] >= 1
    assert removed["instances: conflicting-outputs"] >= 2 and removed["no-instances"] >= 1
    assert stats["postprocess"]["prompt_style"] == "chat" and stats["postprocess"]["bootstrap_rounds"] == len(boot) // 3
    card = (out / "README.md").read_text()
    assert "Self-Instruct" in card and "2212.10560" in card


def test_completion_style_and_included_seeds(cli, tmp_path, monkeypatch, calls):
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "6", "--prompt-style", "completion", "--include-seeds")
    assert result.code == 0, result.err
    assert calls and all(c.messages is None for c in calls)
    boot = next(c for c in calls if "list of varied tasks" in c.prompt)
    assert boot.prompt.endswith("\n9.") and "\n16" in boot.params.stop
    instances = next(c for c in calls if c.prompt.startswith("Write examples for each task"))
    assert instances.prompt.endswith("\n") and instances.params.stop == ("Example 6", "Task:")
    rows = datasets.load_dataset(str(out), split="train").to_list()
    seeds = [r for r in rows if r["source"] == "seed"]
    assert len({r["instruction"] for r in seeds}) == 25 and len({r["instruction"] for r in rows if r["source"] == "machine"}) <= 6


def test_runs_are_reproducible_and_resume_from_the_cache(cli, tmp_path, monkeypatch):
    first, out = run_fake(cli, tmp_path, monkeypatch, "-n", "8", "--seed", "3", name="a")
    again, out_b = run_fake(cli, tmp_path, monkeypatch, "-n", "8", "--seed", "3", name="b")
    assert first.code == again.code == 0
    a = datasets.load_dataset(str(out), split="train").to_list()
    assert a == datasets.load_dataset(str(out_b), split="train").to_list()
    _, out_c = run_fake(cli, tmp_path, monkeypatch, "-n", "8", "--seed", "4", name="c")
    assert datasets.load_dataset(str(out_c), split="train").to_list() != a


def test_a_model_that_writes_nothing_new_ends_the_bootstrap(cli, tmp_path, monkeypatch):
    def stuck(request):
        text = request.messages[-1]["content"]
        if "Continue the list" in text:
            return "9. " + shown_tasks(text)[0]  # repeats a task it was shown: never novel
        return fake_teacher(request)

    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "3", "--patience", "2", "--batch-size", "2", reply=stuck)
    assert_one_line_error(result, "no row survived")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["bootstrap_exhausted"] == 3


def test_bad_inputs_are_one_line(cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    few = write_jsonl(tmp_path / "few.jsonl", [{"instruction": "Only one seed task here."}])
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"question": "what?"}] * 8)
    bad_instances = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": f"Seed task {i} here.", "instances": "oops"} for i in range(8)])
    for args, needle in [
        (("--seeds", empty), "empty"),
        (("--seeds", few), "--human-per-prompt needs at least 6"),
        (("--seeds", wrong), "instruction"),
        (("--seeds", bad_instances), "instances must be a list"),
        (("--seeds", tmp_path / "missing.jsonl"), "missing.jsonl"),
        (("--human-per-prompt", "10", "--machine-per-prompt", "6"), "--list-length"),
        (("--rouge-threshold", "1.5"), "--rouge-threshold"),
    ]:
        result, out = run_fake(cli, tmp_path, monkeypatch, *args)
        assert_one_line_error(result, needle)
        assert not (out / "records.jsonl").exists()


def body_reply(body):
    if "prompt" in body:
        return scripted(body["prompt"], chat=False)
    return scripted(body["messages"][-1]["content"], chat=True)


def test_killed_run_resumes_and_makes_the_same_dataset(tmp_path):
    args = ["generate", "self-instruct", "--backend", "openai", "--model", "m", "-n", "30", "--batch-size", "4",
            "--concurrency", "4", "-q"]

    def start(server, out, *extra):
        return start_distill(*args, *extra, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=body_reply, latency=0.02) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 30)
        records = tmp_path / "killed" / "records.jsonl"
        assert (records.read_text().count("\n") if records.exists() else 0) < 30
        assert start(server, tmp_path / "killed").wait(120) == 0
        repeats = sum(count - 1 for count in server.stats.answered.values() if count > 1)
        assert repeats <= 4  # at most the requests in flight when it was killed
        assert start(server, tmp_path / "whole").wait(120) == 0
        assert start(server, tmp_path / "completion", "--prompt-style", "completion").wait(120) == 0
    killed = datasets.load_dataset(str(tmp_path / "killed"), split="train").to_list()
    whole = datasets.load_dataset(str(tmp_path / "whole"), split="train").to_list()
    assert killed == whole and len({r["instruction"] for r in whole}) >= 20
    assert datasets.load_dataset(str(tmp_path / "completion"), split="train").num_rows  # /v1/completions works too


def test_short_real_run_on_the_embedded_model(cli, tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "run"
    result = cli("generate", "self-instruct", "-n", "2", "--batch-size", "1", "--patience", "2", "--max-new-tokens", "96",
                 "--instance-max-new-tokens", "64", "-o", out, "-q")
    # A 270M base model may or may not write usable tasks: the run must end cleanly either way,
    # with a dataset and exit 0, or with exit 1 and the one line that says no row survived.
    stats = json.loads((out / "stats.json").read_text())
    assert stats["backend"] == "llamacpp" and stats["tokens"]["completion"] > 0
    if result.code == 0:
        assert "Traceback" not in result.err and not any(line.startswith("error:") for line in result.err.splitlines())
        rows = datasets.load_dataset(str(out), split="train").to_list()
        assert rows and stats["splits"]["default/train"] == len(rows)
        assert all(isinstance(r["instruction"], str) and r["instruction"].strip() for r in rows)
        assert stats["items"]["failed"] == 0 and stats["items"]["done"] == stats["items"]["total"]
    else:
        assert result.code == 1, result
        assert_one_line_error(result, "no row survived post-processing")
        assert not (out / "README.md").exists() and not (out / "data").exists()
