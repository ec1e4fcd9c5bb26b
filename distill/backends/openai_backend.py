"""Any OpenAI-compatible endpoint (OpenAI, vLLM or llama.cpp servers, TGI, Ollama).

Several base URLs may be given; each request goes to the one with the fewest requests
in flight. The openai package's own retries are switched off: retrying belongs to the
distill client, once, for every backend. With a BatchSettings, requests go through the
provider's Batch API instead (distill.backends.openai_batch).

What each endpoint has shown of itself is remembered for the session:
- structured output: a request with a JSON schema is sent as `response_format:
  json_schema`; an endpoint that refuses that form (an HTTP error whose body names
  response_format or json_schema, as llama-cpp-python's server answers with a 500) is sent
  the next form from then on, `json_object` with the schema inside (which llama.cpp's
  servers constrain to), plain `json_object`, then none (the pipeline's tolerant parser
  reads the text). It is said once per endpoint on stderr, is not a retry, and never
  changes a cache key (keys come from the Request, not from the HTTP body);
- whether it ever answered: a first connection refused outright fails at once ("is the
  server running?") instead of after minutes of retries, while an endpoint that answered
  before is waited for through the full retry policy (a server restarting mid-run);
- whether it continues an assistant prefill (a request's `answer_prefix`, "1." for a
  list): learned once, from the `owned_by` of GET /v1/models, before the first request
  with a prefix. vLLM ("vllm") is sent the prefix as a trailing assistant message with
  `continue_final_message: true, add_generation_prompt: false`; llama.cpp's llama-server
  ("llamacpp") continues a trailing assistant message by itself. Both answer with the
  continuation only, so the reply is returned as prefix + text, as the in-process
  backends that prefill return it. Every other endpoint (OpenAI's API; llama-cpp-python's llama_cpp.server,
  "me", which renders a trailing assistant message as a finished turn and opens a new
  one) is sent no prefix: the prompt's own instruction does the work. An endpoint that
  refuses the prefill (an HTTP error naming it, as llama-server does for a thinking
  model) is sent none from then on, said once. The prefill never changes a cache key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai

from distill import secrets
from distill.backends.base import PermanentError, TransientError
from distill.backends.http_errors import api_error, connection_refused
from distill.errors import ConfigError, warn
from distill.request import Request, Response, Usage

NO_KEY = "no-key"  # what an endpoint given no key is sent: the openai client needs some value


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class BatchSettings:
    journal: Path  # RUN_DIR/batches.jsonl
    window: float = 10.0  # seconds a batch gathers requests before it is sent
    poll: float = 30.0  # seconds between looks at a running batch


# The forms a JSON schema is sent in, strongest first; an endpoint that refuses one gets the next.
JSON_SCHEMA, JSON_OBJECT_WITH_SCHEMA, JSON_OBJECT, NO_FORMAT = range(4)
FORM_NAMES = ("response_format json_schema", "response_format json_object with the schema inside",
              "response_format json_object", "no response_format")


def response_format(schema: dict[str, Any], form: int = JSON_SCHEMA) -> dict[str, Any] | None:
    """The `response_format` of a request with a JSON schema, in one of the forms above."""
    if form == JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    if form == JSON_OBJECT_WITH_SCHEMA:  # llama-cpp-python's server (and llama.cpp's) turn the schema into a grammar
        return {"type": "json_object", "schema": schema}
    if form == JSON_OBJECT:
        return {"type": "json_object"}
    return None


# How each kind of server (the `owned_by` of its GET /v1/models) is asked to continue a
# trailing assistant message: the extra body fields it needs. Kinds not named get no prefill.
PREFILL_FIELDS: dict[str, dict[str, Any]] = {
    "vllm": {"continue_final_message": True, "add_generation_prompt": False},
    "llamacpp": {},  # llama.cpp's llama-server prefills a trailing assistant message by default
}


def request_body(request: Request, form: int = JSON_SCHEMA, prefill: str | None = None) -> tuple[str, dict[str, Any]]:
    """The route and JSON body of a request, as the chat or completions API takes it (a JSON
    schema sent in the given form of response_format; the answer prefix, for a server of
    kind `prefill` (a key of PREFILL_FIELDS), as a trailing assistant message to continue)."""
    p = request.params
    body: dict[str, Any] = {"model": request.model, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    if p.presence_penalty is not None:
        body["presence_penalty"] = p.presence_penalty
    if p.frequency_penalty is not None:
        body["frequency_penalty"] = p.frequency_penalty
    if request.messages is None:
        return "/v1/completions", {**body, "prompt": request.prompt}
    if request.json_schema is not None:
        fmt = response_format(request.json_schema, form)
        if fmt is not None:
            body["response_format"] = fmt
    messages = list(request.messages)
    if prefill is not None and request.answer_prefix:
        messages.append({"role": "assistant", "content": request.answer_prefix})
        body.update(PREFILL_FIELDS[prefill])
    return "/v1/chat/completions", {**body, "messages": messages}


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
        self.form = JSON_SCHEMA  # the form of response_format this endpoint is sent
        self.refused: list[str] = []  # the forms it refused, with the HTTP status
        self.told = JSON_SCHEMA  # the form the user was last told it is sent
        self.answered = False  # whether it ever answered (any HTTP reply, an error status too)
        # The kind of server, for the prefill (a key of PREFILL_FIELDS, or "" for one that gets
        # none); None until learned. OpenAI's own API does not prefill: nothing to ask it.
        self.kind: str | None = "" if base_url is None else None
        self.learning: asyncio.Lock | None = None


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

    async def _kind(self, endpoint: _Endpoint, request: Request) -> str | None:
        """The endpoint's kind when this request would be prefilled (a key of PREFILL_FIELDS),
        else None. Learned from GET /v1/models once per session: an endpoint that answers it
        with an error, or with an owner that is no known server, gets no prefill."""
        if not request.answer_prefix or request.messages is None:
            return None
        if endpoint.kind is None:
            endpoint.learning = endpoint.learning or asyncio.Lock()
            async with endpoint.learning:
                if endpoint.kind is None:
                    try:
                        page = await endpoint.client.models.list()
                        owners = {getattr(model, "owned_by", None) for model in page.data}
                        endpoint.kind = next((kind for kind in PREFILL_FIELDS if kind in owners), "")
                    except openai.APIConnectionError:
                        return None  # not reachable now: the request itself will say so; learn it later
                    except (openai.APIError, ValueError, TypeError, AttributeError):
                        endpoint.kind = ""  # no model list to read: no prefill
        return endpoint.kind or None

    async def _call(self, endpoint: _Endpoint, request: Request) -> Response:
        where = endpoint.base_url or "the OpenAI API"
        prefill = await self._kind(endpoint, request)
        while True:  # at most once per form of response_format (and once for the prefill): each refusal moves on
            form = endpoint.form
            if prefill is not None and not endpoint.kind:
                prefill = None  # the endpoint refused a prefill meanwhile
            route, body = request_body(request, form, prefill)
            extra = {name: body.pop(name) for name in PREFILL_FIELDS.get(prefill or "", {})}
            try:
                if route == "/v1/chat/completions":
                    raw = await endpoint.client.chat.completions.create(**body, extra_body=extra or None)
                    endpoint.answered = True
                    choice = raw.choices[0]
                    text = choice.message.content
                    if prefill is not None and text is not None:
                        text = request.answer_prefix + text  # the server returns the continuation only
                else:
                    raw = await endpoint.client.completions.create(**body)
                    endpoint.answered = True
                    choice = raw.choices[0]
                    text = choice.text
                usage = raw.usage
                if text is None:
                    raise TypeError("no text in the reply")
                if endpoint.told != endpoint.form:
                    self._tell(endpoint, where)
                return Response(
                    text=text,
                    finish_reason=choice.finish_reason or "stop",
                    usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
                    model=getattr(raw, "model", None) or request.model,
                )
            except openai.APIStatusError as err:
                endpoint.answered = True
                if "response_format" in body and refuses_format(err):
                    self._fall_back(endpoint, form, err.status_code)
                    continue
                if prefill is not None and refuses_prefill(err):
                    if endpoint.kind:
                        endpoint.kind = ""
                        warn(f"{where} refused an assistant prefill (HTTP {err.status_code}): answers are asked "
                             "without one from now on")
                    prefill = None
                    continue
                raise api_error(err, where, request.model) from err
            except openai.APIConnectionError as err:
                if not endpoint.answered and not isinstance(err, openai.APITimeoutError) and connection_refused(err):
                    raise PermanentError(f"cannot connect to {where}: connection refused — is the server running?") from err
                raise api_error(err, where, request.model) from err
            except (openai.APIError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
                endpoint.answered = True  # a reply came, one that could not be read
                raise api_error(err, where, request.model) from err

    @staticmethod
    def _fall_back(endpoint: _Endpoint, refused: int, status: int) -> None:
        """The endpoint refused a form of response_format: it is sent the next one from now on
        (requests refused the same form meanwhile just follow)."""
        if endpoint.form == refused:
            endpoint.refused.append(f"{FORM_NAMES[refused]} (HTTP {status})")
            endpoint.form = refused + 1

    @staticmethod
    def _tell(endpoint: _Endpoint, where: str) -> None:
        """Say once, when the endpoint first answers in a weaker form, what it refused and
        what it is sent now (one line for all the steps it took)."""
        endpoint.told = endpoint.form
        then = ("replies are read as text" if endpoint.form == NO_FORMAT
                else f"structured output is asked as {FORM_NAMES[endpoint.form]}")
        warn(f"{where} does not take {', '.join(endpoint.refused)}: {then} from now on")

    async def aclose(self) -> None:
        if self.queue is not None:
            await self.queue.aclose()
        for endpoint in self.endpoints:
            await endpoint.client.close()


def _names(err: openai.APIStatusError, names: tuple[str, ...]) -> bool:
    """Whether an HTTP error is the server refusing something in the request: an error
    status (not a rate limit, a timeout, a key or a route) whose body names one of `names`."""
    if err.status_code < 400 or err.status_code in (401, 403, 404, 408, 429):
        return False
    try:
        body = json.dumps(err.body) if err.body is not None else ""
    except (TypeError, ValueError):
        body = str(err.body)
    text = f"{getattr(err, 'message', '')} {body}".lower()
    return any(name in text for name in names)


def refuses_format(err: openai.APIStatusError) -> bool:
    """Whether an HTTP error is the server refusing the request's response_format."""
    return _names(err, ("response_format", "json_schema", "response format"))


def refuses_prefill(err: openai.APIStatusError) -> bool:
    """Whether an HTTP error is the server refusing the request's assistant prefill."""
    return _names(err, ("prefill", "continue_final_message"))
