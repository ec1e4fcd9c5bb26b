"""MT-Bench single-answer grading (Zheng et al. 2023, FastChat's llm_judge): each model answers
two-turn questions, the second turn asked after its own first answer, and a judge grades each
answer from 1 to 10 with a short explanation and a rating in double brackets.

Questions of the math, reasoning and coding categories are graded against a reference answer:
the question's own where it has one, otherwise written once by the judge (greedy, a request per
turn and question that does not name the model, so every model is graded against the same one:
the client answers the repeats from its cache). Replies whose rating cannot be read are not
guessed: they count as unparseable and are left out of the means, as FastChat's show_result does.
With --structured the judge replies with JSON through the backend's constrained decoding instead:
not MT-Bench's format, but the one a small judge can be held to.
"""

from __future__ import annotations

import asyncio
import json
import re
from statistics import fmean
from typing import Any

from pydantic import Field, field_validator

from distill.backends import check_models_have_a_place
from distill.backends.router import ModelSpecValue, OptionalModelSpec, comma_separated
from distill.client import Client
from distill.config import EngineConfig, InputConfig, cli
from distill.errors import InputError
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import load_input, rename_columns, select
from distill.items import Outcome
from distill.eval_stats import require_eval_extra
from distill.judge_family import self_enhancement_note
from distill.methods import GenerationMethod
from distill.parsing import json_values
from distill.prompting import render
from distill.request import Request, SamplingParams
from distill.seeding import derive_seed

PROMPTS = "mt_bench"
SMOKE = "smoke"  # --questions smoke: the small set written for distill, shipped in prompts/mt_bench/
# MT-Bench's categories in its order (the order of the radar chart), and those graded against a reference.
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
NEED_REF_CATS = ("math", "reasoning", "coding")
# FastChat's sampling temperature per category; 0.7 for a category it does not know.
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
                "stem": 0.1, "humanities": 0.1}
OTHER_TEMPERATURE = 0.7
# --structured: the judge's reply as JSON, where the backend can constrain it (a grammar on llama.cpp).
RATING_SCHEMA = {"type": "object", "properties": {"explanation": {"type": "string", "maxLength": 600},
                                                  "rating": {"type": "integer", "minimum": 1, "maximum": 10}},
                 "required": ["explanation", "rating"], "additionalProperties": False}


class MTBenchConfig(EngineConfig, InputConfig):
    input: str = Field(description="The questions: an MT-Bench question file (question_id, category, turns, optional "
                       "reference), a Hub id such as HuggingFaceH4/mt_bench_prompts, or `smoke` for the small set "
                       "written for distill (2 questions per category).", json_schema_extra=cli(alias="--questions"))
    models: list[ModelSpecValue] = Field(min_length=1, description="Models to grade: comma-separated specs "
                                         "[BACKEND:]MODEL[@URL][#KEY_ENV].", json_schema_extra=cli(comma=True))
    judge: OptionalModelSpec = Field(None, description="The model that grades the answers (and writes the missing "
                                     "reference answers).", json_schema_extra=cli(show="--model"))
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature of every answer.",
                                      json_schema_extra=cli(show="per category, as FastChat: 0 for math, reasoning, "
                                                            "coding, extraction; 0.1 stem, humanities; 0.7 others"))
    max_new_tokens: int = Field(1024, ge=1, description="Most tokens per answer (and per reference answer).")
    judge_max_new_tokens: int = Field(2048, ge=1, description="Most tokens per grading.")
    structured: bool = Field(False, description="Ask the judge for a JSON explanation and rating through the backend's "
                             "structured output (a grammar on llama.cpp), where it has one, instead of MT-Bench's "
                             "[[rating]] in free text: small judges seldom write that format.")

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


def read_rating(text: str) -> float | None:
    """The rating in a judge's reply, by FastChat's rule: the first number in double brackets
    ([[7]], [[8.5]]), else the first in single brackets ([7]); None when there is none, or when
    it is outside 1-10."""
    found = re.search(r"\[\[(\d+\.?\d*)\]\]", text) or re.search(r"\[(\d+\.?\d*)\]", text)
    if found is None:
        return None
    rating = float(found.group(1))
    return rating if 1 <= rating <= 10 else None


def read_json_rating(text: str) -> float | None:
    """The `rating` of the JSON object a --structured judge replies with, else read_rating's."""
    for value in json_values(text):
        rating = value.get("rating") if isinstance(value, dict) else None
        if isinstance(rating, (int, float)) and not isinstance(rating, bool):
            return float(rating) if 1 <= rating <= 10 else None
    return read_rating(text)


def _smoke_rows() -> list[dict[str, Any]]:
    from importlib import resources

    text = resources.files("distill.prompts").joinpath(PROMPTS, "smoke.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_questions(config: MTBenchConfig) -> list[dict[str, Any]]:
    """The questions as {question_id, category, turns, reference}, from MT-Bench's question format
    or HuggingFaceH4/mt_bench_prompts' (prompt, prompt_id, category, reference)."""
    if config.input == SMOKE:
        rows = rename_columns(_smoke_rows(), config.column_map, SMOKE)
        rows = select(rows, SMOKE, config.limit, config.seed if config.shuffle else None)
    else:
        rows = load_input(config)
    questions, seen = [], set()
    for index, row in enumerate(rows):
        where = f"input {config.input}, row {index + 1}"
        turns = row.get("turns", row.get("prompt"))
        if not (isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) and t.strip() for t in turns)):
            raise InputError(f"{where}: `turns` (or `prompt`) must be a list of two non-empty strings: an MT-Bench "
                             "question has two turns")
        qid = row.get("question_id", row.get("prompt_id"))
        if qid is None or isinstance(qid, (dict, list)) or not str(qid).strip():
            raise InputError(f"{where}: no `question_id` (or `prompt_id`)")
        if str(qid) in seen:
            raise InputError(f"{where}: question id {qid} appears twice")
        seen.add(str(qid))
        category = row.get("category")
        if not isinstance(category, str) or not category.strip():
            raise InputError(f"{where}: `category` must be a non-empty string")
        reference = row.get("reference") or []
        if not (isinstance(reference, list) and len(reference) <= 2 and all(isinstance(r, str) for r in reference)):
            raise InputError(f"{where}: `reference` must be a list of at most two strings (one per turn)")
        questions.append({"question_id": str(qid), "category": category.strip().lower(), "turns": turns,
                          "reference": reference})
    return questions


class MTBench:
    def __init__(self, config: MTBenchConfig, client: Client):
        self.config = config
        self.client = client
        self.judge = config.judge.model if config.judge else client.model

    async def _chat(self, model: str, messages: list[dict[str, str]], params: SamplingParams) -> str:
        return (await self.client.complete(Request.chat(model, messages, params))).text.strip()

    async def answers(self, model: str, question: dict[str, Any]) -> list[str]:
        """Turn 1, then turn 2 asked after the model's own first answer."""
        c = self.config
        temperature = c.temperature if c.temperature is not None else TEMPERATURES.get(question["category"], OTHER_TEMPERATURE)
        messages: list[dict[str, str]] = []
        answers = []
        for turn, text in enumerate(question["turns"]):
            params = SamplingParams(temperature, 1.0, c.max_new_tokens,
                                    seed=derive_seed(c.seed, "answer", question["question_id"], model, turn))
            messages.append({"role": "user", "content": text})
            answers.append(await self._chat(model, messages, params))
            messages.append({"role": "assistant", "content": answers[-1]})
        return answers

    async def reference(self, question: dict[str, Any]) -> tuple[list[str], str | None]:
        """The reference answer of each turn and where it came from; the judge writes the turns
        the question lacks. Nothing for categories graded without one."""
        if question["category"] not in NEED_REF_CATS:
            return [], None
        c = self.config
        given = [r if r.strip() else None for r in question["reference"]]
        system = {"role": "system", "content": render(PROMPTS, "reference_system.j2")}
        messages: list[dict[str, str]] = []
        reference = []
        for turn, text in enumerate(question["turns"]):
            messages.append({"role": "user", "content": text})
            if turn < len(given) and given[turn]:
                reference.append(given[turn])
            else:
                params = SamplingParams(0.0, 1.0, c.max_new_tokens, seed=derive_seed(c.seed, "reference"))
                reference.append(await self._chat(self.judge, [system, *messages], params))
            messages.append({"role": "assistant", "content": reference[-1]})
        kept = sum(1 for r in given[:2] if r)
        return reference, "judge" if not kept else "question" if kept == len(reference) else "question+judge"

    async def grade(self, question: dict[str, Any], answers: list[str], reference: list[str], second_turn: bool):
        c = self.config
        values = {"turns": question["turns"], "answers": answers, "reference": reference, "second_turn": second_turn,
                  "structured": c.structured}
        messages = [{"role": "system", "content": render(PROMPTS, "judge_system.j2", **values)},
                    {"role": "user", "content": render(PROMPTS, "judge.j2", **values)}]
        params = SamplingParams(0.0, 1.0, c.judge_max_new_tokens, seed=derive_seed(c.seed, "judge"))
        request = Request.chat(self.judge, messages, params, json_schema=RATING_SCHEMA if c.structured else None)
        reply = (await self.client.complete(request)).text.strip()
        return (read_json_rating if c.structured else read_rating)(reply), reply

    async def __call__(self, item_id: str, item: tuple[dict[str, Any], str]) -> dict[str, Any]:
        question, model = item
        answers, (reference, source) = await asyncio.gather(self.answers(model, question), self.reference(question))
        (first, first_reply), (second, second_reply) = await asyncio.gather(
            self.grade(question, answers, reference, False), self.grade(question, answers, reference, True))
        return {"question_id": question["question_id"], "category": question["category"], "model": model,
                "turns": question["turns"], "answers": answers, "reference": reference, "reference_source": source,
                "judge": self.judge, "judge_replies": [first_reply, second_reply], "score_turn_1": first,
                "score_turn_2": second}


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _category_order(category: str) -> tuple[int, str]:
    return (CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES), category)


def results(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the mean rating of turn 1, of turn 2 and of both (FastChat's show_result: the
    mean of every rating read), per category the same, and how many gradings could not be read."""
    categories = sorted({r["category"] for r in rows}, key=_category_order)
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]

        def means(of: list[dict[str, Any]]) -> dict[str, float | None]:
            first = [r["score_turn_1"] for r in of if r["score_turn_1"] is not None]
            second = [r["score_turn_2"] for r in of if r["score_turn_2"] is not None]
            return {"turn_1": _mean(first), "turn_2": _mean(second), "overall": _mean(first + second)}

        grades = 2 * len(mine)
        unparseable = sum((r["score_turn_1"] is None) + (r["score_turn_2"] is None) for r in mine)
        table.append({"model": model, **means(mine), "grades": grades, "unparseable": unparseable,
                      "unparseable_share": unparseable / grades if grades else None,
                      "categories": {c: means([r for r in mine if r["category"] == c]) for c in categories}})
    return table


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table_lines(table: list[dict[str, Any]]) -> list[str]:
    """The per-model table as Markdown."""
    lines = ["| model | turn 1 | turn 2 | overall | unparseable grades |", "|---|---|---|---|---|"]
    for row in table:
        share = "–" if row["unparseable_share"] is None else f"{100 * row['unparseable_share']:.1f}%"
        lines.append(f"| {row['model']} | {_score(row['turn_1'])} | {_score(row['turn_2'])} | {_score(row['overall'])} "
                     f"| {row['unparseable']} of {row['grades']} ({share}) |")
    return lines


def category_lines(table: list[dict[str, Any]]) -> list[str]:
    """Per category (rows) and model (columns): the mean rating of both turns, as Markdown."""
    categories = list(table[0]["categories"]) if table else []
    lines = ["| category | " + " | ".join(row["model"] for row in table) + " |", "|---" * (len(table) + 1) + "|"]
    for category in categories:
        cells = " | ".join(_score(row["categories"][category]["overall"]) for row in table)
        lines.append(f"| {category} | {cells} |")
    return lines


HOW_TO_READ = """\
## How to read this

Each model answered every question in two turns, the second asked after its own first answer.
The judge ({judge}) graded each answer from 1 to 10; for math, reasoning and coding it compared
the answer with a reference answer. *Turn 1* and *turn 2* are the mean ratings of each turn,
*overall* the mean of all ratings read. A grading whose rating could not be read is left out
of the means and counted as unparseable: a high share means the judge does not follow the
grading format, and the means rest on fewer gradings. The category table is the mean of both
turns per category (the radar chart draws it). A judge grades its own model family more kindly,
and a small judge's ratings are crude: compare models graded by the same judge on the same
questions, never numbers from different judges."""


def report(table: list[dict[str, Any]], judge: str, source: str, questions: int) -> str:
    return "\n".join([
        "# MT-Bench results", "",
        f"{questions} questions from `{source}`, graded by `{judge}`.", "",
        "## Scores (1-10)", "", *table_lines(table), "",
        "## Per category (both turns)", "", *category_lines(table), "",
        "![MT-Bench score per category](mt_bench_radar.png)", "",
        HOW_TO_READ.format(judge=judge), ""])


def models_of(config: MTBenchConfig) -> list:
    return [*config.models, config.judge]


def run(config: MTBenchConfig) -> Outcome:
    from distill.eval_charts import radar_chart
    from distill.schemas import MT_BENCH

    require_eval_extra("distill eval mt-bench")
    check_models_have_a_place(config, {"--judge": config.judge, **{f"--models {s.model}": s for s in config.models}})
    questions = load_questions(config)
    models = list(dict.fromkeys(s.model for s in config.models))
    items = [(f"{q['question_id']}:{m}", (q, model)) for q in questions for m, model in enumerate(models)]

    def build(records: list[dict[str, Any]]) -> Built:
        rows = [{name: r[name] for name in MT_BENCH} for r in records]
        table = results(rows)
        said = "\n".join(["MT-Bench scores (1-10; unreadable ratings are left out of the means):", "",
                          *table_lines(table), "", "Per category (both turns):", "", *category_lines(table)])
        risk = self_enhancement_note(rows[0]["judge"], models) if rows else None
        built = split_dataset(rows, MT_BENCH, None, config.seed, notes={"mt_bench": table},
                              card_notes=[said, *([risk] if risk else [])])
        if rows:
            radar = radar_chart({row["model"]: {c: s["overall"] for c, s in row["categories"].items()} for row in table})
            markdown = report(table, rows[0]["judge"], config.input, len(questions)) + (f"\n{risk}\n" if risk else "")
            built.reports = {"results.md": markdown.encode(), "mt_bench_radar.png": radar}
        return built

    return execute(METHOD, config, items, lambda client: MTBench(config, client), build, models_of(config))


METHOD = GenerationMethod(
    command="eval mt-bench",
    config=MTBenchConfig,
    run=run,
    help="Grade models MT-Bench's way: each answers two-turn questions, a judge rates every answer from 1 to 10.\n\n"
         "Math, reasoning and coding answers are graded against a reference answer (the question's, or one the "
         "judge writes once). Writes every graded conversation, the scores per model and category in the run's "
         "stats and card, and results/results.md with a radar chart.",
    title="MT-Bench grading",
    paper="Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena",
    paper_url="https://arxiv.org/abs/2306.05685",
    description="Each model answered two-turn questions, the second turn after its own first answer; a judge model "
                "rated each answer from 1 to 10, against a reference answer for math, reasoning and coding.",
    made="conversations graded",
    next_step="read {out}/results/results.md",
    schema="MT_BENCH",
    shards=False,
    prompts=PROMPTS,
)
