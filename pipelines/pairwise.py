"""Pairwise comparison, AlpacaEval's setting (Li et al. 2023): each model's answer to a prompt
is set against a baseline's answer to the same prompt, and a judge says which is better.

Every pair is judged twice, with the answers in both orders: LLM judges prefer the answer
shown first, so a verdict that flips with the order is a tie (AlpacaEval counts a tie as
half a win), and how often verdicts flip is reported as the judge's position bias. The
judge must pick one answer (AlpacaEval's annotators do); it answers through a JSON schema
where the backend can constrain it, and its reply is read tolerantly where it cannot.

The baseline is a model or, as AlpacaEval's set ships it, a column of reference answers in the
prompts file (`--baseline-column output`). A baseline model's answer to a prompt is one request,
shared by every model compared with it (the client answers the repeats from its cache).

Each model's row of the report has the raw win rate, the length-controlled one (AlpacaEval 2:
distill/eval_stats.py) and seeded bootstrap intervals of both over the prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from distill.backends import check_models_have_a_place
from distill.backends.router import ModelSpecValue, OptionalModelSpec, comma_separated
from distill.client import Client
from distill.config import EngineConfig, InputConfig, cli
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import check_prompt, load_input, pick_column
from distill.items import Outcome
from distill.judge_family import self_enhancement_note
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
    # The intervals are drawn from the records when the dataset is written: a re-run may change them.
    RUNTIME_KEYS: ClassVar[frozenset[str]] = EngineConfig.RUNTIME_KEYS | {"bootstrap"}

    input: str = Field(description="The prompts: a .jsonl/.json/.parquet/.csv/.txt file, a saved dataset, a run "
                       "directory or a Hub id (AlpacaEval's set: instruction, output, generator).",
                       json_schema_extra=cli(alias="--prompts"))
    models: list[ModelSpecValue] = Field(min_length=1, description="Models whose answers are compared with the "
                                         "baseline's: comma-separated specs [BACKEND:]MODEL[@URL][#KEY_ENV].",
                                         json_schema_extra=cli(comma=True))
    baseline: OptionalModelSpec = Field(None, description="The model every other is compared with (or give "
                                        "--baseline-column).")
    baseline_column: str | None = Field(None, description="Compare with the reference answers in this column of the "
                                        "prompts file instead of a baseline model (AlpacaEval's set: output); their "
                                        "name is the file's `generator`, else the column's.")
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
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the prompts for the 95% intervals of the "
                           "win rates, drawn with --seed; 0: no intervals.")

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @model_validator(mode="after")
    def _one_baseline(self):
        if (self.baseline is None) == (self.baseline_column is None):
            raise ValueError("give exactly one of --baseline (a model) and --baseline-column (reference answers in "
                             "the prompts file)")
        return self


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


PREFERENCE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # AlpacaEval's: a tie is half a win


def win_rates(rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per model: wins, ties, losses, unjudged pairs; over the judged pairs the win rate (ties
    count half), the length-controlled win rate, their bootstrap 95% intervals over the prompts
    (`resamples`, drawn with `seed`; None with 0), the share of verdicts that flipped with the
    order, and how much longer the model's answers were than the baseline's (characters).
    `lc_far_from_raw`: the two rates differ as much as makes AlpacaEval warn that its fit failed."""
    from distill.eval_stats import bootstrap_interval, far_from_raw, length_controlled_win_rate

    def lc(pairs: list[tuple[float, int]]) -> float | None:
        return length_controlled_win_rate([p for p, _ in pairs], [d for _, d in pairs])

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        counts = Counter(r["outcome"] for r in mine)
        judged = [r for r in mine if r["outcome"] in PREFERENCE]
        pairs = [(PREFERENCE[r["outcome"]], len(r["answer"]) - len(r["baseline_answer"])) for r in judged]
        preferences = [p for p, _ in pairs]
        lc_rate = lc(pairs)
        table.append({"model": model, **{name: counts[name] for name in OUTCOMES},
                      "win_rate": mean(preferences) if judged else None,
                      "win_rate_interval": _listed(bootstrap_interval(preferences, mean, seed, resamples)),
                      "lc_win_rate": lc_rate,
                      "lc_win_rate_interval": None if lc_rate is None else _listed(bootstrap_interval(pairs, lc, seed, resamples)),
                      "lc_far_from_raw": lc_rate is not None and far_from_raw(mean(preferences), lc_rate),
                      "flip_rate": counts["tie"] / len(judged) if judged else None,
                      "length_difference": mean([d for _, d in pairs]) if judged else None})
    return table


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else list(interval)  # as JSON keeps it


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _interval(value: list[float] | None) -> str:
    return "–" if value is None else f"{100 * value[0]:.1f}–{100 * value[1]:.1f}%"


def table_lines(table: list[dict[str, Any]], baseline: str) -> list[str]:
    """The win-rate table as Markdown."""
    lines = [(f"| model vs {baseline} | win rate | 95% interval | LC win rate | 95% interval | flip rate | wins | "
              "ties (flipped) | losses | unjudged | length vs baseline |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        longer = "–" if row["length_difference"] is None else f"{row['length_difference']:+.0f} chars"
        lines.append(f"| {row['model']} | {_rate(row['win_rate'])} | {_interval(row['win_rate_interval'])} | "
                     f"{_rate(row['lc_win_rate'])}{' ⚠' if row['lc_far_from_raw'] else ''} | "
                     f"{_interval(row['lc_win_rate_interval'])} | "
                     f"{_rate(row['flip_rate'])} | {row['win']} | {row['tie']} | {row['loss']} | {row['unjudged']} | "
                     f"{longer} |")
    return lines


def results_markdown(table: list[dict[str, Any]], baseline: str, judge: str, prompts: int, resamples: int,
                     seed: int) -> str:
    """RUN_DIR/results/results.md: the table, the chart and how to read them."""
    drawn = (f"a percentile bootstrap: the prompts resampled {resamples} times (seed {seed}), each rate recomputed "
             "(the LC win rate refitted)" if resamples else "not drawn (--bootstrap 0)")
    return "\n".join([
        "# Pairwise comparison", "",
        (f"{prompts} prompts; each model's answer was set against {baseline}'s and judged by {judge} twice, once in "
         "each order."), "",
        *table_lines(table, baseline), "",
        "![Win rates with their 95% intervals](win_rates.png)", "",
        "## How to read it", "",
        ("- **Win rate**: the share of prompts on which the judge preferred the model's answer, over the judged pairs; "
         "a tie counts half. A pair whose verdict could not be read is unjudged and left out."),
        ("- **Flip rate**: the share of judged pairs whose verdict followed the position of the answers rather than "
         "their content (the judge picked the same slot in both orders); such a pair is a tie. It measures the judge's "
         "position bias: a high flip rate pulls every win rate toward 50% and says the judge cannot tell these answers "
         "apart."),
        ("- **LC win rate** (length-controlled, AlpacaEval 2's idea): judges favour longer answers, so a model can win "
         "by writing more. A logistic regression of the preference on the length difference (characters) predicts "
         "the win rate had the model's answers been as long as the baseline's. Well below the raw win rate: the wins "
         "lean on length; above it: the model wins despite shorter answers. It equals the raw rate when every length "
         "difference or every verdict is the same, and is not estimated from fewer than 3 judged pairs. "
         "`length vs baseline` is the mean difference. ⚠ marks an LC win rate so far from the raw one that the fit "
         "is suspect (AlpacaEval warns at the same point): usually the model's answers are longer (or shorter) on "
         "nearly every prompt, so equal lengths lie outside what was observed and the estimate is an extrapolation."),
        (f"- **95% interval**: {drawn}; 95% of the resampled rates fall inside. It shows how much the rate depends "
         "on which prompts were asked: models whose intervals overlap widely are not told apart by these prompts."),
        "",
    ])


class Pairwise:
    def __init__(self, config: PairwiseConfig, client: Client, baseline: str):
        self.config = config
        self.client = client
        self.judge = config.judge.model if config.judge else client.model
        self.baseline = baseline

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

    async def __call__(self, item_id: str, item: tuple[str, str, str | None]) -> dict[str, Any]:
        from distill.schemas import prompt_id

        prompt, model, reference = item
        pid = prompt_id(prompt)
        answer = await self.answer(model, prompt, pid, model)
        # The baseline's seed does not depend on the model it meets: one answer per prompt.
        baseline_answer = reference if reference is not None else await self.answer(self.baseline, prompt, pid, "baseline")
        first, first_reply = await self.verdict(prompt, answer, baseline_answer)
        second, second_reply = await self.verdict(prompt, baseline_answer, answer)
        return {"prompt": prompt, "prompt_id": pid, "model": model, "answer": answer, "baseline": self.baseline,
                "baseline_answer": baseline_answer, "judge": self.judge, "verdict_model_first": first,
                "verdict_model_second": second, "judge_replies": [first_reply, second_reply],
                "outcome": outcome(first, second)}


def load_prompts(config: PairwiseConfig) -> tuple[dict[str, str | None], str]:
    """The prompts, each with its reference answer under --baseline-column (else None; the first
    row of a repeated prompt counts), and the baseline's name."""
    from distill.errors import InputError

    rows = load_input(config)
    column = pick_column(rows, config.input, config.column, PROMPT_COLUMNS)
    reference = config.baseline_column and pick_column(rows, config.input, config.baseline_column, ())
    prompts: dict[str, str | None] = {}
    for index, row in enumerate(rows):
        check_prompt(row.get(column), config.input, index, column)
        if not isinstance(row[column], str):
            raise InputError(f"input {config.input}, row {index + 1}: prompts are strings here, not chats")
        if reference and not isinstance(row.get(reference), str):
            raise InputError(f"input {config.input}, row {index + 1}, column {reference!r}: the reference answer is "
                             "not a string")
        prompts.setdefault(row[column], row[reference] if reference else None)
    if not reference:
        return prompts, config.baseline.model
    generators = {row.get("generator") for row in rows}  # AlpacaEval's set names the reference answers' model
    name = generators.pop() if len(generators) == 1 else None
    return prompts, name if isinstance(name, str) and name.strip() else reference


def models_of(config: PairwiseConfig) -> list:
    """The models asked: the baseline is not one when its answers come from the prompts file."""
    return [*config.models, *([config.baseline] if config.baseline else []), config.judge]


def run(config: PairwiseConfig) -> Outcome:
    from distill.eval_charts import win_rate_chart
    from distill.eval_stats import require_eval_extra
    from distill.schemas import PAIRWISE

    require_eval_extra("distill eval pairwise")
    check_models_have_a_place(config, {"--baseline": config.baseline, "--judge": config.judge,
                                       **{f"--models {s.model}": s for s in config.models}})
    prompts, baseline = load_prompts(config)
    models = list(dict.fromkeys(s.model for s in config.models))
    items = [(f"{p}:{m}", (prompt, model, reference)) for p, (prompt, reference) in enumerate(prompts.items())
             for m, model in enumerate(models)]

    def build(records: list[dict[str, Any]]) -> Built:
        rows = [{name: r[name] for name in PAIRWISE} for r in records]
        table = win_rates(rows, config.bootstrap, config.seed)
        judge = rows[0]["judge"] if rows else "the judge"
        heading = ("Win rates (a verdict that flips with the order of the answers is a tie, counted as half a win; "
                   "LC: length-controlled; intervals: 95% bootstrap over the prompts; how to read them: "
                   "results/results.md):")
        said = "\n".join([heading, "", *table_lines(table, baseline)])
        risk = self_enhancement_note(judge, [*models, baseline]) if rows else None
        results = results_markdown(table, baseline, judge, len(prompts), config.bootstrap, config.seed)
        reports = {"results.md": (results + (f"\n{risk}\n" if risk else "")).encode(),
                   "win_rates.png": win_rate_chart(table, baseline)}
        return split_dataset(rows, PAIRWISE, None, config.seed, notes={"win_rates": table},
                             card_notes=[said, *([risk] if risk else [])], reports=reports)

    return execute(METHOD, config, items, lambda client: Pairwise(config, client, baseline), build, models_of(config))


METHOD = GenerationMethod(
    command="eval pairwise",
    config=PairwiseConfig,
    run=run,
    help="Compare models with a baseline, AlpacaEval's way: each answers every prompt, a judge picks the better "
         "answer of each pair, in both orders.\n\nThe baseline is a model (--baseline) or the reference answers of "
         "the prompts file (--baseline-column). A verdict that flips when the answers swap places is a tie (half a "
         "win); the share of flips is the judge's position bias. Writes every pair with both verdicts; the raw and "
         "length-controlled win rates with bootstrap 95% intervals in the run's stats and card, and "
         "results/results.md with results/win_rates.png.",
    title="Pairwise comparison",
    paper="Li et al. 2023, AlpacaEval: An Automatic Evaluator of Instruction-following Models",
    paper_url="https://github.com/tatsu-lab/alpaca_eval",
    description="Each model and the baseline (a model, or reference answers from the prompts file) answered every "
                "prompt; a judge model said which of the two answers was better, once with each answer shown first. "
                "A pair whose verdict followed the order is a tie.",
    made="pairs judged",
    next_step="read {out}/results/results.md, and the answers side by side with `distill stats {out}`",
    schema="PAIRWISE",
    shards=False,
    prompts=PROMPTS,
)
