"""The embedded backend: real end-to-end runs through llama.cpp, SmolLM2-135M-Instruct (the chat
pipelines' default) and Gemma 3 270M (base)."""

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import read_dataset, start_distill, write_jsonl

from distill.backends.llamacpp import LLAMA_RANDOM_SEED, render_transcript, request_seed
from distill.embedded import BASE, INSTRUCT
from distill.request import Request, SamplingParams

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")

# Greedy counting: the model keeps counting (no end of text) for far longer than a test waits.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


@pytest.fixture(scope="module")
def backend():
    from distill.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(BASE)
    yield backend
    asyncio.run(backend.aclose())


def answer(backend, request: Request) -> str:
    return asyncio.run(backend.complete(request)).text


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


def test_transcript_for_a_base_model():
    text = render_transcript((
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "Hi "},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ))
    assert text == "You are kind.\n\nUser: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:"


def test_embedded_default_answers_end_to_end(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is the capital of France?"}, {"prompt": "Name a color."}])
    out = tmp_path / "run"
    args = ["generate", "completions", "--input", prompts, "--max-new-tokens", "16", "--temperature", "0", "-o", out, "-q"]
    result = cli(*args)
    assert result.code == 0, result.err
    rows = read_dataset(out)
    assert len(rows) == 2
    for row in rows:
        assert row["model"] == INSTRUCT  # the chat pipelines' embedded default, by name
        assert row["finish_reason"] in ("stop", "length")
        assert 0 < row["completion_tokens"] <= 16 and row["prompt_tokens"] > 5
        assert "\nUser:" not in row["response"]
    # The same command again is answered from the cache: same data, no new generation.
    again = cli(*args)
    assert again.code == 0 and read_dataset(out) == rows
    assert '"requests": 0' in (out / "stats.json").read_text()


def test_text_mode_and_a_gguf_path(cli, tmp_path):
    from distill.backends.llamacpp import embedded_model_path

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": "The three primary colors are"}])
    result = cli("generate", "completions", "--input", prompts, "--backend", "llamacpp", "--model", embedded_model_path(),
                 "--mode", "text", "--max-new-tokens", "8", "-o", tmp_path / "run", "-q")
    assert result.code == 0, result.err
    (row,) = read_dataset(tmp_path / "run")
    assert row["prompt"] == "The three primary colors are" and row["completion_tokens"] > 0
    assert row["model"] == "gemma-3-270m-q4_k_m.gguf"  # a path is named by its file, never the local path


def test_a_missing_or_broken_gguf_is_one_line(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    missing = cli("generate", "completions", "--input", prompts, "--model", tmp_path / "nope.gguf", "-o", tmp_path / "r")
    assert missing.code != 0 and missing.err.count("\n") == 1 and "not found" in missing.err
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all" * 100)
    result = cli("generate", "completions", "--input", prompts, "--model", broken, "-o", tmp_path / "r2")
    assert result.code != 0 and result.err.count("\n") == 1 and "cannot load GGUF model" in result.err


# -- an answer is a function of the request alone ---------------------------------------------


def test_a_chat_model_continues_the_answer_prefix():
    """SmolLM2 has a chat template: a prefixed request is its template's prompt plus the prefix,
    which the answer goes on from (and starts with); without a prefix, the plain chat request."""
    from distill.backends.llamacpp import LlamaCppBackend

    chat = LlamaCppBackend(INSTRUCT)
    try:
        messages = [{"role": "user", "content": "List three colours, numbered."}]
        params = SamplingParams(0.0, 1.0, 12, seed=1)
        plain = asyncio.run(chat.complete(Request.chat(INSTRUCT, messages, params)))
        prefixed = asyncio.run(chat.complete(Request.chat(INSTRUCT, messages, params, answer_prefix="1. Red\n2.")))
        assert prefixed.text.startswith("1. Red\n2.") and len(prefixed.text) > len("1. Red\n2.")
        extra = len(chat.llm.tokenize("1. Red\n2.".encode(), add_bos=False, special=True))
        assert prefixed.usage.prompt_tokens == plain.usage.prompt_tokens + extra
    finally:
        asyncio.run(chat.aclose())


def test_smollm2_samples_with_its_own_frequency_penalty_unless_the_request_sets_one():
    from distill.backends.llamacpp import LlamaCppBackend

    chat = LlamaCppBackend(INSTRUCT)
    seen = []
    create = chat.llm.create_chat_completion
    chat.llm.create_chat_completion = lambda **kw: seen.append(kw.get("frequency_penalty")) or create(**kw)
    try:
        messages = [{"role": "user", "content": "Say hi."}]
        for penalty, schema in ((None, None), (0.0, None), (None, {"type": "object"})):
            params = SamplingParams(0.0, 1.0, 4, seed=1, frequency_penalty=penalty)
            asyncio.run(chat.complete(Request.chat(INSTRUCT, messages, params, json_schema=schema)))
    finally:
        asyncio.run(chat.aclose())
    assert seen == [0.5, 0.0, None]  # the model's default; the request's own; none under a JSON grammar


def test_the_same_request_gets_the_same_answer_whatever_came_before(backend):
    model = backend.model
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=7)
    turn1 = [{"role": "user", "content": "Tell me about the history of tea in China."}]
    first = answer(backend, Request.chat(model, turn1, params))
    turn2 = Request.chat(model, [*turn1, {"role": "assistant", "content": first}, {"role": "user", "content": "And in Japan?"}],
                         params)
    # Right after its first turn, llama.cpp could reuse the KV cache of that prompt and its answer
    # (a long shared prefix); after another request only a few tokens; after itself, all of them.
    after_its_first_turn = answer(backend, turn2)
    answer(backend, Request.chat(model, [{"role": "user", "content": "Name a color."}], params))
    after_another_request = answer(backend, turn2)
    after_itself = answer(backend, turn2)
    assert after_its_first_turn == after_another_request == after_itself


def test_a_request_without_a_seed_is_seeded_from_itself(backend):
    """Not from the seed of the request before it (llama-cpp-python's own chain)."""
    model = backend.model
    seedless = Request.text(model, "The three primary colors are", SamplingParams(temperature=1.0, max_tokens=12))
    before = answer(backend, seedless)
    answer(backend, Request.text(model, "My favourite animal is", SamplingParams(temperature=1.0, max_tokens=12)))
    assert answer(backend, seedless) == before


def test_request_seeds():
    seedless = Request.text("m", "hi", SamplingParams())
    assert request_seed(seedless) == int(seedless.key()[:8], 16) % LLAMA_RANDOM_SEED
    assert request_seed(Request.text("m", "hi", SamplingParams(), sample=1)) != request_seed(seedless)
    assert request_seed(Request.text("m", "hi", SamplingParams(seed=42))) == 42
    # llama.cpp reads 0xFFFFFFFF as "draw a random seed": never pass it on.
    assert request_seed(Request.text("m", "hi", SamplingParams(seed=LLAMA_RANDOM_SEED))) != LLAMA_RANDOM_SEED


# -- stopping: between tokens, never by freeing the model under a generation -------------------


def test_a_cancelled_request_and_closing_stop_the_generation_between_tokens():
    from distill.backends.llamacpp import LlamaCppBackend, Stopped

    backend = LlamaCppBackend(BASE)  # a base model keeps counting
    llm = backend.llm
    counting = Request.text(backend.model, COUNTING, SamplingParams(temperature=0, max_tokens=400))
    prompt_tokens = len(llm.tokenize(COUNTING.encode()))

    def generating() -> bool:  # past the prompt, writing tokens
        return llm.stop_check is not None and llm.n_tokens > prompt_tokens

    def idle() -> bool:
        return llm.stop_check is None

    async def go():
        # A cancelled request: its worker thread stops at the next token; the model serves the next one.
        task = asyncio.create_task(backend.complete(counting))
        await asyncio.to_thread(wait_for, generating, "the generation")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(wait_for, idle, "the cancelled generation to stop")
        assert llm.n_tokens < prompt_tokens + 200  # cut short, not run to max_tokens (400)
        # Closing: stops the generation running, waits for it to leave llama.cpp, then frees the model.
        task = asyncio.create_task(backend.complete(counting))
        await asyncio.to_thread(wait_for, generating, "the generation")
        await backend.aclose()
        assert idle() and llm.n_tokens < prompt_tokens + 200
        with pytest.raises(Stopped):
            await task
        with pytest.raises(Stopped):  # nothing starts on a closed model
            await backend.complete(counting)

    asyncio.run(go())


def test_a_ctrl_c_while_the_model_loads_is_not_lost(monkeypatch):
    """llama.cpp calls back into Python (its log callback) while it loads a model, and a
    KeyboardInterrupt raised inside a ctypes callback is printed and dropped: the run went on."""
    import ctypes

    from distill.backends import llamacpp

    @ctypes.CFUNCTYPE(None)
    def log_callback():  # Ctrl-C arrives while C code is calling back into Python
        signal.raise_signal(signal.SIGINT)

    class Loading:
        def __init__(self, **kwargs):
            log_callback()  # through ctypes, as llama.cpp's logging does

    monkeypatch.setattr(llamacpp, "_stoppable_llama", lambda llama_cpp: Loading)
    with pytest.raises(KeyboardInterrupt):
        llamacpp.LlamaCppBackend()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_and_sigterm_end_a_generating_run_cleanly_and_it_resumes(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": f"Chapter {i}. It was a dark and stormy night, and"} for i in range(5)])
    out = tmp_path / "run"
    args = ["generate", "completions", "--input", prompts, "--mode", "text", "--max-new-tokens", "16", "-q"]
    records_file = out / "records.jsonl"

    def records() -> int:
        return records_file.read_text().count("\n") if records_file.exists() else 0

    for sig in (signal.SIGINT, signal.SIGTERM):
        before = records()
        proc = start_distill(*args, "-o", out)
        # One more answer: the model is loaded and the next generation is under way.
        deadline = time.monotonic() + 120
        while records() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err  # not 139: the model is never freed under a generation
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
        text = records_file.read_text()
        assert text.endswith("\n") and all(json.loads(line)["response"] is not None for line in text.splitlines())
        assert json.loads((out / "stats.json").read_text())["stopped"].startswith("interrupted")
    rerun = start_distill(*args, "-o", out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    # The same rows as a run never stopped (these requests have no seed of their own).
    straight = cli(*args, "-o", tmp_path / "straight")
    assert straight.code == 0, straight.err
    assert read_dataset(out) == read_dataset(tmp_path / "straight") and len(read_dataset(out)) == 5


# -- a run killed and resumed is the same dataset as one never stopped -------------------------

ULTRACHAT = ["generate", "ultrachat", "-n", "3", "--sectors", "world=0.5,creation=0.5", "--world-rounds", "2-2",
             "--creation-rounds", "2-2", "--subtopics", "2", "--max-new-tokens", "48", "--user-max-new-tokens", "32",
             "--list-max-new-tokens", "48", "-q"]


def kill_half_way_then_resume(args, killed: Path, straight: Path, answers: dict[str, str], straight_code: int,
                              seconds: float) -> None:
    """SIGKILL a run of `args` once it has half of `answers` cached, resume it, and check that
    every request was asked again the same way and answered the same, whatever came before
    it: the same cache, records and dataset as the uninterrupted run in `straight`."""
    proc = start_distill(*args, "-o", killed)
    wait_for(lambda: len(cached_answers(killed)) >= len(answers) // 2 or proc.poll() is not None, "half the answers",
             seconds)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert 0 < len(cached_answers(killed)) < len(answers)
    rerun = start_distill(*args, "-o", killed)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == straight_code, err
    assert cached_answers(killed) == answers
    assert record_lines(killed) == record_lines(straight)
    assert dataset(killed) == dataset(straight)


def cached_answers(run_dir: Path) -> dict[str, str]:
    if not (run_dir / "cache.sqlite").exists():
        return {}
    try:
        with sqlite3.connect(f"file:{run_dir / 'cache.sqlite'}?mode=ro", uri=True) as db:
            return {key: json.loads(response)["text"] for key, response in db.execute("SELECT key, response FROM responses")}
    except sqlite3.Error:  # not created yet
        return {}


def dataset(run_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for path in sorted((run_dir / "data").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def record_lines(run_dir: Path) -> list[dict]:
    return sorted((json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()), key=lambda r: r["id"])


def test_a_killed_and_resumed_dialogue_run_is_the_same_dataset(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = start_distill(*ULTRACHAT, "-o", straight)
    _, straight_err = proc.communicate(timeout=300)
    # A tiny base model may write no dialogue worth keeping (another CPU, other kernels): then
    # the resumed run must fail the same way.
    assert proc.returncode == 0 or "no row survived" in straight_err, straight_err
    straight_code = proc.returncode
    answers = cached_answers(straight)

    kill_half_way_then_resume(ULTRACHAT, killed, straight, answers, straight_code, seconds=120)


# -- a distilabel task on the embedded model: resumed after a kill, interrupted cleanly -------------


def test_a_distilabel_task_on_the_embedded_model_resumes_after_a_kill_and_stops_cleanly_on_ctrl_c(tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": f"Name a tool for job {i}."} for i in range(4)])
    args = ["generate", "task", "EvolInstruct", "--input", rows, "--arg", "num_evolutions=1", "--arg",
            "generate_answers=true", "--batch-size", "2", "--max-new-tokens", "24", "-q"]
    straight, killed, stopped = tmp_path / "straight", tmp_path / "killed", tmp_path / "stopped"
    proc = start_distill(*args, "-o", straight)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    answers = cached_answers(straight)
    assert len(answers) == 8  # an evolution and an answer per row
    assert all(r["evolved_instruction"] and r["answer"] for r in dataset(straight))
    kill_half_way_then_resume(args, killed, straight, answers, 0, seconds=120)

    proc = start_distill(*args, "-o", stopped)
    wait_for(lambda: len(cached_answers(stopped)) >= 1 or proc.poll() is not None, "a first answer", 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
