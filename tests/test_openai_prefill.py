"""The openai backend's assistant prefill (issue 14): a request's answer_prefix is sent only
to a server that continues a trailing assistant message, learned once per session from the
`owned_by` of GET /v1/models, and the reply comes back as prefix + continuation, as from
the embedded backends. The loopback server imitates each kind of server; the real
llama_cpp.server is in tests/test_llama_server.py."""

from __future__ import annotations

import asyncio

import pytest

from distill.backends.openai_backend import OpenAIBackend
from distill.cache import RequestCache
from distill.client import Client, RetryPolicy
from distill.request import Request, SamplingParams
from distill.testing.openai_server import LoopbackServer

LIST = " Apples\n2. Pears\n3. Plums"


def continuing(body: dict) -> str:
    """A server that continues a trailing assistant message (what follows "1.")."""
    last = body["messages"][-1]
    return LIST if last["role"] == "assistant" and last["content"] == "1." else "Here are fruits: 1. Apples"


def list_requests(count: int) -> list[Request]:
    return [Request.chat("m", [{"role": "user", "content": f"List fruits, take {i}."}], SamplingParams(max_tokens=32),
                         answer_prefix="1.") for i in range(count)]


def ask(tmp_path, url: str, requests: list[Request], cache_name: str = "c.sqlite"):
    """The requests, all at once, through one client (one session)."""

    async def go():
        backend = OpenAIBackend("m", [url])
        client = Client(backend, RequestCache(tmp_path / cache_name), concurrency=8,
                        retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.02))
        try:
            return await asyncio.gather(*(client.complete(r) for r in requests)), client
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")


def recording(bodies: list[dict], reply=continuing):
    def record(body: dict) -> str:
        bodies.append(body)
        return reply(body)

    return record


@pytest.mark.parametrize("kind, fields", [
    ("vllm", {"continue_final_message": True, "add_generation_prompt": False}),
    ("llamacpp", {}),  # llama.cpp's llama-server continues a trailing assistant message by itself
])
def test_a_server_that_prefills_is_sent_the_prefix_and_it_comes_back_in_the_text(tmp_path, key, kind, fields):
    bodies: list[dict] = []
    requests = list_requests(5)
    with LoopbackServer(reply=recording(bodies), owned_by=kind) as server:
        responses, client = ask(tmp_path, server.url, requests)
        listed = server.stats.models_listed
    assert listed == 1  # learned once for the session, however many requests were in flight
    assert [r.text for r in responses] == ["1." + LIST] * 5
    for body, request in zip(sorted(bodies, key=lambda b: b["messages"][0]["content"]), requests):
        assert body["messages"] == [*request.messages, {"role": "assistant", "content": "1."}]
        assert {name: body[name] for name in ("continue_final_message", "add_generation_prompt") if name in body} == fields
    # The keys are the requests' own: the cache answers them, with the prefix in the text.
    cache = RequestCache(tmp_path / "c.sqlite")
    assert all(cache.get(r.key()).text == "1." + LIST for r in requests)
    assert client.stats.requests == 5


@pytest.mark.parametrize("owned_by", ["me", "openai", "system", None])
def test_other_servers_get_no_prefill_and_the_text_as_written(tmp_path, key, owned_by):
    """llama-cpp-python's server ("me") would render the prefix as a finished assistant turn
    and open a new one; OpenAI's API does not prefill: the prompt's instruction does the work."""
    bodies: list[dict] = []
    with LoopbackServer(reply=recording(bodies), owned_by=owned_by) as server:
        responses, _ = ask(tmp_path, server.url, list_requests(3))
        listed = server.stats.models_listed
    assert listed == 1
    assert [r.text for r in responses] == ["Here are fruits: 1. Apples"] * 3
    assert all(b["messages"][-1]["role"] == "user" and "continue_final_message" not in b for b in bodies)


def test_requests_without_a_prefix_do_not_ask_what_the_server_is(tmp_path, key):
    request = Request.chat("m", [{"role": "user", "content": "hello"}])
    with LoopbackServer(owned_by="vllm") as server:
        (response,), _ = ask(tmp_path, server.url, [request])
        listed = server.stats.models_listed
    assert listed == 0 and response.text.startswith("Answer")


def test_a_server_without_a_model_list_gets_no_prefill(tmp_path, key):
    bodies: list[dict] = []
    with LoopbackServer(reply=recording(bodies), owned_by="vllm", list_models=False) as server:
        responses, client = ask(tmp_path, server.url, list_requests(2))
    assert [r.text for r in responses] == ["Here are fruits: 1. Apples"] * 2
    assert all(b["messages"][-1]["role"] == "user" for b in bodies) and client.stats.retries == 0


def test_a_refused_prefill_is_asked_again_without_and_said_once(tmp_path, key, capsys):
    bodies: list[dict] = []

    def refusing(body: dict) -> tuple[int, str] | None:  # as llama-server answers for a thinking model
        if body["messages"][-1]["role"] == "assistant":
            return 400, "Assistant response prefill is incompatible with enable_thinking."
        return None

    with LoopbackServer(reply=recording(bodies), owned_by="llamacpp", status=refusing) as server:
        responses, client = ask(tmp_path, server.url, list_requests(4))
    assert [r.text for r in responses] == ["Here are fruits: 1. Apples"] * 4
    assert client.stats.retries == 0 and not client.stats.errors  # a fallback, not a retry
    said = [line for line in capsys.readouterr().err.splitlines() if "prefill" in line]
    assert len(said) == 1 and server.url in said[0] and "HTTP 400" in said[0], said
