"""The registry of generation methods: each pipeline module declares itself once.

A method is one module in `pipelines/` (plus its folder in `prompts/`) that ends with

    METHOD = GenerationMethod(command="generate ultrachat", config=UltraChatConfig, run=run, ...)

Everything else derives from that declaration: the command and its options (from the
config's fields, see distill.cli_options), the closing lines, the dataset card, which runs
`distill merge` can join, and the schema tests. Nothing lists the methods by hand: the
modules of `distill.pipelines` are looked through for a `METHOD`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from distill.card import MethodCard
from distill.embedded import INSTRUCT


@dataclass(frozen=True)
class GenerationMethod:
    command: str  # "generate ultrachat": the command group and the command's name
    config: type  # the pydantic config; its fields are the command's options
    run: Callable[[Any], Any]  # config -> distill.items.Outcome
    help: str  # the command's --help text
    title: str  # the card's name for the method
    description: str  # the card's account of how the data was made
    made: str  # what the closing line counts: "dialogues made"
    next_step: str  # what to do with the data; {out} stands for the run directory
    schema: str | None = None  # the core features its default config holds: a name in distill.schemas
    shards: bool = True  # whether --shard K/N and `distill merge` apply
    prompts: str | None = None  # its folder in prompts/
    paper: str | None = None
    paper_url: str | None = None
    # The embedded model (distill.embedded) the llamacpp backend loads when no --model names one:
    # the instruct model for chat pipelines; completion-style bootstraps declare the base model.
    embedded_default: str = INSTRUCT

    @property
    def group(self) -> str:
        return self.command.split()[0]

    @property
    def name(self) -> str:
        return self.command.split()[-1]

    def output_schema(self):
        """The datasets.Features every row of its default config carries (provenance columns come after)."""
        from distill import schemas

        return getattr(schemas, self.schema) if self.schema else None

    @property
    def card(self) -> MethodCard:
        return MethodCard(self.title, f"distill {self.command}", self.description, self.paper, self.paper_url)


@functools.cache
def methods() -> dict[str, GenerationMethod]:
    """Every declared method, by command."""
    import distill.pipelines

    found: dict[str, GenerationMethod] = {}
    for info in sorted(pkgutil.iter_modules(distill.pipelines.__path__), key=lambda i: i.name):
        declared = getattr(importlib.import_module(f"distill.pipelines.{info.name}"), "METHOD", None)
        if isinstance(declared, GenerationMethod):
            if declared.command in found:
                raise RuntimeError(f"two pipelines declare `distill {declared.command}`")
            found[declared.command] = declared
    return found


def method(command: str) -> GenerationMethod | None:
    return methods().get(command)


def groups() -> dict[str, list[GenerationMethod]]:
    """The command groups the methods make (generate, rate, ...), each with its methods."""
    found: dict[str, list[GenerationMethod]] = {}
    for declared in methods().values():
        found.setdefault(declared.group, []).append(declared)
    return found
