"""Any OpenAI-compatible endpoint (OpenAI, vLLM or llama.cpp servers, TGI, Ollama).

Several base URLs may be given; each request goes to the one with the fewest requests
in flight. The openai package's own retries are switched off: retrying belongs to the
distill client, once, for every backend. With a BatchSettings, requests go through the
provider's Batch API instead (distill.backends.openai_batch).
"""

from __future__ import annotations

import email.utils
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai

from distill import secrets
from distill.backends.base import PermanentError, RejectedError, TransientError
from distill.errors import ConfigError, warn
from distill.request import Request, Response, Usage

RETRYABLE_STATUS = {408, 409, 425, 429}


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


NO_KEY = "no-key"  # what an endpoint given no key is sent: the openai client needs some value


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class BatchSettings:
    journal: Path  # RUN_DIR/batches.jsonl
    window: float = 10.0  # seconds a batch gathers requests before it is sent
    poll: float = 30.0  # seconds between looks at a running batch


def request_body(request: Request) -> tuple[str, dict[str, Any]]:
    """The route and JSON body of a request, as the chat or completions API takes it."""
    p = request.params
    body: dict[str, Any] = {"model": request.model, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    if p.presence_penalty is not None:
        body["presence_penalty"] = p.presence_penalty
    if request.messages is None:
        return "/v1/completions", {**body, "prompt": request.prompt}
    if request.json_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "reply", "schema": request.json_schema, "strict": True}}
    return "/v1/chat/completions", {**body, "messages": list(request.messages)}


def response_from_body(data: dict[str, Any], request: Request) -> Response:
    """A Response from a chat.completion or text_completion as JSON (a batch's output line)."""
    choice = data["choices"][0]
    text = choice["message"]["content"] if "message" in choice else choice["text"]
    if text is None:
        raise TypeError("no text in the reply")
    usage = data.get("usage") or {}
    return Response(text=text, finish_reason=choice.get("finish_reason") or "stop",
                    usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
                    model=data.get("model") or request.model)


class _Endpoint:
    def __init__(self, base_url: str | None, api_key: str, timeout: float):
        self.base_url = base_url
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.in_flight = 0


class OpenAIBackend:
    name = "openai"
    max_concurrency = None

    def __init__(self, model: str, base_urls: list[str] | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 600.0, batch: BatchSettings | None = None):
        """`api_key_env` names the variable of the key these endpoints get; None: no key (an
        endpoint named with MODEL@URL and no #KEY_ENV)."""
        urls = list(base_urls or []) or [os.environ.get("OPENAI_BASE_URL") or None]
        if api_key_env is None:
            api_key = NO_KEY
        else:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigError(
                    f"the openai backend needs an API key in the environment variable {api_key_env} "
                    f"(for a local server without auth, any value will do, e.g. {api_key_env}=EMPTY)"
                )
            secrets.register(api_key)
            for url in urls:
                if url and url.startswith("http://") and not _loopback(url) and secrets.is_secret(api_key):
                    warn(f"the key in {api_key_env} goes to {url} over plain HTTP, readable on the way: use https, "
                         "or give that endpoint its own key variable")
        self.model = model
        self.endpoints = [_Endpoint(url, api_key, timeout) for url in urls]
        self._turn = itertools.count()
        self.queue = None
        if batch is not None:
            if len(self.endpoints) > 1:
                raise ConfigError("--batch-api sends to one endpoint: give one --base-url")
            from distill.backends.openai_batch import BatchJournal, BatchQueue

            endpoint = self.endpoints[0]
            self.queue = BatchQueue(endpoint.client, endpoint.base_url, BatchJournal(batch.journal), batch.window, batch.poll)

    def model_id(self) -> str:
        return self.model

    def _pick(self) -> _Endpoint:
        start = next(self._turn) % len(self.endpoints)
        rotated = self.endpoints[start:] + self.endpoints[:start]
        return min(rotated, key=lambda e: e.in_flight)

    async def complete(self, request: Request) -> Response:
        if self.queue is not None:
            route, body = request_body(request)
            data = await self.queue.complete(request.key(), route, body)
            try:
                return response_from_body(data, request)
            except (ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
                raise TransientError(f"malformed reply in a batch: {type(err).__name__}: {err}", kind="malformed") from err
        endpoint = self._pick()
        endpoint.in_flight += 1
        try:
            return await self._call(endpoint, request)
        finally:
            endpoint.in_flight -= 1

    async def _call(self, endpoint: _Endpoint, request: Request) -> Response:
        route, body = request_body(request)
        where = endpoint.base_url or "the OpenAI API"
        try:
            if route == "/v1/chat/completions":
                raw = await endpoint.client.chat.completions.create(**body)
                choice = raw.choices[0]
                text = choice.message.content
            else:
                raw = await endpoint.client.completions.create(**body)
                choice = raw.choices[0]
                text = choice.text
            usage = raw.usage
            if text is None:
                raise TypeError("no text in the reply")
            return Response(
                text=text,
                finish_reason=choice.finish_reason or "stop",
                usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
                model=getattr(raw, "model", None) or request.model,
            )
        except (openai.APIError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
            raise api_error(err, where, request.model) from err

    async def aclose(self) -> None:
        if self.queue is not None:
            await self.queue.aclose()
        for endpoint in self.endpoints:
            await endpoint.client.close()


def status_error(status: int, detail: str, where: str, retry_after: float | None = None,
                 model: str | None = None) -> Exception:
    """The backend error for an HTTP status: retried (408, 409, 425, 429, 5xx), the request
    rejected (400, 413, 422: the item fails, the run goes on), or permanent (the run stops)."""
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientError(f"HTTP {status} from {where}: {detail}", retry_after, kind=f"http_{status}")
    if status in (401, 403):
        return PermanentError(f"{where} refused the API key (HTTP {status}): {detail}")
    if status == 404:
        what = f"no model {model!r}" if model else "no such model"
        return PermanentError(f"{where} has {what} or no such route (HTTP 404): {detail}")
    if status in (400, 413, 422):
        return RejectedError(f"{where} rejected the request (HTTP {status}): {detail}")
    return PermanentError(f"{where} failed the request (HTTP {status}): {detail}")


def api_error(err: Exception, where: str, model: str | None = None) -> Exception:
    """The backend error for what the openai client raised, or for a reply it could not read."""
    if isinstance(err, openai.APITimeoutError):
        return TransientError(f"timeout from {where}", kind="timeout")
    if isinstance(err, openai.APIConnectionError):
        return TransientError(f"connection to {where} failed: {err}", kind="connection")
    if isinstance(err, openai.APIStatusError):
        return status_error(err.status_code, _short(err), where, parse_retry_after(err.response.headers), model)
    return TransientError(f"malformed reply from {where}: {type(err).__name__}: {err}", kind="malformed")


def _short(err: openai.APIStatusError) -> str:
    message = getattr(err, "message", None) or str(err)
    return " ".join(str(message).split())[:300]
