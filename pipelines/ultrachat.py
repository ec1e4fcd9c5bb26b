"""UltraChat (Ding et al. 2023): multi-turn dialogues between a simulated user and an assistant.

Opening requests come from three sectors:
  world      Questions about the World: meta-topic -> subtopics -> questions, each level
             written by the teacher;
  creation   Creation and Generation: a kind of material -> concrete writing requests, a
             share of them rewritten into more detailed ones;
  materials  Assistance on Existing Materials: a text of the user's corpus wrapped in a
             task (summarise, rewrite, extract, continue, ask about it).
Then, per opening request, the assistant answers and a user-simulator model writes the
next user turn from the dialogue so far, for a seeded number of rounds, stopping early on
a degenerate turn. Post-processing follows ultrachat_200k.

Every dialogue is its own coroutine: no barrier between the turns of different dialogues.
Shared steps (the subtopics of a meta-topic, say) are asked once: the client merges
identical requests in flight and answers repeats from its cache.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from distill.backends import check_models_have_a_place
from distill.backends.router import OptionalModelSpec
from distill.client import Client
from distill.config import EngineConfig, cli
from distill.errors import InputError
from distill.export import SFT_SPLITS, Built, split_dataset
from distill.generation import execute
from distill.inputs import load_rows, pick_column
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.parsing import parse_weights, same_text
from distill.prompting import names, patterns, render, word_list
from distill.request import Message, Response
from distill.seeding import derive_seed, rng_for
from distill.teacher import Teacher

PROMPTS = "ultrachat"  # the folder of this method's prompts
SECTORS = ("world", "creation", "materials")
DEFAULT_MIX = {"world": 0.5, "creation": 0.3, "materials": 0.2}
MATERIAL_CHARS = 3000  # longer texts are cut at a word boundary to fit small context windows


def parse_mix(value: Any) -> dict[str, float]:
    """`world=0.5,creation=0.3,materials=0.2` (or a mapping) -> normalised weights."""
    weights = parse_weights(value, SECTORS, "sector", "world=0.5,creation=0.3,materials=0.2")
    total = sum(weights.values())
    return {name: weights[name] / total for name in SECTORS if weights.get(name)}


def parse_rounds(value: Any) -> tuple[int, int]:
    """`3-7` or `4` -> (low, high)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        low, _, high = str(value).partition("-")
        high = high or low
    try:
        low, high = int(low), int(high)
    except ValueError:
        raise ValueError(f"rounds are LOW-HIGH, like 3-7, not {value!r}") from None
    if not 1 <= low <= high:
        raise ValueError(f"rounds need 1 <= LOW <= HIGH, not {value!r}")
    return low, high


class UltraChatConfig(EngineConfig):
    PLAN_FILES: ClassVar[tuple[str, ...]] = ("topics", "materials")

    num_dialogues: int = Field(100, ge=1, description="Dialogues to make.", json_schema_extra=cli("-n"))
    sectors: dict[str, float] | None = Field(
        None, description="Mix of sectors, e.g. world=0.5,creation=0.3,materials=0.2.",
        json_schema_extra=cli(show="world=0.5,creation=0.3,materials=0.2; world=0.625,creation=0.375 without --materials"))
    topics: str | None = Field(None, description="Meta-topics for the world sector: a file or dataset (column topic or "
                               "text).", json_schema_extra=cli(show="30 built in"))
    materials: str | None = Field(None, description="Corpus for the materials sector: a file, saved dataset or Hub id.")
    materials_column: str = Field("text", description="Column of the corpus holding the text.")
    world_rounds: tuple[int, int] = Field((3, 7), description="Rounds (user turn + answer) of a world dialogue, LOW-HIGH.",
                                          json_schema_extra=cli(show="3-7"))
    creation_rounds: tuple[int, int] = Field((2, 4), description="Rounds of a creation dialogue, LOW-HIGH.",
                                             json_schema_extra=cli(show="2-4"))
    materials_rounds: tuple[int, int] = Field((2, 4), description="Rounds of a materials dialogue, LOW-HIGH.",
                                              json_schema_extra=cli(show="2-4"))
    subtopics: int = Field(10, ge=1, le=100, description="Subtopics asked per meta-topic.")
    detail_share: float = Field(0.3, ge=0, le=1, description="Share of creation requests rewritten in more detail.")
    assistant_model: OptionalModelSpec = Field(None, description="Model that answers, [BACKEND:]MODEL[@URL][#KEY_ENV].",
                                               json_schema_extra=cli(show="--model"))
    user_model: OptionalModelSpec = Field(None, description="Model that plays the user.",
                                          json_schema_extra=cli(show="the assistant model"))
    system: str | None = Field(None, description="System prompt for the assistant.")
    temperature: float = Field(0.7, ge=0, le=2, description="Assistant and list sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the assistant and the lists.")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens per assistant answer; a longer one stops the dialogue.")
    user_temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature of the simulated user.")
    user_max_new_tokens: int = Field(256, ge=1, description="Most tokens per simulated user turn.")
    list_max_new_tokens: int = Field(512, ge=16, description="Most tokens per generated list of subtopics, questions or "
                                     "requests.")
    min_turns: int = Field(1, ge=1, description="Drop dialogues with fewer rounds than this.")
    disclaimer_patterns: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "assistant_disclaimers.txt"),
        description="Regex: an assistant turn matching it drops the dialogue; repeatable, replaces the built-in list.",
        json_schema_extra=cli(show="the patterns of ultrachat_200k"))
    user_as_assistant_patterns: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "user_as_assistant.txt"),
        description="Regex: a user turn matching it is the user model answering as the assistant; repeatable, "
        "replaces the built-in list.", json_schema_extra=cli(show="built in"))

    @field_validator("sectors", mode="before")
    @classmethod
    def _mix(cls, value: Any) -> Any:
        return None if value is None else parse_mix(value)

    @field_validator("world_rounds", "creation_rounds", "materials_rounds", mode="before")
    @classmethod
    def _rounds(cls, value: Any) -> tuple[int, int]:
        return parse_rounds(value)

    @field_validator("disclaimer_patterns", "user_as_assistant_patterns")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
        return value

    @model_validator(mode="after")
    def _materials_need_a_corpus(self):
        if self.sectors is None:
            mix = DEFAULT_MIX if self.materials else {k: v for k, v in DEFAULT_MIX.items() if k != "materials"}
            self.sectors = parse_mix(mix)
        elif self.sectors.get("materials") and not self.materials:
            raise ValueError("the materials sector needs a corpus: --materials FILE_OR_DATASET")
        return self

    def rounds(self, sector: str) -> tuple[int, int]:
        return getattr(self, f"{sector}_rounds")


@dataclass(frozen=True)
class DialoguePlan:
    """Where one dialogue's opening request comes from, and how many rounds it may last."""

    sector: str
    topic: str  # meta-topic, kind of material, or task
    rounds: int
    index: int  # which subtopic/request/text
    per_list: int = 0  # how many items the list requests ask for
    question: int = 0  # world: which question of the subtopic
    detailed: bool = False  # creation: rewrite the request in more detail


def allocate(n: int, mix: dict[str, float]) -> dict[str, int]:
    """n split over the sectors by weight, largest remainders first: the counts add up to n."""
    exact = {name: n * weight for name, weight in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(mix, key=lambda name: (-(exact[name] - counts[name]), SECTORS.index(name)))
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan_dialogues(config: UltraChatConfig, topics: list[str], kinds: list[str], texts: list[str], tasks: list[str]) -> list[DialoguePlan]:
    """Every dialogue's plan, from the seed alone: a resumed run follows the same plan."""
    counts = allocate(config.num_dialogues, config.sectors)
    plans: list[DialoguePlan] = []

    def rounds(sector: str, key: object) -> int:
        return rng_for(config.seed, "rounds", sector, key).randint(*config.rounds(sector))

    if counts.get("world"):
        k = config.subtopics
        per_subtopic = max(1, math.ceil(counts["world"] / (len(topics) * k)))
        slots = [(t, s, q) for t in range(len(topics)) for s in range(k) for q in range(per_subtopic)]
        random.Random(derive_seed(config.seed, "world")).shuffle(slots)
        for t, s, q in slots[: counts["world"]]:
            plans.append(DialoguePlan("world", topics[t], rounds("world", (t, s, q)), s, per_subtopic, q))
    if counts.get("creation"):
        per_kind = max(1, math.ceil(counts["creation"] / len(kinds)))
        slots = [(kind, j) for kind in range(len(kinds)) for j in range(per_kind)]
        random.Random(derive_seed(config.seed, "creation")).shuffle(slots)
        for kind, j in slots[: counts["creation"]]:
            detailed = rng_for(config.seed, "detail", kind, j).random() < config.detail_share
            plans.append(DialoguePlan("creation", kinds[kind], rounds("creation", (kind, j)), j, per_kind, detailed=detailed))
    if counts.get("materials"):
        order = list(range(len(texts)))
        random.Random(derive_seed(config.seed, "materials")).shuffle(order)
        for k in range(counts["materials"]):
            text = order[k % len(order)]
            task = rng_for(config.seed, "task", k).choice(tasks)
            plans.append(DialoguePlan("materials", task, rounds("materials", k), text))
    # Interleave the sectors, so any prefix of the run (-n smaller, a stopped run) is a mix.
    random.Random(derive_seed(config.seed, "order")).shuffle(plans)
    return plans


def clean_turn(text: str, speaker: str) -> str:
    """Strip whitespace and a leading "User:"/"Assistant:" label the model may have written."""
    text = text.strip()
    label = re.match(rf"^\s*{speaker}\s*:\s*", text, re.IGNORECASE)
    return text[label.end():].strip() if label else text


class UltraChat:
    def __init__(self, config: UltraChatConfig, client: Client, texts: list[str]):
        self.config = config
        self.client = client
        self.texts = texts
        self.assistant_model = config.assistant_model.model if config.assistant_model else client.model
        self.user_model = config.user_model.model if config.user_model else self.assistant_model
        self.user_as_assistant = patterns(config.user_as_assistant_patterns)
        self.teacher = Teacher(client, config.seed, config.top_p)

    async def listing(self, template: str, salt: tuple, **values) -> list[str]:
        return await self.teacher.listing(self.assistant_model, template, render(PROMPTS, template, **values),
                                          self.config.list_max_new_tokens, self.config.temperature, *salt)

    # -- opening requests, one level at a time ------------------------------------------

    async def opening(self, plan: DialoguePlan) -> str | None:
        if plan.sector == "world":
            subtopics = await self.listing("world_subtopics.j2", (plan.topic,), n=self.config.subtopics, topic=plan.topic)
            if not subtopics:
                return None
            subtopic = subtopics[plan.index % len(subtopics)]
            questions = await self.listing("world_questions.j2", (plan.topic, subtopic), n=plan.per_list,
                                           topic=plan.topic, subtopic=subtopic)
            return questions[plan.question % len(questions)] if questions else None
        if plan.sector == "creation":
            requests = await self.listing("creation_instructions.j2", (plan.topic,), n=plan.per_list, kind=plan.topic)
            if not requests:
                return None
            request = requests[plan.index % len(requests)]
            if not plan.detailed:
                return request
            prompt = render(PROMPTS, "creation_detail.j2", instruction=request)
            reply = await self.teacher.ask(self.assistant_model, [{"role": "user", "content": prompt}],
                                   self.config.user_max_new_tokens, self.config.temperature, "detail", request)
            detailed = clean_turn(reply.text, "user")
            return detailed if detailed and reply.finish_reason != "length" else request
        text = self.texts[plan.index]
        return render(PROMPTS, f"materials/{plan.topic}.j2", text=text)

    # -- the dialogue ---------------------------------------------------------------------

    async def dialogue(self, dialogue_id: str, plan: DialoguePlan) -> dict[str, Any]:
        opening = await self.opening(plan)
        messages: list[Message] = []
        stop = "no_opening"
        if opening:
            messages, stop = await self.converse(dialogue_id, opening, plan.rounds)
        return {
            "prompt": opening or "",
            "messages": messages,
            "sector": plan.sector,
            "topic": plan.topic,
            "num_turns": sum(m["role"] == "assistant" for m in messages),
            "stop_reason": stop,
            "assistant_model": self.assistant_model,
            "user_model": self.user_model,
        }

    async def converse(self, dialogue_id: str, opening: str, rounds: int) -> tuple[list[Message], str]:
        """Alternate assistant answers and simulated user turns; stop on a degenerate turn.

        The dialogue always ends on a complete assistant answer (or is empty)."""
        system = [{"role": "system", "content": self.config.system}] if self.config.system else []
        messages: list[Message] = [{"role": "user", "content": opening}]
        for turn in range(rounds):
            reply = await self.teacher.ask(self.assistant_model, system + messages, self.config.max_new_tokens,
                                   self.config.temperature, "assistant", dialogue_id, turn)
            answer = clean_turn(reply.text, "assistant")
            problem = self.bad_answer(answer, reply, messages)
            if problem:
                return messages[:-1], problem
            messages.append({"role": "assistant", "content": answer})
            if turn == rounds - 1:
                break
            transcript = render(PROMPTS, "user_turn.j2", messages=messages)
            reply = await self.teacher.ask(
                self.user_model,
                [{"role": "system", "content": render(PROMPTS, "user_system.j2")}, {"role": "user", "content": transcript}],
                self.config.user_max_new_tokens, self.config.user_temperature, "user", dialogue_id, turn,
            )
            question = clean_turn(reply.text, "user")
            problem = self.bad_question(question, reply, messages)
            if problem:
                return messages, problem
            messages.append({"role": "user", "content": question})
        return messages, "completed"

    @staticmethod
    def bad_answer(answer: str, reply: Response, messages: list[Message]) -> str | None:
        if reply.finish_reason == "length":
            return "truncated"
        if not answer:
            return "empty_turn"
        if any(m["role"] == "assistant" and same_text(m["content"], answer) for m in messages):
            return "repeated_turn"
        return None

    def bad_question(self, question: str, reply: Response, messages: list[Message]) -> str | None:
        if reply.finish_reason == "length":
            return "truncated"
        if not question:
            return "empty_turn"
        if any(p.search(question) for p in self.user_as_assistant):
            return "user_as_assistant"
        if any(same_text(m["content"], question) for m in messages):
            return "repeated_turn"
        return None


# -- post-processing, as ultrachat_200k -------------------------------------------------------

PROVENANCE = ("sector", "topic", "num_turns", "stop_reason", "assistant_model", "user_model")


def recase(text: str) -> tuple[str, bool]:
    """A turn that starts in lower case gets a capital first letter."""
    if text[:1].islower():
        return text[0].upper() + text[1:], True
    return text, False


def postprocess(records: list[dict[str, Any]], config: UltraChatConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """Drop empty, disclaiming and too-short dialogues; recase turns. Returns rows, filters, notes."""
    from distill.schemas import prompt_id

    disclaimers = patterns(config.disclaimer_patterns)
    removed = Counter()
    recased = 0
    rows = []
    for record in records:
        messages = record["messages"]
        if record["stop_reason"] == "no_opening":
            removed["no-opening"] += 1
            continue
        if any(m["role"] == "assistant" and any(p.search(m["content"]) for p in disclaimers) for m in messages):
            removed["assistant-disclaimer"] += 1
            continue
        if record["num_turns"] < config.min_turns:
            removed["min-turns"] += 1
            continue
        fixed = []
        for message in messages:
            content, changed = recase(message["content"])
            recased += changed
            fixed.append({"role": message["role"], "content": content})
        prompt = fixed[0]["content"]
        rows.append({"prompt": prompt, "prompt_id": prompt_id(prompt), "messages": fixed, **{k: record[k] for k in PROVENANCE}})
    filters = [{"name": name, "removed": removed[name]} for name in ("no-opening", "assistant-disclaimer", "min-turns")]
    notes = {
        "recased_turns": recased,
        "stop_reasons": dict(Counter(r["stop_reason"] for r in records)),
        "sectors": dict(Counter(r["sector"] for r in rows)),
    }
    return rows, filters, notes


def load_texts(config: UltraChatConfig) -> list[str]:
    """The materials corpus: a column of texts from a file, a saved dataset or a Hub id."""
    rows = load_rows(config.materials)
    if not rows:
        raise InputError(f"materials {config.materials} is empty")
    column = pick_column(rows, config.materials, config.materials_column, ())
    texts = []
    for row in rows:
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            texts.append(text if len(text) <= MATERIAL_CHARS else text[:MATERIAL_CHARS].rsplit(" ", 1)[0] + " …")
    if not texts:
        raise InputError(f"materials {config.materials} has no text in column {column!r}")
    return texts


def load_topics(config: UltraChatConfig) -> list[str]:
    if config.topics is None:
        return word_list(PROMPTS, "meta_topics.txt")
    rows = load_rows(config.topics)
    if not rows:
        raise InputError(f"topics {config.topics} is empty")
    column = pick_column(rows, config.topics, None, ("topic", "text"))
    topics = list(dict.fromkeys(str(r[column]).strip() for r in rows if str(r.get(column) or "").strip()))
    if not topics:
        raise InputError(f"topics {config.topics} has no topic in column {column!r}")
    return topics


def run(config: UltraChatConfig) -> Outcome:
    from datasets import Value

    from distill.schemas import DIALOGUE, with_provenance

    check_models_have_a_place(config, {"--assistant-model": config.assistant_model, "--user-model": config.user_model})
    texts = load_texts(config) if config.materials else []
    tasks = [name.removesuffix(".j2") for name in names(PROMPTS, "materials")]
    plans = plan_dialogues(config, load_topics(config), word_list(PROMPTS, "creation_kinds.txt"), texts, tasks)
    features = with_provenance(DIALOGUE, **{k: Value("int64" if k == "num_turns" else "string") for k in PROVENANCE})

    def make_work(client: Client):
        pipeline = UltraChat(config, client, texts)
        return pipeline.dialogue

    def build(records: list[dict[str, Any]]) -> Built:
        rows, filters, notes = postprocess(records, config)
        return split_dataset(rows, features, config.test_size, config.seed, SFT_SPLITS, filters=filters, notes=notes)

    return execute(METHOD, config, [(str(i), plan) for i, plan in enumerate(plans)], make_work, build, models_of(config))


def models_of(config: UltraChatConfig) -> list:
    """The models the run asks: the assistant and the simulated user."""
    return [config.assistant_model, config.user_model or config.assistant_model]


METHOD = GenerationMethod(
    command="generate ultrachat",
    config=UltraChatConfig,
    run=run,
    help="UltraChat-style multi-turn dialogues (Ding et al. 2023) for supervised fine-tuning.\n\n"
         "Opening requests from three sectors (questions about the world, creation and generation, assistance on "
         "existing materials), then a dialogue between an assistant model and a user-simulator model. Writes "
         "train_sft/test_sft splits with the columns of HuggingFaceH4/ultrachat_200k. With no backend and no endpoint "
         "it runs the embedded llama.cpp model (a small base model: for demos and tests, not production data).",
    title="UltraChat multi-turn dialogues",
    paper="Ding et al. 2023, Enhancing Chat Language Models by Scaling High-quality Instructional Conversations",
    paper_url="https://arxiv.org/abs/2305.14233",
    description=(
        "Opening requests come from three sectors: questions about the world (meta-topic, then "
        "subtopics, then questions, each written by the teacher), creation and generation (writing "
        "requests for kinds of material, some rewritten in more detail) and assistance on existing "
        "materials (a text with a task). For each, an assistant model answers and a user-simulator "
        "model writes the next user turn, for a seeded number of rounds. Dialogues with an assistant "
        "that disowns emotions or opinions or calls itself a language model were dropped, and turns "
        "starting in lower case were recased, as in ultrachat_200k."
    ),
    made="dialogues made",
    next_step="look at them with `distill stats {out}`; clean them with `distill filter dedup {out} -o {out}-clean`; "
              "train on them with `distill train sft`",
    schema="DIALOGUE",
    prompts=PROMPTS,
)
