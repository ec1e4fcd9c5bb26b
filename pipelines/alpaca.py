"""Alpaca (Taori et al. 2023, stanford_alpaca): Self-Instruct with whole tasks asked for in batches.

    pool <- the seed tasks' instructions
    repeat, a round of `batch_size` requests at a time, until there are enough tasks:
        each request shows 3 seed tasks (instruction, input, output) as the start of a list
        of 20 and asks the model to write the rest of the list, complete tasks, under a list
        of requirements (varied verbs, nothing to see or hear, real inputs, short outputs);
        the reply stops where task 20 would begin, and its last task is dropped if the token
        limit cut it off;
        a new task is kept if its instruction passes the filters (4 to 150 words, no
        blacklisted word, not "Write a program", not starting with punctuation or a
        non-ASCII character) and its ROUGE-L with every instruction in the pool is at most
        0.7; a kept task joins the pool at once

Unlike Self-Instruct there is no classification step and no second request for instances:
the task's one input and output come with it. Task i is item i. The rounds are one
sequence whose prompts derive from the seed and the round number, and whose replies are
cached, so a resumed run replays them without asking again and keeps the same tasks.
"""

from __future__ import annotations

import asyncio
import re
import string
import types
from collections import Counter
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from distill.backends import choose_backend
from distill.client import Client
from distill.config import EngineConfig, cli
from distill.embedded import BASE
from distill.errors import InputError, RequestRejected
from distill.export import Built, split_dataset
from distill.generation import execute
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.pipelines.self_instruct import SeedTask, keyword_pattern, load_seeds
from distill.prompting import render, word_list
from distill.request import Request, Response, SamplingParams
from distill.seeding import derive_seed, rng_for

PROMPTS = "alpaca"  # the folder of this method's prompts


class AlpacaConfig(EngineConfig):
    PLAN_FILES: ClassVar[tuple[str, ...]] = ("seeds",)

    num_instructions: int = Field(100, ge=1, description="New tasks to generate.", json_schema_extra=cli("-n"))
    seeds: str | None = Field(None, description="Seed tasks: a file or dataset with instruction, input and output "
                              "(Self-Instruct's seed_tasks.jsonl works as is; each task's first instance is shown).",
                              json_schema_extra=cli(show="25 built in"))
    seeds_per_prompt: int = Field(3, ge=1, description="Seed tasks shown at the head of each request's list.")
    list_length: int = Field(20, ge=3, le=99, description="Length of the task list each request asks for; the reply "
                             "stops where this task would begin.")
    batch_size: int = Field(5, ge=1, description="Requests per round (the pool changes once a round is in).")
    patience: int = Field(10, ge=1, description="Stop after this many rounds in a row without a new task.")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="Drop a new task whose instruction has a ROUGE-L "
                                   "above this with any instruction in the pool.")
    min_words: int = Field(4, ge=1, description="Shortest instruction kept, in words.")
    max_words: int = Field(150, ge=1, description="Longest instruction kept, in words.")
    blacklist: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "blacklist.txt"),
        description="Drop tasks whose instruction has this word; repeatable, replaces the built-in list.",
        json_schema_extra=cli(show="image, graph, picture, file, map, draw, plot, video, audio and others"))
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        "auto", description="completion: a plain prompt the model continues (as the original did with "
        "text-davinci-003); chat: the same as one user message; auto: completion on llamacpp, else chat.")
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(3072, ge=16, description="Most tokens per reply (a list of tasks is long).")

    @field_validator("shard")
    @classmethod
    def _one_sequence(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("the rounds are one sequence and cannot be split over machines")
        return value

    @model_validator(mode="after")
    def _room_for_new_tasks(self):
        if self.seeds_per_prompt + 1 >= self.list_length:
            raise ValueError(f"--seeds-per-prompt ({self.seeds_per_prompt}) must be below --list-length minus 1 "
                             f"({self.list_length - 1}) to leave room for new tasks")
        if self.min_words > self.max_words:
            raise ValueError("--min-words must not exceed --max-words")
        return self

    def style(self) -> Literal["chat", "completion"]:
        if self.prompt_style != "auto":
            return self.prompt_style
        return "completion" if choose_backend(self) == "llamacpp" else "chat"


# -- reading a reply -----------------------------------------------------------------------------


def parse_tasks(text: str, first: int, truncated: bool) -> tuple[list[dict[str, str]], Counter]:
    """The tasks of a reply: blocks between `###` lines, the k-th numbered first+k with its
    three fields "N. Instruction:", "N. Input:", "N. Output:" in order; a block that is not
    is dropped ("malformed"), and when the token limit cut the reply off its last block is
    dropped ("cut-off"). An input of <noinput> is empty."""
    dropped: Counter = Counter()
    blocks = [block for block in text.split("###") if block.strip()]
    if blocks and "Instruction:" not in blocks[0] and len(blocks) > 1:
        blocks = blocks[1:]  # a chat model's preamble
    if truncated and blocks:
        blocks = blocks[:-1]
        dropped["cut-off"] += 1
    tasks = []
    for number, block in enumerate(blocks, first):
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", block)
        if parts[1::2] != ["Instruction", "Input", "Output"]:
            dropped["malformed"] += 1
            continue
        given = parts[4].strip()
        tasks.append({"instruction": parts[2].strip(), "input": "" if given.lower() == "<noinput>" else given,
                      "output": parts[6].strip()})
    return tasks, dropped


def unsuited(task: dict[str, str], config: AlpacaConfig, blacklist: re.Pattern | None) -> str | None:
    """Why stanford_alpaca's filters drop this task, or None to keep it."""
    instruction = task["instruction"]
    words = len(instruction.split())
    if words < config.min_words:
        return "too-short"
    if words > config.max_words:
        return "too-long"
    if blacklist is not None and blacklist.search(instruction):
        return "blacklisted-word"
    if instruction.startswith("Write a program"):
        return "write-a-program"  # ambiguous: asked for code, or for what the code would print?
    if instruction[0] in string.punctuation:
        return "starts-with-punctuation"
    if not instruction[0].isascii():
        return "starts-non-ascii"
    if not task["output"]:
        return "empty-output"  # distill's own rule: a row with nothing to learn
    return None


# -- the rounds ----------------------------------------------------------------------------------


class TaskPool:
    """The tasks kept so far, extended a round at a time as items need them."""

    def __init__(self, config: AlpacaConfig, seeds: list[SeedTask], client: Client):
        from distill.filters.rouge import NoveltyPool  # numpy, only when a run starts

        self.config = config
        self.client = client
        self.style = config.style()
        self.seeds = seeds
        # strict: the original drops a task only above the threshold (max ROUGE-L > 0.7).
        self.pool = NoveltyPool((s.instruction for s in seeds), threshold=config.rouge_threshold, strict=True)
        self.blacklist = keyword_pattern(config.blacklist)
        self.kept: list[tuple[dict[str, str], int, dict]] = []  # task, round, the counters after that round
        self.dropped: Counter = Counter()
        self.rounds = 0
        self.idle_rounds = 0
        self.lock = asyncio.Lock()

    def counters(self) -> dict:
        return {"rounds": self.rounds, "dropped": dict(self.dropped)}

    async def task(self, index: int) -> tuple[dict[str, str], int, dict] | None:
        """The index-th new task, running rounds until it exists (None: the model gave out)."""
        async with self.lock:
            while len(self.kept) <= index and self.idle_rounds < self.config.patience:
                await self.round()
        return self.kept[index] if index < len(self.kept) else None

    def shown(self, round_: int, request: int) -> list[dict[str, str]]:
        """The seed tasks one request shows (only seeds, as the original), with their first instance."""
        picked = rng_for(self.config.seed, "alpaca", round_, request).sample(self.seeds, self.config.seeds_per_prompt)
        return [{"instruction": seed.instruction.rstrip(":"), "input": seed.instances[0][0],
                 "output": seed.instances[0][1]} for seed in picked]

    async def ask(self, examples: list[dict[str, str]], round_: int, request: int) -> Response:
        config = self.config
        params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens,
                                stop=(f"\n{config.list_length}", f"{config.list_length}."),
                                seed=derive_seed(config.seed, "alpaca", round_, request))
        values = {"examples": examples, "total": config.list_length}
        if self.style == "completion":
            prompt = render(PROMPTS, "tasks.j2", chat=False, **values)
            return await self.client.complete(Request.text(self.client.model, prompt, params))
        prompt = render(PROMPTS, "tasks.j2", chat=True, **values)
        return await self.client.complete(Request.chat(self.client.model, [{"role": "user", "content": prompt}], params))

    def read(self, reply: Response, shown: int) -> tuple[list[dict[str, str]], Counter]:
        first = shown + 1
        text = reply.text
        if self.style == "completion":  # the prompt ended with the first new task's "N. Instruction:"
            text = f"{first}. Instruction:{text}"
        return parse_tasks(text, first, reply.finish_reason == "length")

    async def round(self) -> None:
        """One round: every request is asked at once; the pool changes only once all have answered."""
        round_ = self.rounds
        shown = [self.shown(round_, j) for j in range(self.config.batch_size)]
        replies = await asyncio.gather(*(self.ask(examples, round_, j) for j, examples in enumerate(shown)),
                                       return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, RequestRejected):
                raise reply
        accepted = []
        for examples, reply in zip(shown, replies):
            if isinstance(reply, RequestRejected):
                self.dropped["request-rejected"] += 1
                continue
            tasks, dropped = self.read(reply, len(examples))
            self.dropped.update(dropped)
            for task in tasks:
                reason = unsuited(task, self.config, self.blacklist)
                if reason is None and not self.pool.is_novel(task["instruction"]):
                    reason = "similar"
                if reason:
                    self.dropped[reason] += 1
                    continue
                self.pool.add(task["instruction"])  # a later task of this round is judged against it
                accepted.append(task)
        self.rounds += 1
        self.idle_rounds = 0 if accepted else self.idle_rounds + 1
        self.kept += [(task, round_, self.counters()) for task in accepted]


# -- seeds, rows, run ----------------------------------------------------------------------------


def load_alpaca_seeds(config: AlpacaConfig) -> list[SeedTask]:
    """Seed tasks as Self-Instruct reads them (distill.pipelines.self_instruct.load_seeds), each
    of which must have an instance: the request shows its first input and output."""
    # load_seeds reads only these two fields; it is asked for no minimum, checked below with this command's flag.
    seeds = load_seeds(types.SimpleNamespace(seeds=config.seeds, human_per_prompt=0))
    source = config.seeds or "the built-in seed tasks"
    bare = next((seed for seed in seeds if not seed.instances), None)
    if bare is not None:
        raise InputError(f"seed tasks {source}: {bare.instruction[:60]!r} has no input and output to show "
                         "(Alpaca shows each seed task whole)")
    if len(seeds) < config.seeds_per_prompt:
        raise InputError(f"seed tasks {source} hold {len(seeds)} distinct instructions; --seeds-per-prompt needs at "
                         f"least {config.seeds_per_prompt}")
    return seeds


def to_row(task: dict[str, str], model: str | None) -> dict[str, Any]:
    from distill.schemas import prompt_id

    user = f"{task['instruction']}\n\n{task['input']}" if task["input"] else task["instruction"]
    return {
        "instruction": task["instruction"], "input": task["input"], "output": task["output"],
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": task["output"]}],
        "prompt_id": prompt_id(task["instruction"]), "model": model,
    }


def build_rows(records: list[dict[str, Any]], config: AlpacaConfig) -> tuple[list, list, dict]:
    """Rows of every task kept; what each filter dropped; notes on the rounds."""
    ok = [r for r in records if r["status"] == "ok"]
    last = max((r["counters"] for r in records), key=lambda c: c["rounds"], default={"rounds": 0, "dropped": {}})
    filters = [{"name": reason, "removed": count} for reason, count in sorted(last["dropped"].items())]
    notes = {"tasks": len(ok), "rounds": last["rounds"],
             "exhausted": sum(r["status"] == "exhausted" for r in records), "prompt_style": config.style()}
    return [to_row(r, r["model"]) for r in ok], filters, notes


def run(config: AlpacaConfig) -> Outcome:
    from datasets import Value

    from distill.schemas import ALPACA, with_provenance

    seeds = load_alpaca_seeds(config)
    features = with_provenance(ALPACA, prompt_id=Value("string"), model=Value("string"))

    def make_work(client: Client):
        pool = TaskPool(config, seeds, client)

        async def work(item_id: str, index: int) -> dict[str, Any]:
            found = await pool.task(index)
            if found is None:
                return {"status": "exhausted", "counters": pool.counters()}
            task, round_, counters = found
            return {**task, "status": "ok", "round": round_, "counters": counters, "model": client.model}

        return work

    def build(records: list[dict[str, Any]]) -> Built:
        rows, filters, notes = build_rows(records, config)
        card_notes = []
        if notes["exhausted"]:
            card_notes.append(f"The model gave out after {notes['rounds']} rounds: {notes['tasks']} of the "
                              f"{config.num_instructions} tasks asked for were made.")
        return split_dataset(rows, features, config.test_size, config.seed, filters=filters, notes=notes,
                             card_notes=card_notes)

    return execute(METHOD, config, [(str(i), i) for i in range(config.num_instructions)], make_work, build)


METHOD = GenerationMethod(
    command="generate alpaca",
    config=AlpacaConfig,
    run=run,
    help="Alpaca (Taori et al. 2023): each request asks for a list of 20 whole tasks (instruction, input, output) "
         "after 3 seed tasks.\n\n"
         "Writes a train split with instruction, input, output and messages (one row per task). With no backend "
         "and no endpoint it runs the embedded llama.cpp model with the completion-style prompt.",
    title="Alpaca",
    paper="Taori et al. 2023, Stanford Alpaca: An Instruction-following LLaMA model",
    paper_url="https://github.com/tatsu-lab/stanford_alpaca",
    embedded_default=BASE,  # the completion-style prompt, as Alpaca asked base text-davinci-003
    description=(
        "Tasks written by the teacher in batches, the Stanford Alpaca way: each request showed three "
        "human-written seed tasks (instruction, input, output) as the start of a list of twenty and "
        "asked the model to write the rest under a list of requirements (varied verbs and kinds of "
        "task, nothing to see or hear, inputs with real content, outputs under 100 words). A new task "
        "was kept only if its instruction passed heuristic filters and its ROUGE-L similarity with "
        "every instruction kept so far, seeds included, was at most 0.7. Each task has one input and "
        "output, written with it."
    ),
    made="tasks made",
    next_step="look at them with `distill stats {out}`; train on them with `distill train sft`",
    schema="ALPACA",
    shards=False,  # the rounds are one sequence
    prompts=PROMPTS,
)
