"""The client and runner with the in-process fake backend."""

import asyncio
import errno
import sqlite3

import pytest

from distill.accounting import BudgetReached, Ledger, Price
from distill.backends.base import PermanentError, RejectedError, TransientError
from distill.backends.fake import FakeBackend
from distill.cache import RequestCache
from distill.client import Client, RetryPolicy
from distill.errors import BackendError, DiskFull, RequestRejected, write_error
from distill.items import run_items
from distill.progress import Progress
from distill.request import Request, SamplingParams
from distill.run_dir import RecordLog

FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.002)


def chat(text, **params):
    return Request.chat("fake-model", [{"role": "user", "content": text}], SamplingParams(**params))


def make_client(tmp_path, backend, **kwargs):
    kwargs.setdefault("retry", FAST)
    return Client(backend, RequestCache(tmp_path / "cache.sqlite"), **kwargs)


def test_cache_hit_does_not_call_the_backend(tmp_path):
    backend = FakeBackend()
    client = make_client(tmp_path, backend)
    first = asyncio.run(client.complete(chat("hello")))
    again = asyncio.run(make_client(tmp_path, backend).complete(chat("hello")))
    assert len(backend.calls) == 1 and not first.cached and again.cached
    assert again.text == first.text
    asyncio.run(client.complete(chat("hello", temperature=0.3)))  # other parameters: another request
    assert len(backend.calls) == 2


def test_identical_requests_in_flight_are_sent_once(tmp_path):
    backend = FakeBackend(latency=0.01)
    client = make_client(tmp_path, backend)

    async def go():
        return await asyncio.gather(*(client.complete(chat("same")) for _ in range(10)))

    texts = {r.text for r in asyncio.run(go())}
    assert len(backend.calls) == 1 and len(texts) == 1


@pytest.mark.parametrize(("backend_limit", "concurrency", "requests", "peak_expected"), [
    (None, 5, 50, 5),  # the client's --concurrency bounds the requests in flight
    (1, 64, 10, 1),  # a backend's own limit wins over a larger --concurrency
])
def test_concurrency_is_bounded(tmp_path, backend_limit, concurrency, requests, peak_expected):
    in_flight = peak = 0

    class Counting(FakeBackend):
        max_concurrency = backend_limit

        async def complete(self, request):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.002)
            in_flight -= 1
            return await super().complete(request)

    client = make_client(tmp_path, Counting(), concurrency=concurrency)

    async def go():
        await asyncio.gather(*(client.complete(chat(f"q{i}")) for i in range(requests)))

    asyncio.run(go())
    assert peak == peak_expected


def test_transient_errors_are_retried(tmp_path):
    failures = {"n": 0}

    def flaky(request):
        if failures["n"] < 2:
            failures["n"] += 1
            raise TransientError("HTTP 500", kind="http_500")
        return "fine"

    client = make_client(tmp_path, FakeBackend(reply=flaky))
    assert asyncio.run(client.complete(chat("x"))).text == "fine"
    assert client.stats.retries == 2 and client.stats.errors == {"http_500": 2} and client.stats.requests == 1


def test_gives_up_with_a_clear_error_after_the_last_retry(tmp_path):
    def always(request):
        raise TransientError("timeout from http://host", kind="timeout")

    client = make_client(tmp_path, FakeBackend(reply=always))
    with pytest.raises(BackendError, match="gave up after 4 attempts: timeout from http://host"):
        asyncio.run(client.complete(chat("x")))
    assert len(client.cache) == 0


def test_permanent_and_rejected_errors_are_not_retried(tmp_path):
    calls = []

    def refuse(kind):
        def reply(request):
            calls.append(1)
            raise kind("no")

        return reply

    with pytest.raises(BackendError) as err:
        asyncio.run(make_client(tmp_path, FakeBackend(reply=refuse(PermanentError))).complete(chat("x")))
    assert not isinstance(err.value, RequestRejected)
    with pytest.raises(RequestRejected):
        asyncio.run(make_client(tmp_path, FakeBackend(reply=refuse(RejectedError))).complete(chat("x")))
    assert len(calls) == 2


def test_budget_stops_before_overspending(tmp_path):
    ledger = Ledger(Price(1.0, 2.0), max_cost_usd=0.001)
    client = make_client(tmp_path, FakeBackend(reply=lambda r: "word " * 50), ledger=ledger, concurrency=1)

    async def go():
        done = 0
        try:
            for i in range(100):
                await client.complete(chat(f"q{i}", max_tokens=100))
                done += 1
        except BudgetReached:
            return done

    done = asyncio.run(go())
    assert 0 < done < 100
    assert ledger.cost <= 0.001


def test_runner_keeps_records_and_skips_rejected_items(tmp_path):
    def reply(request):
        if "bad" in request.messages[-1]["content"]:
            raise RejectedError("prompt too long")
        return "ok"

    client = make_client(tmp_path, FakeBackend(reply=reply))
    records, failures = RecordLog(tmp_path / "r.jsonl"), RecordLog(tmp_path / "f.jsonl")
    items = [(str(i), "bad" if i == 3 else f"q{i}") for i in range(10)]

    async def work(item_id, text):
        return {"text": (await client.complete(chat(text))).text}

    outcome = asyncio.run(run_items(items, work, records, failures, Progress(enabled=False), window=4))
    assert (outcome.done, outcome.failed, outcome.stopped) == (9, 1, None)
    assert "3" in failures and "3" not in records
    assert "prompt too long" in failures.rows["3"]["error"]


def test_runner_stops_when_every_first_request_is_rejected(tmp_path):
    def reply(request):
        raise RejectedError("unsupported parameter top_p")

    client = make_client(tmp_path, FakeBackend(reply=reply))

    async def work(item_id, text):
        return {"text": (await client.complete(chat(text))).text}

    with pytest.raises(BackendError, match="were all rejected: .*top_p"):
        asyncio.run(run_items([(str(i), f"q{i}") for i in range(50)], work, RecordLog(tmp_path / "r"),
                              RecordLog(tmp_path / "f"), Progress(enabled=False), window=2))


def test_runner_stops_starting_items_when_the_budget_is_reached(tmp_path):
    ledger = Ledger(None, max_tokens=400)
    client = make_client(tmp_path, FakeBackend(reply=lambda r: "w " * 30), ledger=ledger)
    records = RecordLog(tmp_path / "r.jsonl")

    async def work(item_id, text):
        return {"text": (await client.complete(chat(text, max_tokens=40))).text}

    outcome = asyncio.run(run_items([(str(i), f"q{i}") for i in range(40)], work, records,
                                    RecordLog(tmp_path / "f"), Progress(enabled=False), window=4))
    assert outcome.stopped and "token budget" in outcome.stopped
    assert 0 < len(records) == outcome.done < 40
    assert ledger.tokens <= 400


def test_runner_bounds_items_in_flight_and_skips_done_ones(tmp_path):
    started = []
    peak = 0
    running = 0

    async def work(item_id, value):
        nonlocal peak, running
        started.append(item_id)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return {"v": value}

    records = RecordLog(tmp_path / "r.jsonl")
    records.append({"id": "0", "v": 0})
    outcome = asyncio.run(run_items([(str(i), i) for i in range(30)], work, records, RecordLog(tmp_path / "f"),
                                    Progress(enabled=False), window=3))
    assert "0" not in started and len(started) == 29 and peak == 3
    assert outcome.done == 30 and len(RecordLog(tmp_path / "r.jsonl")) == 30


def test_record_log_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a", "x": 1}\n{"id": "b", "x": 2}\n{"id": "c", "x"')
    log = RecordLog(path)
    assert list(log.rows) == ["a", "b"]
    log.append({"id": "c", "x": 3})
    log.close()
    assert [r["id"] for r in RecordLog(path)] == ["a", "b", "c"]


def test_waiters_on_a_shared_request_see_its_failure(tmp_path):
    def always(request):
        raise PermanentError("model gone")

    client = make_client(tmp_path, FakeBackend(reply=always, latency=0.01))

    async def go():
        return await asyncio.gather(*(client.complete(chat("same")) for _ in range(3)), return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, BackendError) and "model gone" in str(r) for r in results)
    # Nothing of the failed request lingers: the same request asked again goes to the backend.
    client.backend.reply = lambda request: "back again"
    assert asyncio.run(client.complete(chat("same"))).text == "back again"


# -- group commit: replies that arrive together are written in one transaction --------------------


class RecordingCache(RequestCache):
    """Records the size of every group written; `fail` decides whether a group's write fails."""

    def __init__(self, path, fail=None):
        super().__init__(path)
        self.groups = []
        self.fail = fail

    def put_many(self, entries):
        if self.fail is not None and self.fail(self.groups, entries):
            self.groups.append(-len(entries))
            raise write_error(OSError(errno.ENOSPC, "No space left on device"), self.path)
        super().put_many(entries)
        self.groups.append(len(entries))


def on_disk(path):
    with sqlite3.connect(path) as db:  # another connection: sees only what was committed
        return {row[0] for row in db.execute("SELECT key FROM responses")}


def test_replies_arriving_together_are_committed_together_and_seen_only_once_on_disk(tmp_path):
    cache = RecordingCache(tmp_path / "cache.sqlite")
    client = Client(FakeBackend(latency=0.005), cache, concurrency=16, retry=FAST)
    requests = [chat(f"q{i}") for i in range(64)]
    seen_before_commit = []

    async def item(request):
        response = await client.complete(request)
        if request.key() not in on_disk(tmp_path / "cache.sqlite"):  # what a pipeline gets is on disk
            seen_before_commit.append(request)
        return response

    async def go():
        return await asyncio.gather(*(item(r) for r in requests))

    responses = asyncio.run(go())
    assert len(responses) == 64 and not seen_before_commit
    assert sum(cache.groups) == 64 and max(cache.groups) > 1 and len(cache.groups) < 64
    assert on_disk(tmp_path / "cache.sqlite") == {r.key() for r in requests}
    # A second client reads them all back from the cache, the backend is not asked again.
    again = make_client(tmp_path, FakeBackend())
    assert [asyncio.run(again.complete(r)).text for r in requests] == [r.text for r in responses]
    assert again.stats.cache_hits == 64


def test_no_request_goes_out_before_the_replies_that_came_before_it_are_on_disk(tmp_path):
    # So the replies a SIGKILL can lose (not yet committed) and the requests in flight are
    # never more than the concurrency together, as when each reply was committed on its own.
    path = tmp_path / "cache.sqlite"
    unsaved_at_send = []

    class Checking(FakeBackend):
        answered = 0

        async def complete(self, request):
            unsaved_at_send.append(self.answered - len(on_disk(path)))
            response = await super().complete(request)
            self.answered += 1
            return response

    client = Client(Checking(latency=0.002), RecordingCache(path), concurrency=4, retry=FAST)

    async def go():
        await asyncio.gather(*(client.complete(chat(f"q{i}")) for i in range(40)))

    asyncio.run(go())
    assert len(unsaved_at_send) == 40 and set(unsaved_at_send) == {0}
    assert max(client.cache.groups) > 1  # and they were still written in groups


def test_a_failed_group_write_fails_its_callers_and_nothing_more_is_sent(tmp_path):
    cache = RecordingCache(tmp_path / "cache.sqlite", fail=lambda groups, entries: len(groups) == 1)
    backend = FakeBackend(latency=0.005)
    client = Client(backend, cache, concurrency=8, retry=FAST)

    async def go():
        return await asyncio.gather(*(client.complete(chat(f"q{i}")) for i in range(40)), return_exceptions=True)

    results = asyncio.run(go())
    failed = [r for r in results if isinstance(r, Exception)]
    assert isinstance(client.halted, DiskFull)
    assert all(isinstance(r, DiskFull) and str(r).startswith("disk full writing") for r in failed)
    lost = -cache.groups[1]  # the replies of the failed group: the only ones paid for and not kept
    kept = len(on_disk(tmp_path / "cache.sqlite"))
    assert kept == sum(g for g in cache.groups if g > 0) and lost <= 8
    # Nothing was sent once the write had failed: every request sent was either kept (those in
    # flight then, written in the groups after) or in the failed group.
    assert len(backend.calls) == kept + lost
    assert len(failed) == 40 - kept


def test_one_reply_that_cannot_be_stored_does_not_take_its_group_with_it(tmp_path):
    def reply(request):
        text = request.messages[-1]["content"]
        return "half a pair \ud800" if text == "q3" else f"answer to {text}"

    client = make_client(tmp_path, FakeBackend(reply=reply, latency=0.005), concurrency=8)

    async def go():
        return await asyncio.gather(*(client.complete(chat(f"q{i}")) for i in range(8)), return_exceptions=True)

    results = asyncio.run(go())
    assert isinstance(results[3], UnicodeEncodeError)
    assert [r.text for i, r in enumerate(results) if i != 3] == [f"answer to q{i}" for i in range(8) if i != 3]
    assert len(on_disk(tmp_path / "cache.sqlite")) == 7 and client.halted is None


def test_a_request_cancelled_while_its_reply_waits_for_the_commit_keeps_the_reply(tmp_path):
    backend = FakeBackend()
    client = make_client(tmp_path, backend)

    async def go():
        task = asyncio.create_task(client.complete(chat("paid for")))
        await asyncio.sleep(0)  # the backend answered; the reply waits for its group's commit
        assert len(backend.calls) == 1 and not on_disk(tmp_path / "cache.sqlite")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert on_disk(tmp_path / "cache.sqlite") == {chat("paid for").key()}
    # The client goes on as before, in another event loop too.
    assert asyncio.run(client.complete(chat("next"))).text and len(on_disk(tmp_path / "cache.sqlite")) == 2
