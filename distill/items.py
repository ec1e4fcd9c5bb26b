"""Runs a pipeline's coroutine over every item, appending each record the moment it is done.

Items advance independently (no barrier between them); the window of items in flight
is bounded so a million-item input does not become a million tasks at once.

An item is done when the records hold its id *and* the hash of its content: a re-run
after the input file changed redoes the items whose content changed (their requests
still come from the cache where they are the same), instead of mixing old and new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from distill.accounting import BudgetReached
from distill.errors import BackendError, RequestRejected, WriteFailed
from distill.progress import Progress
from distill.run_dir import RecordLog
from distill.secrets import redact

# Rejections of the very first requests, with no success in between, point at the
# settings rather than at a few bad items: stop instead of failing every item.
MAX_REJECTIONS_BEFORE_ANY_SUCCESS = 5


INPUT_HASH = "input_hash"  # the records' field holding the hash of the item they answer


def content_hash(item: Any) -> str:
    """A hash of what an item is (a prompt, a row, a plan): what makes its record current."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    text = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def current(log: RecordLog, items: Iterable[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records of `items` that answer their present content, by id."""
    found = {}
    for item_id, item in items:
        row = log.get(item_id)
        if row is not None and row.get(INPUT_HASH, content_hash(item)) == content_hash(item):
            found[item_id] = row
    return found


@dataclass
class Outcome:
    total: int
    done: int
    failed: int = 0
    stopped: str | None = None  # why the run stopped early, if it did
    export: Any = None  # what the export wrote (distill.generation.Exported), once it has


async def run_items(
    items: Iterable[tuple[str, Any]],
    work: Callable[[str, Any], Awaitable[dict[str, Any]]],
    records: RecordLog,
    failures: RecordLog,
    progress: Progress,
    window: int,
) -> Outcome:
    items = list(items)
    hashes = {item_id: content_hash(item) for item_id, item in items}
    done = current(records, items)
    todo = [(item_id, item) for item_id, item in items if item_id not in done]
    outcome = Outcome(total=len(items), done=len(items) - len(todo))
    progress.start(outcome.total, outcome.done)
    queue = iter(todo)
    running: dict[asyncio.Task, str] = {}

    def launch() -> None:
        while outcome.stopped is None and len(running) < window:
            nxt = next(queue, None)
            if nxt is None:
                return
            running[asyncio.create_task(work(*nxt))] = nxt[0]

    failed_write: list[WriteFailed] = []

    def settle(task: asyncio.Task) -> None:
        item_id = running.pop(task)
        err = task.exception()
        if err is None:
            try:
                records.append({"id": item_id, INPUT_HASH: hashes[item_id], **task.result()})
            except WriteFailed as write_err:  # its replies are in the cache: redone from there
                err = write_err
            else:
                outcome.done += 1
                progress.on_item()
        if err is None:
            return
        if isinstance(err, WriteFailed):
            # Start nothing more; the items in flight finish (what they were sent is answered,
            # and kept if it can be), then the run stops with the write's error.
            failed_write.append(err)
            outcome.stopped = str(err)
        elif isinstance(err, BudgetReached):
            outcome.stopped = str(err)  # let the items in flight finish, start no more
        elif isinstance(err, RequestRejected):
            failures.append({"id": item_id, INPUT_HASH: hashes[item_id], "error": redact(str(err))})
            outcome.failed += 1
            if outcome.failed >= MAX_REJECTIONS_BEFORE_ANY_SUCCESS and outcome.done == 0:
                raise BackendError(f"the first {outcome.failed} requests were all rejected: {err}")
        else:
            raise err

    try:
        launch()
        while running:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                settle(task)
            launch()
        if failed_write:
            raise failed_write[0]
    finally:
        # On a fatal error or Ctrl-C: record the items that did finish, cancel the rest
        # (whatever they were answered is already in the cache).
        for task in list(running):
            if task.done() and not task.cancelled() and task.exception() is None:
                settle(task)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        progress.stop()
    return outcome

