"""The fake backend's default replies: in the shape each pipeline's prompt asks for.

`shaped_reply(request)` reads what the request carries (a JSON schema, an answer prefix,
a plain prompt or chat messages, the wording of the prompts in prompts/) and answers
like an obliging teacher would: numbered lists where a list is asked, a JSON object that
follows the schema, CAMEL's "Instruction:/Input:" and "Solution: ... Next request." turns,
the simulated UltraChat user's next question, Self-Instruct's task lists, Yes/No and
instances, Alpaca's whole tasks, a judge's ratings and critiques, and a plain answer otherwise (tagged
"[fake 1a2b3c4d]", as the old echo was).

A reply is a function of the request alone: its words are drawn by a random generator
seeded with the request's cache key, so a resumed run gets the same replies, and two
requests get different texts (built from a vocabulary of a few hundred words), so the
pipelines' repeat and near-duplicate checks keep most rows. The detection is one table,
SHAPES: the first shape whose test matches the request writes the reply.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from distill.request import Request

__all__ = ["SHAPES", "shape_of", "schema_instance", "shaped_reply"]

# -- vocabulary ----------------------------------------------------------------------------------
# Plain words only: nothing a pipeline reads as a marker (Input:, Solution:, score, ...),
# a refusal, an "as an AI", or one of Self-Instruct's unsuited keywords (image, map, ...).

NOUNS = """river harbour garden bridge market lantern orchard village library meadow engine kitchen
festival workshop mountain journal compass bicycle museum theatre island forest canal tower valley
recipe budget ledger sensor battery glacier vineyard bakery telescope notebook school clinic railway
airport factory studio cottage lighthouse windmill pottery quilt violin ferry tram greenhouse beehive
pond cathedral courtyard fountain tunnel volcano desert reef prairie canyon monastery castle lagoon
chapel chimney harvest sailboat caravan barn granary mill loom anvil kettle teapot blanket saddle
ladder trellis clocktower observatory aquarium vegetable spice coffee tomato apple almond honey
cheese bread soup pasta salad sparrow falcon otter badger heron salmon turtle beetle oak maple willow
birch cedar fern moss pebble marble granite copper timber linen wool cotton""".split()
ADJECTIVES = """quiet ancient bright modest curious hidden northern coastal gentle busy rusty golden
narrow patient careful windy sunny frozen humble lively sturdy fragile elegant rural urban seasonal
local distant hollow crowded peaceful restless clever simple steady tidy wild hardy crisp mellow
rugged silver wooden stony sandy misty early late vivid calm brisk playful thrifty sleepy bold
friendly generous""".split()
VERBS = """shape follow support protect connect change feed guide measure reflect carry warm cool
shelter link balance power anchor mark fill cross reach circle border face light trace frame
guard serve drain cover slow steady brighten soften""".split()
IMPERATIVES = """Describe Explain Summarise Compare Outline Suggest Plan Estimate Rewrite Propose
Recommend Evaluate Contrast Review""".split()
OCCUPATIONS = """Accountant Architect Baker Beekeeper Biologist Carpenter Chef Chemist Coach Designer
Economist Editor Electrician Engineer Farmer Florist Gardener Geologist Historian Journalist
Lawyer Librarian Linguist Mechanic Musician Nurse Nutritionist Pharmacist Photographer Physician
Pilot Plumber Poet Potter Programmer Psychologist Researcher Sailor Scientist Shopkeeper Student
Surveyor Tailor Teacher Translator Veterinarian Weaver Writer""".split()


def _a(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _s(word: str) -> str:
    """The plural of a noun, the third person of a verb: "ferry" -> "ferries", "compass" -> "compasses"."""
    if word.endswith(("s", "sh", "ch", "x")) or (word.endswith("o") and word[-2] not in "aeiou"):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


class Words:
    """Texts drawn from the vocabulary by one seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def noun(self) -> str:
        return self.rng.choice(NOUNS)

    def adj(self) -> str:
        return self.rng.choice(ADJECTIVES)

    def verb(self) -> str:
        return self.rng.choice(VERBS)

    def thing(self) -> str:
        return f"{self.adj()} {self.noun()}"

    def sentence(self) -> str:
        n, a, v = self.noun, self.adj, self.verb
        forms = [
            lambda: f"The {a()} {n()} {_s(v())} the {n()} near the {a()} {n()}.",
            lambda: f"Every {n()} {_s(v())} {_a(a())} {n()}, so the {n()} stays {a()}.",
            lambda: f"{_a(a()).capitalize()} {n()} can {v()} the {n()} of {_a(a())} {n()} in {a()} weather.",
            lambda: f"Near the {n()}, {a()} {_s(n())} {v()} the {a()} {n()} each {n()} season.",
            lambda: f"Without {_a(n())}, the {a()} {n()} would {v()} the {n()} less well.",
            lambda: f"Most {_s(n())} {v()} {_a(n())} when the {n()} is {a()} and {a()}.",
        ]
        return self.rng.choice(forms)()

    def prose(self, low: int = 2, high: int = 4) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))

    def instruction(self) -> str:
        """A task for an assistant, Self-Instruct style; those starting with Classify/Decide are classification."""
        n, a, t = self.noun, self.adj, self.thing
        forms = [
            lambda: f"{self.rng.choice(IMPERATIVES)} how {_a(t())} can {self.verb()} the {n()} of {_a(t())}.",
            lambda: f"{self.rng.choice(IMPERATIVES)} the {n()} and the {n()} for {_a(a())} {n()} owner.",
            lambda: f"{self.rng.choice(IMPERATIVES)} three ways to keep {_a(t())} {a()} during the {n()} season.",
            lambda: f"Classify each {n()} from the {t()} as {a()} or {a()}.",
            lambda: f"Decide whether the {n()} described in the text is {a()} or {a()}.",
            lambda: f"Give advice to {_a(n())} keeper who wants {_a(t())} beside the {n()}.",
            lambda: f"Rewrite the sentence about the {t()} so that it sounds {a()}.",
            lambda: f"Suggest names for {_a(t())} that sells {_s(n())} and {_s(n())}.",
        ]
        return self.rng.choice(forms)()


# -- what the request carries --------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The parts of a request the shapes look at."""

    request: Request
    system: str  # the first system message, or ""
    text: str  # the plain prompt, or the last user message

    @classmethod
    def of(cls, request: Request) -> "View":
        if request.prompt is not None:
            return cls(request, "", request.prompt)
        messages = request.messages
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
        return cls(request, system, last_user)

    @property
    def chat(self) -> bool:
        return self.request.messages is not None

    def own_turns(self) -> int:
        """How many turns this model already wrote in the conversation (its `assistant` turns)."""
        return sum(m["role"] == "assistant" for m in self.request.messages or ())


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE | re.MULTILINE) is not None


def shape_of(request: Request) -> str:
    """The name of the shape the default reply to this request takes."""
    view = View.of(request)
    return next(name for name, test, _ in SHAPES if test(view))


def shaped_reply(request: Request) -> str:
    """The fake backend's default reply: deterministic, in the shape the request asks for."""
    view = View.of(request)
    key = request.key()
    words = Words(random.Random(int(key[:16], 16)))
    write = next(write for _, test, write in SHAPES if test(view))
    text = write(view, words, key)
    prefix = request.answer_prefix
    if prefix and not text.startswith(prefix):  # backends that prefill return the prefix as part of the text
        text = f"{prefix} {text}"
    return _cut_at_stop(text, request.params.stop)


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


# -- the writers, one per shape ------------------------------------------------------------------


def _answer(view: View, w: Words, key: str) -> str:
    return f"[fake {key[:8]}] {w.prose()}"


def _json(view: View, w: Words, key: str) -> str:
    return json.dumps(schema_instance(view.request.json_schema, w.rng), ensure_ascii=False)


def _asked_count(text: str, default: int = 5) -> int:
    """How many items a list prompt asks for: "Give me 10 ...", "Write one ...", "Name 50 ..."."""
    match = re.search(r"\b(?:give me|write|name|suggest|list)\s+(\d{1,3}|one)\b", text, re.IGNORECASE)
    if not match:
        return default
    return 1 if match.group(1).lower() == "one" else max(1, int(match.group(1)))


def _list_item(kind: str, w: Words, text: str) -> str:
    n, a, t = w.noun, w.adj, w.thing
    if kind == "subtopic":
        return w.rng.choice([f"The {t()} and its {_s(n())}", f"{a().capitalize()} {_s(n())} of the {n()}",
                             f"How {_s(n())} {w.verb()} {_a(t())}"])
    if kind == "question":
        return w.rng.choice([
            f"Why does {_a(t())} {w.verb()} the {n()} of the {n()}?",
            f"How would {_a(n())} change if the {n()} became {a()}?",
            f"What is the difference between {_a(t())} and {_a(t())}?",
            f"Which {n()} is best for {_a(a())} {n()}, and why?",
        ])
    if kind == "request":
        found = re.search(r"\bwrite an? ([\w -]+?)\.", text, re.IGNORECASE)
        material = found.group(1) if found else "short piece"
        reader = w.rng.choice(OCCUPATIONS).lower()
        return f"Write {_a(material)} about the {t()} for {_a(reader)} who loves {_s(n())}, in {_a(a())} tone."
    if kind == "instruction":  # UltraChat's requests about a text of the materials corpus
        return w.rng.choice([f"Summarise what the text says about the {t()}.", f"What does the text suggest about the {n()}?",
                             f"Rewrite the part about the {t()} for {_a(a())} reader.",
                             f"Continue the text with a paragraph on the {n()}."])
    if kind == "role":
        return f"{a().capitalize()} {w.rng.choice(OCCUPATIONS)}"
    if kind == "task":
        return w.rng.choice([f"Plan {_a(t())} for the {n()} club", f"Prepare a guide to the {t()} and its {_s(n())}",
                             f"Design {_a(a())} {n()} schedule for the {n()} season"])
    return t().capitalize()


def _list_kind(text: str) -> str:
    match = re.search(r"\bone (\w+?) per line\b", text, re.IGNORECASE)
    if match:
        return match.group(1).lower()
    return "role" if _has(r"\b(?:roles?|people|occupations)\b", text) else "item"


def _numbered_list(view: View, w: Words, key: str) -> str:
    count, kind = _asked_count(view.text), _list_kind(view.text)
    items = _distinct(lambda: _list_item(kind, w, view.text), count)
    if _has(r"\balphabetically\b", view.text):
        items.sort()
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def _distinct(make: Callable[[], str], count: int) -> list[str]:
    items: dict[str, str] = {}
    for _ in range(count * 20):
        if len(items) == count:
            break
        item = make()
        items.setdefault(item.casefold(), item)
    return list(items.values())


def _task_list_chat(view: View, w: Words, key: str) -> str:
    first, last = map(int, re.search(r"\bnumbered (\d+) to (\d+)\b", view.text).groups())
    tasks = _distinct(w.instruction, last - first + 1)
    return "\n".join(f"{first + i}. {task}" for i, task in enumerate(tasks))


def _task_list_completion(view: View, w: Words, key: str) -> str:
    """A base model continuing a numbered list after the number the prompt ends with."""
    first = int(re.search(r"(\d+)\.[ \t]*$", view.text).group(1))
    tasks = _distinct(w.instruction, 8)
    return " " + "\n".join(f"{first + i}. {task}" if i else task for i, task in enumerate(tasks))


def _last_task(text: str) -> str:
    tasks = re.findall(r"(?m)^Task:[ \t]*(.+)$", text)
    return tasks[-1].strip() if tasks else ""


def _classification(view: View, w: Words, key: str) -> str:
    yes = re.match(r"(?:classify|decide whether|label|is |which\b|tell whether)", _last_task(view.text), re.IGNORECASE)
    answer = "Yes" if yes else "No"
    return answer if view.chat else f" {answer}"


def _labels(task: str) -> list[str]:
    """The class labels a task names ("... as quiet or busy", "... positive, negative or neutral")."""
    found = re.search(r"\b(?:as|is|be|either)\s+((?:[\w-]+,\s+)*[\w-]+,?\s+or\s+[\w-]+)", task, re.IGNORECASE)
    if not found:
        return ["Yes", "No"]
    labels = [part.strip() for part in re.split(r",\s*|\s+or\s+", found.group(1)) if part.strip()]
    return list(dict.fromkeys(label.capitalize() for label in labels))


def _instances_output_first(view: View, w: Words, key: str) -> str:
    blocks = [f"Class label: {label}\nInput: {w.sentence()}" for label in _labels(_last_task(view.text))]
    return "\n".join(blocks) + "\n"


def _instances_input_first(view: View, w: Words, key: str) -> str:
    if w.rng.random() < 0.25:  # a task that needs no input
        return f"Output: {w.prose(1, 2)}\n"
    examples = w.rng.randint(1, 3)
    return "".join(f"Example {i}\nInput: {w.sentence()}\nOutput: {w.prose(1, 2)}\n" for i in range(1, examples + 1))


def _alpaca_tasks(view: View, w: Words, key: str) -> str:
    """Alpaca's list of whole tasks, continued in its "###" blocks up to the length it names
    (the request's stop sequences then cut it where the last number begins, as they do a model)."""
    numbers = [int(n) for n in re.findall(r"(?m)^(\d+)\. Instruction:", view.text)]
    first = max(numbers) + (1 if view.chat else 0)  # a plain prompt ends with the first new "N. Instruction:"
    named = re.search(r"\blist of (\d+)\b", view.text)
    total = int(named.group(1)) if named else 20
    blocks = []
    for number, instruction in enumerate(_distinct(w.instruction, max(1, total - first + 1)), first):
        given = w.sentence() if w.rng.random() < 0.6 else "<noinput>"
        head = f" {instruction}" if number == first and not view.chat else f"{number}. Instruction: {instruction}"
        blocks.append(f"{head}\n{number}. Input:\n{given}\n{number}. Output:\n{w.prose(1, 2)}\n")
    return "###\n".join(blocks) + "###\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _camel_user(view: View, w: Words, key: str) -> str:
    """The AI user: one instruction a turn; the task is done after 2 to 4 of them."""
    end = re.search(r"<[A-Z][A-Z_]*>", view.system)
    exchanges = 2 + int(_digest(view.system), 16) % 3  # the same for every turn of one dialogue
    if view.own_turns() >= exchanges:
        return end.group(0) if end else "<CAMEL_TASK_DONE>"
    given = "None" if w.rng.random() < 0.4 else w.sentence()
    return f"Instruction: {w.instruction()}\nInput: {given}"


def _camel_assistant(view: View, w: Words, key: str) -> str:
    return f"Solution: {w.prose(2, 3)}\nNext request."


def _ultrachat_user(view: View, w: Words, key: str) -> str:
    n, t = w.noun, w.thing
    return w.rng.choice([
        f"Interesting. How does that work for {_a(t())} near the {n()}?",
        f"Could you give me an example with {_a(t())} and {_a(n())}?",
        f"I'm not sure about the {n()} part. Why would {_a(t())} {w.verb()} it?",
        f"Thanks. What should I read next about the {t()}?",
        f"That makes sense. Is it different for {_a(t())} in the {n()} season?",
        f"Hmm, my {n()} is rather {w.adj()}. Would that change the advice about the {n()}?",
        f"Can you compare that with what happens to {_a(t())}?",
        f"What would you do first if the {n()} were {w.adj()} and the {n()} {w.adj()}?",
        f"Is there a simple way to remember this, say with {_a(n())} and {_a(t())}?",
    ])


def _rewrite(view: View, w: Words, key: str) -> str:
    """The task or request the prompt quotes (CAMEL's specifier, UltraChat's detailed
    request), with concrete details added; within the word limit if one is given."""
    quoted = re.search(r"\bthis task: ([^\n]+)|\bassistant:[ \t]*\n\s*\n([^\n]+(?:\n[^\n]+)*)", view.text)
    original = next((g for g in quoted.groups() if g), "") if quoted else ""
    original = " ".join(original.split()).rstrip(".") or w.instruction().rstrip(".")
    detail = w.rng.choice([f"for {_a(w.thing())} in the {w.noun()} season", f"in the style of {_a(w.thing())}",
                           f"with a {w.adj()} {w.noun()} as the example"])
    text = f"{original}, {detail}. Keep it {w.adj()} and mention the {w.noun()}."
    limit = re.search(r"\bat most (\d+) words\b", view.text)
    if limit and len(text.split()) > int(limit.group(1)):
        text = " ".join(text.split()[: int(limit.group(1))]).rstrip(",.") + "."
    return text


def _aspect_ratings(view: View, w: Words, key: str) -> str:
    """The judge's text form: one "Text N:" section per answer, with a type where asked."""
    count = len(re.findall(r"(?m)^Text \d+:\s*$", view.text))
    types = re.search(r"\bone of: (.+?)\.?\s*$", view.text, re.MULTILINE)
    sections = []
    for position in range(1, count + 1):
        lines = [f"Text {position}:"]
        if types:
            lines.append(f"Type: {w.rng.choice(types.group(1).split(', '))}")
        lines += [f"Rating: {w.rng.randint(1, 5)}", f"Rationale: {w.sentence()}"]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _critique(view: View, w: Words, key: str) -> str:
    return f"Feedback: {w.prose(1, 2)}\nOverall score: {w.rng.randint(1, 10)}"


# -- the shapes, in one table ---------------------------------------------------------------------
# (name, test, writer); the first test that matches the request picks the writer. Judge
# prompts come before Self-Instruct's, as they quote instructions and answers that may hold
# anything; the plain answer comes last.

SHAPES: list[tuple[str, Callable[[View], bool], Callable[[View, Words, str], str]]] = [
    ("json", lambda v: v.request.json_schema is not None, _json),
    ("camel_user", lambda v: _has(r"^Instruction:", v.system) and _has(r"^Input:", v.system), _camel_user),
    ("camel_assistant", lambda v: _has(r"Solution:", v.system) and _has(r"next request", v.system), _camel_assistant),
    ("ultrachat_user", lambda v: _has(r"\bhuman user\b", v.system) or _has(r"\buser's next message\b", v.text),
     _ultrachat_user),
    ("aspect_ratings", lambda v: _has(r"^Text 1:\s*$", v.text) and _has(r"\bone entry per text\b", v.text), _aspect_ratings),
    ("critique", lambda v: _has(r"overall[_ ]score", v.text) and _has(r"^Answer:\s*$", v.text), _critique),
    ("classification", lambda v: v.text.rstrip().endswith("Classification:") or _has(r"\bsame way: Yes or No\b", v.text),
     _classification),
    ("instances_output_first", lambda v: _has(r"^Class label:", v.text) and _has(r"^Task:", v.text), _instances_output_first),
    ("instances_input_first", lambda v: _has(r"^Example 1\s*$", v.text) and _has(r"^Output:", v.text) and _has(r"^Task:", v.text),
     _instances_input_first),
    ("alpaca_tasks", lambda v: _has(r"^\d+\. Instruction:", v.text) and _has(r"<noinput>", v.text), _alpaca_tasks),
    ("task_list_chat", lambda v: v.chat and _has(r"\bnumbered \d+ to \d+\b", v.text), _task_list_chat),
    ("task_list_completion", lambda v: not v.chat and re.search(r"(?:^|\n)\d+\.[ \t]*$", v.text) is not None,
     _task_list_completion),
    ("rewrite", lambda v: _has(r"^Rewrite the (?:task|request)\b", v.text), _rewrite),
    ("numbered_list", lambda v: (v.request.answer_prefix or "").startswith("1") or _has(r"\bnumbered list\b", v.text),
     _numbered_list),
    ("answer", lambda v: True, _answer),
]


# -- an instance of a JSON schema ----------------------------------------------------------------


def schema_instance(schema: dict, rng: random.Random) -> Any:
    """A value that validates against `schema` (the subset structured-output engines use):
    type, const, enum, anyOf/oneOf (the first branch most often), allOf, $ref into the
    schema, object properties, arrays within minItems/maxItems (uniqueItems honoured),
    integers and numbers within minimum/maximum, strings within minLength/maxLength.

    In an array of objects, the first integer property whose enum has exactly as many
    values as the array has items numbers the items in order (a judge's "text": 1..n),
    so every position is rated once."""
    return _Instance(schema, Words(rng)).build(schema)


class _Instance:
    def __init__(self, root: dict, words: Words):
        self.root = root
        self.words = words
        self.rng = words.rng

    def build(self, schema: Any, slot: tuple[int, int] | None = None) -> Any:
        if not isinstance(schema, dict):
            return None  # `true`/`{}` accept anything
        if "$ref" in schema:
            return self.build(self.resolve(schema["$ref"]), slot)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = schema[key]
                weights = [3] + [1] * (len(branches) - 1)
                return self.build(self.rng.choices(branches, weights=weights)[0], slot)
        if "allOf" in schema:
            return self.build(self.merge(schema), slot)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema or "prefixItems" in schema else "string"
        return getattr(self, f"_{kind}")(schema, slot)

    def resolve(self, ref: str) -> dict:
        node: Any = self.root
        for part in ref.removeprefix("#").strip("/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def merge(self, schema: dict) -> dict:
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part["$ref"]) if "$ref" in part else part
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _object(self, schema: dict, slot) -> dict:
        properties = schema.get("properties", {})
        positional = None
        if slot is not None:
            positional = next((name for name, prop in properties.items()
                               if isinstance(prop, dict) and prop.get("type") == "integer"
                               and len(prop.get("enum", ())) == slot[1]), None)
        return {name: prop["enum"][slot[0]] if name == positional else self.build(prop)
                for name, prop in properties.items()}

    def _array(self, schema: dict, slot) -> list:
        prefix = schema.get("prefixItems", [])
        low = schema.get("minItems", 1)
        count = self.rng.randint(low, schema.get("maxItems", max(low, 3)))
        if schema.get("items") is False:
            count = min(count, len(prefix))
        items: list = []
        for index in range(count):
            item_schema = prefix[index] if index < len(prefix) else schema.get("items", {})
            value = self.build(item_schema, (index, count))
            for _ in range(20):  # uniqueItems: draw again
                if not schema.get("uniqueItems") or value not in items:
                    break
                value = self.build(item_schema, (index, count))
            items.append(value)
        return items

    def _string(self, schema: dict, slot) -> str:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        text = self.words.sentence()
        while len(text) < low:
            text += " " + self.words.sentence()
        return text if high is None else text[:high]

    def _bounds(self, schema: dict, step: float) -> tuple[float, float]:
        low = schema.get("minimum", schema["exclusiveMinimum"] + step if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - step if "exclusiveMaximum" in schema else None)
        if low is None and high is None:
            low, high = 1, 10
        elif low is None:
            low = high - 10
        elif high is None:
            high = low + 10
        return low, high

    def _integer(self, schema: dict, slot) -> int:
        import math

        low, high = self._bounds(schema, 1)
        low, high = math.ceil(low), math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = math.ceil(low / step) * step
            return first + step * self.rng.randint(0, max(0, (high - first) // step))
        return self.rng.randint(low, high)

    def _number(self, schema: dict, slot) -> float:
        low, high = self._bounds(schema, 0.01)
        return min(max(round(self.rng.uniform(low, high), 2), low), high)

    def _boolean(self, schema: dict, slot) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict, slot) -> None:
        return None
