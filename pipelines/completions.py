"""Completions: answer every prompt (or chat) of an input column, `samples` times each.

The generic building block the method pipelines reuse: one request per (prompt, sample),
recorded with the response, its finish reason and token usage.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import Field

from distill.client import Client
from distill.config import EngineConfig
from distill.engine import execute
from distill.errors import InputError
from distill.export import write_split
from distill.inputs import check_prompt, load_rows, pick_column, select
from distill.request import Message, Request, SamplingParams
from distill.run import RunDir
from distill.runner import Outcome
from distill.seeding import derive_seed


def prompt_id(prompt: str | list[Message]) -> str:
    """sha256 of the prompt text (of the last user turn for a chat), as in ultrachat_200k."""
    if isinstance(prompt, list):
        prompt = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"])
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def build_request(
    model: str,
    prompt: str | list[Message],
    params: SamplingParams,
    mode: Literal["chat", "text"],
    system: str | None,
    sample: int,
) -> Request:
    if mode == "text":
        if not isinstance(prompt, str):
            raise ValueError("text mode takes string prompts, not chats")
        return Request.text(model, prompt, params, sample)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return Request.chat(model, messages, params, sample)


async def answer(
    client: Client,
    prompt: str | list[Message],
    *,
    params: SamplingParams,
    mode: Literal["chat", "text"] = "chat",
    system: str | None = None,
    sample: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    pid = prompt_id(prompt)
    params = SamplingParams(
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        stop=params.stop,
        seed=derive_seed(seed, pid, sample),
    )
    response = await client.complete(build_request(client.model, prompt, params, mode, system, sample))
    return {
        "prompt": prompt,
        "prompt_id": pid,
        "sample": sample,
        "response": response.text,
        "finish_reason": response.finish_reason,
        "model": response.model,
        "prompt_tokens": response.usage.prompt_tokens,
        "completion_tokens": response.usage.completion_tokens,
    }


class CompletionsConfig(EngineConfig):
    input: str
    column: str | None = None
    split: str | None = None
    subset: str | None = None
    revision: str | None = None
    limit: int | None = Field(None, ge=1)
    shuffle: bool = False
    mode: Literal["chat", "text"] = "chat"
    system: str | None = None
    samples: int = Field(1, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    stop: list[str] = Field(default_factory=list)


PROMPT_COLUMNS = ("prompt", "messages", "instruction", "text", "question")


def run(config: CompletionsConfig) -> Outcome:
    rows = load_rows(config.input, config.split, config.subset, config.revision)
    rows = select(rows, config.input, config.limit, config.seed if config.shuffle else None)
    column = pick_column(rows, config.input, config.column, PROMPT_COLUMNS)
    for index, row in enumerate(rows):
        check_prompt(row.get(column), config.input, index, column)
        if config.mode == "text" and not isinstance(row[column], str):
            raise InputError(f"input {config.input}, row {index + 1}: --mode text takes string prompts, not chats")
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens, tuple(config.stop))
    items = [(f"{i}:{s}", rows[i][column]) for i in range(len(rows)) for s in range(config.samples)]

    def make_work(client: Client):
        async def work(item_id: str, prompt):
            sample = int(item_id.split(":")[1])
            return await answer(
                client, prompt, params=params, mode=config.mode, system=config.system, sample=sample, seed=config.seed
            )

        return work

    def finish(run_dir: RunDir, records: list[dict[str, Any]]) -> None:
        write_split(run_dir.path, "train", [{k: v for k, v in r.items() if k != "id"} for r in records])

    return execute("generate completions", config, items, make_work, finish)
