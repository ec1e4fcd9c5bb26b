"""Backends behind one async interface; each one is imported only when chosen."""

from __future__ import annotations

import os

from distill.backends.base import Backend, PermanentError, TransientError
from distill.config import EngineConfig
from distill.errors import ConfigError

__all__ = ["Backend", "PermanentError", "TransientError", "choose_backend", "make_backend"]


def choose_backend(config: EngineConfig) -> str:
    """The named backend, else openai when an endpoint is configured, else the embedded llamacpp."""
    if config.backend:
        return config.backend
    if config.base_url or os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    return "llamacpp"


def make_backend(config: EngineConfig) -> Backend:
    name = choose_backend(config)
    if name == "llamacpp":
        from distill.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads)
    if name == "fake":
        from distill.backends.fake import FakeBackend

        return FakeBackend(config.model or "fake-model")
    if config.model is None:
        raise ConfigError(f"the {name} backend needs --model")
    if name == "openai":
        from distill.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config.model, config.base_url, config.api_key_env, config.timeout)
    if name == "vllm":
        from distill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config.model, tensor_parallel_size=config.tensor_parallel_size)
    raise ConfigError(f"unknown backend {name!r}")
