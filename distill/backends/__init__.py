"""Backends behind one async interface; each one is imported only when chosen."""

from __future__ import annotations

import asyncio
import os

from distill.backends.base import Backend, PermanentError, TransientError
from distill.backends.router import ModelSpec, Router
from distill.config import EngineConfig
from distill.errors import ConfigError

__all__ = ["Backend", "PermanentError", "TransientError", "choose_backend", "make_backend", "route"]


def choose_backend(config: EngineConfig) -> str:
    """The named backend, else openai when an endpoint is configured, else the embedded llamacpp."""
    if config.backend:
        return config.backend
    if config.base_url or os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    return "llamacpp"


def make_backend(config: EngineConfig) -> Backend:
    name = choose_backend(config)
    if config.batch_api and name != "openai":
        raise ConfigError(f"--batch-api is the Batch API of an OpenAI-compatible provider: it needs the openai backend, not {name}")
    if name == "llamacpp":
        from distill.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads)
    if name == "fake":
        from distill.backends.fake import FakeBackend

        return FakeBackend(config.model or "fake-model")
    if config.model is None:
        raise ConfigError(f"the {name} backend needs --model")
    if name == "openai":
        from pathlib import Path

        from distill.backends.openai_backend import BatchSettings, OpenAIBackend

        batch = BatchSettings(Path(config.output) / "batches.jsonl", config.batch_window, config.batch_poll) if config.batch_api else None
        return OpenAIBackend(config.model, config.base_url, config.api_key_env, config.timeout, batch)
    if name == "vllm":
        from distill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config.model, tensor_parallel_size=config.tensor_parallel_size)
    raise ConfigError(f"unknown backend {name!r}")


def route(config: EngineConfig, specs: list[ModelSpec]) -> tuple[Backend, dict[str, str]]:
    """The run's backend, behind a Router when some of `specs` live elsewhere, and the
    backend kind of each spec's model (for prices)."""
    default = make_backend(config)
    kinds = {spec.model: choose_backend(config) for spec in specs if not spec.own_backend}
    routes: dict[str, Backend] = {}
    seen: dict[str, ModelSpec] = {}
    try:
        for spec in specs:
            if seen.setdefault(spec.model, spec) != spec:
                raise ConfigError(f"model {spec.model!r} is named twice with different backends or endpoints")
            if spec.own_backend and spec.model not in routes:
                update = {"backend": spec.backend or "openai", "model": spec.model, "base_url": list(spec.base_url)}
                if spec.api_key_env:
                    update["api_key_env"] = spec.api_key_env
                routes[spec.model] = make_backend(config.model_copy(update=update))
                kinds[spec.model] = update["backend"]
    except BaseException:
        asyncio.run(Router(default, routes).aclose())
        raise
    return (Router(default, routes) if routes else default), kinds
