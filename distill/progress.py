"""The progress bar: items done, requests/s, tokens/s, cost and ETA, on stderr."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, enabled: bool = True, description: str = "generating"):
        self.enabled = enabled
        self.description = description
        self.requests = 0
        self.tokens = 0
        self.cost: float | None = None
        self._started = time.monotonic()
        self._bar: RichProgress | None = None
        self._task = None

    def start(self, total: int | None, done: int = 0) -> None:
        self._started = time.monotonic()
        if not self.enabled:
            return
        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=total, completed=done, rates="")

    def rates(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        text = f"{self.requests / elapsed:.1f} req/s  {self.tokens / elapsed:,.0f} tok/s"
        if self.cost is not None:
            text += f"  ${self.cost:.4f}"
        return text

    def on_response(self, tokens: int, cost: float | None) -> None:
        self.requests += 1
        self.tokens += tokens
        self.cost = cost
        if self._bar is not None:
            self._bar.update(self._task, rates=self.rates())

    def on_item(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
