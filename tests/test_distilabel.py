"""distilabel's tasks on distill's engine (`distill generate task`), and distill's engine in
distilabel's own Pipeline (`DistillLLM`).

The oracle: the same task run by distilabel's Pipeline with a scripted offline LLM, and by
`distill generate task` with the fake backend scripted the same way, gives the same rows,
column for column (distilabel_metadata included).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from conftest import assert_one_line_error, record_fake_requests, write_jsonl
from distilabel.models.llms.base import AsyncLLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps import tasks as distilabel_tasks

from distill.backends import fake
from distill.backends.fake import FakeBackend
from distill.inputs import load_rows
from distill.request import Request, SamplingParams
from distill.seeding import derive_seed

@pytest.fixture(autouse=True)
def the_process_as_it_was():
    """distilabel's Pipeline.run rewires the process it runs in and leaves it so: the root logger's
    handlers (a queue that is closed after the run) and level, quieted loggers, the SIGINT handler,
    environment variables. Put them back, for the tests that run after these in the same process."""
    import logging
    import os
    import signal

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: (lg.level, lg.disabled) for name, lg in logging.Logger.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    handlers_of_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    environ = dict(os.environ)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(loggers.get(name, (logging.NOTSET, False))[0])
            logger.disabled = loggers.get(name, (logging.NOTSET, False))[1]
    for sig, handler in handlers_of_signals.items():
        signal.signal(sig, handler)
    os.environ.clear()
    os.environ.update(environ)


INSTRUCTIONS = [f"Give one tip for keeping a {thing} tidy." for thing in
                ("kitchen", "garden", "desk", "garage", "bookshelf", "wardrobe", "car")]


def scripted(request: Request) -> str:
    """The teacher of both runs: a reply shaped as each task's parser wants, a function of the
    request's messages and sample index alone."""
    prompt = request.messages[-1]["content"]
    tag = hashlib.sha256(f"{request.messages}|{request.sample}".encode()).hexdigest()[:8]
    if "#### Output for Text" in prompt:  # UltraFeedback: a rating and rationale per text
        texts = len(re.findall(r"<text \d+>", prompt))
        return "\n\n".join(f"#### Output for Text {i + 1}\nRating: {1 + (int(tag, 16) + i) % 5}\nRationale: because {tag}"
                           for i in range(texts))
    if "Prompt#:" in prompt:  # EvolInstruct's mutations
        return f"#Rewritten Prompt#:\nA harder version {tag} of it."
    if "queries" in prompt.lower():  # SelfInstruct: one query per line
        return "\n".join(f"Query {tag} number {i}?" for i in range(3))
    return f"Answer {tag}."


class ScriptedLLM(AsyncLLM):
    """distilabel's side of the oracle: the fake backend's replies, without distill's client."""

    numpy_seed: int | None = None  # EvolInstruct draws its mutations from numpy's global generator

    @property
    def model_name(self) -> str:
        return "fake-model"

    def load(self) -> None:
        super().load()
        if self.numpy_seed is not None:
            random.seed(self.numpy_seed)
            numpy.random.seed(self.numpy_seed)

    async def agenerate(self, input, num_generations: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
                        top_p: float = 1.0):
        backend = FakeBackend(reply=scripted)
        replies = [await backend.complete(Request.chat("fake-model", input, SamplingParams(temperature, top_p, max_new_tokens),
                                                       sample=k)) for k in range(num_generations)]
        return {"generations": [r.text for r in replies],
                "statistics": {"input_tokens": [r.usage.prompt_tokens for r in replies],
                               "output_tokens": [r.usage.completion_tokens for r in replies]}}


def distilabel_rows(tmp_path: Path, task_name: str, rows: list[dict], args: dict, numpy_seed: int | None = None):
    generation = {"max_new_tokens": 512, "temperature": 1.0, "top_p": 1.0}  # distill generate task's defaults
    with Pipeline(name=f"oracle-{task_name.lower()}", cache_dir=tmp_path / "distilabel-cache") as pipeline:
        load = LoadDataFromDicts(data=rows)
        task = getattr(distilabel_tasks, task_name)(
            llm=ScriptedLLM(generation_kwargs=generation, numpy_seed=numpy_seed), **args)
        load >> task
    distiset = pipeline.run(use_cache=False)
    return list(distiset["default"]["train"])


def distill_rows(cli, tmp_path: Path, task_name: str, rows: list[dict], args: dict, *extra: str):
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / f"distill-{task_name}"
    argv = [f"{k}={json.dumps(v)}" for k, v in args.items()]
    result = cli("generate", "task", task_name, "--input", source, "--backend", "fake", "-o", out, "-q",
                 *[a for pair in argv for a in ("--arg", pair)], *extra)
    assert result.code == 0, result
    return load_rows(str(out)), out


ORACLE = {
    "TextGeneration": ([{"instruction": i} for i in INSTRUCTIONS], {"num_generations": 2}),
    "UltraFeedback": ([{"instruction": i, "generations": [f"First answer to {i}", f"Second answer to {i}"]}
                       for i in INSTRUCTIONS], {"aspect": "overall-rating"}),
    "SelfInstruct": ([{"input": f"A {thing} shop."} for thing in ("bike", "flower", "tea")], {"num_instructions": 3}),
    "EvolInstruct": ([{"instruction": i} for i in INSTRUCTIONS], {"num_evolutions": 2, "store_evolutions": True,
                                                                   "generate_answers": True}),
}


@pytest.mark.parametrize("task_name", list(ORACLE))
def test_a_task_gives_the_rows_distilabels_own_pipeline_gives(cli, tmp_path, monkeypatch, task_name):
    rows, args = ORACLE[task_name]
    monkeypatch.setattr(fake, "echo_reply", scripted)
    # distill seeds the global generators per batch (one batch here); distilabel's side gets the same seed.
    numpy_seed = derive_seed(0, "batch", "0")
    expected = distilabel_rows(tmp_path, task_name, rows, args, numpy_seed)
    got, _ = distill_rows(cli, tmp_path, task_name, rows, args)
    assert len(got) == len(expected) > 0
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]
    assert got == expected


def test_a_task_whose_request_is_rejected_keeps_the_rest_and_a_rerun_retries_it(cli, tmp_path, monkeypatch):
    from distill.backends.base import RejectedError

    rows = [{"instruction": i} for i in INSTRUCTIONS]

    def reject_the_garage(request):
        if "garage" in request.messages[-1]["content"]:
            raise RejectedError("400: not today")
        return scripted(request)

    monkeypatch.setattr(fake, "echo_reply", reject_the_garage)
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "run"
    args = ("generate", "task", "TextGeneration", "--input", source, "--backend", "fake", "-o", out, "-q",
            "--batch-size", "2")
    failed = cli(*args)
    assert failed.code == 0, failed
    assert "rejected by the backend" in failed.out
    kept = load_rows(str(out))
    assert len(kept) == len(rows) - 2  # the batch of garage and desk: no None rows, the failure is listed
    assert "not today" in (out / "failed.jsonl").read_text()
    monkeypatch.setattr(fake, "echo_reply", scripted)
    asked = record_fake_requests(monkeypatch)
    again = cli(*args)
    assert again.code == 0, again
    assert len(load_rows(str(out))) == len(rows)
    assert len(asked) == 1  # only the rejected request: the other one of its batch came from the cache


def test_a_rerun_asks_nothing_and_writes_the_same_dataset(cli, tmp_path, monkeypatch):
    rows, args = ORACLE["EvolInstruct"]
    monkeypatch.setattr(fake, "echo_reply", scripted)
    first, out = distill_rows(cli, tmp_path, "EvolInstruct", rows, args, "--batch-size", "3")
    (out / "records.jsonl").unlink()  # as if killed before any record: only the cache is left
    asked = record_fake_requests(monkeypatch)
    again, _ = distill_rows(cli, tmp_path, "EvolInstruct", rows, args, "--batch-size", "3")
    assert asked == []
    assert again == first


def test_several_generations_grouped_and_a_generator_task(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "echo_reply", scripted)
    rows = [{"instruction": i} for i in INSTRUCTIONS[:3]]
    grouped, _ = distill_rows(cli, tmp_path, "TextGeneration", rows, {"num_generations": 3, "group_generations": True})
    assert len(grouped) == 3
    assert all(len(set(r["generation"])) == 3 for r in grouped)
    out = tmp_path / "generated"
    result = cli("generate", "task", "EvolInstructGenerator", "--backend", "fake", "-o", out, "-q",
                 "--arg", "num_instructions=3", "--arg", "min_length=1", "--arg", "max_length=100000")
    assert result.code == 0, result
    made = load_rows(str(out))
    assert len(made) == 3 and all(r["instruction"] and r["model_name"] == "fake-model" for r in made)
    card = (out / "README.md").read_text()
    assert "EvolInstructGenerator" in card and "num_instructions=3" in card


@pytest.mark.parametrize("args, needle", [
    (("NoSuchTask", "--input", "rows.jsonl"), "NoSuchTask is not a distilabel task"),
    (("TextGenerator", "--input", "rows.jsonl"), "did you mean TextGeneration"),
    (("no_such_module.Task", "--input", "rows.jsonl"), "cannot import no_such_module"),
    (("TextGeneration",), "give them with --input"),
    (("EvolInstructGenerator", "--arg", "num_instructions=2", "--input", "rows.jsonl"), "takes no --input"),
    (("EvolInstructGenerator",), "EvolInstructGenerator needs --arg num_instructions=VALUE"),
    (("UltraFeedback", "--input", "rows.jsonl"), "lacks the column generations"),
    (("UltraFeedback", "--input", "rows.jsonl", "--arg", "aspect=beauty"), "--arg aspect"),
    (("TextGeneration", "--input", "rows.jsonl", "--arg", "llm=x"), "--arg llm is distill's to set"),
    (("TextGeneration", "--input", "rows.jsonl", "--arg", "oops"), "--arg"),
    ((), "missing required argument NAME"),
])
def test_bad_task_settings_stop_with_one_line_before_anything_is_written(cli, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "rows.jsonl", [{"instruction": "Say hi."}])
    result = cli("generate", "task", *args, "--backend", "fake", "-o", "out")
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_distill_help_imports_neither_distilabel_nor_torch():
    probe = ("import sys; from distill.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "try:\n    main(['generate', 'task', '--help'])\nexcept SystemExit:\n    pass\n"
             "print([m for m in ('distilabel', 'torch') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "--arg" in done.stdout and "NAME" in done.stdout


# -- DistillLLM inside distilabel's own Pipeline ----------------------------------------------------


def pipeline_with_distill_llm(cache_dir: Path, server, rows: list[dict], batch: int = 50, **llm_options):
    from distill.integrations.distilabel import DistillLLM

    with Pipeline(name="distill-llm", cache_dir=cache_dir.parent / "distilabel-cache") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=batch)
        llm = DistillLLM(backend="openai", base_url=[server.url], model="loopback-model", cache_dir=str(cache_dir),
                         max_retries=8, generation_kwargs={"max_new_tokens": 64}, **llm_options)
        load >> distilabel_tasks.TextGeneration(llm=llm, num_generations=2, input_batch_size=batch)
    return pipeline


def test_distill_llm_in_a_distilabel_pipeline_retries_faults_and_a_rerun_sends_nothing(tmp_path, monkeypatch):
    from distill.testing.openai_server import FaultPlan, LoopbackServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    rows = [{"instruction": i} for i in INSTRUCTIONS]
    faults = FaultPlan(rates={"429": 0.3, "500": 0.2}, retry_after=0.01)
    with LoopbackServer(faults=faults) as server:
        first = list(pipeline_with_distill_llm(tmp_path / "cache", server, rows).run(use_cache=False)["default"]["train"])
        asked = server.stats.received
        assert sum(server.stats.faults.values()) > 0  # faults were met, and retried: no row is empty
        assert len(first) == 2 * len(rows) and all(r["generation"] for r in first)
        assert {r["model_name"] for r in first} == {"loopback-model"}
        # A second run of the whole pipeline (distilabel's own cache off) is answered from distill's cache.
        again = list(pipeline_with_distill_llm(tmp_path / "cache", server, rows).run(use_cache=False)["default"]["train"])
        assert server.stats.received == asked
    assert again == first
    assert "sk-loopback" not in "".join(p.read_text(errors="replace") for p in (tmp_path).rglob("*") if p.is_file()
                                        and p.suffix in (".json", ".yaml", ".jsonl", ".md", ".log", ".txt"))


def test_distill_llm_keeps_its_budget_inside_a_pipeline(tmp_path, monkeypatch):
    from distill.cache import RequestCache
    from distill.testing.openai_server import LoopbackServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    rows = [{"instruction": i} for i in INSTRUCTIONS]
    # Tokens. A batch of 2 inputs is 4 requests, reserved at their worst (under 200 tokens each: the prompt's bytes
    # and 64 new tokens) and spending about 70 each: two batches fit (272 spent + 764 reserved), the third does not.
    budget = 1200
    with LoopbackServer(reply=lambda body: "word " * 60) as server:
        made = list(pipeline_with_distill_llm(tmp_path / "cache", server, rows, batch=2, max_tokens=budget)
                    .run(use_cache=False)["default"]["train"])
        answered = server.stats.answered_total
    cache = RequestCache(tmp_path / "cache" / "cache.sqlite")
    spent = sum(p + c for p, c in cache.usage_by_model().values())
    cache.close()
    assert 0 < answered < 2 * len(rows)
    assert 0 < spent <= budget
    # distilabel's runner turns the refused batches into rows without a generation; a re-run with a
    # larger budget pays only for those.
    assert any(r["generation"] is None for r in made) and any(r["generation"] for r in made)


# -- killed, interrupted, resumed: through a real HTTP server ---------------------------------------


def test_killed_and_interrupted_task_runs_resume_to_the_dataset_of_a_run_never_stopped(tmp_path):
    import os
    import signal
    import sqlite3
    import time

    from conftest import start_distill

    from distill.testing.openai_server import LoopbackServer

    total = 60
    source = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": f"Name a use for item {i}."} for i in range(total)])

    def start(out):
        return start_distill("generate", "task", "TextGeneration", "--input", source, "--backend", "openai", "--model",
                             "m", "--base-url", server.url, "--concurrency", "4", "--batch-size", "6", "-o", out, "-q",
                             env={"OPENAI_API_KEY": "k"})

    def cached(out):
        with sqlite3.connect(out / "cache.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def wait_for_answers(count):
        deadline = time.monotonic() + 60
        while server.stats.answered_total < count and time.monotonic() < deadline:
            time.sleep(0.01)

    killed, straight = tmp_path / "killed", tmp_path / "straight"
    with LoopbackServer(latency=0.05) as server:
        proc = start(killed)
        wait_for_answers(15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 15 - 4 <= cached(killed) < total  # all but the replies cut off in flight (at most the concurrency)

        proc = start(killed)  # Ctrl-C in the middle of a batch: one line, every answer that came is kept
        wait_for_answers(server.stats.answered_total + 10)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
        kept = cached(killed)
        assert kept < total

        received = server.stats.received
        proc = start(killed)
        assert proc.wait(120) == 0, proc.stderr.read()
        assert server.stats.received - received == total - kept  # only what was missing
        proc = start(straight)
        assert proc.wait(120) == 0, proc.stderr.read()
    assert load_rows(str(killed)) == load_rows(str(straight))
    assert len(load_rows(str(straight))) == total


def test_the_readme_example_makes_a_distill_llm_that_loads(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (example,) = [b for b in re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M) if "DistillLLM" in b]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme")
    scope: dict = {}
    exec(example, scope)
    llm = scope["llm"]
    assert (llm.model, llm.max_cost_usd, llm.rpm) == ("gpt-4o-mini", 5, 500)
    llm.load()  # the openai backend, its ledger and the cache folder; nothing is sent
    try:
        assert llm.model_name == "gpt-4o-mini" and (tmp_path / "runs" / "llm-cache" / "cache.sqlite").is_file()
        assert "sk-readme" not in json.dumps(llm.dump())
    finally:
        llm.unload()


def test_replies_the_task_cannot_parse_are_kept_and_counted_on_the_card(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "echo_reply", lambda request: "I would rather not rate these.")
    rows, args = ORACLE["UltraFeedback"]
    made, out = distill_rows(cli, tmp_path, "UltraFeedback", rows, args)
    assert len(made) == len(rows) and all(r["ratings"] and set(r["ratings"]) == {None} for r in made)
    assert all(r["distilabel_metadata"]["raw_output_ultra_feedback_0"] == "I would rather not rate these." for r in made)
    assert f"{len(rows)} of {len(rows)} rows hold no output" in (out / "README.md").read_text()
    assert json.loads((out / "stats.json").read_text())["postprocess"] == {"unparsed": len(rows)}


def test_distill_llm_on_the_embedded_model_in_a_pipeline_and_a_rerun_asks_it_nothing(tmp_path, monkeypatch):
    from distill.backends.llamacpp import LlamaCppBackend
    from distill.integrations.distilabel import DistillLLM

    asked = tmp_path / "asked.txt"  # the pipeline's step runs in a forked process: it counts into a file
    complete = LlamaCppBackend.complete

    async def counted(self, request):
        with open(asked, "a") as f:
            f.write("1\n")
        return await complete(self, request)

    monkeypatch.setattr(LlamaCppBackend, "complete", counted)

    def run():
        with Pipeline(name="embedded", cache_dir=tmp_path / "distilabel-cache") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": "Name a colour."}, {"instruction": "Name a fruit."}])
            llm = DistillLLM(backend="llamacpp", cache_dir=str(tmp_path / "cache"), generation_kwargs={"max_new_tokens": 12})
            load >> distilabel_tasks.TextGeneration(llm=llm)
        return list(pipeline.run(use_cache=False)["default"]["train"])

    first = run()
    assert asked.read_text().count("\n") == 2
    assert all(r["generation"] and r["model_name"] == "smollm2-135m-instruct" for r in first)
    assert run() == first
    assert asked.read_text().count("\n") == 2


def test_text_arguments_stay_text_and_the_others_are_read_as_yaml(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "echo_reply", scripted)
    source = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": "Name a bird.", "tone": "dry"}])
    out = tmp_path / "run"
    result = cli("generate", "task", "TextGeneration", "--input", source, "--backend", "fake", "-o", out, "-q",
                 "--arg", "template=In a {{ tone }} tone: {{ instruction }}", "--arg", "columns=[instruction, tone]",
                 "--arg", "system_prompt=Answer: briefly.", "--arg", "num_generations=2")
    assert result.code == 0, result
    made = load_rows(str(out))
    assert len(made) == 2
    assert made[0]["distilabel_metadata"]["raw_input_text_generation_0"] == [
        {"role": "system", "content": "Answer: briefly."}, {"role": "user", "content": "In a dry tone: Name a bird."}]


def test_a_test_split_keeps_the_generations_of_one_input_together(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "echo_reply", scripted)
    rows = [{"instruction": i} for i in INSTRUCTIONS]
    _, out = distill_rows(cli, tmp_path, "TextGeneration", rows, {"num_generations": 2}, "--test-size", "2")
    import datasets

    written = datasets.load_dataset(str(out))
    train, test = written["train"]["instruction"], written["test"]["instruction"]
    assert len(test) == 4 and len(set(test)) == 2 and not set(test) & set(train) and len(train) == 10


def test_a_tasks_default_structured_output_is_asked_of_the_backend_without_instructor(cli, tmp_path, monkeypatch):
    asked = record_fake_requests(monkeypatch)
    rows, _ = ORACLE["UltraFeedback"]
    made, _ = distill_rows(cli, tmp_path, "UltraFeedback", rows[:2], {"use_default_structured_output": True})
    expected = distilabel_tasks.UltraFeedback(llm=ScriptedLLM()).get_structured_output()
    assert len(asked) == 2 and all(r.json_schema == expected for r in asked)
    assert all(isinstance(r["ratings"], list) and r["ratings"] for r in made)  # parsed from the JSON replies


def test_a_task_whose_own_code_fails_stops_the_run_in_one_line_and_keeps_what_was_done(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fake, "echo_reply", scripted)
    original = distilabel_tasks.TextGeneration.format_input

    def breaks_on_the_garage(self, input):
        if "garage" in input["instruction"]:
            raise KeyError("boom")
        return original(self, input)

    monkeypatch.setattr(distilabel_tasks.TextGeneration, "format_input", breaks_on_the_garage)
    source = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": i} for i in INSTRUCTIONS])
    out = tmp_path / "run"
    result = cli("generate", "task", "TextGeneration", "--input", source, "--backend", "fake", "-o", out, "-q",
                 "--batch-size", "2")
    assert_one_line_error(result, "TextGeneration failed on batch 1: KeyError")
    assert (out / "records.jsonl").read_text().count("\n") == 1  # the batch before it is kept
