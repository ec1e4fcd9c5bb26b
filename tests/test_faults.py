"""The client against a real OpenAI-compatible server on loopback that injects faults."""

import asyncio
import json

from conftest import read_dataset, write_jsonl

from distill.backends.openai_backend import OpenAIBackend
from distill.cache import RequestCache
from distill.client import Client, RetryPolicy
from distill.request import Request, SamplingParams
from distill.testing.openai_server import FaultPlan, LoopbackServer, default_reply

EVERY_FAULT = {"429": 0.12, "500": 0.12, "slow": 0.06, "drop": 0.1, "malformed": 0.1}


def test_every_item_completes_once_through_every_kind_of_fault(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    plan = FaultPlan(rates=EVERY_FAULT, max_per_key=3, retry_after=0.01, slow_seconds=1.0, seed=7)
    requests = [Request.chat("m", [{"role": "user", "content": f"q{i}"}], SamplingParams(max_tokens=32)) for i in range(150)]

    async def go(url):
        backend = OpenAIBackend("m", [url], timeout=0.4)
        client = Client(backend, RequestCache(tmp_path / "cache.sqlite"), concurrency=16,
                        retry=RetryPolicy(max_retries=4, base_delay=0.01, max_delay=0.05))
        try:
            return await asyncio.gather(*(client.complete(r) for r in requests)), client
        finally:
            await backend.aclose()

    with LoopbackServer(faults=plan) as server:
        responses, client = asyncio.run(go(server.url))
        stats = server.stats
    assert set(stats.faults) == set(EVERY_FAULT), stats.faults  # every kind was exercised
    # Every item completed, with the server's answer to that very request.
    for request, response in zip(requests, responses):
        body = {"messages": list(request.messages), "model": "m", "temperature": 1.0, "top_p": 1.0, "max_tokens": 32}
        assert response.text == default_reply(body)
    # None was asked again once answered: one success per request, every other arrival a fault.
    assert len(stats.answered) == 150 and set(stats.answered.values()) == {1}
    assert stats.received == 150 + sum(stats.faults.values())
    # None lost: all are in the cache, and the client counted what it retried.
    assert len(RequestCache(tmp_path / "cache.sqlite")) == 150
    assert client.stats.requests == 150 and client.stats.retries == sum(stats.faults.values())
    assert client.stats.errors["timeout"] == stats.faults["slow"]


def test_retry_after_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    waits = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds, *args):
        waits.append(seconds)
        await real_sleep(0)

    plan = FaultPlan(rates={"429": 1.0}, max_per_key=1, retry_after=7.5)

    async def go(url):
        backend = OpenAIBackend("m", [url])
        client = Client(backend, RequestCache(tmp_path / "c.sqlite"), retry=RetryPolicy(max_retries=2))
        monkeypatch.setattr(asyncio, "sleep", recording_sleep)
        try:
            return await client.complete(Request.chat("m", [{"role": "user", "content": "x"}]))
        finally:
            monkeypatch.setattr(asyncio, "sleep", real_sleep)
            await backend.aclose()

    with LoopbackServer(faults=plan) as server:
        response = asyncio.run(go(server.url))
        assert server.stats.faults["429"] == 1 and server.stats.answered_total == 1
    assert response.text.startswith("Answer")
    assert 7.5 in waits


def test_requests_are_spread_over_several_base_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")

    async def go(urls):
        backend = OpenAIBackend("m", urls)
        client = Client(backend, RequestCache(tmp_path / "c.sqlite"), concurrency=8)
        try:
            await asyncio.gather(*(client.complete(Request.chat("m", [{"role": "user", "content": f"{i}"}])) for i in range(40)))
        finally:
            await backend.aclose()

    with LoopbackServer(latency=0.01) as a, LoopbackServer(latency=0.01) as b:
        asyncio.run(go([a.url, b.url]))
        assert a.stats.answered_total + b.stats.answered_total == 40
        assert a.stats.answered_total >= 10 and b.stats.answered_total >= 10


def test_cli_run_through_faults_keeps_everything(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"item {i}"} for i in range(30)])
    plan = FaultPlan(rates={"429": 0.2, "500": 0.2, "malformed": 0.1}, max_per_key=1, retry_after=0.01)
    with LoopbackServer(faults=plan) as server:
        result = cli("generate", "completions", "--input", prompts, "--backend", "openai", "--model", "m",
                     "--base-url", server.url, "-o", tmp_path / "run", "-q", env={"OPENAI_API_KEY": "k"})
        assert result.code == 0, result.err
        assert set(server.stats.answered.values()) == {1} and len(server.stats.answered) == 30
    rows = read_dataset(tmp_path / "run")
    assert [r["prompt"] for r in rows] == [f"item {i}" for i in range(30)]
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["last_session"]["retries"] == sum(server.stats.faults.values()) > 0
