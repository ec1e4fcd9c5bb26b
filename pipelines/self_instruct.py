"""Self-Instruct (Wang et al. 2023): a model bootstraps instructions from a small seed set.

    pool <- the human-written seed tasks
    repeat, a round of `batch_size` (5) prompts at a time:
        each prompt shows 8 tasks (6 from the seeds, 2 from what the model already wrote)
        and asks the model to continue the list up to task 15 (7 new tasks);
        a reply cut off by the token limit is dropped whole;
        a new instruction joins the pool if it passes the filters (4 to 150 words, the
        13 words of tasks a text model cannot do, "Write a program", a leading
        punctuation mark or non-ASCII letter) and its ROUGE-L with every instruction in
        the pool is at most 0.7
    for each new instruction:
        ask whether it is a classification task (few-shot, Yes or No);
        generate instances: input first, or output (class label) first for classification;
        drop empty outputs, outputs equal to the input, inputs or outputs ending in ":"
        (cut short), the whole task if one input was given different outputs, and
        repeats; keep at most 5 of the rest, drawn at random (seeded)

Every number above is the original code's default (yizhongw/self-instruct); the
fidelity table in docs/fidelity.md lists each one and the few deliberate differences.

Instruction i is item i: its classification and instances are asked as soon as the
bootstrap has accepted it, while later rounds go on. The bootstrap itself is one
sequence of rounds whose prompts derive from the seed and the round number, and whose
replies are cached, so a resumed run replays it without asking again and accepts the
same instructions in the same order.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from distill.backends import choose_backend
from distill.client import Client
from distill.config import EngineConfig, cli
from distill.embedded import BASE
from distill.errors import InputError, RequestRejected
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.inputs import load_rows, pick_column
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.parsing import list_items
from distill.prompting import render, word_list
from distill.request import Request, Response, SamplingParams
from distill.seeding import derive_seed, rng_for

PROMPTS = "self_instruct"  # the folder of this method's prompts
PromptStyle = Literal["auto", "chat", "completion"]


class SelfInstructConfig(EngineConfig):
    PLAN_FILES: ClassVar[tuple[str, ...]] = ("seeds",)

    num_instructions: int = Field(100, ge=1, description="New instructions to bootstrap.", json_schema_extra=cli("-n"))
    seeds: str | None = Field(None, description="Seed tasks: a file or dataset with an instruction column "
                              "(Self-Instruct's seed_tasks.jsonl works as is).", json_schema_extra=cli(show="25 built in"))
    include_seeds: bool = Field(False, description="Put the seed tasks' own instances in the dataset too.")
    human_per_prompt: int = Field(6, ge=1, description="Seed tasks shown in each bootstrap prompt.")
    machine_per_prompt: int = Field(2, ge=0, description="Model-written tasks shown in each bootstrap prompt.")
    list_length: int = Field(15, ge=2, le=99, description="Number of the last task the model writes: it continues the "
                             "list after the tasks shown and is stopped before the next number.")
    batch_size: int = Field(5, ge=1, description="Bootstrap prompts per round (the pool grows after each round).")
    patience: int = Field(10, ge=1, description="Stop bootstrapping after this many rounds in a row without a new "
                          "instruction.")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="Drop a new instruction whose ROUGE-L with an "
                                   "instruction of the pool (seeds included) is above this.")
    min_words: int = Field(4, ge=1, description="Shortest instruction kept, in words.")
    max_words: int = Field(150, ge=1, description="Longest instruction kept, in words.")
    unsuited_keywords: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "unsuited_keywords.txt"),
        description="Drop instructions with this word; repeatable, replaces the built-in list.",
        json_schema_extra=cli(show="the original's 13: image, graph, file, map, draw, plot, go to, ..."))
    extra_unsuited_keywords: bool = Field(False, description="Also drop instructions with photo, video, audio, music, "
                                          "flowchart or diagram (Alpaca's additions and distill's).")
    max_instances: int = Field(5, ge=1, description="Most instances kept per instruction, drawn at random (seeded).")
    drop_demo_copies: bool = Field(True, description="Drop instances that copy an example of distill's instance "
                                   "prompts (not in the original: small models copy them).")
    prompt_style: PromptStyle = Field(
        "auto", description="completion: plain prompts a base model continues (as the paper did with GPT-3); chat: one "
        "user message; auto: completion on llamacpp, else chat.")
    temperature: float = Field(0.7, ge=0, le=2, description="Bootstrap sampling temperature.")
    top_p: float = Field(0.5, gt=0, le=1, description="Bootstrap nucleus sampling.")
    presence_penalty: float | None = Field(2.0, ge=-2, le=2, description="Bootstrap presence penalty, as the paper.")
    max_new_tokens: int = Field(1024, ge=16, description="Most tokens per bootstrap reply.")
    instance_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of the instances.")
    instance_presence_penalty: float | None = Field(1.5, ge=-2, le=2, description="Presence penalty of the instances.")
    instance_max_new_tokens: int = Field(350, ge=16, description="Most tokens per reply with instances, input first.")
    output_first_max_new_tokens: int = Field(300, ge=16, description="Most tokens per reply with instances of a "
                                             "classification task (output first: its prompt is longer).")

    @field_validator("shard")
    @classmethod
    def _one_bootstrap(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("the bootstrap is one sequence of rounds and cannot be split over machines")
        return value

    @model_validator(mode="after")
    def _prompt_fits_the_list(self):
        if self.human_per_prompt + self.machine_per_prompt >= self.list_length:
            raise ValueError(
                f"--human-per-prompt + --machine-per-prompt ({self.human_per_prompt + self.machine_per_prompt}) "
                f"must be below --list-length ({self.list_length}) to leave room for new tasks"
            )
        if self.min_words > self.max_words:
            raise ValueError("--min-words must not exceed --max-words")
        return self

    def keywords(self) -> list[str]:
        """The words that make an instruction unsuited: the list, and the extra words if asked."""
        extra = word_list(PROMPTS, "unsuited_keywords_extra.txt") if self.extra_unsuited_keywords else []
        return [*self.unsuited_keywords, *extra]

    def style(self) -> Literal["chat", "completion"]:
        if self.prompt_style != "auto":
            return self.prompt_style
        return "completion" if choose_backend(self) == "llamacpp" else "chat"


@dataclass(frozen=True)
class SeedTask:
    instruction: str
    instances: tuple[tuple[str, str], ...] = ()
    is_classification: bool = False


# -- filters of new instructions ---------------------------------------------------------------


def tidy(instruction: str) -> str:
    """One line, first letter upper-cased, as the original post-processes a new instruction.
    (It used str.capitalize, which also lower-cases every other letter, names and
    acronyms included; only the first letter is changed here.)"""
    instruction = " ".join(instruction.split())
    return instruction[:1].upper() + instruction[1:]


def unsuited(instruction: str, config: SelfInstructConfig, keywords: re.Pattern | None) -> str | None:
    """Why Self-Instruct's heuristics drop this instruction, or None to keep it."""
    words = len(instruction.split())
    if words < config.min_words:
        return "too-short"
    if words > config.max_words:
        return "too-long"
    if keywords is not None and keywords.search(instruction):
        return "unsuited-keyword"
    if instruction.lower().startswith("write a program"):
        return "write-a-program"  # ambiguous: asked for code, or for what the code would print?
    if instruction[0] in string.punctuation:
        return "starts-with-punctuation"
    if not instruction[0].isascii():
        return "starts-non-ascii"
    return None


def novelty_pool(texts: list[str], threshold: float):
    """A ROUGE-L pool with the originals' rule: a text is similar to the pool when its
    score with an entry is above `threshold` (Self-Instruct and Alpaca: `> 0.7`)."""
    from distill.filters.rouge import NoveltyPool  # numpy, only when a bootstrap runs

    return NoveltyPool(texts, threshold=threshold, strict=True)


def keyword_pattern(keywords: list[str]) -> re.Pattern | None:
    if not keywords:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)


# -- parsing replies ---------------------------------------------------------------------------

_EXAMPLE = re.compile(r"(?im)^[ \t]*example[ \t]*\d+[ \t]*[:.]?[ \t]*")
_INPUT = re.compile(r"(?im)^[ \t]*input[ \t]*:[ \t]*")
_OUTPUT = re.compile(r"(?im)^[ \t]*output[ \t]*:[ \t]*")
_LABEL = re.compile(r"(?im)^[ \t]*class[ \t]*label[ \t]*:[ \t]*")
_NO_INPUT = {"", "none", "n/a", "na", "-", "no input", "null", "(none)", "<noinput>"}


def _input(text: str) -> str:
    text = text.strip()
    return "" if text.casefold().rstrip(".") in _NO_INPUT else text


def parse_input_first(text: str) -> list[tuple[str, str]]:
    """(input, output) pairs from "Example N / Input: / Output:" blocks, or a lone "Output:"."""
    instances = []
    for chunk in _EXAMPLE.split(text):
        output = _OUTPUT.search(chunk)
        if not output:
            continue
        given = _INPUT.search(chunk, 0, output.start())
        instances.append((_input(chunk[given.end():output.start()]) if given else "", chunk[output.end():].strip()))
    return instances


def parse_output_first(text: str) -> list[tuple[str, str]]:
    """(input, label) pairs from "Class label: X / Input: ..." blocks."""
    instances = []
    for chunk in _LABEL.split(text)[1:]:
        label, _, rest = chunk.partition("\n")
        given = _INPUT.search(rest)
        instances.append((_input(rest[given.end():] if given else rest), label.strip()))
    return instances


def parse_classification(text: str) -> bool | None:
    answer = re.search(r"\b(yes|no)\b", text.strip().split("\n", 1)[0], re.IGNORECASE)
    return None if answer is None else answer.group(1).lower() == "yes"


@functools.cache
def demonstration_texts(template: str) -> frozenset[str]:
    """The inputs and outputs the instance prompt shows as its examples (of three words or
    more: a class label or a short number may well recur), casefolded."""
    shown = render(PROMPTS, template, chat=False, instruction="")
    parse = parse_output_first if template == "instances_output_first.j2" else parse_input_first
    texts = set()
    for block in re.split(r"^Task:.*$", shown, flags=re.MULTILINE):
        for given, output in parse(block):
            texts.update(t.casefold() for t in (given, output) if len(t.split()) >= 3)
    return frozenset(texts)


def clean_instances(instances: list[tuple[str, str]], limit: int, demonstrations: frozenset[str] = frozenset(),
                    rng: random.Random | None = None) -> tuple[list[tuple[str, str]], Counter]:
    """The original's cleaning, in its order: drop empty outputs, outputs equal to their
    input, and inputs or outputs ending in ":" (cut short); then, if one input was given
    different outputs, the whole task; then repeats; then keep at most `limit`, drawn with
    `rng` (the first ones without). Copies of the prompt's own examples (`demonstrations`,
    casefolded) are distill's addition. The kept instances stay in their order."""
    dropped: Counter = Counter()
    valid = []
    for given, output in instances:
        if not output:
            dropped["empty-output"] += 1
        elif given == output:
            dropped["output-is-input"] += 1
        elif given.endswith(":") or output.endswith(":"):
            dropped["ends-with-colon"] += 1
        elif given.casefold() in demonstrations or output.casefold() in demonstrations:
            dropped["copies-demonstration"] += 1
        else:
            valid.append((given, output))
    outputs_by_input: dict[str, set[str]] = {}
    for given, output in valid:
        if given:
            outputs_by_input.setdefault(given, set()).add(output)
    if any(len(outputs) > 1 for outputs in outputs_by_input.values()):
        dropped["conflicting-outputs"] += len(valid)  # the task's instances disagree: none is trusted
        return [], +dropped
    kept = list(dict.fromkeys(valid))
    dropped["duplicate"] += len(valid) - len(kept)
    if len(kept) > limit:
        dropped["over-limit"] += len(kept) - limit
        chosen = sorted(rng.sample(range(len(kept)), limit)) if rng else range(limit)
        kept = [kept[i] for i in chosen]
    return kept, +dropped


# -- the bootstrap -----------------------------------------------------------------------------


class Bootstrap:
    """The growing pool of instructions, extended a round at a time as items need them."""

    def __init__(self, config: SelfInstructConfig, seeds: list[SeedTask], pipeline: SelfInstruct):
        self.config = config
        self.pipeline = pipeline
        self.seeds = [seed.instruction for seed in seeds]
        self.pool = novelty_pool(self.seeds, config.rouge_threshold)
        self.keywords = keyword_pattern(config.keywords())
        self.machine: list[tuple[str, int, dict]] = []  # instruction, round, the counters when it was accepted
        self.dropped: Counter = Counter()
        self.rounds = 0
        self.idle_rounds = 0
        self.lock = asyncio.Lock()

    async def instruction(self, index: int) -> tuple[str, int, dict] | None:
        """The index-th machine instruction, running rounds until it exists (None: the model gave out)."""
        async with self.lock:
            while len(self.machine) <= index and self.idle_rounds < self.config.patience:
                await self.round()
        return self.machine[index] if index < len(self.machine) else None

    def shown_tasks(self, round_: int, prompt: int) -> list[str]:
        """The tasks one prompt shows: some written by the model so far, the rest seeds, shuffled."""
        rng = rng_for(self.config.seed, "bootstrap", round_, prompt)
        picked = rng.sample(range(len(self.machine)), min(self.config.machine_per_prompt, len(self.machine)))
        tasks = [self.machine[i][0] for i in picked]  # indices: no copy of a pool of many thousands
        count = self.config.human_per_prompt + self.config.machine_per_prompt - len(tasks)
        tasks += rng.sample(self.seeds, min(count, len(self.seeds)))
        rng.shuffle(tasks)
        return tasks

    async def round(self) -> None:
        """One round: every prompt is asked at once; the pool changes only once all have answered."""
        round_ = self.rounds
        shown = [self.shown_tasks(round_, j) for j in range(self.config.batch_size)]
        replies = await asyncio.gather(*(self.pipeline.new_tasks(tasks, round_, j) for j, tasks in enumerate(shown)),
                                       return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, RequestRejected):
                raise reply
        accepted = 0
        for tasks, reply in zip(shown, replies):
            if isinstance(reply, RequestRejected):
                self.dropped["request-rejected"] += 1
                continue
            if reply.finish_reason == "length":  # as the original: the whole reply, not just its last task
                self.dropped["cut-off-reply"] += 1
                continue
            for candidate in map(tidy, self.pipeline.read_new_tasks(reply, len(tasks))):
                reason = unsuited(candidate, self.config, self.keywords)
                if reason is None and not self.pool.is_novel(candidate):
                    reason = "similar"
                if reason:
                    self.dropped[reason] += 1
                    continue
                self.pool.add(candidate)
                accepted += 1
                self.machine.append((candidate, round_, {"rounds": round_ + 1, "dropped": dict(self.dropped)}))
        self.rounds += 1
        self.idle_rounds = 0 if accepted else self.idle_rounds + 1


# -- the pipeline ------------------------------------------------------------------------------


class SelfInstruct:
    def __init__(self, config: SelfInstructConfig, client: Client, seeds: list[SeedTask]):
        self.config = config
        self.client = client
        self.model = client.model
        self.style = config.style()
        self.bootstrap = Bootstrap(config, seeds, self)

    async def ask(self, template: str, values: dict, params: SamplingParams, stop: tuple[str, ...] = (),
                  new_line: bool = False) -> Response:
        """A prompt in the run's style: plain text the model continues (on a new line if
        `new_line`, with `stop`), or one user message."""
        if self.style == "completion":
            prompt = render(PROMPTS, template, chat=False, **values) + ("\n" if new_line else "")
            return await self.client.complete(Request.text(self.model, prompt, replace(params, stop=stop)))
        prompt = render(PROMPTS, template, chat=True, **values)
        return await self.client.complete(Request.chat(self.model, [{"role": "user", "content": prompt}], params))

    async def new_tasks(self, tasks: list[str], round_: int, prompt: int) -> Response:
        config = self.config
        tasks = [" ".join(task.split()).rstrip(":") for task in tasks]  # one line each, no dangling colon
        after = config.list_length + 1  # the model is to stop before this number
        params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens,
                                seed=derive_seed(config.seed, "bootstrap", round_, prompt),
                                presence_penalty=config.presence_penalty)
        return await self.ask("bootstrap.j2", {"tasks": tasks, "new": config.list_length - len(tasks)}, params,
                              stop=("\n\n", f"\n{after}", f"{after}.", f"{after} ."))

    def read_new_tasks(self, reply: Response, shown: int) -> list[str]:
        if self.style == "completion":  # the prompt ended with the number of the first new task
            return list_items(f"{shown + 1}. {reply.text.strip()}", first=shown + 1)
        items = list_items(reply.text, first=shown + 1)
        return items or list_items(reply.text)  # a chat model may number its tasks from 1

    async def task(self, item_id: str, index: int) -> dict[str, Any]:
        found = await self.bootstrap.instruction(index)
        if found is None:
            return {"instruction": None, "status": "bootstrap-exhausted", "rounds": self.bootstrap.rounds}
        instruction, round_, counters = found
        # Greedy, 3 tokens, as the original (top_p 1: at temperature 0 it changes nothing).
        reply = await self.ask("classify.j2", {"instruction": instruction},
                               SamplingParams(0.0, 1.0, 3, seed=derive_seed(self.config.seed, "classify", instruction)),
                               stop=("\n", "Task"))
        is_classification = parse_classification(reply.text)
        template = "instances_output_first.j2" if is_classification else "instances_input_first.j2"
        max_tokens = self.config.output_first_max_new_tokens if is_classification else self.config.instance_max_new_tokens
        params = SamplingParams(self.config.instance_temperature, 1.0, max_tokens,
                                seed=derive_seed(self.config.seed, "instances", instruction),
                                presence_penalty=self.config.instance_presence_penalty)
        stop = (f"Example {self.config.max_instances + 1}", "Task:")
        reply = await self.ask(template, {"instruction": instruction}, params, stop=stop, new_line=True)
        parse = parse_output_first if is_classification else parse_input_first
        instances = parse(reply.text)
        if reply.finish_reason == "length" and instances:
            instances = instances[:-1]  # the last one may be cut off
        demonstrations = demonstration_texts(template) if self.config.drop_demo_copies else frozenset()
        kept, dropped = clean_instances(instances, self.config.max_instances, demonstrations,
                                        rng_for(self.config.seed, "keep", instruction))
        return {
            "instruction": instruction,
            "status": "ok" if kept else "no-instances",
            "round": round_,
            "is_classification": bool(is_classification),
            "classification_unclear": is_classification is None,
            "instances": [{"input": given, "output": output} for given, output in kept],
            "instances_dropped": dict(dropped),
            "bootstrap": counters,
            "model": self.model,
        }


# -- seeds, rows, run --------------------------------------------------------------------------


def load_seeds(config: SelfInstructConfig) -> list[SeedTask]:
    """Seed tasks: Self-Instruct's seed_tasks.jsonl shape (instruction, instances, is_classification),
    or any file or dataset with an instruction column."""
    source = config.seeds or "the built-in seed tasks"
    if config.seeds:
        rows = load_rows(config.seeds)
    else:
        import json
        from importlib import resources

        text = resources.files("distill.prompts").joinpath(PROMPTS, "seed_tasks.jsonl").read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not rows:
        raise InputError(f"seed tasks {source} are empty")
    column = pick_column(rows, source, None, ("instruction", "prompt", "text"))
    seeds: dict[str, SeedTask] = {}
    for number, row in enumerate(rows, 1):
        instruction = " ".join(str(row.get(column) or "").split())
        if not instruction:
            continue
        instances = row.get("instances") or ([{"input": row.get("input", ""), "output": row["output"]}] if row.get("output") else [])
        if not isinstance(instances, list) or not all(isinstance(i, dict) and "output" in i for i in instances):
            raise InputError(f"seed tasks {source}, row {number}: instances must be a list of {{input, output}}")
        pairs = tuple((str(i.get("input") or ""), str(i["output"])) for i in instances)
        seeds.setdefault(instruction, SeedTask(instruction, pairs, bool(row.get("is_classification", False))))
    needed = config.human_per_prompt
    if len(seeds) < needed:
        raise InputError(f"seed tasks {source} hold {len(seeds)} distinct instructions; --human-per-prompt needs at least {needed}")
    return list(seeds.values())


def to_rows(instruction: str, instances, is_classification: bool, source: str, model: str | None) -> list[dict[str, Any]]:
    from distill.schemas import prompt_id

    rows = []
    for given, output in instances:
        user = f"{instruction}\n\n{given}" if given else instruction
        rows.append({
            "instruction": instruction, "input": given, "output": output, "is_classification": is_classification,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": output}],
            "prompt_id": prompt_id(instruction), "source": source, "model": model,
        })
    return rows


def build_rows(records: list[dict[str, Any]], seeds: list[SeedTask], config: SelfInstructConfig) -> tuple[list, list, dict]:
    """Rows of every instance kept; the filters' counts; notes on the bootstrap."""
    rows = []
    if config.include_seeds:
        for seed in seeds:
            rows += to_rows(seed.instruction, seed.instances, seed.is_classification, "seed", None)
    statuses = Counter(r["status"] for r in records)
    instances_dropped: Counter = Counter()
    last_bootstrap: dict = {}
    for record in records:
        if record["status"] == "bootstrap-exhausted":
            continue
        instances_dropped.update(record["instances_dropped"])
        last_bootstrap = record["bootstrap"]
        pairs = [(i["input"], i["output"]) for i in record["instances"]]
        rows += to_rows(record["instruction"], pairs, record["is_classification"], "machine", record["model"])
    filters = [
        {"name": "instructions: " + reason, "removed": count}
        for reason, count in sorted(last_bootstrap.get("dropped", {}).items())
    ] + [
        {"name": "instances: " + reason, "removed": count} for reason, count in sorted(instances_dropped.items())
    ] + [{"name": "no-instances", "removed": statuses["no-instances"]}]
    notes = {
        "instructions": statuses["ok"],
        "classification_tasks": sum(r.get("is_classification", False) for r in records if r["status"] == "ok"),
        "bootstrap_rounds": last_bootstrap.get("rounds", 0),
        "bootstrap_exhausted": statuses["bootstrap-exhausted"],
        "prompt_style": config.style(),
    }
    return rows, filters, notes


def run(config: SelfInstructConfig) -> Outcome:
    from datasets import Value

    from distill.schemas import SELF_INSTRUCT, with_provenance

    seeds = load_seeds(config)
    features = with_provenance(SELF_INSTRUCT, prompt_id=Value("string"), source=Value("string"), model=Value("string"))

    def make_work(client: Client):
        return SelfInstruct(config, client, seeds).task

    def build(records: list[dict[str, Any]]) -> Built:
        rows, filters, notes = build_rows(records, seeds, config)
        card_notes = []
        if notes["bootstrap_exhausted"]:
            card_notes.append(f"The bootstrap gave out after {notes['bootstrap_rounds']} rounds: "
                              f"{notes['instructions']} of the {config.num_instructions} instructions asked for were made.")
        return split_dataset(rows, features, config.test_size, config.seed, filters=filters, notes=notes,
                             card_notes=card_notes)

    return execute(METHOD, config, [(str(i), i) for i in range(config.num_instructions)], make_work, build)


METHOD = GenerationMethod(
    command="generate self-instruct",
    config=SelfInstructConfig,
    run=run,
    help="Self-Instruct (Wang et al. 2023): bootstrap instructions and their instances from seed tasks.\n\n"
         "Writes a train split with instruction, input, output, is_classification and messages (one row per instance). "
         "With no backend and no endpoint it runs the embedded llama.cpp model with completion-style prompts, as the "
         "paper did with a base model.",
    title="Self-Instruct",
    paper="Wang et al. 2023, Self-Instruct: Aligning Language Models with Self-Generated Instructions",
    paper_url="https://arxiv.org/abs/2212.10560",
    embedded_default=BASE,  # completion-style prompts, as the paper used base GPT-3
    description=(
        "Instructions bootstrapped from a small set of human-written seed tasks: each prompt shows "
        "tasks from the seeds and from what the model already wrote and asks for more; a new "
        "instruction was kept only if it passed heuristic filters and its ROUGE-L similarity with "
        "every instruction kept so far stayed below a threshold. The model then decided whether each "
        "instruction is a classification task and wrote instances for it (input first, or class label "
        "first for classification tasks); invalid, duplicate and conflicting instances were dropped."
    ),
    made="instructions made",
    next_step="look at them with `distill stats {out}`; train on them with `distill train sft`",
    schema="SELF_INSTRUCT",
    shards=False,  # the bootstrap is one sequence of rounds
    prompts=PROMPTS,
)
