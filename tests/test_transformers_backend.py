"""The transformers backend on a tiny local model folder: generation, batching, cache, resume, stopping."""

import asyncio
import json
import re
import signal

import pytest
from conftest import read_dataset, start_distill, write_jsonl
from test_llamacpp import ULTRACHAT, cached_answers, kill_half_way_then_resume, wait_for
from tiny_models import build_tiny_list_writer, build_tiny_model

from distill.backends.llamacpp import Stopped
from distill.request import Request, SamplingParams

pytest.importorskip("transformers", reason="the 'train' extra is not installed")

CORPUS = ["the cat sat on the mat", "hello world, how are you today?", "User: hi\nAssistant: hello"] * 40
ONE_THREAD = ["--n-threads", "1"]  # the test machine's 2 cores are shared: one thread is faster there


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.manual_seed(0)  # the same random weights in every session
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), CORPUS)


@pytest.fixture(scope="module")
def backend(tiny):
    from distill.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(tiny), n_threads=1)
    yield backend
    asyncio.run(backend.aclose())


def requests(model: str) -> list[Request]:
    """Chat and text requests, greedy and sampled, seeded and not, with different lengths."""
    out = []
    for i in range(6):
        params = SamplingParams(temperature=(0, 0.7, 1.0)[i % 3], top_p=0.9 if i % 2 else 1.0, max_tokens=8 + 3 * i,
                                seed=i if i % 2 else None, presence_penalty=0.5 if i == 4 else None)
        if i % 2:
            out.append(Request.chat(model, [{"role": "user", "content": f"hello {i}, how are you?"}], params))
        else:
            out.append(Request.text(model, f"the cat {i} sat on", params))
    return out


def test_requests_sent_together_are_one_batch_and_answer_as_alone(backend, monkeypatch):
    calls = []
    generate = backend.model.generate
    monkeypatch.setattr(backend.model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw))

    async def together():
        return await asyncio.gather(*(backend.complete(r) for r in requests(backend.model_id())))

    async def alone():
        return [await backend.complete(r) for r in requests(backend.model_id())]

    batched = asyncio.run(together())
    assert calls == [6]
    single = asyncio.run(alone())
    assert calls[1:] == [1] * 6
    # An answer is a function of its request alone, not of the batch it was generated in.
    assert [r.text for r in batched] == [r.text for r in single]
    for request, response in zip(requests(backend.model_id()), batched):
        assert 0 < response.usage.completion_tokens <= request.params.max_tokens and response.usage.prompt_tokens > 2
        assert response.finish_reason == "stop" or response.usage.completion_tokens == request.params.max_tokens
        assert response.model == backend.model_id()


def test_length_and_stop_strings(backend):
    params = SamplingParams(temperature=0, max_tokens=24)
    full = asyncio.run(backend.complete(Request.text(backend.model_id(), "the cat sat", params)))
    assert full.finish_reason == "length" and full.usage.completion_tokens == 24
    stop = re.search(r"[a-z]{3}", full.text[len(full.text) // 3:])[0]  # plain letters: no half-decoded byte
    cut = asyncio.run(backend.complete(Request.text(backend.model_id(), "the cat sat", SamplingParams(0, 1, 24, (stop,)))))
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    assert cut.usage.completion_tokens < 24


def test_closing_stops_a_generation_between_tokens(tiny):
    from distill.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(tiny))
    # Long enough that it is still generating when aclose comes: the tiny model rarely ends its text.
    long = Request.text(backend.model_id(), "the cat", SamplingParams(temperature=1.0, max_tokens=480, seed=1))

    async def main():
        task = asyncio.create_task(backend.complete(long))
        await asyncio.to_thread(wait_for, backend._lock.locked, "the generation to start")
        await backend.aclose()
        with pytest.raises(Stopped):
            await task

    asyncio.run(main())
    with pytest.raises(Stopped):
        asyncio.run(backend.complete(long))


def test_a_model_without_chat_template_gets_a_transcript(tmp_path):
    from distill.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(build_tiny_model(tmp_path / "base", CORPUS, chat_template=None)), n_threads=1)
    try:
        request = Request.chat(backend.model_id(), [{"role": "user", "content": "hi"}], SamplingParams(0, 1, 16),
                               answer_prefix="1.")
        reply = asyncio.run(backend.complete(request))
    finally:
        asyncio.run(backend.aclose())
    assert reply.text.startswith("1.") and "\nUser:" not in reply.text and "\nAssistant:" not in reply.text


def test_generate_completions_through_the_cli_then_from_the_cache(cli, tmp_path, tiny):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}: why is the cat on the mat?"} for i in range(5)])
    out = tmp_path / "run"
    args = ["generate", "completions", "--backend", "transformers", "--model", tiny, "--input", prompts,
            "--max-new-tokens", "12", *ONE_THREAD, "-o", out, "-q"]
    result = cli(*args)
    assert result.code == 0, result.err
    rows = read_dataset(out)
    assert len(rows) == 5
    for row in rows:
        assert row["model"] == str(tiny) and row["finish_reason"] in ("stop", "length")
        assert 0 < row["completion_tokens"] <= 12 and row["prompt_tokens"] > 5
    again = cli(*args)
    assert again.code == 0, again.err
    assert read_dataset(out) == rows
    assert json.loads((out / "stats.json").read_text())["last_session"]["requests"] == 0
    # Without its records, the run asks again and the cache answers every request.
    (out / "records.jsonl").unlink()
    again = cli(*args)
    assert again.code == 0, again.err
    assert read_dataset(out) == rows
    session = json.loads((out / "stats.json").read_text())["last_session"]
    assert session["requests"] == 0 and session["cache_hits"] == 5, session


def test_a_bad_model_folder_is_one_line(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for folder, needle in ((tmp_path / "nope", "not a model folder"), (broken, "cannot load model folder")):
        result = cli("generate", "completions", "--backend", "transformers", "--model", folder, "--input", prompts,
                     "-o", tmp_path / folder.name)
        assert result.code != 0 and result.err.count("\n") == 1 and needle in result.err, result.err
    result = cli("generate", "completions", "--backend", "transformers", "--input", prompts, "-o", tmp_path / "r")
    assert result.code != 0 and result.err.count("\n") == 1 and "--model" in result.err, result.err


def test_a_model_the_folder_does_not_hold_needs_a_place_of_its_own(cli, tmp_path, tiny):
    result = cli("generate", "ultrachat", "--backend", "transformers", "--model", tiny, "--user-model", "gpt-4o",
                 "-n", "1", "-o", tmp_path / "uc")
    assert result.code != 0 and result.err.count("\n") == 1, result.err
    assert "transformers backend loads local model folders" in result.err and "--user-model" in result.err


def test_another_folder_gets_a_backend_of_its_own(tiny, tmp_path, monkeypatch):
    import shutil

    from distill.backends import route
    from distill.backends.router import parse_model_spec
    from distill.pipelines.ultrachat import UltraChatConfig

    other = shutil.copytree(tiny, tmp_path / "other")
    config = UltraChatConfig(backend="transformers", model=str(tiny), output=tmp_path / "run", n_threads=1)
    backend, _ = route(config, [parse_model_spec(str(other)), parse_model_spec(str(tiny))])
    try:
        assert set(backend.routes) == {str(other)}  # the run's folder is served by the run's backend
        assert backend.routes[str(other)] is not backend.default
    finally:
        import asyncio

        asyncio.run(backend.aclose())


def test_a_killed_and_resumed_dialogue_run_is_the_same_dataset(tmp_path):
    """A multi-turn pipeline end to end on the backend; killed half-way, its resume writes the same."""
    model = build_tiny_list_writer(tmp_path / "lists")
    args = [*ULTRACHAT, "--backend", "transformers", "--model", model, *ONE_THREAD]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = start_distill(*args, "-o", straight)
    _, straight_err = proc.communicate(timeout=300)
    # Another CPU's kernels may make the tiny model write no dialogue worth keeping: then the
    # resumed run must fail the same way.
    assert proc.returncode == 0 or "no row survived" in straight_err, straight_err
    assert "Traceback" not in straight_err
    straight_code = proc.returncode
    answers = cached_answers(straight)
    assert len(answers) > 6  # past the openings: dialogue turns were asked

    kill_half_way_then_resume(args, killed, straight, answers, straight_code, seconds=300)


def test_ctrl_c_and_sigterm_end_a_generating_run_cleanly_and_it_resumes(cli, tmp_path, tiny):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": f"Chapter {i}. the cat sat on"} for i in range(24)])
    out = tmp_path / "run"
    args = ["generate", "completions", "--backend", "transformers", "--model", tiny, "--input", prompts, "--mode", "text",
            "--max-new-tokens", "160", "--temperature", "1", *ONE_THREAD, "-q"]
    records_file = out / "records.jsonl"

    def records() -> int:
        return records_file.read_text().count("\n") if records_file.exists() else 0

    for sig in (signal.SIGINT, signal.SIGTERM):
        before = records()
        proc = start_distill(*args, "-o", out)
        # A batch has ended: the model is loaded and the next batch is under way.
        wait_for(lambda before=before, proc=proc: records() > before or proc.poll() is not None, "a batch", 300)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
        text = records_file.read_text()
        assert text.endswith("\n") and all(json.loads(line)["response"] is not None for line in text.splitlines())
    assert records() < 24
    rerun = start_distill(*args, "-o", out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    straight = cli(*args, "-o", tmp_path / "straight")
    assert straight.code == 0, straight.err
    assert read_dataset(out) == read_dataset(tmp_path / "straight") and len(read_dataset(out)) == 24
