"""Backends behind one async interface; each one is imported only when chosen."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from distill.backends.base import Backend, PermanentError, TransientError
from distill.backends.router import ModelSpec, Router
from distill.config import EngineConfig
from distill.errors import ConfigError

__all__ = ["Backend", "PermanentError", "TransientError", "check_models_have_a_place", "choose_backend",
           "embedded_default", "make_backend", "route"]


def choose_backend(config: EngineConfig) -> str:
    """The named backend, else openai when an endpoint is configured, else the embedded llamacpp."""
    if config.backend:
        return config.backend
    if config.base_url or os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    return "llamacpp"


def check_models_have_a_place(config: EngineConfig, models: dict[str, ModelSpec | None]) -> None:
    """The in-process backends load files: llamacpp GGUF models, transformers model folders.
    Every other model an option names (`models`: flag -> spec) needs a place of its own
    (MODEL@URL or BACKEND:MODEL)."""
    backend = choose_backend(config)
    loads = {"llamacpp": (_gguf, "embedded models (`distill models`) and .gguf files"),
             "transformers": (_folder, "local model folders")}.get(backend)
    if loads is None:
        return
    loadable, what = loads
    homeless = [flag for flag, spec in models.items() if spec is not None and not spec.own_backend and not loadable(spec.model)]
    if homeless:
        raise ConfigError(f"the {backend} backend loads {what}: "
                          f"{', '.join(homeless)} need an endpoint (MODEL@URL) or a backend (BACKEND:MODEL)")


def _folder(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def _gguf(model: str) -> bool:
    """Whether the llamacpp backend can load it: an embedded model's name or a .gguf file."""
    from distill.embedded import embedded_model

    return embedded_model(model) is not None or model.lower().endswith(".gguf")


def embedded_default(config: EngineConfig) -> str:
    """The embedded model a run of this config's method loads when no --model names one."""
    from distill.embedded import INSTRUCT
    from distill.methods import methods

    return next((m.embedded_default for m in methods().values() if type(config) is m.config), INSTRUCT)


def make_backend(config: EngineConfig) -> Backend:
    name = choose_backend(config)
    if config.batch_api and name != "openai":
        raise ConfigError(f"--batch-api is the Batch API of an OpenAI-compatible provider: it needs the openai backend, not {name}")
    if name == "llamacpp":
        from distill.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config.model or embedded_default(config), n_ctx=config.n_ctx, n_threads=config.n_threads)
    if name == "fake":
        from distill.backends.fake import FakeBackend

        return FakeBackend(config.model or "fake-model")
    if config.model is None:
        raise ConfigError(f"the {name} backend needs --model")
    if name == "openai":
        from distill.backends.openai_backend import BatchSettings, OpenAIBackend
        from distill.run_dir import RunDir

        journal = RunDir(config.output).batches_path
        batch = BatchSettings(journal, config.batch_window, config.batch_poll) if config.batch_api else None
        return OpenAIBackend(config.model, config.base_url, config.api_key_env, config.timeout, batch)
    if name == "vllm":
        from distill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config.model, tensor_parallel_size=config.tensor_parallel_size)
    if name == "transformers":
        from distill.backends.transformers_backend import TransformersBackend

        return TransformersBackend(config.model, n_threads=config.n_threads)
    raise ConfigError(f"unknown backend {name!r}")


def route(config: EngineConfig, specs: list[ModelSpec]) -> tuple[Backend, dict[str, str]]:
    """The run's backend, behind a Router when some of `specs` live elsewhere, and the
    backend kind of each spec's model (for prices).

    A spec is resolved before it is compared: `m` on a run whose endpoint is URL and
    `m@URL` are the same model in the same place. A MODEL@URL gets only the API key its
    #KEY_ENV names (none otherwise): the run's key belongs to the run's own endpoints."""
    default = make_backend(config)
    run_backend = choose_backend(config)
    openai_default = (os.environ["OPENAI_BASE_URL"],) if os.environ.get("OPENAI_BASE_URL") else ()
    run_place = (run_backend, tuple(config.base_url) or openai_default if run_backend == "openai" else ())
    kinds: dict[str, str] = {}
    routes: dict[str, Backend] = {}
    shared: dict[tuple, Backend] = {}
    seen: dict[str, tuple] = {}
    try:
        for spec in specs:
            if spec.base_url:
                place, key_env = ("openai", spec.base_url), spec.api_key_env
            elif spec.backend and spec.backend != run_backend:  # that backend's own default
                place = (spec.backend, openai_default if spec.backend == "openai" else ())
                key_env = spec.api_key_env or "OPENAI_API_KEY"
            else:
                place, key_env = run_place, spec.api_key_env or config.api_key_env
            if seen.setdefault(spec.model, place) != place:
                raise ConfigError(f"model {spec.model!r} is named twice with different backends or endpoints")
            kinds[spec.model] = place[0]
            if spec.model in routes or (place == run_place and key_env in (None, config.api_key_env)
                                        and not _another_loaded_model(default, place, spec.model)):
                continue  # the run's own backend serves it (the run's endpoint has the run's key)
            # One backend per place and key: what it learns of its endpoints (answered before,
            # the structured-output form it takes) holds for every model served there.
            # (An OpenAI-compatible endpoint serves any model a request names; the other backends load one.)
            where = (place, key_env) if place[0] == "openai" else (place, key_env, spec.model)
            if where not in shared:
                update = {"backend": place[0], "model": spec.model, "base_url": list(place[1]), "api_key_env": key_env,
                          "batch_api": False}
                shared[where] = make_backend(config.model_copy(update=update))
            routes[spec.model] = shared[where]
    except BaseException:
        asyncio.run(Router(default, routes).aclose())
        raise
    return (Router(default, routes) if routes else default), kinds


def _another_loaded_model(default: Backend, place: tuple, model: str) -> bool:
    """Whether `model` names another file than the one the run's in-process backend loaded (a
    GGUF for llamacpp, a folder for transformers): such a backend serves one model, so another
    needs a backend of its own. (On llamacpp any other name only labels samples of the loaded model.)"""
    from distill.backends.llamacpp import LlamaCppBackend, locate

    if place[0] == "transformers" and _folder(model):
        return Path(model).expanduser().resolve() != Path(default.model_id()).expanduser().resolve()
    if place[0] != "llamacpp" or not isinstance(default, LlamaCppBackend) or not _gguf(model):
        return False
    return locate(model).resolve() != default.path.resolve()
