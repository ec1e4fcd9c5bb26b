"""Reading an AI judge's ratings and critiques (distill.pipelines.ultrafeedback_verdicts): schemas, tolerant
parsing, rejections, and fuzzing that the parsers never raise and never invent."""

from __future__ import annotations

import json
import random

import pytest

from distill.pipelines.ultrafeedback_verdicts import (
    Rating,
    aspect_schema,
    critique_schema,
    parse_aspect_reply,
    parse_critique_reply,
)

TYPES = ["Factual Error", "Logical Error", "Self-Contradiction", "None"]


def entry(text, rating, rationale="why", **extra):
    return {"text": text, "rating": rating, "rationale": rationale, **extra}


def reply(*entries) -> str:
    return json.dumps({"ratings": list(entries)})


def R(rating, rationale="why", type=None):
    if rating == "N/A":
        return Rating(rating=None, na=True, rationale=rationale, type=type)
    return Rating(rating=rating, na=False, rationale=rationale, type=type)


TWO = [R(4, "good"), R(2, "bad")]


# ================================================================ schemas

ALLOWED_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items",
                    "minItems", "maxItems", "enum", "anyOf"}


def walk(schema):
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from walk(sub)
    if "items" in schema:
        yield from walk(schema["items"])
    for sub in schema.get("anyOf", []):
        yield from walk(sub)


def validate(instance, schema) -> bool:
    """A validator for the subset of JSON schema the module writes."""
    if "anyOf" in schema:
        return any(validate(instance, s) for s in schema["anyOf"])
    kind = schema.get("type")
    if "enum" in schema and (instance not in schema["enum"] or isinstance(instance, bool)):
        return False
    if kind == "object":
        props = schema["properties"]
        return (isinstance(instance, dict) and set(schema["required"]) <= set(instance)
                and (schema.get("additionalProperties", True) or set(instance) <= set(props))
                and all(validate(v, props[k]) for k, v in instance.items() if k in props))
    if kind == "array":
        return (isinstance(instance, list) and schema.get("minItems", 0) <= len(instance)
                <= schema.get("maxItems", 10**9) and all(validate(v, schema["items"]) for v in instance))
    if kind == "integer":
        return isinstance(instance, int) and not isinstance(instance, bool)
    if kind == "string":
        return isinstance(instance, str)
    return False


def instance_of(schema, rng: random.Random):
    """A random instance of a schema; array items get text = 1..n in shuffled order."""
    if "anyOf" in schema:
        return instance_of(rng.choice(schema["anyOf"]), rng)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if schema["type"] == "object":
        return {k: instance_of(s, rng) for k, s in schema["properties"].items()}
    if schema["type"] == "array":
        items = [instance_of(schema["items"], rng) for _ in range(schema["minItems"])]
        order = list(range(1, len(items) + 1))
        rng.shuffle(order)
        for item, text in zip(items, order):
            item["text"] = text
        return items
    return f"rationale {rng.random():.3f}"


def test_aspect_schema_shape():
    schema = aspect_schema(3, allow_na=False, types=None)
    assert schema["required"] == ["ratings"] and schema["additionalProperties"] is False
    ratings = schema["properties"]["ratings"]
    assert ratings["type"] == "array" and ratings["minItems"] == ratings["maxItems"] == 3
    item = ratings["items"]
    assert set(item["properties"]) == {"text", "rating", "rationale"}
    assert set(item["required"]) == set(item["properties"])
    assert item["properties"]["text"] == {"type": "integer", "enum": [1, 2, 3]}
    assert item["properties"]["rating"] == {"type": "integer", "enum": [1, 2, 3, 4, 5]}
    assert item["properties"]["rationale"] == {"type": "string"}
    # the rationale comes before the rating: engines emit properties in schema order
    assert list(item["properties"]).index("rationale") < list(item["properties"]).index("rating")


def test_aspect_schema_na_and_types():
    item = aspect_schema(2, allow_na=True, types=TYPES)["properties"]["ratings"]["items"]
    assert item["properties"]["rating"] == {
        "anyOf": [{"type": "integer", "enum": [1, 2, 3, 4, 5]}, {"type": "string", "enum": ["N/A"]}]
    }
    assert item["properties"]["type"] == {"type": "string", "enum": TYPES}
    assert set(item["required"]) == {"text", "type", "rationale", "rating"}
    assert "type" not in aspect_schema(2, True, [])["properties"]["ratings"]["items"]["properties"]


@pytest.mark.parametrize("schema", [aspect_schema(1, False, None), aspect_schema(4, True, TYPES), critique_schema()])
def test_schemas_use_only_the_widely_supported_subset(schema):
    for node in walk(schema):
        assert set(node) <= ALLOWED_KEYWORDS
        if node.get("type") == "object":
            assert node["additionalProperties"] is False and set(node["required"]) == set(node["properties"])
    json.dumps(schema)  # plain JSON


def test_critique_schema_shape():
    schema = critique_schema()
    assert schema["properties"] == {
        "feedback": {"type": "string"},
        "overall_score": {"type": "integer", "enum": list(range(1, 11))},
    }
    assert schema["required"] == ["feedback", "overall_score"]


def test_schema_rejects_bad_arguments():
    with pytest.raises(ValueError):
        aspect_schema(0, False, None)
    with pytest.raises(ValueError):
        aspect_schema(2, False, ["Factual Error", "factual_error"])
    with pytest.raises(ValueError):
        parse_aspect_reply("{}", 0, False, None)


@pytest.mark.parametrize("seed", range(40))
def test_a_reply_built_from_the_schema_parses_back(seed):
    rng = random.Random(seed)
    n, allow_na, types = rng.randint(1, 6), rng.random() < 0.5, rng.choice([None, TYPES])
    schema = aspect_schema(n, allow_na, types)
    instance = instance_of(schema, rng)
    assert validate(instance, schema)
    parsed = parse_aspect_reply(json.dumps(instance), n, allow_na, types)
    assert parsed is not None and len(parsed) == n
    for e in instance["ratings"]:
        got = parsed[e["text"] - 1]
        assert got == R(e["rating"], e["rationale"], e.get("type"))

    critique = {"feedback": "Clear but incomplete.", "overall_score": rng.randint(1, 10)}
    assert validate(critique, critique_schema())
    assert parse_critique_reply(json.dumps(critique)) == (critique["overall_score"], critique["feedback"])


def test_the_validator_used_above_does_reject():
    schema = aspect_schema(2, False, None)
    assert not validate({"ratings": [entry(1, 4)]}, schema)
    assert not validate({"ratings": [entry(1, 6), entry(2, 4)]}, schema)
    assert not validate({"ratings": [entry(1, "N/A"), entry(2, 4)]}, schema)
    assert not validate({"ratings": [entry(1, 4, extra=1), entry(2, 4)]}, schema)


# ================================================================ aspect: accepted variants

CANONICAL = reply(entry(1, 4, "good"), entry(2, 2, "bad"))


@pytest.mark.parametrize("text", [
    CANONICAL,
    json.dumps(json.loads(CANONICAL), indent=2),
    f"```json\n{CANONICAL}\n```",
    f"```\n{CANONICAL}\n```",
    f"Here are my ratings:\n\n```json\n{CANONICAL}\n```\n\nLet me know if you need more.",
    f"Sure! {CANONICAL} Hope this helps {{:",
    json.dumps([entry(1, 4, "good"), entry(2, 2, "bad")]),  # a bare list
    json.dumps({"RATINGS": [{"Text": 1, "Rating": 4, "Rationale": "good"},
                            {"TEXT": 2, "RATING": 2, "RATIONALE": "bad"}]}),
    json.dumps({"ratings": [{"index": 1, "score": 4, "reason": "good"},
                            {"id": 2, "Score": 2, "explanation": "bad"}]}),
    json.dumps({"ratings": [{"position": 1, "rating": 4, "Explanation": "good"},
                            {"text_index": 2, "rating": 2, "justification": "bad"}]}),
    json.dumps({"ratings": [{"text": "Text 1", "rating": 4, "rationale": "good"},
                            {"text": "#2", "rating": 2, "rationale": "bad"}]}),
    json.dumps({"ratings": [{"text": "Output for Text 1", "rating": 4, "rationale": "good"},
                            {"Text": "text_2", "rating": 2, "rationale": "bad"}]}),
    json.dumps({"ratings": [entry(1.0, 4.0, "good"), entry(2, 2.0, "bad")]}),
    json.dumps({"ratings": [entry(1, "4", "good"), entry(2, "2/5", "bad")]}),
    json.dumps({"ratings": [entry(1, "Rating: 4", "good"), entry(2, "2 out of 5", "bad")]}),
    json.dumps({"ratings": [entry(1, "**4**", "good"), entry(2, "2 (poor)", "bad")]}),
    json.dumps({"ratings": [entry(1, "4 (out of 5)", "good"), entry(2, "Score: 2", "bad")]}),
    json.dumps({"ratings": [entry(1, "4.0", "good"), entry(2, " 2. ", "bad")]}),
    json.dumps({"Text 1": {"rating": 4, "rationale": "good"}, "Text 2": {"rating": 2, "rationale": "bad"}}),
    json.dumps({"result": {"evaluations": [entry(1, 4, "good"), entry(2, 2, "bad")]}}),
    json.dumps({"answer": [entry(1, 4, "good"), entry(2, 2, "bad")]}),
    '{"ratings": [{"text": 1, "rating": 4, "rationale": "good",}, {"text": 2, "rating": 2, "rationale": "bad",},],}',
    "{'ratings': [{'text': 1, 'rating': 4, 'rationale': 'good'}, {'text': 2, 'rating': 2, 'rationale': 'bad'}]}",
    "{ratings: [{text: 1, rating: 4, rationale: 'good'}, {text: 2, rating: 2, rationale: \"bad\"}]}",
    # the completion's text echoed in "text" on every entry: order of appearance
    json.dumps({"ratings": [{"text": "The capital is Paris.", "rating": 4, "rationale": "good"},
                            {"text": "It is Lyon.", "rating": 2, "rationale": "bad"}]}),
    json.dumps({"ratings": [{"rating": 4, "rationale": "good"}, {"rating": 2, "rationale": "bad"}]}),
    # the same answer twice agrees with itself
    f"{CANONICAL}\n\nTo repeat:\n{CANONICAL}",
    "Text 1:\nRating: 4\nRationale: good\nText 2:\nRating: 2\nRationale: bad",
    "Text 1: Rating: 4\nRationale: good\n\nText 2: Rating: 2/5\nRationale: bad\n",
    "**Text 1**\n- **Rating**: 4\n- **Rationale**: good\n\n**Text 2**\n- **Rating**: 2\n- **Rationale**: bad",
    "My evaluation follows.\n\n#### Output for Text 1\nRating: 4\nRationale: good\n\n"
    "#### Output for Text 2\nRating: 2\nRationale: bad\n",
    "Text 2:\nRating: 2\nRationale: bad\nText 1:\nRating: 4\nRationale: good",
    "Text 1 -\nRating for text 1: 4\nRationale: good\nText 2 -\nRating:\n2\nRationale: bad",
])
def test_accepted_variants(text):
    assert parse_aspect_reply(text, 2, False, None) == TWO


def test_plain_text_multiline_rationale_and_prose_mentions():
    text = ("I compared them. Text 2 is weaker than Text 1.\n\n"
            "Text 1:\nRating: 4\nRationale: Accurate and complete.\nText 2 is weaker.\n\n"
            "Text 2:\nRating: 2\nRationale: Misses the point.")
    assert parse_aspect_reply(text, 2, False, None) == [
        R(4, "Accurate and complete.\nText 2 is weaker."), R(2, "Misses the point.")]


def test_plain_text_single_completion_needs_no_heading():
    assert parse_aspect_reply("Rating: 5\nRationale: Perfect.", 1, False, None) == [R(5, "Perfect.")]
    assert parse_aspect_reply("Rating: 5", 1, False, None) == [R(5, "")]


def test_single_entry_object_when_n_is_1():
    assert parse_aspect_reply('{"text": 1, "rating": 3, "rationale": "ok"}', 1, False, None) == [R(3, "ok")]
    assert parse_aspect_reply('{"rating": 3, "rationale": "ok"}', 2, False, None) is None


def test_missing_rationale_keeps_the_rating():
    assert parse_aspect_reply(json.dumps([{"text": 1, "rating": 3}]), 1, False, None) == [R(3, "")]


def test_ultrafeedback_truthfulness_format():
    text = """#### Output for Text 1
Type: 1. Factual Error
Rationale: Claims Sydney is the capital.
Rating: 2
Rationale: Severe hallucination.

#### Output for Text 2
Type: None
Rationale: No hallucination.
Rating: 5 (No Hallucination)
Rationale: Accurate.

#### Output for Text 3
Type: Logical_Error
Rationale: Contradicts itself.
Rating: 3
Rationale: Partial hallucination."""
    got = parse_aspect_reply(text, 3, False, TYPES)
    assert [r.rating for r in got] == [2, 5, 3]
    assert [r.type for r in got] == ["Factual Error", "None", "Logical Error"]
    assert got[0].rationale == "Claims Sydney is the capital.\nSevere hallucination."


# ================================================================ aspect: ordering

def test_ordered_by_index_not_appearance():
    text = reply(entry(3, 1, "c"), entry(1, 5, "a"), entry(2, 3, "b"))
    assert parse_aspect_reply(text, 3, False, None) == [R(5, "a"), R(3, "b"), R(1, "c")]
    text = json.dumps({"Text 2": {"rating": 3}, "Text 1": {"rating": 5}})
    assert [r.rating for r in parse_aspect_reply(text, 2, False, None)] == [5, 3]


def test_missing_indexes_use_appearance_order_only_if_all_are_missing():
    text = json.dumps([{"rating": 1}, {"rating": 5}, {"rating": 3}])
    assert [r.rating for r in parse_aspect_reply(text, 3, False, None)] == [1, 5, 3]
    text = json.dumps([{"rating": 1}, {"text": 1, "rating": 5}, {"rating": 3}])
    assert parse_aspect_reply(text, 3, False, None) is None


# ================================================================ aspect: rejections

@pytest.mark.parametrize("text", [
    "",
    "   \n ",
    "I cannot rate these texts.",
    "garbage {{[[ ]] ,,, }}",
    reply(entry(1, 4)),  # missing position
    reply(entry(1, 4), entry(2, 3), entry(3, 3)),  # extra position
    reply(entry(1, 4), entry(1, 3)),  # duplicate position
    reply(entry(1, 4), entry(3, 3)),  # out-of-range position
    reply(entry(0, 4), entry(1, 3)),  # 0-based positions are not guessed
    reply(entry(1, 0), entry(2, 3)),
    reply(entry(1, 6), entry(2, 3)),
    reply(entry(1, -1), entry(2, 3)),
    reply(entry(1, 3.5), entry(2, 3)),
    reply(entry(1, "3.5"), entry(2, 3)),
    reply(entry(1, "3-4"), entry(2, 3)),
    reply(entry(1, "4 or 5"), entry(2, 3)),
    reply(entry(1, "8/10"), entry(2, 3)),  # another scale is not rescaled
    reply(entry(1, "four"), entry(2, 3)),
    reply(entry(1, ""), entry(2, 3)),
    reply(entry(1, True), entry(2, 3)),
    reply(entry(1, [4]), entry(2, 3)),
    reply(entry(1, "N/A"), entry(2, 3)),  # N/A not allowed here
    reply(entry(1, None), entry(2, 3)),
    reply({"text": 1, "rationale": "no rating"}, entry(2, 3)),
    reply({"text": 1, "rating": 4, "score": 3}, entry(2, 3)),  # two ratings that disagree
    reply({"text": 1, "index": 2, "rating": 4}, entry(2, 3)),  # two positions that disagree
    '{"ratings": [{"text": 1, "rating": 4, "rating": 2}, {"text": 2, "rating": 3}]}',  # duplicate key
    reply(entry(1, 4), entry(2, 3)) + "\nCorrection:\n" + reply(entry(1, 5), entry(2, 3)),  # two answers
    reply(entry(1, 4), entry(2, 3))[:-3],  # truncated
    '{"ratings": [{"text": 1, "rating": NaN}, {"text": 2, "rating": 3}]}',
    "Text 1:\nRating: 4\nText 2:\nRationale: forgot the rating",
    "Text 1:\nRating: 4\nText 1:\nRating: 2",  # duplicate heading
    "Text 1:\nRating: 4\nRating: 5\nText 2:\nRating: 2",  # two ratings for one text
    "Text 1:\nRating: 3.5\nText 2:\nRating: 2",
    "Text 1:\nRating: N/A\nText 2:\nRating: 2",
    "Text 1:\nRating for text 2: 4\nText 2:\nRating: 2",
    "Rating: 4\nRating: 2",  # two texts, no headings
    '{"ratings": [{"text": 1, "rating": 4, "rationale": "cut off here',  # plain-text fallback not tried
])
def test_rejections(text):
    assert parse_aspect_reply(text, 2, False, None) is None


def test_non_string_reply_is_unreadable():
    assert parse_aspect_reply(None, 2, False, None) is None  # type: ignore[arg-type]


# ================================================================ aspect: N/A

@pytest.mark.parametrize("na", ['"N/A"', '"n/a"', '"NA"', "null", '"Not applicable"', '"N/A."'])
def test_na_when_allowed(na):
    text = '{"ratings": [{"text": 1, "rating": %s, "rationale": "no claims"}, {"text": 2, "rating": 3}]}' % na
    assert parse_aspect_reply(text, 2, True, None) == [R("N/A", "no claims"), R(3, "")]
    assert parse_aspect_reply(text, 2, False, None) is None


def test_na_in_plain_text_and_python_literals():
    text = "Text 1:\nRating: N/A\nRationale: nothing to assess\nText 2:\nRating: 5\nRationale: honest"
    assert parse_aspect_reply(text, 2, True, None) == [R("N/A", "nothing to assess"), R(5, "honest")]
    assert parse_aspect_reply(text, 2, False, None) is None
    text = "[{'text': 1, 'rating': None, 'rationale': 'x'}, {'text': 2, 'rating': 2, 'rationale': 'y'}]"
    assert parse_aspect_reply(text, 2, True, None) == [R("N/A", "x"), R(2, "y")]


def test_na_is_never_zero():
    got = parse_aspect_reply(reply(entry(1, "N/A")), 1, True, None)
    assert got[0].rating is None and got[0].na is True


# ================================================================ aspect: types

@pytest.mark.parametrize("written, expected", [
    ("Factual Error", "Factual Error"),
    ("factual error", "Factual Error"),
    ("FACTUAL_ERROR", "Factual Error"),
    ("self contradiction", "Self-Contradiction"),
    ("1. Logical Error", "Logical Error"),
    (["Logical Error"], "Logical Error"),
    ("none", "None"),
    ("Made-up Error", None),  # unknown: rating kept, type None
    (["Factual Error", "Logical Error"], None),  # one type only
    (2, None),
])
def test_type_matching(written, expected):
    text = json.dumps([{"text": 1, "type": written, "rating": 2, "rationale": "r"}])
    assert parse_aspect_reply(text, 1, False, TYPES) == [R(2, "r", expected)]


def test_type_is_ignored_without_a_type_list():
    text = json.dumps([{"text": 1, "type": "Factual Error", "rating": 2, "rationale": "r"}])
    assert parse_aspect_reply(text, 1, False, None) == [R(2, "r", None)]


def test_type_in_plain_text():
    text = "Text 1:\nType: logical error\nRating: 3\nRationale: r"
    assert parse_aspect_reply(text, 1, False, TYPES) == [R(3, "r", "Logical Error")]


# ================================================================ critiques

@pytest.mark.parametrize("text, score", [
    ('{"feedback": "Good.", "overall_score": 7}', 7),
    ('```json\n{"feedback": "Good.", "overall_score": 7}\n```', 7),
    ("Here you go: {'feedback': 'Good.', 'overall_score': '7/10',}", 7),
    ('{"Feedback": "Good.", "Overall Score": 7.0}', 7),
    ('{"critique": {"feedback": "Good.", "score": "7 out of 10"}}', 7),
    ("Feedback: Good.\nOverall score: 7", 7),
    ("Feedback: Good.\n**Overall Score:** 7/10", 7),
    ("Feedback: Good.\nOverall Score - 7", 7),
    ("Feedback: Good.\n\nScore: 7", 7),
    ("Feedback: Good. I would give it a score of 7.", 7),
])
def test_critique_accepted(text, score):
    got, feedback = parse_critique_reply(text)
    assert got == score
    assert feedback.startswith("Good.")


@pytest.mark.parametrize("text, score", [
    ("Overall score: 10", 10),
    ("Overall score: 1", 1),
    ("Overall Score: 10\n", 10),
    ("Overall Score: 1\n", 1),
    ("**Overall score:** 10.", 10),
    ("**Overall score:** 1.", 1),
    ("1/10", 1),
    ("10/10", 10),
    ("Rated 10/10.", 10),
    ("Rated 1/10.", 1),
    ("I give it a score of 1.", 1),
    ("I give it a score of 10.", 10),
    ("score of 1.", 1),
    ('{"feedback": "x", "overall_score": 10}', 10),
    ('{"feedback": "x", "overall_score": 1}', 1),
    ('{"feedback": "x", "overall_score": "10"}', 10),
    ('{"feedback": "x", "overall_score": "1"}', 1),
    ('{"feedback": "x", "overall_score": "10/10"}', 10),
    ('{"feedback": "x", "overall_score": "1/10"}', 1),
])
def test_overall_score_1_and_10_not_confused_upstream_ultrafeedback_bug(text, score):
    """Upstream UltraFeedback read the critique score with a one-digit pattern, so a 10
    came out as 1 (and the reverse fix read 1 as 10). Numbers must be read whole."""
    assert parse_critique_reply(text)[0] == score


@pytest.mark.parametrize("text", [
    "",
    "No score here, just words.",
    "Overall score: 0",
    "Overall score: 11",
    "Overall score: -1",
    "Overall score: 8.5",
    "Overall score: ten",
    "Overall score: 4/5",  # another scale
    "Overall score: 4 (out of 5)",
    "Overall score: 7\nOverall score: 3",  # two different scores
    "Score: 7. Later: score: 8.",
    '{"feedback": "x", "overall_score": 0}',
    '{"feedback": "x", "overall_score": 11}',
    '{"feedback": "x", "overall_score": 7.5}',
    '{"feedback": "x", "overall_score": true}',
    '{"feedback": "x", "overall_score": "N/A"}',
    '{"feedback": "x", "overall_score": 7, "score": 8}',
    '{"feedback": "x", "overall_score": 7}\n{"feedback": "y", "overall_score": 3}',
    '{"feedback": "A score of 3 would be fair", "overall_score": 1',  # truncated from 10
])
def test_critique_unreadable_score(text):
    assert parse_critique_reply(text)[0] is None


def test_critique_feedback():
    assert parse_critique_reply('{"feedback": "  Tight. ", "overall_score": 9}') == (9, "Tight.")
    assert parse_critique_reply('{"feedback": "Tight."}') == (None, "Tight.")
    assert parse_critique_reply("Feedback: Tight and clear.\nOverall score: 9") == (9, "Tight and clear.")
    assert parse_critique_reply("Tight and clear.\n\nOverall score: 9") == (9, "Tight and clear.")
    assert parse_critique_reply('{"feedback": "cut') == (None, "")
    assert parse_critique_reply(None) == (None, "")  # type: ignore[arg-type]


# ================================================================ fuzz

PROSE = [
    ("", ""),
    ("Here is my evaluation:\n\n", "\n\nI hope this helps!"),
    ("```json\n", "\n```"),
    ("Sure. ```json\n", "\n```\nLet me know."),
    ("Ratings below ->\n", ""),
]
RATIONALES = ["Accurate.", "Misses the point, but it's close.", "Says \"Paris\" {wrongly}.",
              "Rating: 5 would be too high; text 2 is worse.", "Ünïcödé ✓ 数字 3", "", "Line one.\nLine two."]


def random_case(rng: random.Random):
    """A valid reply in a random format, with its parameters and the expected ratings."""
    n = rng.randint(1, 5)
    allow_na = rng.random() < 0.4
    types = TYPES if rng.random() < 0.5 else None
    expected, entries = [], []
    for i in range(1, n + 1):
        value = "N/A" if allow_na and rng.random() < 0.2 else rng.randint(1, 5)
        rationale = rng.choice(RATIONALES)
        kind = rng.choice(TYPES) if types else None
        expected.append(R(value, rationale.strip(), kind))
        e = {"text": i}
        if kind:
            e["type"] = kind
        e.update(rationale=rationale, rating=value)
        entries.append(e)
    shuffled = entries[:]
    rng.shuffle(shuffled)
    style = rng.choice(["json", "pretty", "list", "single", "plain"])
    if style == "plain":
        blocks = []
        for e in shuffled:
            lines = [f"Text {e['text']}:"] + ([f"Type: {e['type']}"] if "type" in e else [])
            lines += [f"Rating: {e['rating']}", f"Rationale: {e['rationale']}"]
            blocks.append("\n".join(lines))
        body = "\n\n".join(blocks)
    elif style == "list":
        body = json.dumps(shuffled, ensure_ascii=rng.random() < 0.5)
    elif style == "pretty":
        body = json.dumps({"ratings": shuffled}, indent=rng.choice([1, 2, 4]))
    elif style == "single":
        body = repr({"ratings": shuffled})  # Python-literal style: single quotes
    else:
        body = json.dumps({"ratings": shuffled}, ensure_ascii=rng.random() < 0.5)
    before, after = rng.choice(PROSE)
    return before + body + after, n, allow_na, types, expected, style


def check_shape(got, n, allow_na):
    if got is None:
        return
    assert isinstance(got, list) and len(got) == n
    for r in got:
        assert isinstance(r, Rating) and isinstance(r.rationale, str)
        if r.na:
            assert allow_na and r.rating is None
        else:
            assert type(r.rating) is int and 1 <= r.rating <= 5


def test_fuzz_valid_cases_parse():
    rng = random.Random(1)
    for _ in range(300):
        text, n, allow_na, types, expected, style = random_case(rng)
        got = parse_aspect_reply(text, n, allow_na, types)
        assert got is not None, text
        if style == "plain":  # plain-text rationales are not quoted, so compare ratings
            expected = [R(e.rating if not e.na else "N/A", "", e.type) for e in expected]
            got = [R(g.rating if not g.na else "N/A", "", g.type) for g in got]
        assert got == expected, text


def test_fuzz_truncation_never_returns_a_wrong_rating():
    rng = random.Random(2)
    cases = 0
    for _ in range(20):
        text, n, allow_na, types, expected, style = random_case(rng)
        for cut in range(len(text) + 1):
            got = parse_aspect_reply(text[:cut], n, allow_na, types)
            check_shape(got, n, allow_na)
            cases += 1
            if got is not None:
                assert [(g.rating, g.na) for g in got] == [(e.rating, e.na) for e in expected], text[:cut]
                if style != "plain":  # JSON values are only read when complete
                    assert got == expected, text[:cut]
    assert cases >= 2000


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(text) + 1)
        if op == 0 and text:  # delete a character
            text = text[:i] + text[i + 1:]
        elif op == 1 and i < len(text):  # duplicate a character
            text = text[:i] + text[i] + text[i:]
        elif op == 2:  # inject random unicode (surrogates and controls included)
            text = text[:i] + "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 3))) + text[i:]
        elif op == 3:  # inject JSON-ish syntax
            text = text[:i] + rng.choice(['{', '}', '[', ']', '"', "'", ',', ':', '5', '10', 'N/A', '\n']) + text[i:]
        elif op == 4:  # wrap in prose
            text = rng.choice(["Answer: ", "```json\n", "Text 1:\n"]) + text + rng.choice(["", "\n```", " Rating: 3"])
        elif op == 5:  # swap two slices
            j = rng.randrange(len(text) + 1)
            a, b = sorted((i, j))
            text = text[b:] + text[a:b] + text[:a]
        else:  # truncate
            text = text[:i]
    return text


def test_fuzz_mutations_never_raise_and_keep_the_shape():
    rng = random.Random(3)
    for _ in range(2500):
        text, n, allow_na, types, _, _ = random_case(rng)
        bad = mutate(text, rng)
        check_shape(parse_aspect_reply(bad, n, allow_na, types), n, allow_na)
        score, feedback = parse_critique_reply(bad)
        assert score is None or (type(score) is int and 1 <= score <= 10)
        assert isinstance(feedback, str)


def test_fuzz_swapped_entries_parse_the_same():
    rng = random.Random(4)
    for _ in range(300):
        _, n, allow_na, types, expected, _ = random_case(rng)
        entries = [{"text": i + 1, "rating": "N/A" if e.na else e.rating, "rationale": e.rationale,
                    **({"type": e.type} if e.type else {})} for i, e in enumerate(expected)]
        rng.shuffle(entries)
        assert parse_aspect_reply(json.dumps({"ratings": entries}), n, allow_na, types) == expected


def test_fuzz_random_strings_never_raise():
    rng = random.Random(5)
    alphabet = list('{}[]":,\' \n0123456789./-') + ["rating", "Rating: ", "text", "Text 1:", "N/A", "null",
                                                   "score", "Overall score: ", "ratings", "#### Output for "]
    for _ in range(2500):
        if rng.random() < 0.5:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        else:
            s = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 40)))
        n = rng.randint(1, 4)
        allow_na = rng.random() < 0.5
        check_shape(parse_aspect_reply(s, n, allow_na, rng.choice([None, TYPES])), n, allow_na)
        score, feedback = parse_critique_reply(s)
        assert score is None or (type(score) is int and 1 <= score <= 10)


def test_fuzz_critique_truncation_never_returns_a_wrong_score():
    rng = random.Random(6)
    for _ in range(15):
        score = rng.choice([1, 10, rng.randint(1, 10)])
        feedback = rng.choice(["Good, but a score of 3 would be fair.", "Overall score: 2 was my first thought.", "Fine."])
        text = rng.choice(PROSE)[0] + json.dumps({"feedback": feedback, "overall_score": score}) + rng.choice(PROSE)[1]
        for cut in range(len(text) + 1):
            got, _ = parse_critique_reply(text[:cut])
            assert got is None or got == score, text[:cut]


def test_pathological_inputs_are_bounded():
    for text in ["[" * 5000, "{" * 5000, '{"a":' * 3000, "[{" * 2000 + '"rating": 4', "Text 1:\n" * 2000,
                 "[" + "1" * 5000 + "]", "{'rating': " + "4" * 5000 + "}", "Rating: " + "4" * 5000,
                 "Overall score: " + "1" * 5000, "[" + "{} " * 3000 + "]"]:
        assert parse_aspect_reply(text, 2, False, None) is None
        assert parse_critique_reply(text)[0] is None
