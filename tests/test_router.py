"""Model specs and the router that sends each request to its model's backend."""

import asyncio

import pytest

from distill.backends import route
from distill.backends.fake import FakeBackend
from distill.backends.router import ModelSpec, Router, parse_model_spec
from distill.config import EngineConfig
from distill.errors import ConfigError
from distill.request import Request


def test_model_specs():
    assert parse_model_spec("gpt-4o-mini") == ModelSpec("gpt-4o-mini")
    assert parse_model_spec("openai:gpt-4o") == ModelSpec("gpt-4o", "openai")
    assert parse_model_spec("m7@http://gpu1:8000/v1") == ModelSpec("m7", "openai", ("http://gpu1:8000/v1",))
    assert parse_model_spec("llamacpp:/models/judge.gguf") == ModelSpec("/models/judge.gguf", "llamacpp")
    assert parse_model_spec("llama3:8b") == ModelSpec("llama3:8b")  # an Ollama tag, not a backend
    assert parse_model_spec({"model": "x", "base_url": "http://h/v1", "api_key_env": "K"}) == ModelSpec("x", None, ("http://h/v1",), "K")
    for bad in ("", "@http://h/v1", {"name": "x"}, {"model": "x", "backend": "nope"}):
        with pytest.raises(ValueError):
            parse_model_spec(bad)


def test_router_sends_each_model_to_its_backend():
    default, other = FakeBackend("a", reply=lambda r: "from a"), FakeBackend("b", reply=lambda r: "from b")
    router = Router(default, {"b": other})
    async def ask():
        return await asyncio.gather(*(router.complete(Request.text(m, "x")) for m in "abc"))

    texts = asyncio.run(ask())
    assert [t.text for t in texts] == ["from a", "from b", "from a"]
    assert router.model_id() == "a" and router.name == "fake"


def test_route_builds_a_backend_per_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "k")
    config = EngineConfig(output=tmp_path, backend="fake", model="pool-default")
    backend, kinds = route(config, [parse_model_spec("small"), parse_model_spec({"model": "judge", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "JUDGE_KEY"})])
    assert isinstance(backend, Router) and set(backend.routes) == {"judge"}
    assert kinds == {"small": "fake", "judge": "openai"}
    assert backend.routes["judge"].endpoints[0].base_url == "http://127.0.0.1:1/v1"
    asyncio.run(backend.aclose())
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with pytest.raises(ConfigError, match="named twice"):
        route(config, [parse_model_spec("j@http://a/v1"), parse_model_spec("j@http://b/v1")])
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(ConfigError, match="JUDGE_KEY"):
        route(config, [parse_model_spec({"model": "judge", "base_url": "http://h/v1", "api_key_env": "JUDGE_KEY"})])
