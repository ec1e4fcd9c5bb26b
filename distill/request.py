"""The one request/response shape every backend speaks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": ..., "content": ...}


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None  # None: the backend's default (part of the key only when set)
    frequency_penalty: float | None = None  # the same


@dataclass(frozen=True)
class Request:
    """Chat messages, or a plain prompt for base models, plus sampling parameters.

    `sample` tells apart several samples of the same prompt: it is part of the cache
    key, so asking for sample 3 never returns sample 2's cached answer.

    `json_schema` asks for a reply that follows a JSON schema (structured output): the
    openai backend sends it as response_format, vllm as structured outputs, llamacpp as a
    grammar; a pipeline still parses the reply tolerantly, as a backend may not enforce it.

    `answer_prefix` says how the answer should begin (say "1." for a numbered list).
    Backends that render the prompt themselves (llamacpp, vllm, transformers) prefill it,
    which keeps small models on track, and return it as part of the text; the openai backend
    prefills on servers that continue an assistant message (vLLM, llama.cpp's llama-server,
    told apart by GET /v1/models) and elsewhere leaves it to the instruction.
    """

    model: str
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    sample: int = 0
    answer_prefix: str | None = None
    json_schema: dict | None = field(default=None, hash=False)

    def __post_init__(self):
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request needs exactly one of messages or prompt")

    @classmethod
    def chat(
        cls,
        model: str,
        messages: list[Message],
        params: SamplingParams | None = None,
        sample: int = 0,
        answer_prefix: str | None = None,
        json_schema: dict | None = None,
    ):
        msgs = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        return cls(model, msgs, None, params or SamplingParams(), sample, answer_prefix, json_schema)

    @classmethod
    def text(cls, model: str, prompt: str, params: SamplingParams | None = None, sample: int = 0):
        return cls(model=model, prompt=prompt, params=params or SamplingParams(), sample=sample)

    def to_dict(self) -> dict[str, Any]:
        p = self.params
        # 1 and 1.0 are the same temperature: one cache key. (Built by hand: asdict's deep copy
        # was most of a key's cost, and a key is made for every request.)
        params: dict[str, Any] = {"temperature": float(p.temperature), "top_p": float(p.top_p),
                                  "max_tokens": p.max_tokens, "stop": list(p.stop), "seed": p.seed}
        if p.presence_penalty is not None:  # keys of requests without it stay as they were
            params["presence_penalty"] = p.presence_penalty
        if p.frequency_penalty is not None:
            params["frequency_penalty"] = p.frequency_penalty
        body: dict[str, Any] = {"model": self.model, "params": params, "sample": self.sample}
        if self.messages is not None:
            body["messages"] = [dict(m) for m in self.messages]
        else:
            body["prompt"] = self.prompt
        if self.answer_prefix is not None:  # only when set: keys of other requests stay as they were
            body["answer_prefix"] = self.answer_prefix
        if self.json_schema is not None:
            body["json_schema"] = self.json_schema
        return body

    def key(self) -> str:
        """Content address: the same model, input, parameters and sample index give the same key."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def text_length(self) -> int:
        if self.prompt is not None:
            return len(self.prompt)
        return sum(len(m["content"]) + len(m["role"]) + 4 for m in self.messages)

    def estimated_prompt_tokens(self) -> int:
        """A cheap upper-leaning guess (about 3 characters a token), for the rate limits."""
        return self.text_length() // 3 + 8

    def max_prompt_tokens(self) -> int:
        """The most prompt tokens this request can take: a token covers at least one byte of
        UTF-8 text in the tokenizers of every provider, plus room for each message's frame and
        for what a chat template adds (a default system prompt, say)."""
        if self.prompt is not None:
            return len(self.prompt.encode("utf-8", "surrogatepass")) + 16
        text = sum(len(m["content"].encode("utf-8", "surrogatepass")) + len(m["role"]) + 16 for m in self.messages)
        return text + 64


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Response:
    text: str
    finish_reason: str  # "stop", "length", ...
    usage: Usage
    model: str
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = False) -> "Response":
        return cls(
            text=data["text"],
            finish_reason=data["finish_reason"],
            usage=Usage(**data["usage"]),
            model=data["model"],
            cached=cached,
        )
