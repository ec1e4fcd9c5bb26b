"""CAMEL (Li et al. 2023): role-playing dialogues between two agents, AI Society setting.

  1. roles     the teacher lists assistant roles (what it can play with its expertise) and
               user roles (common groups of internet users or occupations), or files give them;
  2. tasks     per (assistant role, user role) pair, the teacher lists tasks the assistant
               can help the user with;
  3. specify   a task specifier makes the chosen task more specific, in a few words, at a
               high temperature (1.4, as the original's data script);
  4. role-play under inception prompts: the AI user gives one instruction at a time
               ("Instruction: ... / Input: ..."), the AI assistant answers each with
               "Solution: ... Next request.". The stops are the original data script's: the
               AI user says the task is done (that message is kept), 40 messages (20
               exchanges), three AI user turns in a row without an instruction, an AI
               assistant turn that instructs, a conversation past the context window.

The plan takes pairs of roles at random (seeded) and, as the paper did, every task of a
pair. Every dialogue is its own coroutine; the role lists and a pair's task list are
shared, asked once (the client merges identical requests in flight and answers repeats
from its cache). docs/fidelity.md lists every default against the original.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from distill.backends import check_models_have_a_place
from distill.backends.router import ModelSpec, OptionalModelSpec
from distill.client import Client
from distill.config import EngineConfig, cli
from distill.errors import ConfigError, InputError, RequestRejected
from distill.export import SFT_SPLITS, Built, split_dataset
from distill.generation import execute
from distill.inputs import load_rows
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.parsing import list_items, same_text
from distill.prompting import render
from distill.request import Message
from distill.seeding import derive_seed
from distill.teacher import Teacher

PROMPTS = "camel"  # the folder of this method's prompts
END_TOKEN = "<CAMEL_TASK_DONE>"
SIDES = ("assistant", "user")


def _marker(word: str) -> re.Pattern:
    """`Word:` at the start of a line, also in bold (`**Word:**`, `**Word**:`)."""
    return re.compile(rf"^[ \t]*\**{word}\**[ \t]*:[ \t]*\**[ \t]*", re.IGNORECASE | re.MULTILINE)


INSTRUCTION, INPUT, SOLUTION = _marker("Instruction"), _marker("Input"), _marker("Solution")
# Whether a turn instructs, as the original tells it: "Instruction:" anywhere in the turn
# (case as written; also "**Instruction**:").
INSTRUCTS = re.compile(r"Instruction\**[ \t]*:")
# The closing "Next request." as a sentence of its own, not "... awaiting your next request."
NEXT_REQUEST = re.compile(r"(?:^|(?<=[.!?:\n]))\s*\**next request\W*$", re.IGNORECASE)
NO_INPUT = {"", "none", "n/a", "nothing"}
SPECIFIED_LABEL = re.compile(r"^\s*\**(?:specified |specific |rewritten )?task\**\s*:\s*\**\s*", re.IGNORECASE)


# List shapes instruct models write besides "1." / "1)" / bullets (which list_items reads):
# "1- Teacher", "Task 1: ...", "Role 2 - ...". Each becomes "N. " before the list is read.
OTHER_MARKER = re.compile(r"(?im)^[ \t]*(?:\**(?:task|role)[ \t]*)?\(?(\d{1,3})\**[ \t]*(?:[-–—:)]|\.(?!\d))\**[ \t]*")
# What small models put before an item: outline numbers ("1.1.1.5: ", "5: ") and labels.
ITEM_NOISE = re.compile(r"^(?:(?:\d{1,3}(?:\.\d{1,3})*|task|role)\s*[:.)-]\s*)+", re.IGNORECASE)


def list_reply_items(text: str, truncated: bool) -> list[str]:
    """The items of a role or task list, in the shapes instruct models write: numbered
    "1." "1)" "1-" "Task 1:", or bullets; an item's leading outline number or label is not
    part of it, and an item that is nothing else is dropped. A reply with no list in it has
    no item, even asked for one: "I cannot think of any." is no task."""
    items = list_items(OTHER_MARKER.sub(lambda m: f"{m.group(1)}. ", text), truncated=truncated)
    cleaned = (ITEM_NOISE.sub("", item.strip(" -*\"'")).strip(" -*\"'") for item in items)
    return list(dict.fromkeys(item for item in cleaned if item))


def model_name(spec: ModelSpec | None) -> str | None:
    return spec.model if spec else None


class CamelConfig(EngineConfig):
    PLAN_FILES: ClassVar[tuple[str, ...]] = ("assistant_roles", "user_roles")

    num_dialogues: int = Field(100, ge=1, description="Dialogues to make.", json_schema_extra=cli("-n"))
    assistant_roles: str | None = Field(None, description="Roles for the AI assistant: a file or dataset (column role or "
                                        "text).", json_schema_extra=cli(show="written by the teacher"))
    user_roles: str | None = Field(None, description="Roles for the AI user: a file or dataset (column role or text).",
                                   json_schema_extra=cli(show="written by the teacher"))
    num_roles: int = Field(50, ge=1, le=1000, description="Roles the teacher writes per side when no file gives them.")
    tasks_per_pair: int = Field(10, ge=1, le=100, description="Tasks the teacher lists per (assistant role, user role) pair.")
    word_limit: int = Field(50, ge=1, description="Most words of a specified task.")
    max_turns: int = Field(20, ge=1, description="Most exchanges (instruction + solution) per dialogue; 20 is the "
                           "original's 40 messages.")
    no_instruction_rounds: int = Field(3, ge=1, description="End a dialogue at this many AI user turns in a row "
                                       "without an instruction (the ones before it are kept, with their solutions).")
    keep_task_done: bool = Field(True, description="Keep the AI user's closing task-done message as the dialogue's "
                                 "last turn, as the original did.", json_schema_extra=cli(off="drop-task-done"))
    extra_stops: bool = Field(False, description="Also end a dialogue at an empty turn, a turn that repeats an "
                              "earlier one, or an AI user turn written as a solution (distill's checks; the "
                              "original kept such turns).")
    min_turns: int = Field(1, ge=1, description="Drop dialogues with fewer exchanges than this.")
    keep_scaffolding: bool = Field(False, description="Keep 'Instruction:', 'Input:', 'Solution:' and 'Next request.' in "
                                   "the turns.")
    assistant_model: OptionalModelSpec = Field(None, description="Model that plays the AI assistant, "
                                               "[BACKEND:]MODEL[@URL][#KEY_ENV].", json_schema_extra=cli(show="--model"))
    user_model: OptionalModelSpec = Field(None, description="Model that plays the AI user.",
                                          json_schema_extra=cli(show="the assistant model"))
    task_model: OptionalModelSpec = Field(None, description="Model that writes roles and tasks and specifies tasks.",
                                          json_schema_extra=cli(show="the assistant model"))
    temperature: float = Field(0.2, ge=0, le=2, description="AI assistant sampling temperature.")
    user_temperature: float = Field(0.2, ge=0, le=2, description="AI user sampling temperature.")
    task_temperature: float = Field(0.2, ge=0, le=2, description="Temperature for the role lists and task lists.")
    specify_temperature: float = Field(1.4, ge=0, le=2, description="Temperature of the task specifier.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of every request.")
    max_new_tokens: int = Field(1024, ge=1, description="Most tokens per solution; a longer one stops the dialogue.")
    user_max_new_tokens: int = Field(512, ge=1, description="Most tokens per AI user turn; a longer one stops the "
                                     "dialogue.")
    task_max_new_tokens: int = Field(512, ge=16, description="Most tokens per role list, task list or specified task.")

    @field_validator("min_turns")
    @classmethod
    def _below_max(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("max_turns")
        if most is not None and value > most:
            raise ValueError(f"{value} is above --max-turns {most}: every dialogue would be dropped")
        return value


@dataclass(frozen=True)
class RolePlayPlan:
    """One dialogue: indices into the assistant roles, the user roles and the pair's tasks."""

    assistant: int
    user: int
    task: int


def plan_dialogues(config: CamelConfig, assistant_roles: int, user_roles: int) -> list[RolePlayPlan]:
    """Every dialogue's plan, from the seed alone: a resumed run follows the same plan.

    Pairs of roles are drawn without repeats and every task of a pair is used, as the paper
    ran all the tasks of its pairs (a pair's task list is paid for once either way)."""
    k = config.tasks_per_pair
    pairs_needed = math.ceil(config.num_dialogues / k)
    if pairs_needed > assistant_roles * user_roles:
        raise ConfigError(
            f"--num-dialogues {config.num_dialogues} is more than {assistant_roles} assistant roles x {user_roles} "
            f"user roles x {k} tasks per pair: raise --num-roles or --tasks-per-pair, or give longer role files"
        )
    rng = random.Random(derive_seed(config.seed, "plan"))
    pairs = rng.sample(range(assistant_roles * user_roles), pairs_needed)
    plans = [RolePlayPlan(*divmod(pair, user_roles), task) for pair in pairs for task in range(k)][: config.num_dialogues]
    rng.shuffle(plans)  # pairs interleaved, so a stopped run has spread over many
    return plans


# -- reading the agents' turns ----------------------------------------------------------------


def split_instruction(text: str) -> tuple[str, str] | None:
    """("instruction", "input") of an AI user turn; the input is "" for `Input: None`.
    None when the turn holds no instruction."""
    start = INSTRUCTION.search(text)
    if start is None:
        return None
    body = text[start.end():]
    given = INPUT.search(body)
    instruction, extra = (body[:given.start()], body[given.end():]) if given else (body, "")
    extra = extra.strip()
    if extra.rstrip(".").casefold() in NO_INPUT:
        extra = ""
    return instruction.strip(), extra


def clean_instruction(text: str) -> str:
    """The instruction, then its input after a blank line, without the scaffolding."""
    parts = split_instruction(text)
    if parts is None:
        return text.strip()
    return "\n\n".join(part for part in parts if part)


def clean_solution(text: str) -> str:
    """The solution without its leading "Solution:" and closing "Next request."."""
    text = text.strip()
    label = SOLUTION.match(text)
    if label:
        text = text[label.end():]
    return NEXT_REQUEST.sub("", text).strip()


def _repeats(text: str, earlier: list[str]) -> bool:
    return any(same_text(text, other) for other in earlier)


def perspective(messages: list[Message], side: str) -> list[Message]:
    """The dialogue as one agent sees it: its own turns as `assistant`, its partner's as `user`."""
    if side == "assistant":
        return list(messages)
    flip = {"user": "assistant", "assistant": "user"}
    return [{"role": flip[m["role"]], "content": m["content"]} for m in messages]


class Camel:
    def __init__(self, config: CamelConfig, client: Client, given_roles: dict[str, list[str] | None]):
        self.config = config
        self.client = client
        self.given_roles = given_roles  # per side, None when the teacher writes them
        self.assistant_model = model_name(config.assistant_model) or client.model
        self.user_model = model_name(config.user_model) or self.assistant_model
        self.task_model = model_name(config.task_model) or self.assistant_model
        self.teacher = Teacher(client, config.seed, config.top_p)

    async def listing(self, template: str, salt: tuple, n: int, **values) -> list[str]:
        prompt = render(PROMPTS, template, n=n, **values)
        items = await self.teacher.listing(self.task_model, template, prompt, self.config.task_max_new_tokens,
                                           self.config.task_temperature, *salt, read=list_reply_items)
        return items[:n]

    # -- roles and tasks ---------------------------------------------------------------------

    async def roles(self, side: str) -> list[str]:
        given = self.given_roles[side]
        if given is not None:
            return given
        return await self.listing(f"{side}_roles.j2", (), self.config.num_roles)

    async def tasks(self, assistant_role: str, user_role: str) -> list[str]:
        return await self.listing("tasks.j2", (assistant_role, user_role), self.config.tasks_per_pair,
                                  assistant_role=assistant_role, user_role=user_role)

    async def specify(self, dialogue_id: str, assistant_role: str, user_role: str, task: str) -> str:
        """The task made more specific; the original task when the specifier gives nothing usable."""
        messages = [
            {"role": "system", "content": render(PROMPTS, "specify_system.j2")},
            {"role": "user", "content": render(PROMPTS, "specify.j2", assistant_role=assistant_role, user_role=user_role,
                                               task=task, word_limit=self.config.word_limit)},
        ]
        reply = await self.teacher.ask(self.task_model, messages, self.config.task_max_new_tokens,
                                       self.config.specify_temperature, "specify", dialogue_id)
        specified = SPECIFIED_LABEL.sub("", reply.text.strip(), count=1).strip()
        return specified if specified and reply.finish_reason != "length" else task

    # -- the dialogue ------------------------------------------------------------------------

    async def dialogue(self, dialogue_id: str, plan: RolePlayPlan) -> dict[str, Any]:
        record = {"assistant_role": "", "user_role": "", "original_task": "", "specified_task": "",
                  "messages": [], "num_turns": 0, "stop_reason": "no_task",
                  "assistant_model": self.assistant_model, "user_model": self.user_model}
        assistant_roles, user_roles = await self.roles("assistant"), await self.roles("user")
        if not assistant_roles or not user_roles:
            return record
        # A teacher that listed fewer roles or tasks than asked: indices wrap around.
        a, u = assistant_roles[plan.assistant % len(assistant_roles)], user_roles[plan.user % len(user_roles)]
        record.update(assistant_role=a, user_role=u)
        tasks = await self.tasks(a, u)
        if not tasks:
            return record
        task = tasks[plan.task % len(tasks)]
        specified = await self.specify(dialogue_id, a, u, task)
        messages, stop = await self.converse(dialogue_id, a, u, specified)
        record.update(original_task=task, specified_task=specified, messages=messages,
                      num_turns=sum(m["role"] == "assistant" for m in messages), stop_reason=stop)
        return record

    async def converse(self, dialogue_id: str, assistant_role: str, user_role: str, task: str) -> tuple[list[Message], str]:
        """The AI user instructs, the AI assistant solves, turn by turn, with the stops of the
        original's data script (see the module's docstring). The dialogue ends on a complete
        solution, or on the AI user's task-done message (or is empty)."""
        roles = {"assistant_role": assistant_role, "user_role": user_role, "task": task}
        assistant_system = [{"role": "system", "content": render(PROMPTS, "assistant_system.j2", **roles)}]
        user_inception = render(PROMPTS, "user_system.j2", end_token=END_TOKEN, **roles)
        # The original's first message to the AI user repeats its inception prompt, then asks it to begin.
        user_opening = [
            {"role": "system", "content": user_inception},
            {"role": "user", "content": user_inception + "\n\n" + render(PROMPTS, "kickoff.j2")},
        ]
        messages: list[Message] = []
        quiet = 0  # AI user turns in a row without an instruction
        try:
            for turn in range(self.config.max_turns):
                reply = await self.teacher.ask(self.user_model, user_opening + perspective(messages, "user"),
                                               self.config.user_max_new_tokens, self.config.user_temperature,
                                               "user", dialogue_id, turn)
                instruction = reply.text.strip()
                if self.config.extra_stops and (problem := self.odd_instruction(instruction, messages)):
                    return messages, problem
                quiet = 0 if INSTRUCTS.search(instruction) else quiet + 1
                if quiet >= self.config.no_instruction_rounds:
                    return messages, "no_instruction"
                if END_TOKEN in instruction:
                    return messages + [{"role": "user", "content": instruction}], "task_done"
                if reply.finish_reason == "length":
                    return messages, "truncated"
                exchange = messages + [{"role": "user", "content": instruction}]
                reply = await self.teacher.ask(self.assistant_model, assistant_system + perspective(exchange, "assistant"),
                                               self.config.max_new_tokens, self.config.temperature,
                                               "assistant", dialogue_id, turn)
                solution = reply.text.strip()
                if reply.finish_reason == "length":
                    return messages, "truncated"
                if INSTRUCTS.search(solution):
                    return messages, "assistant_as_user"
                if self.config.extra_stops and (problem := self.odd_solution(solution, messages)):
                    return messages, problem
                messages = exchange + [{"role": "assistant", "content": solution}]
        except RequestRejected:
            # Past the first exchange this is the conversation outgrowing the context window
            # (the original's token-limit termination): keep what was said.
            if not messages:
                raise
            return messages, "rejected"
        return messages, "max_turns"

    @staticmethod
    def odd_instruction(text: str, messages: list[Message]) -> str | None:
        """distill's own checks of an AI user turn (--extra-stops): empty, answering, repeating."""
        if END_TOKEN in text:
            return None
        if not text:
            return "empty_turn"
        if SOLUTION.search(text):
            return "user_as_assistant"
        parts = split_instruction(text)
        if parts is not None and not parts[0]:
            return "empty_turn"
        if _repeats(clean_instruction(text), [clean_instruction(m["content"]) for m in messages if m["role"] == "user"]):
            return "repeated_turn"
        return None

    @staticmethod
    def odd_solution(text: str, messages: list[Message]) -> str | None:
        """distill's own checks of an AI assistant turn (--extra-stops): empty, repeating."""
        solution = clean_solution(text)
        if not solution:
            return "empty_turn"
        if _repeats(solution, [clean_solution(m["content"]) for m in messages if m["role"] == "assistant"]):
            return "repeated_turn"
        return None


# -- post-processing ------------------------------------------------------------------------------

PROVENANCE = ("assistant_role", "user_role", "original_task", "specified_task", "num_turns", "stop_reason",
              "assistant_model", "user_model")
FILTERS = ("no-task", "empty", "min-turns")


def clean(messages: list[Message]) -> list[Message]:
    """Instructions and solutions as plain turns, without the role-play scaffolding."""
    cleaners = {"user": clean_instruction, "assistant": clean_solution}
    return [{"role": m["role"], "content": cleaners[m["role"]](m["content"])} for m in messages]


def postprocess(records: list[dict[str, Any]], config: CamelConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """Drop dialogues without a task, empty or too short ones; clean the turns; drop the closing
    task-done message unless kept. Returns rows, filters, notes."""
    from distill.schemas import prompt_id

    removed = Counter()
    rows = []
    for record in records:
        if record["stop_reason"] == "no_task":
            removed["no-task"] += 1
        elif not record["messages"]:
            removed["empty"] += 1
        elif record["num_turns"] < config.min_turns:
            removed["min-turns"] += 1
        else:
            messages = record["messages"] if config.keep_scaffolding else clean(record["messages"])
            if not config.keep_task_done and messages[-1]["role"] == "user":
                messages = messages[:-1]
            prompt = messages[0]["content"]
            rows.append({"prompt": prompt, "prompt_id": prompt_id(prompt), "messages": messages,
                         **{k: record[k] for k in PROVENANCE}})
    filters = [{"name": name, "removed": removed[name]} for name in FILTERS]
    notes = {
        "stop_reasons": dict(Counter(r["stop_reason"] for r in records)),
        # Dialogues whose task the specifier left as it was (an empty or cut-off reply).
        "unspecified_tasks": sum(bool(r["original_task"]) and r["specified_task"] == r["original_task"] for r in records),
    }
    return rows, filters, notes


def load_roles(source: str, flag: str) -> list[str]:
    """Roles from a file, saved dataset or Hub id: column `role` or `text`, one role a row
    (a leading "12. ", as in numbered role lists, is dropped)."""
    rows = load_rows(source)
    if not rows:
        raise InputError(f"{flag} {source} is empty")
    column = next((name for name in ("role", "text") if name in rows[0]), None)
    if column is None:
        raise InputError(f"{flag} {source} has no column role or text (columns: {', '.join(rows[0])})")
    cleaned = (re.sub(r"^\s*\d{1,4}[.)]\s+", "", str(row.get(column) or "")).strip() for row in rows)
    roles = list(dict.fromkeys(role for role in cleaned if role))
    if not roles:
        raise InputError(f"{flag} {source} has no role in column {column!r}")
    return roles


def run(config: CamelConfig) -> Outcome:
    from datasets import Value

    from distill.schemas import DIALOGUE, with_provenance

    models = [config.assistant_model, config.user_model or config.assistant_model, config.task_model or config.assistant_model]
    check_models_have_a_place(config, {"--assistant-model": config.assistant_model, "--user-model": config.user_model,
                                       "--task-model": config.task_model})
    given = {
        side: load_roles(source, f"--{side}-roles") if source else None
        for side, source in zip(SIDES, (config.assistant_roles, config.user_roles))
    }
    sizes = [config.num_roles if given[side] is None else len(given[side]) for side in SIDES]
    plans = plan_dialogues(config, *sizes)
    features = with_provenance(DIALOGUE, **{k: Value("int64" if k == "num_turns" else "string") for k in PROVENANCE})

    def make_work(client: Client):
        return Camel(config, client, given).dialogue

    def build(records: list[dict[str, Any]]) -> Built:
        rows, filters, notes = postprocess(records, config)
        return split_dataset(rows, features, config.test_size, config.seed, SFT_SPLITS, filters=filters, notes=notes)

    return execute(METHOD, config, [(str(i), plan) for i, plan in enumerate(plans)], make_work, build, models)


METHOD = GenerationMethod(
    command="generate camel",
    config=CamelConfig,
    run=run,
    help="CAMEL role-play dialogues (Li et al. 2023), AI Society setting, for supervised fine-tuning.\n\n"
         "The teacher lists assistant roles, user roles and, per pair of roles, tasks; a task is made specific, then an "
         "AI user instructs an AI assistant step by step under inception prompts until the task is done. Writes "
         "train_sft/test_sft splits with the columns of HuggingFaceH4/ultrachat_200k plus roles and tasks.",
    title="CAMEL role-playing dialogues",
    paper="Li et al. 2023, CAMEL: Communicative Agents for \"Mind\" Exploration of Large Language Model Society",
    paper_url="https://arxiv.org/abs/2303.17760",
    description=(
        "AI Society role-play. The teacher listed assistant roles and user roles (common groups of internet "
        "users or occupations) and, for each pair of roles taken, tasks the assistant can help the user with; "
        "a task specifier made each task more specific. Then an AI user and an AI assistant, each under an "
        "inception prompt that fixes its role and the task, worked on the task: the AI user gave one "
        "instruction (with an optional input) at a time and the AI assistant answered each with a solution, "
        "until the AI user declared the task done, the message limit was reached, the AI user stopped "
        "instructing for several turns in a row, the AI assistant gave an instruction (roles flipped), or a "
        "turn was cut off or outgrew the context. The user turns are the instructions and the assistant turns "
        "the solutions."
    ),
    made="dialogues made",
    next_step="look at them with `distill stats {out}`; clean them with `distill filter dedup {out} -o {out}-clean`; "
              "train on them with `distill train sft`",
    schema="DIALOGUE",
    prompts=PROMPTS,
)
