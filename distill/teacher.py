"""How the dialogue pipelines (UltraChat, CAMEL) put a question to a model, once for both.

Every request is seeded from the run's seed and a salt naming the step (so a resumed run asks
the very same requests and reads them from the cache); list questions are prefilled with
"1." and read back as the list's items.
"""

from __future__ import annotations

from distill.client import Client
from distill.parsing import list_items
from distill.request import Message, Request, Response, SamplingParams
from distill.seeding import derive_seed


class Teacher:
    def __init__(self, client: Client, seed: int, top_p: float):
        self.client = client
        self.seed = seed
        self.top_p = top_p

    async def ask(self, model: str, messages: list[Message], max_tokens: int, temperature: float, *salt,
                  prefix: str | None = None) -> Response:
        params = SamplingParams(temperature, self.top_p, max_tokens, seed=derive_seed(self.seed, *salt))
        return await self.client.complete(Request.chat(model, messages, params, answer_prefix=prefix))

    async def listing(self, model: str, template: str, prompt: str, max_tokens: int, temperature: float,
                      *salt) -> list[str]:
        """The items of the numbered list the prompt (rendered from `template`) asks for."""
        reply = await self.ask(model, [{"role": "user", "content": prompt}], max_tokens, temperature,
                               "list", template, *salt, prefix="1.")
        return list_items(reply.text, truncated=reply.finish_reason == "length")
