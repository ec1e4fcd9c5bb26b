"""UltraChat (Ding et al. 2023): multi-turn dialogues between a simulated user and an assistant.

Opening requests come from three sectors, each built as the paper built it:
  world      Questions about the World: meta-topic -> subtopics -> questions per subtopic ->
             related questions per question, each level written by the teacher; the
             openings are drawn from that pool;
  creation   Creation and Generation: per kind of writing, a pool of writing requests
             written by the teacher, most of them (80%) rewritten into more detailed ones;
  materials  Assistance on Existing Materials: the teacher writes up to 5 requests about
             each text of the user's corpus; a template joins the text and one request.
Then, per opening request, the assistant answers and a user-simulator model writes the
next user turn from the dialogue so far (its instruction appended after the dialogue, with
the sector's goal and a kind of user drawn per dialogue), for a seeded number of rounds,
stopping early on a degenerate turn. Post-processing follows ultrachat_200k: truecasing
and dropping dialogues whose assistant disowns emotions or opinions.

Every dialogue is its own coroutine: no barrier between the turns of different dialogues.
Shared steps (the subtopics of a meta-topic, say) are asked once: the client merges
identical requests in flight and answers repeats from its cache.
"""

from __future__ import annotations

import bisect
import itertools
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
from distill.embedded import INSTRUCT
from distill.errors import InputError
from distill.export import SFT_SPLITS, Built, split_dataset
from distill.generation import execute
from distill.inputs import load_rows, pick_column
from distill.items import Outcome
from distill.methods import GenerationMethod
from distill.parsing import after_lead_in, parse_weights, same_text
from distill.prompting import names, patterns, render, word_list
from distill.request import Message, Response
from distill.seeding import derive_seed, rng_for
from distill.teacher import Teacher

PROMPTS = "ultrachat"  # the folder of this method's prompts
SECTORS = ("world", "creation", "materials")
# The paper's sectors are about the same size: ~500k world openings, 500k materials openings
# (100k texts x 5), the rest of its 1.47M dialogues creation; the release: 570k world dialogues.
DEFAULT_MIX = {"world": 1.0, "creation": 1.0, "materials": 1.0}
MATERIAL_CHARS = 3000  # longer texts are cut at a word boundary to fit small context windows
LIST_BATCH = 10  # a pool of writing requests is asked this many at a time (200 in one list is too long)
# The user's message ends where the user model, following the transcript it was shown, goes on to
# write the assistant's part (or another user turn) under the transcript's labels.
TURN_ENDS = ("\nAssistant:", "\nUser:")


def parse_mix(value: Any) -> dict[str, float]:
    """`world=0.5,creation=0.3,materials=0.2` (or a mapping) -> normalised weights."""
    weights = parse_weights(value, SECTORS, "sector", "world=0.5,creation=0.3,materials=0.2")
    total = sum(weights.values())
    return {name: weights[name] / total for name in SECTORS if weights.get(name)}


def parse_range(value: Any, what: str = "rounds", example: str = "3-7") -> tuple[int, int]:
    """`3-7` or `4` -> (low, high)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        low, _, high = str(value).partition("-")
        high = high or low
    try:
        low, high = int(low), int(high)
    except ValueError:
        raise ValueError(f"{what} are LOW-HIGH, like {example}, not {value!r}") from None
    if not 1 <= low <= high:
        raise ValueError(f"{what} need 1 <= LOW <= HIGH, not {value!r}")
    return low, high


def parse_rounds(value: Any) -> tuple[int, int]:
    return parse_range(value)


class UltraChatConfig(EngineConfig):
    PLAN_FILES: ClassVar[tuple[str, ...]] = ("topics", "materials")

    num_dialogues: int = Field(100, ge=1, description="Dialogues to make.", json_schema_extra=cli("-n"))
    sectors: dict[str, float] | None = Field(
        None, description="Mix of sectors, e.g. world=0.5,creation=0.3,materials=0.2.",
        json_schema_extra=cli(show="a third each; world and creation half each without --materials"))
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
    subtopics: tuple[int, int] = Field((30, 50), description="Subtopics asked per meta-topic, LOW-HIGH (drawn per "
                                       "topic) or one number.", json_schema_extra=cli(show="30-50"))
    questions_per_subtopic: int = Field(10, ge=1, le=100, description="Questions asked per subtopic.")
    related_questions: int = Field(10, ge=0, le=100, description="Related questions asked per question (0: openings "
                                   "are the subtopics' questions only).")
    instructions_per_kind: int = Field(200, ge=1, description="Writing requests per kind of writing in the creation "
                                       "pool (more when -n needs more).")
    detail_share: float = Field(0.8, ge=0, le=1, description="Share of creation requests rewritten in more detail.")
    material_questions: int = Field(5, ge=1, le=20, description="Requests the teacher writes about each text of the "
                                    "materials corpus.")
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
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, description="Presence penalty of every request (assistant, user, lists), as OpenAI's "
        "presence_penalty.",
        json_schema_extra=cli(show="the backend's"))
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="Frequency penalty of every request, as OpenAI's frequency_penalty: 0.5 keeps "
        "small teachers from looping until --max-new-tokens.", json_schema_extra=cli(show="the backend's"))
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
    polite_patterns: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "user_politeness.txt"),
        description="Regex: a sentence of a simulated user turn matching it whole is removed (thanks and praise; "
        "never a question); repeatable, replaces the built-in list.", json_schema_extra=cli(show="built in"))
    user_lead_in_patterns: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "user_lead_ins.txt"),
        description="Regex: a label-like lead-in at the start of a simulated user turn (\"Here is my next message:\") "
        "is removed; a turn that is only a lead-in ends the dialogue; repeatable, replaces the built-in list.",
        json_schema_extra=cli(show="built in"))
    user_meta_patterns: list[str] = Field(
        default_factory=lambda: word_list(PROMPTS, "user_meta.txt"),
        description="Regex: a simulated user turn matching it is meta-text (\"The user wants to know ...\"), not a "
        "message: the dialogue stops there; repeatable, replaces the built-in list.",
        json_schema_extra=cli(show="built in"))

    @field_validator("sectors", mode="before")
    @classmethod
    def _mix(cls, value: Any) -> Any:
        return None if value is None else parse_mix(value)

    @field_validator("world_rounds", "creation_rounds", "materials_rounds", mode="before")
    @classmethod
    def _rounds(cls, value: Any) -> tuple[int, int]:
        return parse_rounds(value)

    @field_validator("subtopics", mode="before")
    @classmethod
    def _subtopics(cls, value: Any) -> tuple[int, int]:
        return parse_range(value, "subtopics", "30-50")

    @field_validator("disclaimer_patterns", "user_as_assistant_patterns", "polite_patterns", "user_lead_in_patterns",
                     "user_meta_patterns")
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
    topic: str  # meta-topic, kind of writing, or "text N" of the materials corpus
    rounds: int
    # Where the opening sits in its sector's pool: world (subtopic, question, related question
    # or -1 for the question itself); creation (request,); materials (text, request).
    slot: tuple[int, ...]
    style: str  # the kind of user the simulated user plays
    detailed: bool = False  # creation: the request is rewritten in more detail
    template: str = ""  # materials: the template joining the text and the request


def allocate(n: int, mix: dict[str, float]) -> dict[str, int]:
    """n split over the sectors by weight, largest remainders first: the counts add up to n."""
    exact = {name: n * weight for name, weight in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(mix, key=lambda name: (-(exact[name] - counts[name]), SECTORS.index(name)))
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def subtopic_count(config: UltraChatConfig, topic: str) -> int:
    """How many subtopics are asked of a meta-topic: drawn from the seed, so every dialogue agrees."""
    return rng_for(config.seed, "subtopics", topic).randint(*config.subtopics)


def creation_pool(config: UltraChatConfig, kinds: list[str], count: int) -> int:
    """Writing requests per kind: the option, or more when the run needs more openings."""
    return max(config.instructions_per_kind, math.ceil(count / len(kinds)))


def plan_dialogues(config: UltraChatConfig, topics: list[str], kinds: list[str], texts: list[str],
                   templates: list[str], styles: list[str]) -> list[DialoguePlan]:
    """Every dialogue's plan, from the seed alone: a resumed run follows the same plan.

    Openings are drawn without replacement from each sector's pool, as the paper drew its
    opening lines from the questions and requests it had generated."""
    counts = allocate(config.num_dialogues, config.sectors)
    plans: list[DialoguePlan] = []

    def rounds(sector: str, key: object) -> int:
        return rng_for(config.seed, "rounds", sector, key).randint(*config.rounds(sector))

    def style(sector: str, key: object) -> str:
        return rng_for(config.seed, "style", sector, key).choice(styles)

    if counts.get("world"):
        per_question = 1 + config.related_questions
        per_subtopic = config.questions_per_subtopic * per_question
        sizes = [subtopic_count(config, topic) * per_subtopic for topic in topics]
        starts = [0, *itertools.accumulate(sizes)]
        total = starts[-1]
        if counts["world"] > total:
            raise InputError(f"{counts['world']} world dialogues need more openings than the {total} the topics give "
                             "(topics x subtopics x questions x (1 + related)): raise --related-questions or "
                             "--questions-per-subtopic, or give more --topics")
        for index in random.Random(derive_seed(config.seed, "world")).sample(range(total), counts["world"]):
            t = bisect.bisect_right(starts, index) - 1
            s, rest = divmod(index - starts[t], per_subtopic)
            q, r = divmod(rest, per_question)
            slot = (s, q, r - 1)
            plans.append(DialoguePlan("world", topics[t], rounds("world", (t, *slot)), slot, style("world", (t, *slot))))
    if counts.get("creation"):
        per_kind = creation_pool(config, kinds, counts["creation"])
        for index in random.Random(derive_seed(config.seed, "creation")).sample(range(len(kinds) * per_kind),
                                                                                 counts["creation"]):
            kind, j = divmod(index, per_kind)
            detailed = rng_for(config.seed, "detail", kind, j).random() < config.detail_share
            plans.append(DialoguePlan("creation", kinds[kind], rounds("creation", (kind, j)), (j,),
                                      style("creation", (kind, j)), detailed=detailed))
    if counts.get("materials"):
        total = len(texts) * config.material_questions
        if counts["materials"] > total:
            raise InputError(f"{counts['materials']} materials dialogues need more openings than the {total} the corpus "
                             f"gives ({len(texts)} texts x {config.material_questions} requests): give more texts or "
                             "raise --material-questions")
        order = list(range(len(texts)))
        random.Random(derive_seed(config.seed, "materials")).shuffle(order)
        for k in range(counts["materials"]):  # every text's first request before any text's second
            slot = (order[k % len(texts)], k // len(texts))
            template = rng_for(config.seed, "template", *slot).choice(templates)
            plans.append(DialoguePlan("materials", f"text {slot[0]}", rounds("materials", slot), slot,
                                      style("materials", slot), template=template))
    # Interleave the sectors, so any prefix of the run (-n smaller, a stopped run) is a mix.
    random.Random(derive_seed(config.seed, "order")).shuffle(plans)
    return plans


def clean_turn(text: str, speaker: str) -> str:
    """Strip whitespace and a leading "User:"/"Assistant:" label the model may have written."""
    text = text.strip()
    label = re.match(rf"^\s*{speaker}\s*:\s*", text, re.IGNORECASE)
    return text[label.end():].strip() if label else text


_QUOTED = re.compile(r'^(["“])([^"“”]+)["”]$', re.DOTALL)


def without_lead_in(text: str, lead_ins: list[re.Pattern]) -> str:
    """The turn without label-like lead-ins ("Here is my next message:") and, when one was
    taken off, without the quotes around the message that followed it."""
    stripped = text
    while stripped and (match := next((m for p in lead_ins if (m := p.match(stripped)) and m.end()), None)):
        stripped = stripped[match.end():].strip()
    if stripped != text and (quoted := _QUOTED.match(stripped)):
        stripped = quoted.group(2).strip()
    return stripped


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def strip_polite(text: str, polite: list[re.Pattern]) -> str:
    """The turn without its sentences of mere thanks or praise (never a question)."""
    sentences = _SENTENCE_END.split(text)
    kept = [s for s in sentences if s.rstrip().endswith("?") or not any(p.fullmatch(s.strip()) for p in polite)]
    return text if len(kept) == len(sentences) else " ".join(kept).strip()


class UltraChat:
    def __init__(self, config: UltraChatConfig, client: Client, texts: list[str], kinds: list[str]):
        self.config = config
        self.client = client
        self.texts = texts
        self.per_kind = creation_pool(config, kinds, allocate(config.num_dialogues, config.sectors).get("creation", 0))
        self.assistant_model = config.assistant_model.model if config.assistant_model else client.model
        self.user_model = config.user_model.model if config.user_model else self.assistant_model
        self.user_as_assistant = patterns(config.user_as_assistant_patterns)
        self.polite = patterns(config.polite_patterns)
        self.lead_ins = patterns(config.user_lead_in_patterns)
        self.user_meta = patterns(config.user_meta_patterns)
        self.teacher = Teacher(client, config.seed, config.top_p, config.presence_penalty, config.frequency_penalty)

    async def listing(self, template: str, salt: tuple, n: int, **values) -> list[str]:
        """The items the teacher wrote, less those a user would not open a dialogue with: the
        rules that stop a dialogue at a user turn (acting as the assistant, meta-text) hold for its
        first turn too."""
        items = await self.teacher.listing(self.assistant_model, template, render(PROMPTS, template, n=n, **values),
                                           self.config.list_max_new_tokens, self.config.temperature, *salt, n=n)
        return [item for item in items if not self.not_from_a_user(item)]

    def not_from_a_user(self, text: str) -> bool:
        return any(p.search(text) for p in (*self.user_as_assistant, *self.user_meta))

    # -- opening requests, one level at a time ------------------------------------------

    async def opening(self, plan: DialoguePlan) -> str | None:
        if plan.sector == "world":
            return await self.world_question(plan)
        if plan.sector == "creation":
            return await self.writing_request(plan)
        return await self.material_request(plan)

    async def world_question(self, plan: DialoguePlan) -> str | None:
        config, topic = self.config, plan.topic
        s, q, r = plan.slot
        subtopics = await self.listing("world_subtopics.j2", (topic,), n=subtopic_count(config, topic), topic=topic)
        if not subtopics:
            return None
        subtopic = subtopics[s % len(subtopics)]
        questions = await self.listing("world_questions.j2", (topic, subtopic), n=config.questions_per_subtopic,
                                       topic=topic, subtopic=subtopic)
        if not questions:
            return None
        question = questions[q % len(questions)]
        if r < 0:
            return question
        related = await self.listing("world_related.j2", (topic, question), n=config.related_questions,
                                     topic=topic, question=question)
        return related[r % len(related)] if related else None

    async def writing_request(self, plan: DialoguePlan) -> str | None:
        (j,) = plan.slot
        batch, position = divmod(j, LIST_BATCH)
        size = min(LIST_BATCH, self.per_kind - batch * LIST_BATCH)
        # Batches of one kind share the prompt; their seeds (salted with the batch) differ.
        requests = await self.listing("creation_instructions.j2", (plan.topic, batch), n=size, kind=plan.topic)
        if not requests:
            return None
        request = requests[position % len(requests)]
        if not plan.detailed:
            return request
        prompt = render(PROMPTS, "creation_detail.j2", instruction=request)
        reply = await self.teacher.ask(self.assistant_model, [{"role": "user", "content": prompt}],
                                       self.config.user_max_new_tokens, self.config.temperature, "detail", request)
        # A lead-in ("Here's a rewritten version:") is no part of the request; a rewrite that reads as the
        # assistant or as meta-text is no request at all: the request is used as it was.
        detailed = after_lead_in(clean_turn(reply.text, "user"))
        if not detailed or reply.finish_reason == "length" or self.not_from_a_user(detailed):
            return request
        return detailed

    async def material_request(self, plan: DialoguePlan) -> str | None:
        text_index, k = plan.slot
        text = self.texts[text_index]
        requests = await self.listing("materials_instructions.j2", ("materials", text_index),
                                      n=self.config.material_questions, text=text)
        if not requests:
            return None
        return render(PROMPTS, f"materials/{plan.template}", text=text, instruction=requests[k % len(requests)])

    # -- the dialogue ---------------------------------------------------------------------

    async def dialogue(self, dialogue_id: str, plan: DialoguePlan) -> dict[str, Any]:
        opening = await self.opening(plan)
        messages: list[Message] = []
        stop = "no_opening"
        if opening:
            messages, stop = await self.converse(dialogue_id, opening, plan)
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

    async def converse(self, dialogue_id: str, opening: str, plan: DialoguePlan) -> tuple[list[Message], str]:
        """Alternate assistant answers and simulated user turns; stop on a degenerate turn.

        The dialogue always ends on a complete assistant answer (or is empty)."""
        system = [{"role": "system", "content": self.config.system}] if self.config.system else []
        user_system = [{"role": "system", "content": render(PROMPTS, "user_system.j2", style=plan.style)}]
        messages: list[Message] = [{"role": "user", "content": opening}]
        for turn in range(plan.rounds):
            reply = await self.teacher.ask(self.assistant_model, system + messages, self.config.max_new_tokens,
                                           self.config.temperature, "assistant", dialogue_id, turn)
            answer = clean_turn(reply.text, "assistant")
            problem = self.bad_answer(answer, reply, messages)
            if problem:
                return messages[:-1], problem
            messages.append({"role": "assistant", "content": answer})
            if turn == plan.rounds - 1:
                break
            # The user's instruction comes after the dialogue, so the user model does not take it up as the assistant.
            transcript = render(PROMPTS, "user_turn.j2", messages=messages, sector=plan.sector)
            reply = await self.teacher.ask(self.user_model, user_system + [{"role": "user", "content": transcript}],
                                           self.config.user_max_new_tokens, self.config.user_temperature,
                                           "user", dialogue_id, turn, stop=TURN_ENDS)
            said = clean_turn(reply.text, "user")
            message = without_lead_in(said, self.lead_ins)
            question = strip_polite(message, self.polite)
            problem = self.bad_question(said, message, question, reply, messages)
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

    def bad_question(self, said: str, message: str, question: str, reply: Response,
                     messages: list[Message]) -> str | None:
        """What is wrong with a user turn: `said` as written, `message` without its lead-in,
        `question` without its polite sentences."""
        if reply.finish_reason == "length":
            return "truncated"
        if said and (not message or any(p.search(message) for p in self.user_meta)):
            return "meta_text"
        if message and not question:
            return "only_thanks"
        if not question:
            return "empty_turn"
        if any(p.search(question) for p in self.user_as_assistant):
            return "user_as_assistant"
        if any(same_text(m["content"], question) for m in messages):
            return "repeated_turn"
        return None


# -- post-processing, as ultrachat_200k -------------------------------------------------------

PROVENANCE = ("sector", "topic", "num_turns", "stop_reason", "assistant_model", "user_model")

# Truecasing: a sentence that starts in lower case ("Hello. how are you?") gets a capital.
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)  # code is left as it is
_CLOSERS = "\"'’”)\\]*_"  # quotes, brackets and emphasis that may close a sentence
_SENTENCE_START = re.compile(rf"(?:^|(?<=[\w{_CLOSERS}])(?P<end>[.!?]+|…)[{_CLOSERS}]*\s+)(?P<word>[a-z][\w'’-]*)")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf", "approx", "incl", "esp", "ca", "a.m", "p.m", "fig", "viz", "al"}
_NOT_A_WORD = re.compile(r"[A-Z0-9_/\\.@#$%=<>(){}\[\]]")  # iPhone, x1, snake_case, paths, calls, URLs


def truecase(text: str) -> tuple[str, int]:
    """The text with every sentence starting in a capital letter, and how many were changed.

    Code (fenced or inline) is left alone, and so are words that are not plain lower-case
    words (identifiers, paths, brand names like iPhone), the word after an abbreviation and
    the word after an ellipsis."""
    parts, changed, last = [], 0, 0
    for code in [*_CODE.finditer(text), None]:
        prose, n = _truecase_prose(text[last:code.start() if code else len(text)], at_start=last == 0)
        parts.append(prose)
        changed += n
        if code:
            parts.append(code.group(0))
            last = code.end()
    return "".join(parts), changed


def _truecase_prose(prose: str, at_start: bool) -> tuple[str, int]:
    changed = 0

    def capital(match: re.Match) -> str:
        nonlocal changed
        end, word = match.group("end"), match.group("word")
        if end is None and not at_start:
            return match.group(0)  # prose that goes on after a code span
        if end and (".." in end or "…" in end):
            return match.group(0)  # an ellipsis: the sentence goes on
        before = prose[: match.start("end")].rsplit(None, 1) if end == "." else []
        if before and before[-1].lstrip("(\"'“‘").casefold() in _ABBREVIATIONS:
            return match.group(0)
        token = prose[match.start("word"):].split(None, 1)[0].rstrip(".,;:!?\"'’”)]*_")
        if _NOT_A_WORD.search(token):
            return match.group(0)
        changed += 1
        at = match.start("word") - match.start()
        return match.group(0)[:at] + word[0].upper() + word[1:]

    return _SENTENCE_START.sub(capital, prose), changed


def postprocess(records: list[dict[str, Any]], config: UltraChatConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """Drop empty, disclaiming and too-short dialogues; truecase turns. Returns rows, filters, notes."""
    from distill.schemas import prompt_id

    disclaimers = patterns(config.disclaimer_patterns)
    removed = Counter()
    recased_turns = recased_sentences = 0
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
            content, changed = truecase(message["content"])
            recased_turns += changed > 0
            recased_sentences += changed
            fixed.append({"role": message["role"], "content": content})
        prompt = fixed[0]["content"]
        rows.append({"prompt": prompt, "prompt_id": prompt_id(prompt), "messages": fixed, **{k: record[k] for k in PROVENANCE}})
    filters = [{"name": name, "removed": removed[name]} for name in ("no-opening", "assistant-disclaimer", "min-turns")]
    notes = {
        "recased_turns": recased_turns,
        "recased_sentences": recased_sentences,
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
    kinds = word_list(PROMPTS, "creation_kinds.txt")
    plans = plan_dialogues(config, load_topics(config), kinds, texts, names(PROMPTS, "materials"),
                           word_list(PROMPTS, "user_styles.txt"))
    features = with_provenance(DIALOGUE, **{k: Value("int64" if k == "num_turns" else "string") for k in PROVENANCE})

    def make_work(client: Client):
        pipeline = UltraChat(config, client, texts, kinds)
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
    # The instruct model: the paper's teacher was a chat model (ChatGPT) playing both the assistant and the user.
    # Its answers are long (keep --max-new-tokens at 512; the longer ones end the dialogue there).
    embedded_default=INSTRUCT,
    help="UltraChat-style multi-turn dialogues (Ding et al. 2023) for supervised fine-tuning.\n\n"
         "Opening requests from three sectors (questions about the world, creation and generation, assistance on "
         "existing materials), then a dialogue between an assistant model and a user-simulator model. Writes "
         "train_sft/test_sft splits with the columns of HuggingFaceH4/ultrachat_200k. With no backend and no endpoint "
         "it runs the embedded llama.cpp model (a small instruct model: for demos and tests, not production data).",
    title="UltraChat multi-turn dialogues",
    paper="Ding et al. 2023, Enhancing Chat Language Models by Scaling High-quality Instructional Conversations",
    paper_url="https://arxiv.org/abs/2305.14233",
    description=(
        "Opening requests come from three sectors: questions about the world (meta-topic, then "
        "subtopics, then questions and related questions, each written by the teacher), creation and "
        "generation (writing requests for kinds of writing, most of them rewritten in more detail) and "
        "assistance on existing materials (requests the teacher wrote about a text, joined with the text). "
        "For each, an assistant model answers and a user-simulator model writes the next user turn, for a "
        "seeded number of rounds. Dialogues with an assistant that disowns emotions or opinions or calls "
        "itself a language model were dropped, and sentences starting in lower case were truecased, as in "
        "ultrachat_200k."
    ),
    made="dialogues made",
    next_step="look at them with `distill stats {out}`; clean them with `distill filter dedup {out} -o {out}-clean`; "
              "train on them with `distill train sft`",
    schema="DIALOGUE",
    prompts=PROMPTS,
)
