"""UltraFeedback (Cui et al. 2023) and the Zephyr binarization.

For every prompt:
  1. sample `completions_per_prompt` distinct models of the pool, and a principle
     (helpfulness, honesty, truthfulness or verbalized calibration) as the system prompt;
  2. each model answers;
  3. a judge rates all the answers together, once per aspect (instruction following,
     honesty, truthfulness, helpfulness), 1-5 with a rationale, the answers shown in a
     seeded order that is recorded; with --debias swap, a second time in reverse order;
  4. optionally (--critique) the judge gives each answer an overall score 1-10 and feedback.
Binarization: chosen = the best-scored answer, rejected = a seeded random other one (or the
lowest); ties are dropped unless --keep-ties. `distill binarize` redoes it from the records.
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
from distill.export import DEFAULT_CONFIG, Built, DatasetConfig, train_test_split
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
DEFAULT_PRINCIPLES = {"helpfulness": 0.6, "honesty": 0.2, "truthfulness": 0.1, "verbalized_calibration": 0.1}
PROMPT_COLUMNS = ("prompt", "instruction", "messages", "question", "text")


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
        description="Weights of the system-prompt principles, e.g. helpfulness=0.6,honesty=0.2,truthfulness=0.1,"
        "verbalized_calibration=0.1.")
    source_column: str | None = Field(None, description="Column naming each prompt's source, for principles_by_source "
                                      "in --config.")
    principles_by_source: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Principle weights per source (a --config mapping of source to weights).",
        json_schema_extra=cli(yaml_only=True))
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
    judge_max_new_tokens: int = Field(1024, ge=16, description="Most tokens per judge reply.")
    structured: bool = Field(True, description="Ask for JSON-schema output where the backend supports it.")
    parse_retries: int = Field(2, ge=0, le=10, description="New judge samples when a reply cannot be parsed; then its "
                               "ratings are kept as null.")
    critique: bool = Field(False, description="Also an overall score 1-10 with feedback per completion.")
    debias: Literal["none", "swap"] = Field("none", description="swap: rate again in reverse order and average "
                                            "(position bias).")
    score: str = Field("mean", description="What chosen/rejected rank by: mean (of the aspects), overall (needs "
                       "--critique) or one aspect (instruction_following, honesty, truthfulness, helpfulness).")
    rejected: Literal["random", "lowest"] = Field("random", description="Rejected: a seeded random other completion, or "
                                                  "the lowest.")
    keep_ties: bool = Field(False, description="Keep pairs whose chosen and rejected scores tie.",
                            json_schema_extra=cli(off="drop-ties"))

    @field_validator("models", mode="before")
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
        return {str(source): principle_weights(weights) for source, weights in (value or {}).items()}

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

    def request(self, model: str, messages: list[Message], temperature: float, max_tokens: int, *salt,
                sample: int = 0, schema: dict | None = None) -> Request:
        params = SamplingParams(temperature, self.config.top_p, max_tokens, seed=derive_seed(self.config.seed, *salt, sample))
        return Request.chat(model, messages, params, sample=sample, json_schema=schema if self.config.structured else None)

    # -- 1. completions ------------------------------------------------------------------------

    def principle(self, pid: str, source: str | None) -> tuple[str, str]:
        weights = self.config.principles_by_source.get(source or "", self.config.principles)
        rng = rng_for(self.config.seed, "principle", pid)
        name = rng.choices(list(weights), weights=list(weights.values()))[0]
        return name, rng.choice(self.phrasings[name])

    async def complete(self, instruction: str, pid: str, model: str, principle: str, system: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": instruction}]
        c = self.config
        reply = await self.client.complete(self.request(model, messages, c.temperature, c.max_new_tokens, "answer", pid, model))
        return {"model": model, "principle": principle, "system_prompt": system, "response": reply.text,
                "finish_reason": reply.finish_reason}

    # -- 2. ratings ----------------------------------------------------------------------------

    async def judge_until_parsed(self, prompt: str, schema: dict, parse, *salt) -> tuple[Any, str, int]:
        """Ask the judge until `parse` reads the reply (None: unreadable), at most
        1 + parse_retries times. Returns (parsed or None, the last reply, attempts).

        Each retry is a new sample (never the cached reply) at some temperature, or a
        deterministic judge would repeat itself. A reply cut off by the token limit may read
        as complete ("score: 1" of "10"), so it counts as unreadable."""
        text = ""
        for attempt in range(self.config.parse_retries + 1):
            temperature = self.config.judge_temperature if attempt == 0 else max(self.config.judge_temperature, 0.7)
            request = self.request(self.judge, [{"role": "user", "content": prompt}], temperature,
                                   self.config.judge_max_new_tokens, *salt, sample=attempt, schema=schema)
            reply = await self.client.complete(request)
            text = reply.text
            parsed = parse(text) if reply.finish_reason != "length" else None
            if parsed is not None:
                return parsed, text, attempt + 1
        return None, text, self.config.parse_retries + 1

    async def rate(self, aspect: str, instruction: str, responses: list[str], order: list[int], pid: str) -> dict[str, Any]:
        """One judge call rating all responses in `order`; an unreadable reply is kept raw
        with null ratings."""
        spec = ASPECTS[aspect]
        n, allow_na, types = len(order), spec["na"], spec.get("types")
        prompt = render(PROMPTS, f"aspects/{aspect}.j2", instruction=instruction, texts=[responses[i] for i in order], types=types or [])
        parsed, text, attempts = await self.judge_until_parsed(
            prompt, aspect_schema(n, allow_na, types), lambda reply: parse_aspect_reply(reply, n, allow_na, types),
            "judge", aspect, pid, tuple(order),
        )
        if parsed is None:
            return {"order": order, "ratings": [None] * n, "attempts": attempts, "raw": text}
        by_response: list[dict | None] = [None] * n
        for position, rating in enumerate(parsed):
            by_response[order[position]] = _rating(rating)
        return {"order": order, "ratings": by_response, "attempts": attempts}

    async def critique(self, instruction: str, response: str, pid: str, index: int) -> dict[str, Any]:
        prompt = render(PROMPTS, "critique.j2", instruction=instruction, answer=response)

        def parse(reply: str):
            score, feedback = parse_critique_reply(reply)
            return None if score is None else (score, feedback)

        parsed, text, _ = await self.judge_until_parsed(prompt, critique_schema(), parse, "critique", pid, index)
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
        principle, system = self.principle(pid, row.get("source"))
        completions = await asyncio.gather(*(self.complete(instruction, pid, m, principle, system) for m in models))
        responses = [x["response"] for x in completions]
        k = len(responses)
        orders = {aspect: rng_for(c.seed, "order", pid, aspect).sample(range(k), k) for aspect in ASPECTS}
        jobs = [self.rate(a, instruction, responses, orders[a], pid) for a in ASPECTS]
        if c.debias == "swap":
            jobs += [self.rate(a, instruction, responses, orders[a][::-1], pid) for a in ASPECTS]
        if c.critique:
            jobs += [self.critique(instruction, r, pid, i) for i, r in enumerate(responses)]
        results = await asyncio.gather(*jobs)
        aspects = dict(zip(ASPECTS, results[: len(ASPECTS)]))
        record = {"prompt": instruction, "prompt_id": pid, "source": row.get("source"), "principle": principle,
                  "completions": completions, "aspects": aspects}
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
    """(a preference row, None) or (None, why it was dropped)."""
    values = scores(record, score)
    rated = [i for i, v in enumerate(values) if v is not None]
    if len(rated) < 2:
        return None, "unrated"
    best = max(values[i] for i in rated)
    chosen = min(i for i in rated if values[i] == best)  # ties for best: the first completion
    others = [i for i in rated if i != chosen]
    if rejected == "lowest":
        worst = min(values[i] for i in others)
        other = min(i for i in others if values[i] == worst)
    else:
        other = rng_for(seed, "rejected", record["prompt_id"]).choice(others)
    if values[other] == values[chosen] and not keep_ties:
        return None, "tie"
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
    configs = [DatasetConfig(DEFAULT_CONFIG, prefs, splits)]
    completions = [row for record in records for row in completion_rows(record, config.score)]
    if completions:
        configs.append(DatasetConfig("completions", None, {"train": completions}))
    notes = {"position_bias": position_bias(records), "judge_unparsed": _unparsed(records),
             "binarization": {"score": config.score, "rejected": config.rejected, "keep_ties": config.keep_ties}}
    filters = [{"name": "fewer than two rated completions", "removed": dropped["unrated"]},
               {"name": "ties between chosen and rejected", "removed": dropped["tie"]}]
    return Built(configs, filters, notes, card_notes=[binarization_rule(config)])


def _unparsed(records: list[dict[str, Any]]) -> int:
    passes = [r["aspects"] for r in records] + [r["swapped"] for r in records if "swapped" in r]
    return sum("raw" in result for aspects in passes for result in aspects.values())


def binarization_rule(config: UltraFeedbackConfig) -> str:
    rule = {"mean": "the mean of its aspect ratings", "overall": "the critique's overall score"}.get(
        config.score, f"its {config.score} rating")
    other = "a random other answer (seeded)" if config.rejected == "random" else "the lowest-scored answer"
    ties = "kept" if config.keep_ties else "dropped"
    return f"Binarization: each answer is scored by {rule}; chosen is the best, rejected {other}; pairs whose scores tie are {ties}."


def load_prompts(config: UltraFeedbackConfig) -> list[tuple[str, dict[str, Any]]]:
    rows = load_input(config)
    column = pick_column(rows, config.input, config.column, PROMPT_COLUMNS)
    if config.source_column is not None:
        pick_column(rows, config.input, config.source_column, ())
    items = []
    for index, row in enumerate(rows):
        check_prompt(row.get(column), config.input, index, column)
        if isinstance(row[column], list) and not any(m["role"] == "user" for m in row[column]):
            raise InputError(f"input {config.input}, row {index + 1}: a chat with no user turn")
        source = row.get(config.source_column) if config.source_column else None
        items.append((str(index), {"instruction": row[column], "source": None if source is None else str(source)}))
    return items


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
        "Each prompt was answered by several models of a pool, each under a principle given as the "
        "system prompt (helpfulness, honesty, truthfulness or verbalized calibration). A judge model "
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
