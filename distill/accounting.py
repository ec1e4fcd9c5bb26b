"""Token and cost accounting, prices, and the budget that stops a run before it overspends."""

from __future__ import annotations

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
        return {str(name): Price(float(v["input"]), float(v["output"])) for name, v in data.items()}
    except (yaml.YAMLError, ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"price table {origin}: {' '.join(str(err).split())}") from None


def load_prices(extra_file: str | Path | None = None) -> dict[str, Price]:
    """Built-in prices, then DISTILL_PRICES, then --prices: later ones override."""
    prices = _read_prices(resources.files("distill").joinpath("prices.yaml").read_text(), "built-in")
    for path in (os.environ.get("DISTILL_PRICES"), extra_file):
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as err:
                raise ConfigError(f"cannot read price table {path}: {err.strerror}") from None
            prices.update(_read_prices(text, str(path)))
    return prices


def price_for(model: str, prices: dict[str, Price]) -> Price | None:
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


class BudgetReached(Exception):
    """Sending one more request could pass --max-cost-usd or --max-tokens."""


class Ledger:
    """Running totals, plus worst-case reservations for the requests in flight.

    A request is admitted only if the totals so far, the reservations of everything in
    flight and its own worst case (estimated prompt + max_tokens) stay within the budget.
    `prices` is one price for every model, or a price (or None: unknown) per model name.
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

    def price_of(self, model: str) -> Price | None:
        return self.prices.get(model) if isinstance(self.prices, Mapping) else self.prices

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        return self.spent if self.priced and self.prices is not None else None

    def worst_case(self, request: Request) -> tuple[int, float]:
        prompt = request.estimated_prompt_tokens()
        tokens = prompt + request.params.max_tokens
        price = self.price_of(request.model)
        return tokens, price.cost(prompt, request.params.max_tokens) if price else 0.0

    def reserve(self, request: Request) -> tuple[int, float]:
        tokens, cost = self.worst_case(request)
        if self.max_tokens is not None and self.tokens + self.reserved_tokens + tokens > self.max_tokens:
            raise BudgetReached(f"the token budget ({self.max_tokens:,}) is reached: {self.tokens:,} tokens used")
        if self.max_cost_usd is not None and self.spent + self.reserved_cost + cost > self.max_cost_usd:
            raise BudgetReached(f"the cost budget (${self.max_cost_usd:.2f}) is reached: ${self.spent:.4f} spent")
        self.reserved_tokens += tokens
        self.reserved_cost += cost
        return tokens, cost

    def release(self, reservation: tuple[int, float]) -> None:
        self.reserved_tokens -= reservation[0]
        self.reserved_cost -= reservation[1]

    def record(self, usage: Usage, model: str) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        price = self.price_of(model)
        if price is None:
            self.priced = False
        else:
            self.spent += price.cost(usage.prompt_tokens, usage.completion_tokens)
