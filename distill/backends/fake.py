"""An in-process backend that needs no model: for tests and dry runs of a pipeline.

By default it answers every request in the shape its prompt asks for (a numbered list,
JSON following the schema, a CAMEL turn, a judge's ratings, ... see fake_replies), with
texts that are a function of the request alone, so any pipeline runs end to end offline
and a resumed run gives the same dataset. Tests pass their own `reply` function
(request -> text, or an exception to raise) and an optional latency.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from distill.backends.fake_replies import shaped_reply
from distill.request import Request, Response, Usage

Reply = Callable[[Request], str]

# The default reply. Looked up by this name on every call, so tests can swap it
# (monkeypatch distill.backends.fake.echo_reply); plain prompts still get a tagged
# "[fake 1a2b3c4d] ..." answer, as when it was an echo.
echo_reply: Reply = shaped_reply


class FakeBackend:
    name = "fake"
    max_concurrency = None

    def __init__(self, model: str = "fake-model", reply: Reply | None = None, latency: float = 0.0):
        self.model = model
        self.reply = reply
        self.latency = latency
        self.calls: list[Request] = []

    def model_id(self) -> str:
        return self.model

    async def complete(self, request: Request) -> Response:
        self.calls.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        text = (self.reply or echo_reply)(request)  # looked up per call, so tests can swap it
        words = text.split()
        finish = "stop"
        if len(words) > request.params.max_tokens:
            text, finish = " ".join(words[: request.params.max_tokens]), "length"
        usage = Usage(prompt_tokens=request.text_length() // 4 + 1, completion_tokens=min(len(words), request.params.max_tokens))
        return Response(text=text, finish_reason=finish, usage=usage, model=self.model)

    async def aclose(self) -> None:
        return None
