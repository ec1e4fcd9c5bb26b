"""Completions: answer every prompt (or chat) of an input column, `samples` times each.

The generic building block the method pipelines reuse: one request per (prompt, sample),
recorded with the response, its finish reason and token usage, and the exchange as a
chat (`messages`) ready for SFT.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from distill.client import Client
from distill.config import EngineConfig, InputConfig, cli
from distill.errors import InputError
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import check_prompt, load_input, pick_column
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.request import Message, Request, SamplingParams
from distill.seeding import derive_seed


def prompt_text(prompt: str | list[Message]) -> str:
    """The text a prompt_id hashes: the prompt itself, or a chat's last user turn."""
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"])


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
    from distill.schemas import prompt_id

    text = prompt_text(prompt)
    pid = prompt_id(text)
    params = SamplingParams(params.temperature, params.top_p, params.max_tokens, params.stop, seed=derive_seed(seed, pid, sample))
    request = build_request(client.model, prompt, params, mode, system, sample)
    response = await client.complete(request)
    conversation = list(request.messages) if request.messages is not None else [{"role": "user", "content": text}]
    return {
        "prompt": text,
        "prompt_id": pid,
        "messages": conversation + [{"role": "assistant", "content": response.text}],
        "sample": sample,
        "response": response.text,
        "finish_reason": response.finish_reason,
        "model": response.model,
        "prompt_tokens": response.usage.prompt_tokens,
        "completion_tokens": response.usage.completion_tokens,
    }


PROMPT_COLUMNS = ("prompt", "messages", "instruction", "text", "question")


class CompletionsConfig(EngineConfig, InputConfig):
    column: str | None = Field(None, description="Column holding the prompt (a string) or chat (a list of messages).",
                               json_schema_extra=cli(show=", ".join(PROMPT_COLUMNS)))
    mode: Literal["chat", "text"] = Field("chat", description="chat: chat requests; text: plain completions for base models.")
    system: str | None = Field(None, description="System prompt for every chat.")
    samples: int = Field(1, ge=1, description="Responses per prompt.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: the share of probability mass sampled from.")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens per response.")
    stop: list[str] = Field(default_factory=list, description="Stop sequence; repeatable.")


def run(config: CompletionsConfig) -> Outcome:
    rows = load_input(config)
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

    def build(records: list[dict[str, Any]]) -> Built:
        from distill.schemas import COMPLETION

        rows = [{k: v for k, v in r.items() if k != "id"} for r in records]
        return split_dataset(rows, COMPLETION, config.test_size, config.seed)

    return execute(METHOD, config, items, make_work, build)


METHOD = GenerationMethod(
    command="generate completions",
    config=CompletionsConfig,
    run=run,
    help="Answer every prompt (or chat) of an input column with the chosen backend and model.\n\n"
         "Writes a dataset of prompt, response, finish reason and token usage to RUN_DIR/data/. With no backend and "
         "no endpoint configured it runs the embedded llama.cpp model (Gemma 3 270M, a small base model: for demos "
         "and tests, not production data).",
    title="Completions",
    description="Each prompt of the input was answered by the teacher model, once per sample.",
    made="completions made",
    next_step="look at them with `distill stats {out}`",
    schema="COMPLETION",
)
