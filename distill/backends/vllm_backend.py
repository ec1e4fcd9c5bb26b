"""vLLM in-process, fed continuously.

Every `complete` call submits its own request to vLLM's async engine at once, so however
many calls the client has in flight run together in vLLM's continuous batching: no
fixed-size batches, no barrier between requests. vLLM is imported only in the
constructor, so importing distill never imports it.

Targets the V1 engine API (vLLM 0.10+): `AsyncLLMEngine` (an alias of
`vllm.v1.engine.async_llm.AsyncLLM`) built with `from_engine_args(AsyncEngineArgs(...))`,
`generate(prompt, sampling_params, request_id)` as an async generator of RequestOutput,
`abort(request_id)`, `get_tokenizer()` (a coroutine in older releases, a plain method in the newest) and
`shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import uuid
from typing import Any, Callable

from distill.backends.base import PermanentError, RejectedError
from distill.errors import ConfigError
from distill.request import Request, Response, SamplingParams, Usage


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` from distill's sampling parameters."""
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop),
        "seed": params.seed,
        **({"presence_penalty": params.presence_penalty} if params.presence_penalty is not None else {}),
        **({"frequency_penalty": params.frequency_penalty} if params.frequency_penalty is not None else {}),
    }


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


class VLLMBackend:
    name = "vllm"
    max_concurrency = None  # vLLM schedules by KV-cache space; the client's own limit applies

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        engine=None,
        make_sampling_params: Callable[..., Any] | None = None,
        make_structured: Callable[[dict], Any] | None = None,
        **engine_kwargs,
    ):
        """`engine` and `make_sampling_params` stand in for vLLM's in tests; `engine_kwargs`
        go to `AsyncEngineArgs` (e.g. data_parallel_size, max_model_len, gpu_memory_utilization)."""
        if engine is None or make_sampling_params is None:
            try:
                import vllm
            except ImportError as err:
                raise ConfigError("the vllm backend needs vLLM: pip install 'distill[vllm]' on a machine with a GPU") from err
            if engine is None:
                args = vllm.AsyncEngineArgs(model=model, tensor_parallel_size=tensor_parallel_size, **engine_kwargs)
                engine = vllm.AsyncLLMEngine.from_engine_args(args)
            make_sampling_params = make_sampling_params or vllm.SamplingParams
            if make_structured is None:  # JSON-schema decoding (vLLM >= 0.12; older releases lack it)
                from vllm import sampling_params

                structured = getattr(sampling_params, "StructuredOutputsParams", None)
                make_structured = (lambda schema: structured(json=schema)) if structured else None
        self.model = model
        self.engine = engine
        self.make_sampling_params = make_sampling_params
        self.make_structured = make_structured
        self._tokenizer = None
        self._id_prefix = f"distill-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count()

    def model_id(self) -> str:
        return self.model

    async def _prompt(self, request: Request):
        if request.prompt is not None:
            return request.prompt
        if self._tokenizer is None:
            self._tokenizer = await _maybe_await(self.engine.get_tokenizer())
        try:
            text = self._tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
        except Exception as err:
            raise PermanentError(
                f"{self.model} cannot format chat messages ({err}); "
                "a base model without a chat template needs plain-text prompts"
            ) from err
        # The template already holds the special tokens (BOS...): tokenize without adding
        # them again, as vLLM's own LLM.chat does, and hand vLLM the token ids.
        text += request.answer_prefix or ""
        return {"prompt_token_ids": self._tokenizer.encode(text, add_special_tokens=False)}

    async def complete(self, request: Request) -> Response:
        request_id = f"{self._id_prefix}-{next(self._ids)}"
        final = None
        try:
            prompt = await self._prompt(request)
            kwargs = sampling_kwargs(request.params)
            if request.json_schema is not None and self.make_structured is not None:
                kwargs["structured_outputs"] = self.make_structured(request.json_schema)
            params = self.make_sampling_params(**kwargs)
            async for output in self.engine.generate(prompt, params, request_id):
                final = output  # cumulative: the last output holds the whole completion
        except asyncio.CancelledError:
            if hasattr(self.engine, "abort"):
                with contextlib.suppress(Exception):  # never mask the cancellation
                    await _maybe_await(self.engine.abort(request_id))
            raise
        except PermanentError:
            raise
        except ValueError as err:  # vLLM's word for a request it cannot take, e.g. past max_model_len
            raise RejectedError(f"vLLM rejected request {request_id}: {err}") from err
        except Exception as err:
            raise PermanentError(f"vLLM failed on request {request_id}: {type(err).__name__}: {err}") from err
        if final is None or not final.outputs:
            raise PermanentError(f"vLLM returned no output for request {request_id}")
        completion = final.outputs[0]
        prefix = request.answer_prefix if request.messages is not None else None
        return Response(
            text=(prefix or "") + completion.text,
            finish_reason=completion.finish_reason or "stop",
            usage=Usage(len(final.prompt_token_ids or ()), len(completion.token_ids)),
            model=self.model,
        )

    async def aclose(self) -> None:
        if hasattr(self.engine, "shutdown"):
            await _maybe_await(self.engine.shutdown())
