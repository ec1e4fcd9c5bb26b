"""How the dialogue pipelines (UltraChat, CAMEL) put a question to a model, once for both.

Every request is seeded from the run's seed and a salt naming the step (so a resumed run asks
the very same requests and reads them from the cache); list questions are prefilled with
"1." and read back as the list's items. A question that wants one item is read back as that
item, numbered or not (instruct models answer a request for one question with the question).
"""

from __future__ import annotations

from collections.abc import Callable

from distill.client import Client
from distill.parsing import list_items, one_item
from distill.request import Message, Request, Response, SamplingParams
from distill.seeding import derive_seed


class Teacher:
    def __init__(self, client: Client, seed: int, top_p: float, presence_penalty: float | None = None,
                 frequency_penalty: float | None = None):
        self.client = client
        self.seed = seed
        self.top_p = top_p
        self.presence_penalty = presence_penalty  # None: the backend's default
        self.frequency_penalty = frequency_penalty

    async def ask(self, model: str, messages: list[Message], max_tokens: int, temperature: float, *salt,
                  prefix: str | None = None, stop: tuple[str, ...] = ()) -> Response:
        params = SamplingParams(temperature, self.top_p, max_tokens, stop, seed=derive_seed(self.seed, *salt),
                                presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty)
        return await self.client.complete(Request.chat(model, messages, params, answer_prefix=prefix))

    async def listing(self, model: str, template: str, prompt: str, max_tokens: int, temperature: float,
                      *salt, n: int | None = None, read: Callable[[str, bool], list[str]] | None = None) -> list[str]:
        """The items of the list the prompt (rendered from `template`) asks for: `n` of them
        if given (`n` == 1: the prompt asks for the item alone).

        A reply with no list in it that is one line is one item (a model asked for ten
        questions may write one). `read(text, truncated)` reads the reply instead, for a
        method whose lists have shapes of their own."""
        reply = await self.ask(model, [{"role": "user", "content": prompt}], max_tokens, temperature,
                               "list", template, *salt, prefix="1.")
        truncated = reply.finish_reason == "length"
        if read is not None:
            return read(reply.text, truncated)
        items = [] if n == 1 else list_items(reply.text, truncated=truncated)
        if not items and (item := one_item(reply.text, truncated=truncated)):
            items = [item]
        return items
