"""A real OpenAI-compatible HTTP server for tests and benchmarks, on loopback only.

It answers /v1/chat/completions and /v1/completions with deterministic scripted replies,
counts what it receives, and can inject faults: 429 with Retry-After, 500, replies slower
than the client's timeout, dropped connections and malformed bodies. It also runs the
Batch API (/v1/files, /v1/batches): a batch ends after `batch_polls` looks at it unless
`hold_batches` is set (`failing_polls` makes the next looks fail with 500), and `batch_line(body)` may give a line an HTTP status other than
200, or None to leave it unanswered (the batch then ends "expired"). `refuse_formats` names
the types of response_format it refuses with a 500 whose body names response_format, as
llama-cpp-python's server refuses json_schema; `stats.formats` counts the types it received.
`owned_by` is what GET /v1/models says owns its model, as a kind of server tells itself
("vllm", "llamacpp" for llama.cpp's llama-server, "me" for llama-cpp-python's server);
`stats.models_listed` counts those GETs; with `list_models=False` it answers them 404. `status(body)`
may give a status and the error's message, as a (status, message) pair.

In a test:    with LoopbackServer(faults=FaultPlan(rates={"429": 0.2})) as server: ...server.url...
Standalone:   python -m distill.testing.openai_server --latency 0.02   (prints its URL)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

FAULT_KINDS = ("429", "500", "slow", "drop", "malformed")


def body_key(body: dict) -> str:
    """What makes two requests the same request (the client's idea of a cache key)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def default_reply(body: dict) -> str:
    if "messages" in body:
        last = body["messages"][-1]["content"]
    else:
        last = body["prompt"]
    return f"Answer {body_key(body)[:10]}: you said {last[:120]}"


@dataclass
class FaultPlan:
    """Which requests fail, decided from (request, attempt) so it is the same in every process.

    `rates` gives each fault kind a probability; a request fails at most `max_per_key`
    times, so every request is eventually answered within a client's retry budget.
    """

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    max_per_key: int = 2
    retry_after: float = 0.05
    slow_seconds: float = 3.0

    def pick(self, key: str, attempt: int) -> str | None:
        if attempt >= self.max_per_key or not self.rates:
            return None
        roll = random.Random(f"{self.seed}:{key}:{attempt}").random()
        for kind in FAULT_KINDS:
            rate = self.rates.get(kind, 0.0)
            if roll < rate:
                return kind
            roll -= rate
        return None


@dataclass
class ServerStats:
    received: int = 0
    answered: Counter = field(default_factory=Counter)  # request key -> successful replies
    faults: Counter = field(default_factory=Counter)
    attempts: Counter = field(default_factory=Counter)  # request key -> times received
    max_in_flight: int = 0
    batches_created: int = 0
    batch_lines: int = 0  # requests received in batches
    keys_seen: list = field(default_factory=list)  # the Authorization header of each chat/completions request
    formats: Counter = field(default_factory=Counter)  # type of response_format received ("none": without one)
    refused_formats: int = 0  # requests refused for their response_format
    models_listed: int = 0  # GET /v1/models received

    @property
    def answered_total(self) -> int:
        return sum(self.answered.values())


class LoopbackServer:
    def __init__(
        self,
        reply: Callable[[dict], str] = default_reply,
        latency: float | Callable[[dict], float] = 0.0,
        faults: FaultPlan | None = None,
        api_key: str | None = None,
        port: int = 0,
        usage_factor: float = 1.0,
        echo_headers: bool = False,
        status: Callable[[dict], int | tuple[int, str] | None] | None = None,
        refuse_formats: tuple[str, ...] = (),
        owned_by: str | None = None,
        list_models: bool = True,
    ):
        self.reply = reply
        self.latency = latency
        # Hostile modes: report `usage_factor` times the tokens really used; put the request's
        # headers (the Authorization header among them) into every error body, as some proxies do.
        self.usage_factor = usage_factor
        self.echo_headers = echo_headers
        self.status = status  # a scripted HTTP status (and message) for a request body (None: answer it)
        self.refuse_formats = tuple(refuse_formats)  # types of response_format answered with a 500
        self.owned_by = owned_by  # the owner GET /v1/models names (None: no owned_by field)
        self.list_models = list_models
        self.batch_polls = 1
        self.hold_batches = False
        self.failing_polls = 0  # the next this many looks at a batch answer 500
        self.batch_line: Callable[[dict], int | None] = lambda body: 200
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict] = {}
        self._refusal: str | None = None
        self.faults = faults or FaultPlan()
        self.api_key = api_key
        self.port = port
        self.stats = ServerStats()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches/{id}", self._retrieve_batch)
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        return app

    async def _no_route(self, request: web.Request) -> web.Response:
        return self._error(request, f"no route {request.method} {request.path}", 404)

    # -- the Batch API ------------------------------------------------------------------

    def _store(self, content: bytes, purpose: str, name: str) -> dict:
        with self._lock:
            file_id = f"file-{len(self._files) + 1}"
            self._files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        return web.json_response(self._store(upload.file.read(), str(form.get("purpose", "batch")), upload.filename))

    async def _file_content(self, request: web.Request) -> web.Response:
        content = self._files.get(request.match_info["id"])
        if content is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("input_file_id") not in self._files:
            return web.json_response({"error": {"message": "no such input file"}}, status=400)
        with self._lock:
            self.stats.batches_created += 1
            batch_id = f"batch_{self.stats.batches_created}"
            self._batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
                "metadata": body.get("metadata"), "polls": 0,
            }
        return web.json_response(self._public(self._batches[batch_id]))

    async def _retrieve_batch(self, request: web.Request) -> web.Response:
        batch = self._batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        if self.failing_polls:
            self.failing_polls -= 1
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        batch["polls"] += 1
        if batch["status"] == "validating" and not self._refusal:
            batch["status"] = "in_progress"
        if batch["status"] == "validating" and self._refusal:
            batch.update(status="failed", errors={"object": "list", "data": [{"code": "invalid", "message": self._refusal}]})
        if batch["status"] == "in_progress" and not self.hold_batches and batch["polls"] >= self.batch_polls:
            self._finish(batch)
        return web.json_response(self._public(batch))

    def _finish(self, batch: dict) -> None:
        output, errors, missing = [], [], False
        for line in self._files[batch["input_file_id"]].decode().splitlines():
            entry = json.loads(line)
            body, key = entry["body"], body_key(entry["body"])
            with self._lock:
                self.stats.batch_lines += 1
                self.stats.received += 1
            status = self.batch_line(body)
            if status is None:
                missing = True
                continue
            if status == 200:
                answer = {"status_code": 200, "request_id": key[:12], "body": self._payload(body)}
                output.append({"id": "line-" + key[:8], "custom_id": entry["custom_id"], "response": answer, "error": None})
                with self._lock:
                    self.stats.answered[key] += 1
            else:
                answer = {"status_code": status, "request_id": key[:12], "body": {"error": {"message": f"scripted {status}"}}}
                errors.append({"id": "line-" + key[:8], "custom_id": entry["custom_id"], "response": answer, "error": None})
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                content = "".join(json.dumps(line) + "\n" for line in lines).encode()
                batch[name] = self._store(content, "batch_output", name)["id"]
        batch["status"] = "expired" if missing else "completed"

    def refuse_batches(self, message: str) -> None:
        """Batches created from now on fail validation, as a provider refusing the file does."""
        self._refusal = message

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k != "polls"}

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.stats.models_listed += 1
        if not self.list_models:
            return self._error(request, f"no route {request.method} {request.path}", 404)
        model = {"id": "loopback", "object": "model"}
        if self.owned_by is not None:
            model["owned_by"] = self.owned_by
        return web.json_response({"object": "list", "data": [model]})

    def _error(self, request: web.Request, message: str, status: int, **kwargs) -> web.Response:
        if self.echo_headers:
            message += " (request headers: " + json.dumps(dict(request.headers)) + ")"
        return web.json_response({"error": {"message": message}}, status=status, **kwargs)

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.stats.keys_seen.append(request.headers.get("Authorization"))
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(request, "invalid api key", 401)
        body = await request.json()
        key = body_key(body)
        with self._lock:
            self.stats.received += 1
            attempt = self.stats.attempts[key]
            self.stats.attempts[key] += 1
            self._in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
            fmt = body.get("response_format")
            fmt = fmt.get("type", "none") if isinstance(fmt, dict) else "none"
            self.stats.formats[fmt] += 1
        try:
            if fmt in self.refuse_formats:
                with self._lock:
                    self.stats.refused_formats += 1
                return self._refuse_format(request, fmt)
            scripted = self.status(body) if self.status else None
            if scripted:
                code, message = scripted if isinstance(scripted, tuple) else (scripted, f"scripted {scripted}")
                return self._error(request, message, code)
            fault = self.faults.pick(key, attempt)
            if fault:
                with self._lock:
                    self.stats.faults[fault] += 1
                return await self._fault(fault, request)
            delay = self.latency(body) if callable(self.latency) else self.latency
            if delay:
                await asyncio.sleep(delay)
            response = web.json_response(self._payload(body))
            with self._lock:
                self.stats.answered[key] += 1
            return response
        finally:
            with self._lock:
                self._in_flight -= 1

    def _refuse_format(self, request: web.Request, fmt: str) -> web.Response:
        """A 500 as llama-cpp-python's server gives for a response_format type it does not know."""
        known = " or ".join(repr(t) for t in ("text", "json_schema", "json_object") if t not in self.refuse_formats)
        detail = {"type": "literal_error", "loc": ("body", "response_format", "type"),
                  "msg": f"Input should be {known or 'absent'}", "input": fmt}
        return self._error(request, f"1 validation error:\n  {detail}", 500)

    async def _fault(self, kind: str, request: web.Request) -> web.StreamResponse:
        if kind == "429":
            return self._error(request, "rate limited", 429, headers={"Retry-After": str(self.faults.retry_after)})
        if kind == "500":
            return self._error(request, "internal error", 500)
        if kind == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
            return self._error(request, "too late", 504)
        if kind == "drop":
            request.transport.abort()
            raise ConnectionResetError("dropped by the fault plan")
        return web.Response(text='{"id": "x", "choices": [{"mess', content_type="application/json")

    def _payload(self, body: dict) -> dict:
        text = self.reply(body)
        words = text.split(" ")
        limit = body.get("max_tokens") or len(words)
        finish = "stop"
        if len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        prompt_text = body["prompt"] if "prompt" in body else " ".join(m["content"] for m in body["messages"])
        usage = {"prompt_tokens": round(len(prompt_text.split()) * self.usage_factor),
                 "completion_tokens": round(min(len(words), limit) * self.usage_factor)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "cmpl-" + body_key(body)[:12], "created": int(time.time()), "model": body["model"], "usage": usage}
        if "messages" in body:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            return {**base, "object": "chat.completion", "choices": [choice]}
        return {**base, "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}

    # -- running in a background thread -------------------------------------------------

    def __enter__(self) -> "LoopbackServer":
        started = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def __exit__(self, *exc) -> None:
        async def stop():
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible server for tests and benchmarks")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = LoopbackServer(latency=args.latency, port=args.port)

    async def serve():
        await server._start()
        print(server.url, flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
