"""The provider's Batch API: requests sent as one file, answered within a day at a lower price.

Requests are gathered for `window` seconds (or up to `max_requests`) per endpoint route,
uploaded as one JSONL file, and the batch is polled until it ends; then every request's
waiter gets its reply, or the error of its line. Pipelines notice nothing: a request
awaits its reply as it would a direct call, only longer.

Nothing paid for is lost: the moment a batch is created, the journal (RUN_DIR/batches.jsonl)
records its id and the keys of its requests. A stopped run that asks again for a request
of a batch still on the provider waits for that batch instead of sending it again; the
provider keeps the batch's output file, so a batch that finished while no one was polling
is read then. A request whose line is missing (an expired or cancelled batch) or failed
with a retryable status goes into a later batch, through the client's retries.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from distill.backends.base import PermanentError, TransientError
from distill.backends.http_errors import api_error, status_error

ENDED = {"completed", "expired", "cancelled", "failed"}
MAX_REQUESTS = 50_000  # OpenAI's limit per batch


class BatchJournal:
    """Append-only record of the batches this run created: {"batch", "url", "keys"} per line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self, url: str | None) -> dict[str, str]:
        """key -> batch id, for the batches created on this endpoint (the last batch of a key wins)."""
        found: dict[str, str] = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill: its batch is lost to us, its requests are asked again
            if entry.get("url") == url:
                found.update(dict.fromkeys(entry["keys"], entry["batch"]))
        return found

    def add(self, batch_id: str, url: str | None, keys: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"batch": batch_id, "url": url, "keys": keys}) + "\n")
            f.flush()
            os.fsync(f.fileno())


class BatchQueue:
    """One endpoint's batches: gathers requests, sends them, polls, hands out the replies."""

    def __init__(self, client, url: str | None, journal: BatchJournal, window: float, poll: float,
                 max_requests: int = MAX_REQUESTS):
        self.client = client  # an openai.AsyncOpenAI
        self.url = url
        self.where = url or "the OpenAI API"
        self.journal = journal
        self.window = window
        self.poll = poll
        self.max_requests = max_requests
        self._known: dict[str, str] | None = None  # key -> batch id from the journal, read at first use
        self._buffers: dict[str, list[tuple[str, dict, asyncio.Future]]] = {}
        self._timers: dict[str, asyncio.Task] = {}
        self._pollers: dict[str, asyncio.Task] = {}
        self._waiters: dict[str, asyncio.Future] = {}
        self._members: dict[str, set[str]] = {}  # batch id -> keys waiting for it
        self._tasks: set[asyncio.Task] = set()

    async def complete(self, key: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """The reply body of one request (a chat.completion or text_completion as JSON)."""
        if self._known is None:
            self._known = self.journal.read(self.url)
        future = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        earlier = self._known.pop(key, None)
        if earlier is not None:  # sent by an earlier session: wait for that batch
            self._members.setdefault(earlier, set()).add(key)
            self._watch(earlier)
        else:
            self._add(route, key, body)
        try:
            return await future
        finally:
            if self._waiters.get(key) is future:
                del self._waiters[key]

    def _add(self, route: str, key: str, body: dict) -> None:
        buffer = self._buffers.setdefault(route, [])
        buffer.append((key, body, self._waiters[key]))
        if len(buffer) >= self.max_requests:
            self._start(self._send(route))
        elif route not in self._timers:
            self._timers[route] = self._start(self._send_after_window(route))

    def _start(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_after_window(self, route: str) -> None:
        await asyncio.sleep(self.window)
        self._timers.pop(route, None)
        await self._send(route)

    async def _send(self, route: str) -> None:
        batch = [entry for entry in self._buffers.pop(route, []) if not entry[2].done()]
        if not batch:
            return
        lines = "".join(json.dumps({"custom_id": key, "method": "POST", "url": route, "body": body}) + "\n"
                        for key, body, _ in batch)
        try:
            upload = await self.client.files.create(file=("distill-batch.jsonl", lines.encode("utf-8")), purpose="batch")
            created = await self.client.batches.create(input_file_id=upload.id, endpoint=route, completion_window="24h",
                                                       metadata={"made_by": "distill"})
        except Exception as err:  # noqa: BLE001 - each waiter gets the error, the client decides on retries
            error = api_error(err, f"{self.where} (sending a batch)")
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.journal.add(created.id, self.url, [key for key, _, _ in batch])
        self._members.setdefault(created.id, set()).update(key for key, _, _ in batch)
        self._watch(created.id)

    def _watch(self, batch_id: str) -> None:
        if batch_id not in self._pollers:
            self._pollers[batch_id] = self._start(self._poll(batch_id))

    async def _poll(self, batch_id: str) -> None:
        try:
            batch = await self.client.batches.retrieve(batch_id)
            while batch.status not in ENDED:
                await asyncio.sleep(self.poll)
                batch = await self.client.batches.retrieve(batch_id)
            answered = await self._results(batch)
        except Exception as err:  # noqa: BLE001 - the waiters get the error, the client decides on retries
            self._pollers.pop(batch_id, None)
            if getattr(err, "status_code", None) == 404:  # not on this endpoint (any more): send again
                self._settle(batch_id, {}, TransientError(f"batch {batch_id} is unknown to {self.where}",
                                                          kind="batch_unknown"))
            else:  # the batch is still on the provider: a retry waits for it again, it is not sent twice
                self._settle(batch_id, {}, api_error(err, f"{self.where} (batch {batch_id})"), reattach=True)
            return
        self._pollers.pop(batch_id, None)
        if batch.status == "failed":  # the provider refused the batch file itself: sending it again is no use
            errors = "; ".join(str(e.message) for e in (batch.errors.data if batch.errors else [])[:3])
            self._settle(batch_id, answered, PermanentError(f"{self.where} refused batch {batch_id}: {errors or 'no detail'}"))
            return
        reason = f"batch {batch_id} ended {batch.status} without an answer for this request"
        self._settle(batch_id, answered, TransientError(reason, kind="batch_unanswered"))

    async def _results(self, batch) -> dict[str, dict]:
        """custom_id -> its line, from the batch's output and error files."""
        answered: dict[str, dict] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self.client.files.content(file_id)
                for line in content.text.splitlines():
                    if line.strip():
                        entry = json.loads(line)
                        answered[entry["custom_id"]] = entry
        return answered

    def _settle(self, batch_id: str, answered: dict[str, dict], unanswered: Exception, reattach: bool = False) -> None:
        """Every waiter of the batch gets its line's reply or error; those without a line get
        `unanswered` (retryable: the client asks again, and the request goes into a later batch,
        or with `reattach` waits for this one again)."""
        for key in self._members.pop(batch_id, set()):
            future = self._waiters.get(key)
            if future is None or future.done():
                continue
            entry = answered.get(key)
            if entry is None:
                if reattach:
                    self._known[key] = batch_id
                future.set_exception(unanswered)
                continue
            response = entry.get("response") or {}
            status = response.get("status_code")
            if status == 200 and isinstance(response.get("body"), dict):
                future.set_result(response["body"])
            else:
                future.set_exception(_line_error(entry, status, self.where))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _line_error(entry: dict, status: int | None, where: str) -> Exception:
    error = entry.get("error") or (entry.get("response") or {}).get("body", {}).get("error") or {}
    detail = " ".join(str(error.get("message") or error or "no detail").split())[:300]
    if status is None:
        return TransientError(f"a batch line from {where} without a status: {detail}", kind="malformed")
    return status_error(status, detail, where)
