"""Against a real third-party OpenAI-compatible server: llama-cpp-python's own
`llama_cpp.server` (the `server` extra, in distill's dev extra) serving the embedded
Gemma 3 270M on loopback, and the loopback test server where a fault must be exact.

Issue 11, item 23: a server that refuses `response_format: json_schema` (llama_cpp.server
answers 500 "Input should be 'text' or 'json_object'") was retried as a transient error
until the run stopped; now the endpoint falls back, once and said once, to json_object
with the schema inside (which llama_cpp.server turns into a grammar), then plain
json_object, then no response_format. Settings that change no cached request
(--no-structured, --parse-retries) no longer block a resume.
Item 33: a refused first connection to an endpoint fails in seconds with one line naming
it; an endpoint that answered before is waited for (a server restarting mid-run).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import assert_one_line_error, read_dataset, start_distill, write_jsonl

from distill.backends.base import PermanentError, TransientError
from distill.backends.openai_backend import OpenAIBackend
from distill.cache import RequestCache
from distill.client import Client, RetryPolicy
from distill.errors import BackendError
from distill.pipelines.ultrafeedback_verdicts import aspect_schema
from distill.request import Request, SamplingParams
from distill.testing.openai_server import FaultPlan, LoopbackServer

SERVER_DEPS = ("uvicorn", "fastapi", "pydantic_settings", "sse_starlette", "starlette_context")
ALIAS = "gemma"  # the model name the server is started with (it answers any name)
KEY = {"OPENAI_API_KEY": "k"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` in a child process, on a fixed loopback port (so that
    it can be killed and started again where a run expects it)."""

    def __init__(self, model: Path, log: Path):
        self.model = model
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", ALIAS,
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2",
                 "--verbose", "false"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"llama_cpp.server did not answer GET /v1/models within {timeout} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    missing = [name for name in (*SERVER_DEPS, "llama_cpp") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs {', '.join(missing)}: pip install -e '.[dev,local]'")
    from distill.backends.llamacpp import embedded_model_path
    from distill.errors import ConfigError

    try:
        model = embedded_model_path()
    except ConfigError as err:
        pytest.skip(str(err))
    server = LlamaServer(model, tmp_path_factory.mktemp("llama_server") / "server.log")
    server.start()
    yield server
    server.stop()


def stats_of(run: Path) -> dict:
    return json.loads((run / "stats.json").read_text())


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ") and "response_format" in line]


# -- against llama_cpp.server ------------------------------------------------------------------------


def test_completions_end_to_end(cli, tmp_path, llama_server):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Name a color, number {i}."} for i in range(5)])
    out = tmp_path / "run"
    result = cli("generate", "completions", "--input", prompts, "-n", "3", "--base-url", llama_server.url,
                 "--model", ALIAS, "--max-new-tokens", "16", "-o", out, "-q", env=KEY)
    assert result.code == 0, result.err
    rows = read_dataset(out)
    assert [r["prompt"] for r in rows] == [f"Name a color, number {i}." for i in range(3)]
    assert all(r["model"] == ALIAS and r["finish_reason"] in ("stop", "length") for r in rows)
    assert stats_of(out)["last_session"]["requests"] == 3


def test_judge_falls_back_from_json_schema_once_and_says_so_once(cli, tmp_path, llama_server):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is the capital of France?"}])
    out = tmp_path / "run"
    # The pool is the fake backend; the judge is the real server, which refuses json_schema.
    # The judge's replies are cut at 16 tokens (grammar-constrained sampling over Gemma's
    # 262k-token vocabulary takes about half a second a token on 2 cores), so they are not
    # parsed: the run ends with every item rated (null ratings) and nothing to binarize.
    result = cli("rate", "ultrafeedback", "--input", prompts, "--backend", "fake", "--models", "a,b",
                 "--completions-per-prompt", "2", "--max-new-tokens", "16", "--judge", f"{ALIAS}@{llama_server.url}",
                 "--judge-max-new-tokens", "16", "--parse-retries", "0", "-o", out, "-q")
    assert "gave up" not in result.err and "Traceback" not in result.err
    if result.code != 0:
        assert result.err.splitlines()[-1].startswith("error: no row of the dataset survived"), result.err
    said = warnings_in(result.err)
    assert len(said) == 1, result.err
    assert llama_server.url in said[0] and "json_schema (HTTP 500)" in said[0] and "json_object with the schema" in said[0]
    stats = stats_of(out)
    assert stats["items"] == {"done": 1, "total": 1, "failed": 0}
    session = stats["last_session"]
    assert session["requests"] == 2 + 4  # two completions, four aspects judged
    assert session["retries"] == 0 and session["errors"] == {}  # the fallback is no retry
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    for rated in record["aspects"].values():
        assert rated["attempts"] == 1
        if "raw" in rated:  # unparsed: still JSON, as the schema's grammar made it
            assert rated["raw"].replace(" ", "").startswith('{"ratings":[{"text":'), rated["raw"]


def test_a_server_killed_mid_run_is_waited_for_and_every_prompt_answered_once(tmp_path, llama_server):
    n = 16
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Once upon a time, story {i}:"} for i in range(n)])
    out = tmp_path / "run"
    proc = start_distill("generate", "completions", "--input", prompts, "--mode", "text", "--base-url", llama_server.url,
                         "--model", ALIAS, "--max-new-tokens", "1", "--concurrency", "1", "-o", out, "-q", env=KEY)
    try:
        records = out / "records.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if records.exists() and records.read_text().count("\n") >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        llama_server.kill()
        time.sleep(0.3)  # refused connections meanwhile: the endpoint answered before, so they are retried
        llama_server.start()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if llama_server.proc.poll() is not None:
            llama_server.start()
    assert proc.returncode == 0, err
    rows = read_dataset(out)
    assert [r["prompt"] for r in rows] == [f"Once upon a time, story {i}:" for i in range(n)]
    session = stats_of(out)["last_session"]
    assert session["requests"] == n
    assert session["errors"].get("connection", 0) >= 1 and session["retries"] >= 1


def test_llama_cpp_python_server_is_sent_no_prefill(tmp_path, llama_server, monkeypatch):
    """llama_cpp.server ("owned_by": "me") renders a trailing assistant message as a finished
    turn: a list request's "1." is not sent, the prompt is the same as without it (issue 14)."""
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    messages = [{"role": "user", "content": "List three fruits."}]
    params = SamplingParams(temperature=0, max_tokens=1, seed=1)

    async def go():
        backend = OpenAIBackend(ALIAS, [llama_server.url])
        try:
            prefixed = await backend.complete(Request.chat(ALIAS, messages, params, answer_prefix="1."))
            plain = await backend.complete(Request.chat(ALIAS, messages, params))
            return prefixed, plain, backend.endpoints[0].kind
        finally:
            await backend.aclose()

    prefixed, plain, kind = asyncio.run(go())
    assert kind == ""  # learned: no prefill for this server
    assert prefixed.usage.prompt_tokens == plain.usage.prompt_tokens > 0
    assert prefixed.text == plain.text


# -- item 33: a refused first connection -------------------------------------------------------------


def test_a_refused_first_connection_fails_in_seconds_with_one_line(cli, tmp_path, prompts_file):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    result = cli("generate", "completions", "--input", prompts_file, "--base-url", url, "--model", "m",
                 "-o", tmp_path / "run", "-q", env=KEY)
    elapsed = time.monotonic() - started
    assert_one_line_error(result, f"cannot connect to {url}", "connection refused", "is the server running?")
    assert elapsed < 10  # not a minute of retries (a timeout, generous on a loaded machine)


def test_a_refused_first_connection_is_no_retry_but_one_that_answered_before_is(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    request = Request.chat("m", [{"role": "user", "content": "hello"}])

    async def refused_first():
        backend = OpenAIBackend("m", [url])
        client = Client(backend, RequestCache(tmp_path / "c.sqlite"), retry=RetryPolicy(max_retries=3))
        try:
            with pytest.raises(BackendError, match="connection refused"):
                await client.complete(request)
            return client.stats
        finally:
            await backend.aclose()

    stats = asyncio.run(refused_first())
    assert stats.retries == 0

    async def answered_then_refused(server: LoopbackServer):
        backend = OpenAIBackend("m", [url])
        try:
            assert (await backend.complete(request)).text.startswith("Answer")
            server.__exit__(None, None, None)  # the server goes away mid-run
            with pytest.raises(TransientError) as caught:
                await backend.complete(request)
            assert caught.value.kind == "connection"
            with LoopbackServer(port=port):  # and comes back: the same backend goes on
                assert (await backend.complete(request)).text.startswith("Answer")
        finally:
            await backend.aclose()

    server = LoopbackServer(port=port).__enter__()
    asyncio.run(answered_then_refused(server))

    async def another_backend():  # a new session's endpoint has not answered yet
        backend = OpenAIBackend("m", [url])
        try:
            await backend.complete(request)
        finally:
            await backend.aclose()

    with pytest.raises(PermanentError, match=f"cannot connect to {url}"):
        asyncio.run(another_backend())


# -- item 23: the fallback, against the loopback server ---------------------------------------------

SCHEMA = aspect_schema(2, False, None)
RATINGS = json.dumps({"ratings": [{"text": 1, "rationale": "fine", "rating": 4},
                                  {"text": 2, "rationale": "less so", "rating": 2}]})


def judge_requests(count: int) -> list[Request]:
    return [Request.chat("j", [{"role": "user", "content": f"rate pair {i}"}], SamplingParams(max_tokens=64),
                         json_schema=SCHEMA) for i in range(count)]


def ask(tmp_path, url: str, requests: list[Request]):
    """The first request alone, then the rest at once, through the client."""

    async def go():
        backend = OpenAIBackend("j", [url])
        client = Client(backend, RequestCache(tmp_path / "c.sqlite"), concurrency=8,
                        retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02))
        try:
            first = await client.complete(requests[0])
            rest = await asyncio.gather(*(client.complete(r) for r in requests[1:]))
            return [first, *rest], client
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_an_endpoint_refusing_json_schema_gets_json_object_with_the_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    sent = []

    def reply(body):
        sent.append(body.get("response_format"))
        return RATINGS

    requests = judge_requests(6)
    with LoopbackServer(reply=reply, refuse_formats=("json_schema",)) as server:
        responses, client = ask(tmp_path, server.url, requests)
        formats = dict(server.stats.formats)
    assert formats == {"json_schema": 1, "json_object": 6}  # refused once, then the endpoint's form
    assert sent == [{"type": "json_object", "schema": SCHEMA}] * 6
    assert [r.text for r in responses] == [RATINGS] * 6
    assert client.stats.retries == 0 and not client.stats.errors and client.stats.requests == 6
    # The cache keys are the requests' own, whatever form the body took.
    cache = RequestCache(tmp_path / "c.sqlite")
    assert all(cache.get(r.key()) is not None for r in requests)
    said = warnings_in(capsys.readouterr().err)
    assert len(said) == 1 and server.url in said[0] and "json_schema (HTTP 500)" in said[0], said


def test_an_endpoint_refusing_every_form_is_asked_without_one_and_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with LoopbackServer(reply=lambda body: RATINGS, refuse_formats=("json_schema", "json_object")) as server:
        responses, client = ask(tmp_path, server.url, judge_requests(4))
        formats = dict(server.stats.formats)
    assert formats == {"json_schema": 1, "json_object": 2, "none": 4}  # json_object with the schema, then plain
    assert [r.text for r in responses] == [RATINGS] * 4 and client.stats.retries == 0
    said = warnings_in(capsys.readouterr().err)
    assert len(said) == 1 and "replies are read as text" in said[0], said


def test_a_500_that_does_not_name_response_format_is_retried_not_a_fallback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    plan = FaultPlan(rates={"500": 1.0}, max_per_key=1)
    with LoopbackServer(reply=lambda body: RATINGS, faults=plan) as server:
        _, client = ask(tmp_path, server.url, judge_requests(1))
        formats = dict(server.stats.formats)
    assert formats == {"json_schema": 2} and client.stats.retries == 1
    assert not warnings_in(capsys.readouterr().err)


# -- item 23: settings that change no cached request do not block a resume ---------------------------


def test_no_structured_resumes_a_structured_run_and_asks_no_completion_again(cli, tmp_path):
    from distill.backends.fake_replies import shaped_reply

    def judge_reply(body):  # the fake backend's judge ratings, from a real HTTP server
        return shaped_reply(Request.chat(body["model"], body["messages"], SamplingParams(max_tokens=body["max_tokens"])))

    n = 4
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Why is the sky blue, take {i}?"} for i in range(n)])
    out = tmp_path / "run"
    def refusing(body):  # a judge failing every structured request with a 500 naming nothing (no fallback)
        return 500 if "response_format" in body else None

    with LoopbackServer() as pool, LoopbackServer(reply=judge_reply, status=refusing) as judge:
        rate = ("rate", "ultrafeedback", "--input", prompts, "--backend", "fake", "--models",
                f"a@{pool.url},b@{pool.url}", "--completions-per-prompt", "2", "--max-new-tokens", "16",
                "--judge", f"j@{judge.url}", "-o", out, "-q")
        first = cli(*rate, "--max-retries", "0")
        assert first.code != 0 and "HTTP 500" in first.err, first.err
        asked = pool.stats.answered_total
        assert asked > 0 and judge.stats.formats["json_schema"] > 0

        again = cli(*rate, "--no-structured", "--parse-retries", "1")
        assert again.code == 0, again.err
        assert "holds a run with" not in again.err
        # Every completion was asked once: those of the first run came from the cache.
        assert set(pool.stats.answered.values()) == {1} and pool.stats.answered_total == 2 * n
        assert stats_of(out)["last_session"]["cache_hits"] >= asked
        assert judge.stats.formats["none"] == judge.stats.answered_total == 4 * n

        received = pool.stats.received + judge.stats.received
        third = cli(*rate, "--no-structured", "--parse-retries", "0", "--concurrency", "2", "--max-retries", "3")
        assert third.code == 0, third.err
        assert pool.stats.received + judge.stats.received == received  # done: nothing asked
    assert 0 < stats_of(out)["splits"]["default/train_prefs"] <= n
