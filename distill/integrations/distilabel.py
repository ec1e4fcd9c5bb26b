"""distill's engine under distilabel: `DistillLLM`, a distilabel AsyncLLM whose every
generation is a distill Request through a distill Client (the per-request cache, retries by
error class, rate limits, the budget), on any distill backend.

It holds its client one of two ways:

- on its own, in a distilabel Pipeline: `load()` opens `cache_dir` (locked: one process at a
  time, so that its budget counts everything spent through that cache), makes the backend,
  the ledger and the client from the engine options (the fields of distill's EngineConfig of
  the same names), and `unload()` closes them. Generations run on distilabel's event loop.
- bound to a run of `distill generate task` (`bind`): the task's code runs in a worker thread
  and `generate` hands each call to the run's event loop, where the run's client answers it.

A generation's request is the chat (or a JSON-schema structured output), the sampling
arguments, and its index among the input's generations (`Request.sample`), so a re-run asks
nothing that is already in the cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from pathlib import Path
from typing import Any

from distilabel.models.llms.base import AsyncLLM
from pydantic import Field, PrivateAttr, create_model

from distill.config import EngineConfig
from distill.errors import DistillError
from distill.request import Request, SamplingParams
from distill.seeding import derive_seed

# The engine options a DistillLLM takes, declared once in EngineConfig (run-folder options are not among them).
ENGINE_OPTIONS = ("backend", "model", "base_url", "api_key_env", "tensor_parallel_size", "n_ctx", "n_threads",
                  "concurrency", "rpm", "tpm", "max_retries", "timeout", "max_cost_usd", "max_tokens", "prices", "seed")
_EngineOptions = create_model(
    "_EngineOptions", **{name: (EngineConfig.model_fields[name].annotation, EngineConfig.model_fields[name])
                         for name in ENGINE_OPTIONS})


class GenerationStopped(DistillError):
    """Asked to generate after the run was interrupted: nothing more is sent."""


class DistillLLM(AsyncLLM, _EngineOptions):
    """A distilabel LLM that generates through distill's client. In a pipeline:

        TextGeneration(llm=DistillLLM(backend="openai", model="gpt-4o-mini", cache_dir="runs/cache", max_cost_usd=5))
    """

    cache_dir: str | None = Field(None, description="Folder of the request cache (made if missing); a re-run "
                                     "on the same folder is answered from it. Needed unless bound to a distill run.")
    structured_output: dict[str, Any] | None = Field(
        None, description="{'format': 'json', 'schema': a JSON schema or a pydantic model} that every generation "
        "follows, asked of the backend as distill's structured output (no instructor or outlines needed).")

    _client: Any = PrivateAttr(None)
    _for_run: bool = PrivateAttr(False)  # made to be bound to a distill run: load() opens nothing
    _loop: Any = PrivateAttr(None)  # bound: the run's event loop
    _owned: Any = PrivateAttr(None)  # on its own: (backend, cache, lock), closed by unload()
    _stopped: bool = PrivateAttr(False)  # set on the loop's thread, read in the task's (a plain flag: copyable)
    _in_flight: Any = PrivateAttr(default_factory=set)

    @property
    def model_name(self) -> str:
        if self._client is not None:
            return self._client.model
        return self.model or self.backend or "distill"

    def engine_config(self, output: Path) -> EngineConfig:
        return EngineConfig(output=output, quiet=True, **{name: getattr(self, name) for name in ENGINE_OPTIONS})

    @classmethod
    def for_run(cls, **fields: Any) -> DistillLLM:
        """One that a distill run will `bind` to its client (its task can be loaded before)."""
        llm = cls(**fields)
        llm._for_run = True
        return llm

    def bind(self, client, loop: asyncio.AbstractEventLoop) -> None:
        """Generate through a running distill run's client, on its event loop (see the module's doc)."""
        self._client, self._loop = client, loop
        self._stopped = False

    def stop(self) -> None:
        """The run is interrupted: cancel the calls in flight and refuse any new one."""
        self._stopped = True
        for future in list(self._in_flight):
            future.cancel()

    def load(self) -> None:
        super().load()
        if self._for_run or self._client is not None:
            return
        if not self.cache_dir:
            raise DistillError("DistillLLM needs cache_dir: the folder of its request cache")
        from distill.cache import RequestCache
        from distill.generation import make_client, prepare
        from distill.progress import Progress
        from distill.run_dir import CACHE, lock_folder

        path = Path(self.cache_dir).expanduser()
        config = self.engine_config(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DistillError(f"cannot make cache_dir {path}: {err.strerror or err}") from None
        with contextlib.ExitStack() as undo:  # what is open is closed again if a later step fails
            lock = lock_folder(path)
            undo.callback(lock.close)
            backend, *_, ledger = prepare(config)
            undo.callback(lambda: self.event_loop.run_until_complete(backend.aclose()))
            cache = RequestCache(path / CACHE)
            undo.pop_all()
        self._client = make_client(config, backend, cache, ledger, Progress(enabled=False))
        self._owned = (backend, cache, lock)

    def unload(self) -> None:
        if self._owned is not None:
            backend, cache, lock = self._owned
            self._owned = self._client = None
            try:
                self.event_loop.run_until_complete(backend.aclose())
            finally:
                cache.close()
                lock.close()
        super().unload()

    def generate(self, inputs: list, num_generations: int = 1, **kwargs: Any) -> list:
        if self._loop is None:
            return super().generate(inputs, num_generations, **kwargs)
        if self._stopped:
            raise GenerationStopped("interrupted")
        future = asyncio.run_coroutine_threadsafe(self._agenerate(inputs, num_generations, **kwargs), self._loop)
        self._in_flight.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise GenerationStopped("interrupted") from None
        finally:
            self._in_flight.discard(future)

    async def agenerate(  # type: ignore[override]
        self,
        input: Any,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: str | list[str] | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
    ) -> dict[str, Any]:
        """`num_generations` replies to one chat (or to a (chat, structured output) pair), as
        distilabel's OpenAILLM takes them; each is a cached request of its own."""
        if self._client is None:
            raise DistillError("DistillLLM generates only once loaded (or bound to a distill run)")
        messages, schema = _chat_and_schema(input)
        if schema is None and self.structured_output:
            schema = _json_schema(self.structured_output)
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        asked = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        requests = [
            Request.chat(self._client.model, messages, SamplingParams(
                temperature, top_p, max_new_tokens, stops, seed=derive_seed(self.seed, asked, k),
                presence_penalty=presence_penalty, frequency_penalty=frequency_penalty), sample=k, json_schema=schema)
            for k in range(num_generations)
        ]
        replies = await asyncio.gather(*(self._client.complete(r) for r in requests))
        return {
            "generations": [reply.text for reply in replies],
            "statistics": {"input_tokens": [reply.usage.prompt_tokens for reply in replies],
                           "output_tokens": [reply.usage.completion_tokens for reply in replies]},
        }


def _chat_and_schema(input: Any) -> tuple[list[dict[str, str]], dict | None]:
    """distilabel's FormattedInput: a chat, or (chat, structured output); distill asks for a
    JSON schema's structured output, which every backend supports."""
    if isinstance(input, tuple):
        chat, structured = input
        return chat, (_json_schema(structured) if structured is not None else None)
    return input, None


def _json_schema(structured: Any) -> dict:
    schema = structured.get("schema") if isinstance(structured, dict) else None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):  # a pydantic model
        schema = schema.model_json_schema()
    if not isinstance(schema, dict) or structured.get("format", "json") != "json":
        raise DistillError("DistillLLM takes structured outputs as a JSON schema ({'format': 'json', 'schema': {...}})")
    return schema
