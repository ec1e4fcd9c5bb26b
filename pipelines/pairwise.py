"""Pairwise comparison, AlpacaEval's setting (Li et al. 2023): each model's answer to a prompt
is set against a baseline's answer to the same prompt, and a judge says which is better.

Every pair is judged twice, with the answers in both orders: LLM judges prefer the answer
shown first, so a verdict that flips with the order is a tie (AlpacaEval counts a tie as
half a win), and how often verdicts flip is reported as the judge's position bias. The
judge must pick one answer (AlpacaEval's annotators do); it answers through a JSON schema
where the backend can constrain it, and its reply is read tolerantly where it cannot.

The baseline's answer to a prompt is one request, shared by every model compared with it
(the client answers the repeats from its cache).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pydantic import Field, field_validator

from distill.backends import check_models_have_a_place
from distill.backends.router import ModelSpecValue, OptionalModelSpec, comma_separated
from distill.client import Client
from distill.config import EngineConfig, InputConfig, cli
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import check_prompt, load_input, pick_column
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.parsing import json_values
from distill.prompting import render
from distill.request import Request, SamplingParams
from distill.seeding import derive_seed

PROMPTS = "pairwise"
PROMPT_COLUMNS = ("prompt", "instruction", "question", "text")
OUTCOMES = ("win", "tie", "loss", "unjudged")  # of the model against the baseline
VERDICT_SCHEMA = {"type": "object", "properties": {"better": {"type": "string", "enum": ["A", "B"]}},
                  "required": ["better"], "additionalProperties": False}


class PairwiseConfig(EngineConfig, InputConfig):
    models: list[ModelSpecValue] = Field(min_length=1, description="Models whose answers are compared with the "
                                         "baseline's: comma-separated specs [BACKEND:]MODEL[@URL][#KEY_ENV].",
                                         json_schema_extra=cli(comma=True))
    baseline: ModelSpecValue = Field(description="The model every other is compared with.")
    judge: OptionalModelSpec = Field(None, description="The model that says which answer is better.",
                                     json_schema_extra=cli(show="--model"))
    column: str | None = Field(None, description="Column holding the prompts.",
                               json_schema_extra=cli(show=", ".join(PROMPT_COLUMNS)))
    system: str | None = Field(None, description="System prompt for the compared models.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature of the answers.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the answers.")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens per answer.")
    judge_max_new_tokens: int = Field(100, ge=1, description="Most tokens per verdict.")
    structured: bool = Field(True, description="Ask the judge for a JSON verdict through the backend's structured "
                             "output (a grammar on llama.cpp), where it has one.", json_schema_extra=cli(off="no-structured"))

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


_ALONE = re.compile(r"^\W*(?:answer\s+)?([AB])\W*$", re.IGNORECASE)  # "B", "**A**", "Answer B."
_IS_BETTER = re.compile(r"\b([AB])\)?\s+is\s+(?:the\s+)?better\b")  # "Answer A is better than answer B"


def read_verdict(text: str) -> str | None:
    """"A" or "B" from a judge's reply: a JSON object's `better`, a reply that is the letter alone,
    or one letter said to be better; None when the reply names neither, or both."""
    for value in json_values(text):
        if isinstance(value, dict) and str(value.get("better", "")).strip().upper() in ("A", "B"):
            return str(value["better"]).strip().upper()
    if alone := _ALONE.match(text.strip()):
        return alone.group(1).upper()
    letters = {m.group(1) for m in _IS_BETTER.finditer(text)}
    return letters.pop() if len(letters) == 1 else None


def outcome(first: str | None, second: str | None) -> str:
    """The model's outcome from the verdicts with its answer shown first (A), then second (B)."""
    if first is None or second is None:
        return "unjudged"
    model_first, model_second = first == "A", second == "B"
    if model_first and model_second:
        return "win"
    if not model_first and not model_second:
        return "loss"
    return "tie"  # the verdict followed the position


def win_rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: wins, ties, losses, unjudged pairs, the win rate (ties count half, over the
    judged pairs) and the share of judged pairs whose verdict flipped with the order."""
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        counts = Counter(r["outcome"] for r in rows if r["model"] == model)
        judged = counts["win"] + counts["tie"] + counts["loss"]
        table.append({"model": model, **{name: counts[name] for name in OUTCOMES},
                      "win_rate": (counts["win"] + counts["tie"] / 2) / judged if judged else None,
                      "flip_rate": counts["tie"] / judged if judged else None})
    return table


def table_lines(table: list[dict[str, Any]], baseline: str) -> list[str]:
    """The win-rate table as Markdown."""
    lines = [f"| model vs {baseline} | win rate | wins | ties (flipped) | losses | unjudged |", "|---|---|---|---|---|---|"]
    for row in table:
        rate = "–" if row["win_rate"] is None else f"{100 * row['win_rate']:.1f}%"
        lines.append(f"| {row['model']} | {rate} | {row['win']} | {row['tie']} | {row['loss']} | {row['unjudged']} |")
    return lines


class Pairwise:
    def __init__(self, config: PairwiseConfig, client: Client):
        self.config = config
        self.client = client
        self.judge = config.judge.model if config.judge else client.model

    async def answer(self, model: str, prompt: str, pid: str, salt: str) -> str:
        c = self.config
        messages = ([{"role": "system", "content": c.system}] if c.system else []) + [{"role": "user", "content": prompt}]
        params = SamplingParams(c.temperature, c.top_p, c.max_new_tokens, seed=derive_seed(c.seed, "answer", pid, salt))
        return (await self.client.complete(Request.chat(model, messages, params))).text.strip()

    async def verdict(self, prompt: str, first: str, second: str) -> tuple[str | None, str]:
        c = self.config
        messages = [{"role": "system", "content": render(PROMPTS, "judge_system.j2")},
                    {"role": "user", "content": render(PROMPTS, "judge.j2", instruction=prompt, first=first, second=second)}]
        params = SamplingParams(0.0, 1.0, c.judge_max_new_tokens, seed=derive_seed(c.seed, "judge"))
        reply = await self.client.complete(Request.chat(self.judge, messages, params,
                                                        json_schema=VERDICT_SCHEMA if c.structured else None))
        return read_verdict(reply.text), reply.text

    async def __call__(self, item_id: str, item: tuple[str, str]) -> dict[str, Any]:
        from distill.schemas import prompt_id

        prompt, model = item
        pid = prompt_id(prompt)
        baseline = self.config.baseline.model
        # The baseline's seed does not depend on the model it meets: one answer per prompt.
        answer = await self.answer(model, prompt, pid, model)
        baseline_answer = await self.answer(baseline, prompt, pid, "baseline")
        first, first_reply = await self.verdict(prompt, answer, baseline_answer)
        second, second_reply = await self.verdict(prompt, baseline_answer, answer)
        return {"prompt": prompt, "prompt_id": pid, "model": model, "answer": answer, "baseline": baseline,
                "baseline_answer": baseline_answer, "judge": self.judge, "verdict_model_first": first,
                "verdict_model_second": second, "judge_replies": [first_reply, second_reply],
                "outcome": outcome(first, second)}


def load_prompts(config: PairwiseConfig) -> list[str]:
    rows = load_input(config)
    column = pick_column(rows, config.input, config.column, PROMPT_COLUMNS)
    for index, row in enumerate(rows):
        check_prompt(row.get(column), config.input, index, column)
        if not isinstance(row[column], str):
            from distill.errors import InputError

            raise InputError(f"input {config.input}, row {index + 1}: prompts are strings here, not chats")
    return list(dict.fromkeys(row[column] for row in rows))


def models_of(config: PairwiseConfig) -> list:
    return [*config.models, config.baseline, config.judge]


def run(config: PairwiseConfig) -> Outcome:
    from distill.schemas import PAIRWISE

    check_models_have_a_place(config, {"--baseline": config.baseline, "--judge": config.judge,
                                       **{f"--models {s.model}": s for s in config.models}})
    prompts = load_prompts(config)
    models = list(dict.fromkeys(s.model for s in config.models))
    items = [(f"{p}:{m}", (prompt, model)) for p, prompt in enumerate(prompts) for m, model in enumerate(models)]
    def build(records: list[dict[str, Any]]) -> Built:
        rows = [{name: r[name] for name in PAIRWISE} for r in records]
        table = win_rates(rows)
        heading = "Win rates (a verdict that flips with the order of the answers is a tie, counted as half a win):"
        said = "\n".join([heading, "", *table_lines(table, config.baseline.model)])
        return split_dataset(rows, PAIRWISE, None, config.seed, notes={"win_rates": table}, card_notes=[said])

    return execute(METHOD, config, items, lambda client: Pairwise(config, client), build, models_of(config))


METHOD = GenerationMethod(
    command="eval pairwise",
    config=PairwiseConfig,
    run=run,
    help="Compare models with a baseline, AlpacaEval's way: each answers every prompt, a judge picks the better "
         "answer of each pair, in both orders.\n\nA verdict that flips when the answers swap places is a tie (half a "
         "win); the share of flips is the judge's position bias. Writes every pair with both verdicts, and the win "
         "rates in the run's stats and card.",
    title="Pairwise comparison",
    paper="Li et al. 2023, AlpacaEval: An Automatic Evaluator of Instruction-following Models",
    paper_url="https://github.com/tatsu-lab/alpaca_eval",
    description="Each model and the baseline answered every prompt; a judge model said which of the two answers was "
                "better, once with each answer shown first. A pair whose verdict followed the order is a tie.",
    made="pairs judged",
    next_step="read the answers side by side with `distill stats {out}` or in {out}/data",
    schema="PAIRWISE",
    shards=False,
    prompts=PROMPTS,
)
