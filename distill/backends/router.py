"""Several models on several backends behind one backend: requests go by their model name.

A model spec says where a model lives: `[BACKEND:]MODEL[@BASE_URL][#KEY_ENV]`.
    gpt-4o-mini                             the run's own backend and endpoint
    openai:gpt-4o                           the openai backend, its default endpoint
    mistral-7b@http://gpu1:8000/v1          an OpenAI-compatible server at that URL, sent no API key
    mistral-7b@https://host/v1#HOST_KEY     the same, with the key in the environment variable HOST_KEY
    llamacpp:/models/judge.gguf             a GGUF on the CPU
In a YAML config a spec may also be a mapping: {model, backend, base_url, api_key_env}.
A key goes only to the endpoint it is named for: the run's own endpoints get --api-key-env,
a MODEL@URL only the variable its #KEY_ENV names.

Every option that names a model parses it here (`ModelSpecValue`), once.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator

from distill.backends.base import Backend
from distill.config import BACKENDS
from distill.request import Request, Response

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        spec = ModelSpec(str(value["model"]), value.get("backend"), tuple([urls] if isinstance(urls, str) else urls),
                         value.get("api_key_env"))
    elif isinstance(value, str):
        text = value.strip()
        backend, sep, rest = text.partition(":")
        if sep and backend in BACKENDS and not rest.startswith("//"):
            text = rest
        else:
            backend = None
        model, sep, url = text.partition("@")
        key_env = None
        if sep:
            url, _, key_env = url.partition("#")
            key_env = key_env.strip() or None
        spec = ModelSpec(model.strip(), backend or ("openai" if url.strip() else None), (url.strip(),) if url.strip() else (),
                         key_env)
    else:
        raise ValueError(f"a model is a name like gpt-4o-mini or MODEL@URL, not {value!r}")
    if not spec.model:
        raise ValueError(f"no model name in {value!r}")
    if spec.backend is not None and spec.backend not in BACKENDS:
        raise ValueError(f"unknown backend {spec.backend!r} in {value!r} (backends: {', '.join(BACKENDS)})")
    if spec.api_key_env is not None and not ENV_NAME.match(spec.api_key_env):
        raise ValueError(f"#{spec.api_key_env} in {value!r} must name an environment variable, not hold a key")
    for url in spec.base_url:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} in {value!r} is not an http(s) URL")
    return spec


def comma_separated(value: Any) -> Any:
    """`a,b@http://h/v1` (or a list whose items may hold commas) -> a list of specs to parse."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        return [part.strip() if isinstance(item, str) else item
                for item in value for part in (item.split(",") if isinstance(item, str) else [item])
                if not isinstance(item, str) or part.strip()]
    return value


def _spec_or_none(value: Any) -> Any:
    return None if value is None or value == "" else parse_model_spec(value)


# The type of every option that names a model: a spec string or mapping, parsed once.
ModelSpecValue = Annotated[ModelSpec, BeforeValidator(parse_model_spec)]
OptionalModelSpec = Annotated[ModelSpec | None, BeforeValidator(_spec_or_none)]


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
