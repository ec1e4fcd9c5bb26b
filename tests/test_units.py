"""Units of the engine: request keys, the cache, rate limits, accounting, retries, configs."""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import importlib.util
import json
import os
import random
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest

from distill import ratelimit
from distill.accounting import FREE, BudgetReached, Ledger, Price, load_prices, price_for
from distill.backends.http_errors import parse_retry_after
from distill.cache import RequestCache
from distill.client import RetryPolicy
from distill.config import EngineConfig, read_yaml_config
from distill.errors import ConfigError
from distill.ratelimit import Bucket, RateLimiter
from distill.request import Request, Response, SamplingParams, Usage

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9\u4e16"}]


# ================================================================ request


def test_key_is_stable_across_processes():
    request = Request.chat("gpt-4o-mini", CHAT, SamplingParams(temperature=0.7, stop=("\n\n",), seed=11), sample=2)
    code = (
        "from distill.request import Request, SamplingParams\n"
        f"r = Request.chat('gpt-4o-mini', {CHAT!r}, SamplingParams(temperature=0.7, stop=('\\n\\n',), seed=11), sample=2)\n"
        "print(r.key())\n"
    )
    # A different hash seed proves the key does not lean on Python's per-process hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60)
    assert out.stdout.strip() == request.key()
    assert len(request.key()) == 64 and int(request.key(), 16) >= 0


def test_key_is_deterministic_and_ignores_extra_message_fields():
    a = Request.chat("m", CHAT)
    b = Request.chat("m", [dict(m, name="x") for m in CHAT])  # only role/content are kept
    assert a.key() == b.key()
    assert a.key() == Request.chat("m", [dict(m) for m in CHAT]).key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"messages": CHAT[:1]},
        {"messages": [CHAT[0], {"role": "user", "content": "Hi"}]},
        {"messages": [CHAT[0], {"role": "assistant", "content": CHAT[1]["content"]}]},
        {"temperature": 0.2},
        {"top_p": 0.9},
        {"max_tokens": 100},
        {"stop": ("END",)},
        {"seed": 1},
        {"sample": 1},
    ],
)
def test_key_changes_with_every_input(change):
    base = {"model": "m", "messages": CHAT, "temperature": 1.0, "top_p": 1.0, "max_tokens": 512, "stop": (), "seed": None, "sample": 0}

    def build(values):
        params = SamplingParams(values["temperature"], values["top_p"], values["max_tokens"], values["stop"], values["seed"])
        return Request.chat(values["model"], values["messages"], params, sample=values["sample"])

    assert build(base).key() == build(dict(base)).key()
    assert build({**base, **change}).key() != build(base).key()


def test_chat_and_text_constructors():
    chat = Request.chat("m", CHAT)
    assert chat.prompt is None and chat.messages == tuple(CHAT)
    assert chat.params == SamplingParams() and chat.sample == 0
    text = Request.text("m", "Once upon a time", SamplingParams(max_tokens=5), sample=3)
    assert text.messages is None and text.prompt == "Once upon a time"
    assert text.params.max_tokens == 5 and text.sample == 3
    assert text.to_dict() == {
        "model": "m",
        "prompt": "Once upon a time",
        "sample": 3,
        "params": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 5, "stop": [], "seed": None},
    }
    assert "prompt" not in chat.to_dict() and chat.to_dict()["messages"] == CHAT
    # A chat whose only turn equals a text prompt is still a different request.
    assert Request.chat("m", [{"role": "user", "content": "x"}]).key() != Request.text("m", "x").key()


def test_request_needs_exactly_one_of_messages_or_prompt():
    with pytest.raises(ValueError, match="exactly one"):
        Request(model="m")
    with pytest.raises(ValueError, match="exactly one"):
        Request(model="m", messages=tuple(CHAT), prompt="p")


def test_estimated_prompt_tokens_grows_with_text():
    short, long = Request.text("m", "a" * 30), Request.text("m", "a" * 300)
    assert short.estimated_prompt_tokens() == 30 // 3 + 8
    assert long.estimated_prompt_tokens() > short.estimated_prompt_tokens()
    assert Request.chat("m", CHAT).estimated_prompt_tokens() > 8


# ================================================================ cache


def _response(text="answer", prompt_tokens=7, completion_tokens=3):
    return Response(text=text, finish_reason="stop", usage=Usage(prompt_tokens, completion_tokens), model="m")


def test_cache_round_trip(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    request = Request.chat("m", CHAT)
    assert cache.get(request.key()) is None
    cache.put(request.key(), request, _response("hello \u4e16"))
    got = cache.get(request.key())
    assert got.cached is True
    assert (got.text, got.finish_reason, got.usage, got.model) == ("hello \u4e16", "stop", Usage(7, 3), "m")
    assert len(cache) == 1
    cache.put(request.key(), request, _response("replaced"))  # same key: replaced, not duplicated
    assert cache.get(request.key()).text == "replaced" and len(cache) == 1
    cache.close()


def test_cache_persists_across_reopen(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    requests = [Request.text("m", f"p{i}") for i in range(3)]
    for i, request in enumerate(requests):
        cache.put(request.key(), request, _response(f"r{i}"))
    cache.close()
    reopened = RequestCache(path)
    assert len(reopened) == 3
    assert [reopened.get(r.key()).text for r in requests] == ["r0", "r1", "r2"]
    reopened.close()


def test_cache_wal_mode(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    # WAL is persistent in the file itself: any other connection sees it, while the cache is open and after.
    while_open = sqlite3.connect(tmp_path / "cache.sqlite")
    assert while_open.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    while_open.close()
    cache.close()
    other = sqlite3.connect(tmp_path / "cache.sqlite")
    assert other.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    other.close()


def test_cache_usage_by_model(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    assert cache.usage_by_model() == {}
    cache.put("a", Request.text("m", "a"), _response(prompt_tokens=10, completion_tokens=5))
    cache.put("b", Request.text("m", "b"), _response(prompt_tokens=1, completion_tokens=2))
    cache.put("c", Request.text("other", "c"), _response(prompt_tokens=3, completion_tokens=4))
    assert cache.usage_by_model() == {"m": (11, 7), "other": (3, 4)}
    cache.close()


def test_cache_put_is_committed_at_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    request = Request.chat("m", CHAT)
    cache.put(request.key(), request, _response("durable"))
    # No transaction left open: another writer gets the write lock at once (timeout 0), not "database is locked".
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("ROLLBACK")
    writer.close()
    reader = sqlite3.connect(path)
    row = reader.execute("SELECT request, response FROM responses WHERE key = ?", (request.key(),)).fetchone()
    assert row is not None
    assert json.loads(row[0]) == request.to_dict()
    assert json.loads(row[1])["text"] == "durable"
    reader.close()
    # And a second RequestCache sees it while the first is still open.
    second = RequestCache(path)
    assert second.get(request.key()).text == "durable"
    second.close()
    cache.close()


# ================================================================ rate limits


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(ratelimit.time, "monotonic", fake)
    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake.sleep)
    return fake


def test_bucket_arithmetic(clock):
    bucket = Bucket(120)  # 2 per second, holds 120
    assert bucket.capacity == 120 and bucket.rate == pytest.approx(2.0)
    assert bucket.wait_time(120) == 0.0
    bucket.take(100)
    assert bucket.level == pytest.approx(20)
    assert bucket.wait_time(20) == 0.0
    assert bucket.wait_time(30) == pytest.approx(5.0)  # 10 short at 2/s
    clock.now += 5
    assert bucket.wait_time(30) == 0.0
    assert bucket.level == pytest.approx(30)
    clock.now += 3600  # refill never goes past one minute's allowance
    bucket.wait_time(1)
    assert bucket.level == pytest.approx(120)
    # More than the whole allowance: wait for a full bucket, then go (into debt).
    bucket.take(200)
    assert bucket.level == pytest.approx(-80)
    assert bucket.wait_time(1000) == pytest.approx(100.0)  # (120 - -80) / 2


def test_rpm_61st_request_waits_a_second(clock):
    limiter = RateLimiter(requests_per_minute=60)

    async def main():
        for _ in range(60):
            await limiter.acquire(10)
        assert clock.sleeps == []
        await limiter.acquire(10)

    asyncio.run(main())
    assert sum(clock.sleeps) == pytest.approx(1.0)
    assert clock.sleeps[0] == pytest.approx(1.0)


def test_rpm_steady_state_spacing(clock):
    limiter = RateLimiter(requests_per_minute=60)

    async def main():
        for _ in range(65):
            await limiter.acquire(1)

    asyncio.run(main())
    assert sum(clock.sleeps) == pytest.approx(5.0)
    assert clock.now == pytest.approx(1005.0)


def test_rpm_concurrent_waiters(clock):
    limiter = RateLimiter(requests_per_minute=6)  # one every 10 s after the first 6

    async def main():
        await asyncio.gather(*(limiter.acquire(1) for _ in range(9)))

    asyncio.run(main())
    assert sum(clock.sleeps) == pytest.approx(30.0)


def test_inactive_limiter_never_sleeps(clock):
    limiter = RateLimiter()
    assert not limiter.active

    async def main():
        for _ in range(1000):
            await limiter.acquire(10**6)

    asyncio.run(main())
    assert clock.sleeps == []
    limiter.settle(10, 10**6)  # no token bucket: nothing to correct


def test_tpm_settle_with_more_than_estimated_delays_later_requests(clock):
    async def scenario(actual: int) -> list[float]:
        clock.sleeps.clear()
        limiter = RateLimiter(tokens_per_minute=6000)  # 100 tokens a second
        await limiter.acquire(1000)
        limiter.settle(1000, actual)
        await limiter.acquire(1000)
        return list(clock.sleeps)

    assert asyncio.run(scenario(1000)) == []  # 4000 left for the next 1000
    delayed = asyncio.run(scenario(7000))  # 6000 more than estimated: level 5000 - 6000 = -1000
    assert sum(delayed) == pytest.approx(20.0)  # (1000 - -1000) / 100


def test_tpm_settle_with_less_than_estimated_gives_tokens_back(clock):
    limiter = RateLimiter(tokens_per_minute=1000)

    async def main():
        await limiter.acquire(900)
        limiter.settle(900, 100)
        await limiter.acquire(800)

    asyncio.run(main())
    assert clock.sleeps == []


def test_rpm_and_tpm_wait_for_the_slower(clock):
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=600)  # 10 req/s, 10 tok/s

    async def main():
        await limiter.acquire(600)
        await limiter.acquire(50)

    asyncio.run(main())
    assert sum(clock.sleeps) == pytest.approx(5.0)  # tokens decide, not requests


# ================================================================ accounting


def test_builtin_prices(monkeypatch):
    monkeypatch.delenv("DISTILL_PRICES", raising=False)
    prices = load_prices()
    assert prices["gpt-4o-mini"] == Price(0.15, 0.60)
    assert prices["gpt-4o"] == Price(2.50, 10.00)
    assert all(isinstance(p, Price) for p in prices.values())
    assert Price(2.0, 8.0).cost(1_000_000, 500_000) == pytest.approx(6.0)
    assert FREE.cost(10**9, 10**9) == 0.0


def test_price_file_argument_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILL_PRICES", raising=False)
    extra = tmp_path / "extra.yaml"
    extra.write_text("my-model: {input: 1, output: 2}\ngpt-4o: {input: 9, output: 9}\n", encoding="utf-8")
    prices = load_prices(extra)
    assert prices["my-model"] == Price(1.0, 2.0)
    assert prices["gpt-4o"] == Price(9.0, 9.0)  # overrides the built-in
    assert prices["gpt-4o-mini"] == Price(0.15, 0.60)  # the rest stays
    assert load_prices(str(extra))["my-model"] == Price(1.0, 2.0)

    env_file = tmp_path / "env.yaml"
    env_file.write_text("env-model: {input: 3, output: 4}\nmy-model: {input: 5, output: 6}\n", encoding="utf-8")
    monkeypatch.setenv("DISTILL_PRICES", str(env_file))
    assert load_prices()["env-model"] == Price(3.0, 4.0)
    both = load_prices(extra)
    assert both["env-model"] == Price(3.0, 4.0)
    assert both["my-model"] == Price(1.0, 2.0)  # --prices wins over DISTILL_PRICES


@pytest.mark.parametrize(
    "text",
    [
        "- just\n- a list\n",
        "m: 3\n",
        "m: {input: 1}\n",
        "m: {input: cheap, output: 1}\n",
        "m: [1, 2\n",
        "m:\n",
    ],
)
def test_malformed_price_file(tmp_path, monkeypatch, text):
    monkeypatch.delenv("DISTILL_PRICES", raising=False)
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="price table"):
        load_prices(path)
    monkeypatch.setenv("DISTILL_PRICES", str(path))
    with pytest.raises(ConfigError, match="price table"):
        load_prices()


def test_missing_price_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_PRICES", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_prices()


def test_price_for_exact_and_dated_variants():
    prices = {"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6), "gpt-4": Price(30, 60)}
    assert price_for("gpt-4o", prices) == Price(2.5, 10)
    assert price_for("gpt-4o-mini", prices) == Price(0.15, 0.6)
    assert price_for("gpt-4o-mini-2024-07-18", prices) == Price(0.15, 0.6)  # longest prefix wins
    assert price_for("gpt-4o-2024-08-06", prices) == Price(2.5, 10)
    assert price_for("gpt-4-0613", prices) == Price(30, 60)
    assert price_for("gpt-4o1", prices) is None  # a prefix must end at a '-'
    assert price_for("llama-3", prices) is None
    assert price_for("gpt-4o-mini-2024-07-18", load_prices()) == load_prices()["gpt-4o-mini"]


def test_ledger_needs_a_price_for_a_cost_budget():
    with pytest.raises(ConfigError, match="--max-cost-usd"):
        Ledger(None, max_cost_usd=1.0)
    Ledger(None, max_tokens=100)  # a token budget needs no price
    assert Ledger(None).cost is None


def test_ledger_token_budget_counts_worst_case():
    request = Request.text("m", "x" * 30, SamplingParams(max_tokens=100))  # 46 + 100 tokens worst case
    worst = request.max_prompt_tokens() + 100
    assert worst == 146  # 30 bytes, at most a token each, + 16 for the frame
    ledger = Ledger(None, max_tokens=2 * worst)
    first = ledger.reserve(request)
    assert first == (worst, 0.0) and ledger.reserved_tokens == worst
    ledger.reserve(request)
    assert ledger.reserved_tokens == 2 * worst
    with pytest.raises(BudgetReached, match="token budget"):
        ledger.reserve(request)
    assert ledger.reserved_tokens == 2 * worst  # a refused request reserves nothing

    # The first request finishes: its reservation goes, its real usage stays.
    ledger.release(first)
    ledger.record(Usage(prompt_tokens=10, completion_tokens=20), "m")
    assert (ledger.prompt_tokens, ledger.completion_tokens, ledger.tokens) == (10, 20, 30)
    assert ledger.reserved_tokens == worst
    with pytest.raises(BudgetReached):
        ledger.reserve(request)  # 30 used + 146 in flight + 146 > 292
    small = Request.text("m", "x" * 30, SamplingParams(max_tokens=70))  # 116 worst case
    ledger.reserve(small)  # 30 + 146 + 116 == 292: exactly at the budget is allowed
    assert ledger.tokens + ledger.reserved_tokens == 2 * worst


def test_ledger_token_budget_edge():
    request = Request.text("m", "x" * 30, SamplingParams(max_tokens=100))  # 146 worst case
    Ledger(None, max_tokens=146).reserve(request)
    with pytest.raises(BudgetReached):
        Ledger(None, max_tokens=145).reserve(request)
    # Even with nothing spent, a request that alone could pass the cap is refused.
    with pytest.raises(BudgetReached):
        Ledger(None, max_tokens=50).reserve(Request.text("m", "x", SamplingParams(max_tokens=1000)))


def test_ledger_cost_budget():
    price = Price(input=1_000_000.0, output=2_000_000.0)  # $1 a prompt token, $2 a completion token
    request = Request.text("m", "x" * 30, SamplingParams(max_tokens=10))  # 46 prompt, 10 completion at most
    ledger = Ledger(price, max_cost_usd=150.0)
    reservation = ledger.reserve(request)
    assert reservation[0] == 56 and reservation[1] == pytest.approx(46 + 20)
    ledger.reserve(request)  # $132 in flight
    with pytest.raises(BudgetReached, match="cost budget"):
        ledger.reserve(request)  # $198 > $150
    ledger.release(reservation)
    assert ledger.reserved_cost == pytest.approx(66.0)
    ledger.record(Usage(prompt_tokens=18, completion_tokens=5), "m")
    assert ledger.cost == pytest.approx(28.0)
    with pytest.raises(BudgetReached):
        ledger.reserve(request)  # $28 spent + $66 in flight + $66 = $160 > $150
    ledger.reserve(Request.text("m", "x" * 30, SamplingParams(max_tokens=5)))  # 28 + 66 + 56 = 150
    assert ledger.cost + ledger.reserved_cost == pytest.approx(150.0)


def test_ledger_cost_budget_counts_what_is_spent():
    price = Price(input=1_000_000.0, output=1_000_000.0)
    request = Request.text("m", "x" * 30, SamplingParams(max_tokens=10))  # $56 worst case
    ledger = Ledger(price, max_cost_usd=80.0)
    ledger.release(ledger.reserve(request))  # nothing spent: $56 fits
    assert ledger.reserved_cost == pytest.approx(0.0)
    ledger.record(Usage(prompt_tokens=20, completion_tokens=5), "m")  # $25 spent
    with pytest.raises(BudgetReached, match=r"\$80\.00.*\$25\.0000 spent"):
        ledger.reserve(request)  # 25 + 56 = 81 > 80


# ================================================================ retries


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(max_retry_after=30.0)
    rng = random.Random(0)
    assert policy.delay(0, 12.5, rng) == 12.5
    assert policy.delay(5, 0.0, rng) == 0.0
    assert policy.delay(0, 1000.0, rng) == 30.0
    assert RetryPolicy().delay(0, 10**6, rng) == 600.0


def test_backoff_is_exponential_with_jitter():
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)
    rng = random.Random(1234)
    for attempt in range(12):
        ceiling = min(60.0, 2.0**attempt)
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
        assert len(set(delays)) > 100  # jittered, not a fixed value
    assert max(policy.delay(30, None, rng) for _ in range(100)) <= 60.0
    assert min(policy.delay(30, None, rng) for _ in range(100)) >= 30.0


def test_backoff_is_reproducible_with_the_same_rng_seed():
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    a = [policy.delay(i, None, random.Random(7)) for i in range(6)]
    b = [policy.delay(i, None, random.Random(7)) for i in range(6)]
    assert a == b
    assert all(min(8.0, 0.5 * 2**i) / 2 <= d <= min(8.0, 0.5 * 2**i) for i, d in enumerate(a))


def test_backoff_survives_a_huge_attempt_number():
    assert RetryPolicy().delay(2000, None, random.Random(0)) <= 60.0


# ================================================================ config


def test_read_yaml_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max-cost-usd: 2.5\nmodel: m\n", encoding="utf-8")
    assert read_yaml_config(path) == {"max_cost_usd": 2.5, "model": "m"}
    path.write_text("# only a comment\n", encoding="utf-8")
    assert read_yaml_config(path) == {}


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "must be a mapping"),
        ("just a string\n", "must be a mapping"),
        ("a: [1, 2\n", "not valid YAML"),
        ("a: b: c\n", "not valid YAML"),
    ],
)
def test_read_yaml_config_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml_config(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_read_yaml_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config .*nope.yaml"):
        read_yaml_config(tmp_path / "nope.yaml")


def test_identity_excludes_runtime_keys(tmp_path):
    a = EngineConfig(output=tmp_path / "a", model="m", seed=1)
    b = EngineConfig(
        output=tmp_path / "b", model="m", seed=1, fresh=True, concurrency=3, rpm=10, tpm=1000, max_retries=0,
        timeout=5, max_cost_usd=1.0, max_tokens=10, prices=tmp_path / "p.yaml", quiet=True,
        base_url=["http://127.0.0.1:1/v1"], api_key_env="OTHER_KEY", tensor_parallel_size=2, n_threads=2, n_ctx=512,
    )
    assert a.identity() == b.identity()
    identity = a.identity()
    assert not set(identity) & EngineConfig.RUNTIME_KEYS
    assert {"backend", "model", "seed"} <= set(identity)
    json.dumps(identity)  # JSON-ready, to be written into the run directory
    assert EngineConfig(output=tmp_path / "a", model="other", seed=1).identity() != identity
    assert EngineConfig(output=tmp_path / "a", model="m", seed=2).identity() != identity
    assert EngineConfig(output=tmp_path / "a", model="m", seed=1, backend="fake").identity() != identity


def test_unknown_key_is_an_error(tmp_path):
    from pydantic import ValidationError

    from distill.config import validate_config

    with pytest.raises(ValidationError) as info:
        EngineConfig(output=tmp_path, model="m", no_such_key=1)
    # The unknown key, and only it, is what is refused (not the known `model` next to it).
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("extra_forbidden", ("no_such_key",))]
    # And the line a user reads (a config file, a plan) names it.
    with pytest.raises(ConfigError, match=r"^unknown config key 'no_such_key'$"):
        validate_config(EngineConfig, {"output": str(tmp_path), "model": "m", "no_such_key": 1})


@pytest.mark.parametrize("value", ["sk-abc", "sk-proj-0123456789abcdef", "my key", "", "OPENAI API KEY"])
def test_api_key_env_refuses_a_key(tmp_path, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="name of an environment variable"):
        EngineConfig(output=tmp_path, api_key_env=value)


@pytest.mark.parametrize("value", ["OPENAI_API_KEY", "MY_KEY_2", "TOGETHER_API_KEY"])
def test_api_key_env_accepts_names(tmp_path, value):
    assert EngineConfig(output=tmp_path, api_key_env=value).api_key_env == value


# ================================================================ Retry-After


NOW = 1_700_000_000.0


@pytest.fixture
def frozen_time(monkeypatch):
    from distill.backends import http_errors

    monkeypatch.setattr(http_errors, "time", SimpleNamespace(time=lambda: NOW))


def test_retry_after_seconds(frozen_time):
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": "0"}) == 0.0
    assert parse_retry_after({"retry-after": "-3"}) == 0.0


def test_retry_after_http_date(frozen_time):
    later = email.utils.formatdate(NOW + 30, usegmt=True)  # e.g. "Tue, 14 Nov 2023 22:13:50 GMT"
    assert parse_retry_after({"retry-after": later}) == pytest.approx(30.0)
    earlier = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after({"retry-after": earlier}) == 0.0


def test_retry_after_ms(frozen_time):
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms is more precise
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0  # bad ms: fall back


@pytest.mark.parametrize("headers", [None, {}, {"retry-after": ""}, {"retry-after": "soon"}, {"retry-after": "Mon, 99 Foo"}, {"retry-after-ms": "x"}])
def test_retry_after_garbage_or_missing(frozen_time, headers):
    assert parse_retry_after(headers) is None


def test_retry_after_from_the_http_clients_headers(frozen_time):
    # What the openai package hands over (err.response.headers): case-insensitive Headers.
    httpx = pytest.importorskip("httpx2") if importlib.util.find_spec("httpx") is None else importlib.import_module("httpx")
    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0
    assert parse_retry_after(httpx.Headers({"Retry-After-Ms": "40"})) == 0.04


def test_integer_and_float_temperatures_share_a_cache_key():
    one = Request.chat("m", [{"role": "user", "content": "x"}], SamplingParams(temperature=1, top_p=1))
    other = Request.chat("m", [{"role": "user", "content": "x"}], SamplingParams(temperature=1.0, top_p=1.0))
    assert one.key() == other.key()


def test_ledger_prices_each_model_on_its_own():
    prices = {"big": Price(input=2_000_000.0, output=2_000_000.0), "small": Price(input=1_000_000.0, output=1_000_000.0)}
    ledger = Ledger(prices, max_cost_usd=100.0)
    ledger.record(Usage(prompt_tokens=1, completion_tokens=1), "big")
    ledger.record(Usage(prompt_tokens=1, completion_tokens=1), "small")
    assert ledger.cost == pytest.approx(6.0)
    assert Ledger(prices, max_cost_usd=200.0).reserve(Request.text("big", "x" * 30, SamplingParams(max_tokens=10))) == (
        56, pytest.approx(112.0))
    with pytest.raises(ConfigError, match="for other"):
        Ledger({**prices, "other": None}, max_cost_usd=1.0)
    unknown = Ledger({"a": None})
    unknown.record(Usage(1, 1), "a")
    assert unknown.cost is None


def test_user_yaml_reads_as_yaml_1_2():
    from distill.config import load_yaml

    values = load_yaml("a: no\nb: true\nc: [x, off]\nd: 2e-5\ne: 1.0e-5\nf: 12\ng: 1:20\nh: .inf\ni: null")
    assert values == {"a": "no", "b": True, "c": ["x", "off"], "d": 2e-5, "e": 1e-5, "f": 12, "g": "1:20",
                      "h": float("inf"), "i": None}
    from distill.train.recipe import apply_overrides

    assert apply_overrides({}, ["training.save_strategy=no", "training.learning_rate=1e-5"]) == {
        "training": {"save_strategy": "no", "learning_rate": 1e-5}}


def test_presence_penalty_is_in_the_key_and_the_body_only_when_set():
    from distill.backends.openai_backend import request_body

    plain = Request.chat("m", CHAT, SamplingParams(0.7))
    assert "presence_penalty" not in plain.to_dict()["params"]  # keys cached before it existed still match
    penalised = Request.chat("m", CHAT, SamplingParams(0.7, presence_penalty=2.0))
    assert penalised.key() != plain.key() and penalised.to_dict()["params"]["presence_penalty"] == 2.0
    assert "presence_penalty" not in request_body(plain)[1] and request_body(penalised)[1]["presence_penalty"] == 2.0


def test_cache_keys_do_not_change_between_versions():
    # A key that changed would make every cached answer of a run unreachable: pinned here.
    requests = [
        Request.chat("m", [{"role": "user", "content": "hi"}]),
        Request.chat("m", [{"role": "system", "content": "s"}, {"role": "user", "content": "é ü"}],
                     SamplingParams(0.7, 0.5, 64, ("\n",), 7, 1.5), sample=2, answer_prefix="1.",
                     json_schema={"type": "object"}),
        Request.text("base", "Once", SamplingParams(1, 1, 10, (), None)),
        Request.text("base", "Once", SamplingParams(0, 1.0, 10, ("a", "b"), 3, None), sample=1),
    ]
    assert [r.key()[:16] for r in requests] == ["642b463f3e8a267e", "0fec65ffd88ed24e", "5f120de03014dbfc", "2d98e504f5f5e39f"]
