"""Several models on several backends behind one backend: requests go by their model name.

A model spec says where a model lives: `[BACKEND:]MODEL[@BASE_URL]`.
    gpt-4o-mini                      the run's own backend and endpoint
    openai:gpt-4o                    the openai backend, its default endpoint
    mistral-7b@http://gpu1:8000/v1   an OpenAI-compatible server at that URL
    llamacpp:/models/judge.gguf      a GGUF on the CPU
In a YAML config a spec may also be a mapping: {model, backend, base_url, api_key_env}.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from distill.backends.base import Backend
from distill.request import Request, Response

BACKENDS = ("llamacpp", "openai", "vllm", "fake")


@dataclass(frozen=True)
class ModelSpec:
    model: str
    backend: str | None = None  # None: the run's backend
    base_url: tuple[str, ...] = field(default=())
    api_key_env: str | None = None

    @property
    def own_backend(self) -> bool:
        return self.backend is not None or bool(self.base_url)

    def __str__(self) -> str:
        return self.model


def parse_model_spec(value: Any) -> ModelSpec:
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"model", "backend", "base_url", "api_key_env"}
        if unknown or "model" not in value:
            raise ValueError(f"a model is {{model, backend, base_url, api_key_env}}, not {value!r}")
        urls = value.get("base_url") or ()
        spec = ModelSpec(str(value["model"]), value.get("backend"), tuple([urls] if isinstance(urls, str) else urls), value.get("api_key_env"))
    else:
        text = str(value).strip()
        backend, sep, rest = text.partition(":")
        if sep and backend in BACKENDS and not rest.startswith("//"):
            text = rest
        else:
            backend = None
        model, sep, url = text.partition("@")
        spec = ModelSpec(model.strip(), backend or ("openai" if url else None), (url.strip(),) if url else ())
    if not spec.model:
        raise ValueError(f"no model name in {value!r}")
    if spec.backend is not None and spec.backend not in BACKENDS:
        raise ValueError(f"unknown backend {spec.backend!r} in {value!r} (backends: {', '.join(BACKENDS)})")
    return spec


class Router:
    """Dispatches each request to the backend of its model; the default takes the rest."""

    max_concurrency = None

    def __init__(self, default: Backend, routes: dict[str, Backend]):
        self.default = default
        self.routes = routes
        self.name = default.name

    def model_id(self) -> str:
        return self.default.model_id()

    async def complete(self, request: Request) -> Response:
        return await self.routes.get(request.model, self.default).complete(request)

    async def aclose(self) -> None:
        unique = {id(b): b for b in [self.default, *self.routes.values()]}
        await asyncio.gather(*(b.aclose() for b in unique.values()))
