"""Token and cost accounting, prices, and the budget that stops a run before it overspends."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

from distill.errors import ConfigError
from distill.request import Request, Usage


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens

    def discounted(self, factor: float) -> "Price":
        return Price(self.input * factor, self.output * factor)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


FREE = Price(0.0, 0.0)


def _read_prices(text: str, origin: str) -> dict[str, Price]:
    try:
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError("expected a mapping of model name to {input, output}")
        prices = {}
        for name, value in data.items():
            price = Price(float(value["input"]), float(value["output"]))
            if not all(math.isfinite(p) and p >= 0 for p in (price.input, price.output)):
                raise ValueError(f"{name}: prices are USD per million tokens, finite and >= 0, not "
                                 f"{value['input']!r}/{value['output']!r}")
            prices[str(name)] = price
        return prices
    except (yaml.YAMLError, ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"price table {origin}: {' '.join(str(err).split())}") from None


def load_prices(extra_file: str | Path | None = None) -> dict[str, Price]:
    """Built-in prices, then DISTILL_PRICES, then --prices: later ones override."""
    prices = _read_prices(resources.files("distill").joinpath("prices.yaml").read_text(), "built-in")
    for path in (os.environ.get("DISTILL_PRICES"), extra_file):
        if path:
            from distill.config import read_text_file

            text = read_text_file(Path(path), "price table")
            try:
                prices.update(_read_prices(text, str(path)))
            except RecursionError:
                raise ConfigError(f"price table {path} is nested too deeply to be a price table") from None
    return prices


def price_for(model: str, prices: dict[str, Price]) -> Price | None:
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


class BudgetReached(Exception):
    """Sending one more request could pass --max-cost-usd or --max-tokens."""


class Ledger:
    """The run's spend (earlier sessions included), plus worst-case reservations for the
    requests in flight.

    A request is admitted only if the spend so far, the reservations of everything in
    flight and its own worst case (the most prompt tokens it can take + max_tokens) stay
    within the budget. What a server reports is counted at most at that worst case, so a
    server that over-reports cannot push the count past the cap either. `prices` is one
    price for every model, or a price (or None: unknown) per model name.
    """

    def __init__(
        self,
        prices: Price | Mapping[str, Price | None] | None,
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
    ):
        self.prices = prices
        if max_cost_usd is not None:
            unpriced = [m for m, p in prices.items() if p is None] if isinstance(prices, Mapping) else [] if prices else ["the model"]
            if unpriced:
                raise ConfigError(f"--max-cost-usd needs a price for {unpriced[0]}: add it with --prices FILE")
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.spent = 0.0
        self.priced = True  # False once a response of a model with no known price is recorded
        self.reserved_tokens = 0
        self.reserved_cost = 0.0
        self.reached: str | None = None  # "cost" or "tokens", once a request was refused

    def price_of(self, model: str) -> Price | None:
        return self.prices.get(model) if isinstance(self.prices, Mapping) else self.prices

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        return self.spent if self.priced and self.prices is not None else None

    def add_earlier(self, usage_by_model: Mapping[str, tuple[int, int]]) -> None:
        """The spend of the run's earlier sessions: the budget is for the run, not one invocation."""
        for model, (prompt, completion) in usage_by_model.items():
            self.record(Usage(prompt, completion), model)

    def worst_case(self, request: Request) -> Usage:
        return Usage(request.max_prompt_tokens(), request.params.max_tokens)

    def _cost(self, usage: Usage, model: str) -> float:
        price = self.price_of(model)
        return price.cost(usage.prompt_tokens, usage.completion_tokens) if price else 0.0

    def reserve(self, request: Request) -> tuple[int, float]:
        worst = self.worst_case(request)
        tokens, cost = worst.total_tokens, self._cost(worst, request.model)
        if self.max_tokens is not None and self.tokens + self.reserved_tokens + tokens > self.max_tokens:
            self.reached = "tokens"
            raise BudgetReached(self.stop_message())
        if self.max_cost_usd is not None and self.spent + self.reserved_cost + cost > self.max_cost_usd:
            self.reached = "cost"
            raise BudgetReached(self.stop_message())
        self.reserved_tokens += tokens
        self.reserved_cost += cost
        return tokens, cost

    def release(self, reservation: tuple[int, float]) -> None:
        self.reserved_tokens -= reservation[0]
        self.reserved_cost -= reservation[1]

    def counted(self, usage: Usage, request: Request) -> Usage:
        """The usage a reply is counted at: what the server reported, at most the request's worst case."""
        worst = self.worst_case(request)
        return Usage(min(usage.prompt_tokens, worst.prompt_tokens), min(usage.completion_tokens, worst.completion_tokens))

    def record(self, usage: Usage, model: str) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        price = self.price_of(model)
        if price is None:
            self.priced = False
        else:
            self.spent += price.cost(usage.prompt_tokens, usage.completion_tokens)

    def stop_message(self) -> str:
        """Why the run stopped, with the spend at the time of asking."""
        if self.reached == "tokens":
            return f"the token budget ({self.max_tokens:,}) is reached: {self.tokens:,} tokens used by this run"
        return f"the cost budget (${self.max_cost_usd:.2f}) is reached: ${self.spent:.4f} spent by this run"
