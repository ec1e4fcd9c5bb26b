"""The fake backend's default replies: every pipeline runs end to end on it, deterministically."""

import asyncio
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from distill.backends.fake import FakeBackend
from distill.backends.fake_replies import schema_instance, shape_of, shaped_reply
from distill.parsing import list_items
from distill.pipelines.ultrafeedback_verdicts import (
    aspect_schema,
    critique_schema,
    parse_aspect_reply,
    parse_critique_reply,
)
from distill.prompting import render
from distill.request import Request, SamplingParams


def dataset(out: Path) -> dict[str, list[dict]]:
    """Every parquet file of a run's dataset, by its path inside the run."""
    files = sorted(out.glob("**/*.parquet"))
    return {str(f.relative_to(out)): pq.read_table(f).to_pylist() for f in files}


def prompts(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question {i}: how do rivers form?"} for i in range(6)])


COMMANDS = {
    "completions": lambda p: ["generate", "completions", "--input", p],
    "ultrachat": lambda p: ["generate", "ultrachat", "-n", "8", "--world-rounds", "2-3"],
    "camel": lambda p: ["generate", "camel", "-n", "6", "--num-roles", "4", "--tasks-per-pair", "2"],
    "alpaca": lambda p: ["generate", "alpaca", "-n", "6", "--batch-size", "2"],
    "self-instruct": lambda p: ["generate", "self-instruct", "-n", "6", "--batch-size", "2"],
    "ultrafeedback": lambda p: ["rate", "ultrafeedback", "--input", p, "--models", "a,b,c,d"],
    "zephyr": lambda p: ["zephyr", "--pool", "a,b", "--judge", "j", "--dialogues", "6", "--stop-after", "data"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs_on_the_fake_backend_and_twice_gives_the_same_rows(cli, tmp_path, command):
    made = []
    for name in ("first", "second"):
        out = tmp_path / name
        result = cli(*COMMANDS[command](prompts(tmp_path)), "--backend", "fake", "-o", out, "-q")
        assert result.code == 0, result.err
        rows = dataset(out)
        assert rows and all(rows.values()), rows.keys()
        made.append(rows)
    assert made[0] == made[1]


def test_the_run_keeps_most_rows(cli, tmp_path):
    result = cli("generate", "ultrachat", "-n", "10", "--backend", "fake", "-o", tmp_path / "u", "-q")
    assert result.code == 0, result.err
    rows = dataset(tmp_path / "u")["data/train_sft-00000-of-00001.parquet"]
    assert len(rows) == 10
    assert all(len(r["messages"]) >= 2 and r["messages"][-1]["role"] == "assistant" for r in rows)
    result = cli("generate", "camel", "-n", "6", "--num-roles", "4", "--tasks-per-pair", "2", "--backend", "fake",
                 "-o", tmp_path / "c", "-q")
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (tmp_path / "c" / "records.jsonl").read_text().splitlines()]
    assert {r["stop_reason"] for r in records} == {"task_done"}  # the AI user ends the task after a few turns
    assert all(2 <= r["num_turns"] <= 4 for r in records)


def test_completions_still_answer_recognisably(cli, tmp_path):
    result = cli("generate", "completions", "--input", prompts(tmp_path), "--backend", "fake", "-o", tmp_path / "r", "-q")
    assert result.code == 0, result.err
    rows = dataset(tmp_path / "r")["data/train-00000-of-00001.parquet"]
    assert all(r["response"].startswith("[fake ") for r in rows)
    assert len({r["response"] for r in rows}) == len(rows)


# -- the replies themselves ------------------------------------------------------------------------


def chat(*messages, **kwargs) -> Request:
    roles = ["system", "user"] if len(messages) == 2 else ["user"]
    return Request.chat("m", [{"role": r, "content": c} for r, c in zip(roles, messages)], **kwargs)


def test_a_reply_is_a_function_of_the_request():
    request = chat("Tell me about rivers.")
    assert shaped_reply(request) == shaped_reply(chat("Tell me about rivers."))
    assert shaped_reply(request) != shaped_reply(chat("Tell me about rivers.", sample=1))


def test_shapes_follow_the_prompts():
    listing = render("ultrachat", "world_subtopics.j2", n=7, topic="Rivers")
    reply = shaped_reply(chat(listing, answer_prefix="1."))
    assert reply.startswith("1.") and len(list_items(reply)) == 7
    roles = render("camel", "assistant_roles.j2", n=5)
    items = list_items(shaped_reply(chat(roles, answer_prefix="1.")))
    assert len(items) == 5 and items == sorted(items)
    classify = render("self_instruct", "classify.j2", chat=False, instruction="Classify the bird as small or large.")
    assert shape_of(Request.text("m", classify)) == "classification"
    assert shaped_reply(Request.text("m", classify, SamplingParams(stop=("\n",)))) == " Yes"
    bootstrap = render("self_instruct", "bootstrap.j2", chat=True, tasks=["Say a b c d.", "Name e f g h."], new=3)
    assert [shape_of(chat(bootstrap))] == ["task_list_chat"]
    assert len(list_items(shaped_reply(chat(bootstrap)), first=3)) == 3
    done = "<CAMEL_TASK_DONE>"
    user = render("camel", "user_system.j2", end_token=done, assistant_role="Chef", user_role="Poet", task="A menu")
    kickoff = render("camel", "kickoff.j2")
    assert shaped_reply(chat(user, kickoff)).startswith("Instruction: ")
    assistant = render("camel", "assistant_system.j2", assistant_role="Chef", user_role="Poet", task="A menu")
    solution = shaped_reply(chat(assistant, "Instruction: Plan it.\nInput: None"))
    assert solution.startswith("Solution: ") and solution.endswith("Next request.")
    aspect = render("ultrafeedback", "aspects/truthfulness.j2", instruction="Why?", texts=["a", "b", "c"],
                    types=["no hallucination", "factual error"])
    ratings = parse_aspect_reply(shaped_reply(chat(aspect)), 3, False, ["no hallucination", "factual error"])
    assert ratings is not None and all(r.type for r in ratings)
    critique = render("ultrafeedback", "critique.j2", instruction="Why?", answer="Because.")
    assert parse_critique_reply(shaped_reply(chat(critique)))[0] in range(1, 11)


# -- an instance of a JSON schema ------------------------------------------------------------------


def validates(value, schema: dict) -> bool:
    """The subset of JSON Schema that distill's schemas use (no jsonschema dependency)."""
    if "anyOf" in schema or "oneOf" in schema:
        branches = [validates(value, branch) for branch in schema.get("anyOf", schema.get("oneOf"))]
        return any(branches) if "anyOf" in schema else sum(branches) == 1
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if isinstance(kind, list):
        return any(validates(value, {**schema, "type": k}) for k in kind)
    if kind == "null":
        return value is None
    checks = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return False
    if kind in checks and not isinstance(value, checks[kind]):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return False
    if kind == "object":
        properties = schema.get("properties", {})
        if set(schema.get("required", [])) - set(value):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(properties):
            return False
        return all(validates(value[k], s) for k, s in properties.items() if k in value)
    if kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        return all(validates(item, schema.get("items", {})) for item in value)
    return True


@pytest.mark.parametrize("n", [1, 2, 4, 5, 7])
@pytest.mark.parametrize("allow_na, types", [(False, None), (True, None), (False, ["clear", "wrong", "thin", "long"])])
def test_json_replies_follow_the_judge_schemas(n, allow_na, types):
    schema = aspect_schema(n, allow_na, types)
    for sample in range(5):
        reply = shaped_reply(chat(f"Rate the {n} texts.", sample=sample, json_schema=schema))
        assert validates(json.loads(reply), schema), reply
        ratings = parse_aspect_reply(reply, n, allow_na, types)
        assert ratings is not None and len(ratings) == n, reply
    schema = critique_schema()
    for sample in range(5):
        reply = shaped_reply(chat("Critique the answer.", sample=sample, json_schema=schema))
        assert validates(json.loads(reply), schema)
        assert parse_critique_reply(reply)[0] in range(1, 11)


def test_schema_instances_of_other_shapes():
    schema = {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -3, "maximum": 3}}}},
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "minItems": 2, "maxItems": 2},
            "size": {"oneOf": [{"type": "integer", "minimum": 10, "maximum": 20}, {"type": "string", "enum": ["big"]}]},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "where": {"$ref": "#/$defs/point"},
            "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}, "none": {"type": "null"}}},
            "maybe": {"type": ["string", "null"]},
        },
        "required": ["name", "tags", "size", "ratio", "where", "nested"],
    }
    for seed in range(20):
        value = schema_instance(schema, random.Random(seed))
        assert validates(value, schema), value
        assert len(value["name"]) <= 12 and -3 <= value["where"]["x"] <= 3 and 0 <= value["ratio"] <= 1
        assert value["nested"]["none"] is None and isinstance(value["maybe"], str)


def test_tests_own_replies_come_first():
    backend = FakeBackend(reply=lambda request: "mine")
    assert asyncio.run(backend.complete(chat("Give me 3 items as a numbered list."))).text == "mine"
