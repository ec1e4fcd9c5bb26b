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
                    async with self._slots:  # held until the reply is on disk: a write that fails
                        await self.limiter.acquire(estimate)  # stops the next request going out
                        if self.halted is not None:
                            raise self.halted
                        response = await self.backend.complete(request)
                        response = self._keep(key, request, response)
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
        finally:
            self.ledger.release(reservation)
        self.limiter.settle(estimate, response.usage.total_tokens)
        self.ledger.record(response.usage, request.model)
        self.stats.requests += 1
        self.progress.on_response(response.usage.total_tokens, self.ledger.cost)
        return response

    def _keep(self, key: str, request: Request, response: Response) -> Response:
        """The reply, counted at most at its worst case, durable before anyone sees it: nothing
        paid for is lost. A reply that cannot be written stops the run: nothing more is asked
        that could not be kept."""
        usage = self.ledger.counted(response.usage, request)
        if usage != response.usage:
            self._over_reported(response, usage)
            response = dataclasses.replace(response, usage=usage)
        try:
            self.cache.put(key, request, response)
        except DistillError as err:
            self.halted = err
            raise
        return response

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
