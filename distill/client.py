"""The one client between pipelines and backends.

It owns every cross-cutting concern, so no pipeline repeats them: the request cache,
bounded concurrency, rate limits, retries with backoff, token and cost accounting, the
budget and the progress display. Pipelines only `await client.complete(request)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field

from distill.accounting import Ledger
from distill.backends.base import Backend, PermanentError, RejectedError, TransientError
from distill.cache import RequestCache
from distill.errors import BackendError, DistillError, RequestRejected, warn
from distill.progress import Progress
from distill.ratelimit import RateLimiter
from distill.request import Request, Response


@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    # A server's Retry-After is honoured up to this many seconds (the request --timeout).
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt, 30))
        return rng.uniform(ceiling / 2, ceiling)  # jitter spreads out clients that failed together


@dataclass
class ClientStats:
    requests: int = 0  # answered by the backend
    cache_hits: int = 0
    retries: int = 0
    charged_timeouts: int = 0  # counted as spent at their worst case
    errors: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": self.retries,
                "charged_timeouts": self.charged_timeouts, "errors": dict(self.errors)}


class Client:
    def __init__(
        self,
        backend: Backend,
        cache: RequestCache,
        *,
        concurrency: int = 64,
        limiter: RateLimiter | None = None,
        ledger: Ledger | None = None,
        retry: RetryPolicy | None = None,
        progress: Progress | None = None,
    ):
        self.backend = backend
        self.cache = cache
        limit = min(concurrency, backend.max_concurrency or concurrency)
        self._slots = asyncio.Semaphore(limit)
        self.limiter = limiter or RateLimiter()
        self.ledger = ledger or Ledger(None)
        self.retry = retry or RetryPolicy()
        self.progress = progress or Progress(enabled=False)
        self.stats = ClientStats()
        self._pending: dict[str, asyncio.Future] = {}
        self.halted: DistillError | None = None  # set when a reply could not be written
        self._warned_usage = False
        self._rng = random.Random()  # jitter only; never affects what is generated
        # Replies waiting for their group's commit, and the commit scheduled for them.
        self._to_commit: list[tuple[str, Request, Response, asyncio.Future]] = []
        self._commit_handle: asyncio.Handle | None = None

    @property
    def model(self) -> str:
        return self.backend.model_id()

    async def complete(self, request: Request) -> Response:
        key = request.key()
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        # The same request already on its way (two items asking the same thing): wait for it.
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            response = await self._ask(key, request)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._pending[key]
        future.set_result(response)
        return response

    async def _ask(self, key: str, request: Request) -> Response:
        if self.halted is not None:  # a write failed: ask nothing more that could not be kept
            raise self.halted
        reservation = self.ledger.reserve(request)  # raises BudgetReached before overspending
        estimate = request.estimated_prompt_tokens() + request.params.max_tokens
        try:
            attempt = 0
            while True:
                try:
                    async with self._slots:
                        await self.limiter.acquire(estimate)
                        if self._to_commit:  # the replies that came before go to disk before this goes out:
                            self._commit()  # a write that fails stops the next request going out
                        if self.halted is not None:
                            raise self.halted
                        response = await self.backend.complete(request)
                        response, committed = self._keep(key, request, response)
                    break
                except TransientError as err:
                    self.stats.errors[err.kind] += 1
                    if err.kind == "timeout":  # the provider may bill it: count it at its worst case
                        self.ledger.release(reservation)
                        reservation = (0, 0.0)
                        self._charge_timeout(key, request)
                        reservation = self.ledger.reserve(request)  # the retry is a request of its own
                    if attempt == self.retry.max_retries:
                        raise BackendError(f"{self.backend.name}: gave up after {attempt + 1} attempts: {err}") from None
                    self.stats.retries += 1
                    await asyncio.sleep(self.retry.delay(attempt, err.retry_after, self._rng))
                    attempt += 1
                except RejectedError as err:
                    raise RequestRejected(f"{self.backend.name}: {err}") from None
                except PermanentError as err:
                    raise BackendError(f"{self.backend.name}: {err}") from None
            await self._durable(committed)
        finally:
            self.ledger.release(reservation)
        self.limiter.settle(estimate, response.usage.total_tokens)
        self.ledger.record(response.usage, request.model)
        self.stats.requests += 1
        self.progress.on_response(response.usage.total_tokens, self.ledger.cost)
        return response

    def _keep(self, key: str, request: Request, response: Response) -> tuple[Response, asyncio.Future]:
        """The reply, counted at most at its worst case, queued to be made durable before anyone
        sees it (`_durable`): nothing paid for is lost. A reply that cannot be written stops the
        run: nothing more is asked that could not be kept.

        Replies are committed in groups, one transaction for the replies that came in together:
        the first reply of a group schedules the commit for the event loop's next turn, and
        every reply that arrives before then joins it. A request is sent only once the replies
        that came before it are committed (`_ask` commits them first if need be), so the replies
        not yet on disk and the requests in flight are never more than the concurrency: what a
        SIGKILL can lose, as when every reply was committed on its own. The request's slot is
        free as soon as its reply is queued (holding it through the commit left the HTTP
        client's connections idle longer, which costs more than the commit)."""
        usage = self.ledger.counted(response.usage, request)
        if usage != response.usage:
            self._over_reported(response, usage)
            response = dataclasses.replace(response, usage=usage)
        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        self._to_commit.append((key, request, response, committed))
        if self._commit_handle is None:
            self._commit_handle = loop.call_soon(self._commit)
        return response, committed

    async def _durable(self, committed: asyncio.Future) -> None:
        """Wait for a reply's group to be committed; raises the write's error if it could not be."""
        try:
            await committed
        except asyncio.CancelledError:
            self._commit()  # cancelled (Ctrl-C, SIGTERM): the replies that came are written before it goes on
            raise

    def _commit(self) -> None:
        """Write the replies waiting for a commit, in one transaction, then release their callers."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        group, self._to_commit = self._to_commit, []
        if group:
            self._write(group)

    def _write(self, group: list[tuple[str, Request, Response, asyncio.Future]]) -> None:
        """A failed write (the disk) stops the run (`halted`): only the replies of that group are
        lost. A reply that cannot be stored at all (say a lone surrogate in its text) fails alone:
        the others of its group are written one by one."""
        try:
            self.cache.put_many([(key, request, response) for key, request, response, _ in group])
        except DistillError as err:
            self.halted = err
            outcome: BaseException | None = err
        except Exception as err:  # noqa: BLE001 - not the disk: that reply alone fails, as when each was written alone
            if len(group) > 1:
                for entry in group:
                    self._write([entry])
                return
            outcome = err
        else:
            outcome = None
        for *_, committed in group:
            if committed.done():  # its caller was cancelled
                continue
            if outcome is None:
                committed.set_result(None)
            else:
                committed.set_exception(outcome)

    def _charge_timeout(self, key: str, request: Request) -> None:
        worst = self.ledger.worst_case(request)
        try:
            self.cache.charge(key, request.model, worst, "timeout")
        except DistillError as err:
            self.halted = err
            raise
        self.ledger.record(worst, request.model)
        self.stats.charged_timeouts += 1

    def _over_reported(self, response: Response, counted) -> None:
        if not self._warned_usage:
            self._warned_usage = True
            warn(f"{self.backend.name} reported {response.usage.prompt_tokens} prompt and "
                 f"{response.usage.completion_tokens} completion tokens for a request that can use at most "
                 f"{counted.prompt_tokens} and {counted.completion_tokens}: counted at most that (here and after)")
