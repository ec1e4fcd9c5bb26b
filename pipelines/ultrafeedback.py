"""UltraFeedback (Cui et al. 2023) and the Zephyr binarization.

For every prompt:
  1. sample `completions_per_prompt` distinct models of the pool;
  2. each model answers under its own principle (helpfulness, honesty, truthfulness or
     verbalized calibration), drawn per completion from the mix of the prompt's source and
     given as the system prompt;
  3. a judge rates all the answers together, once per aspect (instruction following,
     honesty, truthfulness, helpfulness), 1-5 with a rationale, the answers shown in a
     seeded order that is recorded; with --debias swap, a second time in reverse order.
     Truthfulness also sees the prompt's reference answers, when the input has them;
  4. optionally (--critique) the judge gives each answer an overall score 1-10 and feedback.
Binarization: chosen = the best-scored answer, rejected = a seeded random other one (or the
lowest); with --drop-ties, only a lower-scored one. `distill binarize` redoes it from the records.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from distill.backends.router import (
    ModelSpec,
    ModelSpecValue,
    OptionalModelSpec,
    comma_separated,
)
from distill.client import Client
from distill.config import (
    BackendName,
    EngineConfig,
    InputConfig,
    cli,
    stored_settings,
    validate_config,
)
from distill.errors import ConfigError, InputError
from distill.export import DEFAULT_CONFIG, Built, DatasetConfig, hub_layout, layout_notes, train_test_split
from distill.generation import execute, export
from distill.inputs import check_prompt, load_input, pick_column
from distill.items import INPUT_HASH, Outcome
from distill.methods import GenerationMethod
from distill.parsing import parse_weights
from distill.pipelines.ultrafeedback_verdicts import (
    Rating,
    aspect_schema,
    critique_schema,
    parse_aspect_reply,
    parse_critique_reply,
)
from distill.prompting import data, render, word_list
from distill.request import Message, Request, SamplingParams
from distill.run_dir import RunDir
from distill.seeding import derive_seed, rng_for

PROMPTS = "ultrafeedback"  # the folder of this method's prompts
ASPECTS: dict[str, dict[str, Any]] = data(PROMPTS, "aspects.yaml")
PRINCIPLES = ("helpfulness", "honesty", "truthfulness", "verbalized_calibration")
# The original's principle mix of each prompt source (sharegpt, ultrachat, flan, evol_instruct,
# truthful_qa, false_qa, ...); a prompt of no listed source gets the general chat mix.
SOURCE_MIXES: dict[str, dict[str, float]] = data(PROMPTS, "principle_mixes.yaml")
DEFAULT_PRINCIPLES = SOURCE_MIXES["sharegpt"]
PROMPT_COLUMNS = ("prompt", "instruction", "messages", "question", "text")
SOURCE_COLUMN = "source"  # as openbmb/UltraFeedback names it
# Reference answers for the truthfulness judge, as openbmb/UltraFeedback and TruthfulQA name them.
REFERENCE_COLUMN, INCORRECT_COLUMN = "correct_answers", "incorrect_answers"


def principle_weights(value: Any) -> dict[str, float]:
    """`helpfulness=0.6,honesty=0.4` (or a mapping) -> principle weights."""
    return parse_weights(value, PRINCIPLES, "principle", "helpfulness=0.6,honesty=0.4")


class UltraFeedbackConfig(EngineConfig, InputConfig):
    # Binarization, judge endpoints: may change on a re-run (re-binarizes from the records).
    RUNTIME_KEYS: ClassVar[frozenset[str]] = EngineConfig.RUNTIME_KEYS | {
        "score", "rejected", "keep_ties", "judge_base_url", "judge_api_key_env", "structured", "parse_retries"}

    column: str | None = Field(None, description="Column of the prompts (a string, or a chat whose first user turn is "
                               "taken).", json_schema_extra=cli(show=", ".join(PROMPT_COLUMNS)))
    models: list[ModelSpecValue] = Field(description="The pool: comma-separated model specs "
                                         "[BACKEND:]MODEL[@URL][#KEY_ENV]; e.g. gpt-4o-mini,mistral@http://gpu1:8000/v1.",
                                         json_schema_extra=cli(comma=True))
    completions_per_prompt: int = Field(4, ge=2, description="Distinct models sampled from the pool per prompt.")
    principles: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRINCIPLES),
        description="Weights of the system-prompt principles, drawn for each completion of a prompt whose source has "
        "no mix of its own (default: the original's ShareGPT/UltraChat mix).")
    source_column: str | None = Field(None, description="Column naming each prompt's source, which picks its "
                                      "principle mix.", json_schema_extra=cli(show=f"{SOURCE_COLUMN}, when the input has it"))
    principles_by_source: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {source: dict(mix) for source, mix in SOURCE_MIXES.items()},
        description="Principle weights per source (a --config mapping of source to weights, added to the original's "
        f"mixes for {', '.join(SOURCE_MIXES)}).", json_schema_extra=cli(yaml_only=True))
    reference_column: str | None = Field(None, description="Column of reference answers known to be correct (a string "
                                         "or a list), shown to the truthfulness judge.",
                                         json_schema_extra=cli(show=f"{REFERENCE_COLUMN}, when the input has it"))
    incorrect_column: str | None = Field(None, description="Column of answers known to be wrong, shown to the "
                                         "truthfulness judge.",
                                         json_schema_extra=cli(show=f"{INCORRECT_COLUMN}, when the input has it"))
    false_premise_sources: list[str] = Field(["false_qa"], description="Sources whose questions rest on a false "
                                             "premise: the truthfulness judge is told so.",
                                             json_schema_extra=cli(comma=True))
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature of the completions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the completions.")
    max_new_tokens: int = Field(1024, ge=1, description="Most tokens per completion.")
    judge: OptionalModelSpec = Field(None, description="The judge model, [BACKEND:]MODEL[@URL][#KEY_ENV].",
                                     json_schema_extra=cli(show="--model on the run's backend"))
    judge_backend: BackendName | None = Field(None, description="The judge's backend, when not the pool's.")
    judge_base_url: list[str] = Field(default_factory=list, description="The judge's endpoint, when not the pool's; "
                                      "repeatable.")
    judge_api_key_env: str | None = Field(None, description="Environment variable of the judge endpoint's key.")
    judge_temperature: float = Field(0.0, ge=0, le=2, description="The judge's sampling temperature (retries of "
                                     "unparsable replies use at least 0.7).")
    judge_top_p: float = Field(0.6, gt=0, le=1, description="Nucleus sampling of the judge.")
    judge_max_new_tokens: int = Field(500, ge=16, description="Most tokens per judge reply rating an aspect.")
    critique_max_new_tokens: int = Field(1024, ge=16, description="Most tokens per critique (--critique).")
    structured: bool = Field(True, description="Ask for JSON-schema output where the backend supports it.")
    parse_retries: int = Field(2, ge=0, le=10, description="New judge samples when a reply cannot be parsed; then its "
                               "ratings are kept as null.")
    critique: bool = Field(False, description="Also an overall score 1-10 with feedback per completion (what "
                           "--score overall ranks by).")
    debias: Literal["none", "swap"] = Field("none", description="swap: rate again in reverse order and average "
                                            "(position bias).")
    score: str = Field("mean", description="What chosen/rejected rank by: mean (of the aspect ratings: the Zephyr "
                       "paper's rule), overall (the critique's score: the rule of the script that built "
                       "ultrafeedback_binarized; needs --critique) or one aspect (instruction_following, honesty, "
                       "truthfulness, helpfulness).")
    rejected: Literal["random", "lowest"] = Field("random", description="Rejected: a seeded random other completion, or "
                                                  "the lowest.")
    keep_ties: bool = Field(True, description="Rejected may score as high as chosen, as in ultrafeedback_binarized; "
                            "--drop-ties draws it from the lower-scored answers only (a prompt whose answers all tie "
                            "gives no pair).", json_schema_extra=cli(off="drop-ties"))

    @field_validator("models", "false_premise_sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("principles", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> dict[str, float]:
        return principle_weights(value)

    @field_validator("principles_by_source", mode="before")
    @classmethod
    def _by_source(cls, value: Any) -> dict[str, dict[str, float]]:
        items = value.items() if isinstance(value, dict) else [("principles_by_source", value)]
        given = {str(source): principle_weights(weights) for source, weights in items}
        return {**{source: dict(mix) for source, mix in SOURCE_MIXES.items()}, **given}

    @field_validator("score")
    @classmethod
    def _score(cls, value: str) -> str:
        if value not in ("mean", "overall", *ASPECTS):
            raise ValueError(f"--score is mean, overall or an aspect ({', '.join(ASPECTS)}), not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if len({s.model for s in self.models}) < self.completions_per_prompt:
            raise ValueError(f"--models needs at least {self.completions_per_prompt} distinct models (--completions-per-prompt)")
        if self.score == "overall" and not self.critique:
            raise ValueError("--score overall needs --critique")
        return self

    def judge_spec(self) -> ModelSpec | None:
        """The judge's own place, or None: the run's backend and its --model. --judge-backend,
        --judge-base-url and --judge-api-key-env complete or override what --judge says."""
        if self.judge is None and self.judge_backend is None and not self.judge_base_url:
            return None
        spec = self.judge or ModelSpec(self.model or "")
        return ModelSpec(spec.model, self.judge_backend or spec.backend, tuple(self.judge_base_url) or spec.base_url,
                         self.judge_api_key_env or spec.api_key_env)


def instruction_of(value: str | list[Message]) -> str:
    """The instruction to answer: the prompt itself, or a chat's first user turn."""
    if isinstance(value, str):
        return value
    return next(m["content"] for m in value if m["role"] == "user")


class UltraFeedback:
    def __init__(self, config: UltraFeedbackConfig, client: Client):
        self.config = config
        self.client = client
        judge = config.judge_spec()
        self.judge = judge.model if judge and judge.model else client.model
        self.phrasings = {p: word_list(PROMPTS, f"principles/{p}.txt") for p in PRINCIPLES}

    def request(self, model: str, messages: list[Message], temperature: float, top_p: float, max_tokens: int, *salt,
                sample: int = 0, schema: dict | None = None) -> Request:
        params = SamplingParams(temperature, top_p, max_tokens, seed=derive_seed(self.config.seed, *salt, sample))
        return Request.chat(model, messages, params, sample=sample, json_schema=schema if self.config.structured else None)

    # -- 1. completions ------------------------------------------------------------------------

    def principle(self, pid: str, source: str | None, model: str) -> tuple[str, str]:
        """The principle of one completion and its system prompt: drawn for each completion, as
        the original drew one for each model's answer, from the mix of the prompt's source."""
        weights = self.config.principles_by_source.get(source or "", self.config.principles)
        rng = rng_for(self.config.seed, "principle", pid, model)
        name = rng.choices(list(weights), weights=list(weights.values()))[0]
        return name, rng.choice(self.phrasings[name])

    async def complete(self, instruction: str, pid: str, model: str, source: str | None) -> dict[str, Any]:
        principle, system = self.principle(pid, source, model)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": instruction}]
        c = self.config
        request = self.request(model, messages, c.temperature, c.top_p, c.max_new_tokens, "answer", pid, model)
        reply = await self.client.complete(request)
        return {"model": model, "principle": principle, "system_prompt": system, "response": reply.text,
                "finish_reason": reply.finish_reason}

    # -- 2. ratings ----------------------------------------------------------------------------

    async def judge_until_parsed(self, messages: list[Message], max_tokens: int, schema: dict, parse,
                                 *salt) -> tuple[Any, str, int]:
        """Ask the judge until `parse` reads the reply (None: unreadable), at most
        1 + parse_retries times. Returns (parsed or None, the last reply, attempts).

        Each retry is a new sample (never the cached reply) at some temperature, or a
        deterministic judge would repeat itself. A reply cut off by the token limit may read
        as complete ("score: 1" of "10"), so it counts as unreadable."""
        text = ""
        for attempt in range(self.config.parse_retries + 1):
            temperature = self.config.judge_temperature if attempt == 0 else max(self.config.judge_temperature, 0.7)
            request = self.request(self.judge, messages, temperature, self.config.judge_top_p, max_tokens, *salt,
                                   sample=attempt, schema=schema)
            reply = await self.client.complete(request)
            text = reply.text
            parsed = parse(text) if reply.finish_reason != "length" else None
            if parsed is not None:
                return parsed, text, attempt + 1
        return None, text, self.config.parse_retries + 1

    async def rate(self, aspect: str, instruction: str, responses: list[str], order: list[int], pid: str,
                   references: dict[str, Any] | None) -> dict[str, Any]:
        """One judge call rating all responses in `order`; an unreadable reply is kept raw
        with null ratings. Truthfulness also sees the prompt's reference knowledge, if any."""
        spec = ASPECTS[aspect]
        n, allow_na, types = len(order), spec["na"], spec.get("types")
        prompt = render(PROMPTS, f"aspects/{aspect}.j2", instruction=instruction, texts=[responses[i] for i in order],
                        types=types or [], references=references if aspect == "truthfulness" else None)
        messages = [{"role": "system", "content": render(PROMPTS, "judge_system.j2")}, {"role": "user", "content": prompt}]
        parsed, text, attempts = await self.judge_until_parsed(
            messages, self.config.judge_max_new_tokens, aspect_schema(n, allow_na, types),
            lambda reply: parse_aspect_reply(reply, n, allow_na, types), "judge", aspect, pid, tuple(order),
        )
        if parsed is None:
            return {"order": order, "ratings": [None] * n, "attempts": attempts, "raw": text}
        by_response: list[dict | None] = [None] * n
        for position, rating in enumerate(parsed):
            by_response[order[position]] = _rating(rating)
        return {"order": order, "ratings": by_response, "attempts": attempts}

    async def critique(self, instruction: str, completion: dict[str, Any], pid: str, index: int) -> dict[str, Any]:
        """The teacher's feedback and overall score; it knows the principle the answer was given,
        as the original's critique did."""
        prompt = render(PROMPTS, "critique.j2", instruction=instruction, note=completion["system_prompt"],
                        answer=completion["response"])

        def parse(reply: str):
            score, feedback = parse_critique_reply(reply)
            return None if score is None else (score, feedback)

        parsed, text, _ = await self.judge_until_parsed([{"role": "user", "content": prompt}],
                                                        self.config.critique_max_new_tokens, critique_schema(), parse,
                                                        "critique", pid, index)
        if parsed is None:
            return {"overall_score": None, "feedback": "", "raw": text}
        return {"overall_score": parsed[0], "feedback": parsed[1]}

    # -- one prompt, start to end ------------------------------------------------------------

    async def __call__(self, item_id: str, row: dict[str, Any]) -> dict[str, Any]:
        from distill.schemas import prompt_id

        instruction = instruction_of(row["instruction"])
        pid = prompt_id(instruction)
        c = self.config
        pool = list(dict.fromkeys(s.model for s in c.models))
        models = rng_for(c.seed, "models", pid).sample(pool, c.completions_per_prompt)
        completions = await asyncio.gather(*(self.complete(instruction, pid, m, row.get("source")) for m in models))
        responses = [x["response"] for x in completions]
        k = len(responses)
        references = row.get("references")
        orders = {aspect: rng_for(c.seed, "order", pid, aspect).sample(range(k), k) for aspect in ASPECTS}
        jobs = [self.rate(a, instruction, responses, orders[a], pid, references) for a in ASPECTS]
        if c.debias == "swap":
            jobs += [self.rate(a, instruction, responses, orders[a][::-1], pid, references) for a in ASPECTS]
        if c.critique:
            jobs += [self.critique(instruction, x, pid, i) for i, x in enumerate(completions)]
        results = await asyncio.gather(*jobs)
        aspects = dict(zip(ASPECTS, results[: len(ASPECTS)]))
        record = {"prompt": instruction, "prompt_id": pid, "source": row.get("source"), "completions": completions,
                  "aspects": aspects}
        if references:
            record["references"] = references
        if c.debias == "swap":
            record["swapped"] = dict(zip(ASPECTS, results[len(ASPECTS): 2 * len(ASPECTS)]))
        if c.critique:
            record["critiques"] = results[-k:]
        return record


def _rating(rating: Rating) -> dict[str, Any]:
    return {"rating": rating.rating, "na": rating.na, "rationale": rating.rationale, "type": rating.type}


# -- scores and binarization -----------------------------------------------------------------


def aspect_ratings(record: dict[str, Any], aspect: str) -> list[float | None]:
    """Each completion's rating on one aspect; with --debias swap, the mean of both orders."""
    passes = [record["aspects"][aspect]] + ([record["swapped"][aspect]] if "swapped" in record else [])
    values = []
    for index in range(len(record["completions"])):
        found = [p["ratings"][index]["rating"] for p in passes if p["ratings"][index] and p["ratings"][index]["rating"] is not None]
        values.append(sum(found) / len(found) if found else None)
    return values


def scores(record: dict[str, Any], score: str) -> list[float | None]:
    """The score binarization ranks by: the mean of the aspect ratings (N/A and unparsed
    left out), the critique's overall score, or one aspect's rating."""
    if score == "overall":
        return [c["overall_score"] for c in record["critiques"]] if "critiques" in record else [None] * len(record["completions"])
    if score in ASPECTS:
        return aspect_ratings(record, score)
    per_aspect = [aspect_ratings(record, aspect) for aspect in ASPECTS]
    means = []
    for values in zip(*per_aspect):
        rated = [v for v in values if v is not None]
        means.append(sum(rated) / len(rated) if rated else None)
    return means


def binarize(record: dict[str, Any], score: str, rejected: str, keep_ties: bool, seed: int) -> tuple[dict | None, str | None]:
    """(a preference row, None) or (None, why it was dropped).

    As ultrafeedback_binarized was built: chosen is the best-scored answer (the first of those
    tied for best), rejected one of the other rated answers at random, even one that ties with
    chosen. Without keep_ties, rejected is one of the lower-scored answers (the Zephyr paper's
    "random lower scoring" response), and a prompt whose answers all tie gives no pair."""
    values = scores(record, score)
    rated = [i for i, v in enumerate(values) if v is not None]
    if len(rated) < 2:
        return None, "unrated"
    best = max(values[i] for i in rated)
    chosen = min(i for i in rated if values[i] == best)  # ties for best: the first completion
    others = [i for i in rated if i != chosen and (keep_ties or values[i] < best)]
    if not others:
        return None, "tie"
    if rejected == "lowest":
        worst = min(values[i] for i in others)
        other = min(i for i in others if values[i] == worst)
    else:
        other = rng_for(seed, "rejected", record["prompt_id"]).choice(others)
    user = {"role": "user", "content": record["prompt"]}
    conversation = [[user, {"role": "assistant", "content": record["completions"][i]["response"]}] for i in (chosen, other)]
    return {
        "prompt": record["prompt"],
        "prompt_id": record["prompt_id"],
        "chosen": conversation[0],
        "rejected": conversation[1],
        "messages": conversation[0],
        "score_chosen": float(values[chosen]),
        "score_rejected": float(values[other]),
        "chosen_model": record["completions"][chosen]["model"],
        "rejected_model": record["completions"][other]["model"],
    }, None


def completion_rows(record: dict[str, Any], score: str) -> list[dict[str, Any]]:
    """The companion config: one row per completion with its model, principle, order and ratings."""
    values = scores(record, score)
    rows = []
    for index, completion in enumerate(record["completions"]):
        row = {"prompt_id": record["prompt_id"], "prompt": record["prompt"], "source": record.get("source"), **completion,
               "score": values[index]}
        for aspect in ASPECTS:
            result = record["aspects"][aspect]
            rating = result["ratings"][index] or {}
            row[f"{aspect}_position"] = result["order"].index(index) + 1
            row[f"{aspect}_rating"] = rating.get("rating")
            row[f"{aspect}_rationale"] = rating.get("rationale")
            row[f"{aspect}_type"] = rating.get("type")
            if "swapped" in record:
                swapped = record["swapped"][aspect]["ratings"][index] or {}
                row[f"{aspect}_rating_swapped"] = swapped.get("rating")
        if "critiques" in record:
            row["overall_score"] = record["critiques"][index]["overall_score"]
            row["critique"] = record["critiques"][index]["feedback"]
        rows.append(row)
    return rows


def position_bias(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean rating by the position an answer was shown in, and how often the swapped
    order picks the same best answer, so the judge's position bias is visible."""
    by_position: dict[int, list[float]] = defaultdict(list)
    agree = total = 0
    for record in records:
        passes = [record["aspects"]] + ([record["swapped"]] if "swapped" in record else [])
        for aspects in passes:
            for result in aspects.values():
                for position, index in enumerate(result["order"], start=1):
                    rating = result["ratings"][index]
                    if rating and rating["rating"] is not None:
                        by_position[position].append(rating["rating"])
        for aspect in ASPECTS if "swapped" in record else ():
            first = record["aspects"][aspect]["ratings"]
            second = record["swapped"][aspect]["ratings"]
            if all(r and r["rating"] is not None for r in first + second):
                total += 1
                agree += _best(first) == _best(second)
    result = {"mean_rating_by_position": {str(p): round(statistics.fmean(v), 3) for p, v in sorted(by_position.items())}}
    if total:
        result["swap_agreement"] = round(agree / total, 3)
        result["swap_pairs"] = total
    return result


def _best(ratings: list[dict[str, Any]]) -> set[int]:
    top = max(r["rating"] for r in ratings)
    return {i for i, r in enumerate(ratings) if r["rating"] == top}


def build_dataset(records: list[dict[str, Any]], config: UltraFeedbackConfig) -> Built:
    from datasets import Value

    from distill.schemas import PREFERENCE, with_provenance

    pairs, dropped = [], {"unrated": 0, "tie": 0}
    for record in records:
        row, why = binarize(record, config.score, config.rejected, config.keep_ties, config.seed)
        if row:
            pairs.append(row)
        else:
            dropped[why] += 1
    train, test = train_test_split(pairs, config.test_size, config.seed) if pairs else ([], [])
    # As in ultrafeedback_binarized, the *_sft splits hold the same rows, for SFT on `messages`
    # (the chosen conversation); every split of a config has the same columns.
    splits = {"train_prefs": train, "train_sft": train}
    if test:
        splits.update(test_prefs=test, test_sft=test)
    prefs = with_provenance(PREFERENCE, chosen_model=Value("string"), rejected_model=Value("string"))
    configs = hub_layout(DatasetConfig(DEFAULT_CONFIG, prefs, splits))  # + train_gen/test_gen, the `trl` config
    completions = [row for record in records for row in completion_rows(record, config.score)]
    if completions:
        configs.append(DatasetConfig("completions", None, {"train": completions}))
    notes = {"position_bias": position_bias(records), "judge_unparsed": _unparsed(records),
             "binarization": {"score": config.score, "rejected": config.rejected, "keep_ties": config.keep_ties}}
    filters = [{"name": "fewer than two rated completions", "removed": dropped["unrated"]},
               {"name": "no answer scored below the best (--drop-ties)", "removed": dropped["tie"]}]
    return Built(configs, filters, notes, card_notes=[binarization_rule(config), *layout_notes(configs)])


def _unparsed(records: list[dict[str, Any]]) -> int:
    passes = [r["aspects"] for r in records] + [r["swapped"] for r in records if "swapped" in r]
    return sum("raw" in result for aspects in passes for result in aspects.values())


def binarization_rule(config: UltraFeedbackConfig) -> str:
    """The card's sentence saying which rule made the pairs."""
    rule = {"mean": "the mean of its aspect ratings, N/A left out (`--score mean`: the rule the Zephyr paper states)",
            "overall": "the critique's overall score (`--score overall`: the rule of the script that built "
                       "HuggingFaceH4/ultrafeedback_binarized)"}.get(config.score, f"its {config.score} rating (`--score {config.score}`)")
    other = "a random other answer (seeded)" if config.rejected == "random" else "the lowest-scored answer"
    ties = ("rejected may score as high as chosen, as in ultrafeedback_binarized" if config.keep_ties else
            "rejected scores below chosen (`--drop-ties`), and a prompt whose answers all tie gives no pair")
    return f"Binarization: each answer is scored by {rule}; chosen is the best, rejected {other}; {ties}."


def load_prompts(config: UltraFeedbackConfig) -> list[tuple[str, dict[str, Any]]]:
    rows = load_input(config)
    column = pick_column(rows, config.input, config.column, PROMPT_COLUMNS)
    source_column = _optional_column(rows, config, config.source_column, SOURCE_COLUMN)
    correct_column = _optional_column(rows, config, config.reference_column, REFERENCE_COLUMN)
    incorrect_column = _optional_column(rows, config, config.incorrect_column, INCORRECT_COLUMN)
    items = []
    for index, row in enumerate(rows):
        check_prompt(row.get(column), config.input, index, column)
        if isinstance(row[column], list) and not any(m["role"] == "user" for m in row[column]):
            raise InputError(f"input {config.input}, row {index + 1}: a chat with no user turn")
        source = row.get(source_column) if source_column else None
        item = {"instruction": row[column], "source": None if source is None else str(source)}
        references = {"correct": _answers(row.get(correct_column) if correct_column else None),
                      "incorrect": _answers(row.get(incorrect_column) if incorrect_column else None),
                      "false_premise": item["source"] in config.false_premise_sources}
        if any(references.values()):  # (an item without any keeps the hash it always had: resumable)
            item["references"] = references
        items.append((str(index), item))
    return items


def _optional_column(rows: list[dict[str, Any]], config: UltraFeedbackConfig, named: str | None, usual: str) -> str | None:
    """The column named (which must exist), else the usual one where the input has it, else none."""
    if named is not None:
        return pick_column(rows, config.input, named, ())
    return usual if rows and usual in rows[0] else None


def _answers(value: Any) -> list[str]:
    """Reference answers: a string or a list of them; openbmb/UltraFeedback writes "None" for none."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip() not in ("", "None")]


def resolved(config: UltraFeedbackConfig) -> UltraFeedbackConfig:
    """The config as it runs: on a backend that needs --model, the judge on it is that model."""
    from distill.backends import choose_backend

    if config.model is None and choose_backend(config) in ("openai", "vllm"):
        if config.judge is None or config.judge_spec().own_backend:
            raise ConfigError("name the judge on the run's backend: --judge MODEL (or --model)")
        config = config.model_copy(update={"model": config.judge.model})
    return config


def models_of(config: UltraFeedbackConfig) -> list:
    """The models the run asks: the pool and the judge."""
    return [*config.models, config.judge_spec()]


def run(config: UltraFeedbackConfig) -> Outcome:
    config = resolved(config)
    items = load_prompts(config)

    def make_work(client: Client):
        return UltraFeedback(config, client)

    def build(records: list[dict[str, Any]]) -> Built:
        return build_dataset(records, config)

    return execute(METHOD, config, items, make_work, build, models_of(config))


def rebinarize(run_dir: Path, **changes: Any) -> Built:
    """`distill binarize`: binarize a finished run again with other options, asking no model.

    It writes into the run it is given (wherever that run was made or copied from), and its
    options reach config.yaml only once the new dataset is written."""
    run_dir = Path(run_dir)
    stored = RunDir(run_dir).stored_config()
    if stored is None:
        raise InputError(f"{run_dir} is not a run directory (no config.yaml)")
    if stored.get("command") != "rate ultrafeedback":
        raise InputError(f"{run_dir} is a run of '{stored.get('command')}', not 'rate ultrafeedback'")
    settings = stored_settings(stored)
    config = validate_config(UltraFeedbackConfig, {**settings, **{k: v for k, v in changes.items() if v is not None},
                                                   "output": run_dir})
    run = RunDir.open("rate ultrafeedback", config, save_config=False)
    try:
        records = sorted(run.records(), key=lambda r: int(r["id"]))
        if not records:
            raise InputError(f"{run_dir} has no rated prompts yet: run `distill rate ultrafeedback` first")
        built = build_dataset([{k: v for k, v in r.items() if k != INPUT_HASH} for r in records], config)
        stats = run.read_stats()
        models = list(dict.fromkeys([*(s.model for s in config.models), *(stats.get("models") or [])]))
        export(run, built, config, METHOD.card, models)
        run.save_config()
        return built
    finally:
        run.close()


METHOD = GenerationMethod(
    command="rate ultrafeedback",
    config=UltraFeedbackConfig,
    run=run,
    help="UltraFeedback (Cui et al. 2023): completions from a model pool, judge ratings on four aspects, and "
         "binarized chosen/rejected pairs for DPO, as in ultrafeedback_binarized.\n\n"
         "Writes train_prefs/test_prefs and train_sft/test_sft splits, and a `completions` config with every "
         "completion, model, principle, order and rating.",
    title="UltraFeedback preferences",
    paper="Cui et al. 2023, UltraFeedback: Boosting Language Models with Scaled AI Feedback",
    paper_url="https://arxiv.org/abs/2310.01377",
    description=(
        "Each prompt was answered by several models of a pool, each answer under a principle of its own "
        "given as the system prompt (helpfulness, honesty, truthfulness or verbalized calibration, drawn "
        "from the mix of the prompt's source as in UltraFeedback). A judge model "
        "rated all the answers of a prompt together on four aspects (instruction following, honesty, "
        "truthfulness, helpfulness), 1 to 5 with a rationale, the answers shown in a seeded random "
        "order. The best-scored answer became `chosen` and another one `rejected`, as in "
        "HuggingFaceH4/ultrafeedback_binarized, which trained Zephyr-7B."
    ),
    made="prompts rated",
    next_step="look at the pairs with `distill stats {out}`; train on them with `distill train dpo`; "
              "binarize again with `distill binarize {out}`",
    schema="PREFERENCE",
    prompts=PROMPTS,
)
