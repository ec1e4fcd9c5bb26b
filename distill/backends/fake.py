"""An in-process backend that needs no model: for tests and dry runs of a pipeline.

By default it answers with a deterministic echo of the request; tests pass their own
`reply` function (request -> text, or an exception to raise) and an optional latency.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Callable

from distill.request import Request, Response, Usage

Reply = Callable[[Request], str]


def echo_reply(request: Request) -> str:
    if request.prompt is not None:
        last = request.prompt
    else:
        last = request.messages[-1]["content"]
    digest = hashlib.sha256(request.key().encode()).hexdigest()[:8]
    return f"[fake {digest}] {last[:200]}"


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
