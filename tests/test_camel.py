"""CAMEL: roles, tasks, task specification, role-play under inception prompts, post-processing."""

import json
import re
from collections import Counter

import datasets
import pytest
from conftest import assert_one_line_error, kill_after_answers, start_distill, write_jsonl

from distill.backends.base import RejectedError
from distill.errors import ConfigError
from distill.parsing import list_items
from distill.pipelines import camel as cm
from distill.prompting import render
from distill.schemas import DIALOGUE, prompt_id, with_provenance
from distill.testing.openai_server import LoopbackServer

DONE_AFTER = 3  # exchanges before the scripted AI user says the task is done


def asked_for(prompt: str) -> int:
    match = re.search(r"\b(?:Name|Suggest) (\d+|one)\b", prompt)
    return 1 if match.group(1) == "one" else int(match.group(1))


def roles_of(system: str) -> tuple[str, str]:
    """(own role, partner's role) named by an inception prompt."""
    own, partner = re.match(r"Your role: (.+?)\. My role: (.+?)\. ", system).groups()
    return own, partner


def own_turns(messages: list[dict]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def scripted(messages: list[dict]) -> str:
    """A teacher that follows the prompts: role and task lists, specified tasks, both agents."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    last = messages[-1]["content"]
    if "you could play" in last:
        return "Sure! Here they are:\n" + "\n".join(f"{i}. Expert {i}" for i in range(1, asked_for(last) + 1))
    if "people who use the internet" in last:
        return "\n".join(f"{i}. Person {i}" for i in range(1, asked_for(last) + 1))
    if last.startswith("Suggest"):
        assistant, user = re.findall(r'"([^"]+)"', last)[:2]
        return "\n".join(f"{i}. Task {i} of {assistant} for {user}" for i in range(1, asked_for(last) + 1))
    if system.startswith("You turn broad task"):
        task = last.split("with this task: ")[1].split("\n")[0]
        return f"Specified task: {task}, done by Friday."
    if cm.END_TOKEN in system:  # the AI user
        turn = own_turns(messages)
        if turn == DONE_AFTER:
            return cm.END_TOKEN
        task = re.search(r"The task: (.+)", system).group(1)
        given = "None" if turn % 2 == 0 else f"the figures of week {turn}"
        return f"Instruction: Do step {turn + 1} of: {task}\nInput: {given}"
    if "Solution:" in system:  # the AI assistant
        instruction = cm.clean_instruction(last).split("\n")[0]
        return f"Solution: For '{instruction}', here is answer {own_turns(messages) + 1}.\nNext request."
    raise AssertionError(f"unscripted request: {last[:200]}")


class Teacher:
    """The scripted teacher on the fake backend, keeping every request it was sent."""

    def __init__(self, reply=scripted):
        self.reply = reply
        self.requests: list[list[dict]] = []
        self.params = []  # the sampling parameters of each request, in order

    def __call__(self, request):
        messages = [dict(m) for m in request.messages]
        self.requests.append(messages)
        self.params.append(request.params)
        return self.reply(messages)

    def asked(self, needle: str) -> list[list[dict]]:
        return [r for r in self.requests if needle in r[0]["content"]]


def run_fake(cli, tmp_path, monkeypatch, *args, teacher=None, name="run"):
    monkeypatch.setattr("distill.backends.fake.echo_reply", teacher or Teacher())
    out = tmp_path / name
    return cli("generate", "camel", "--backend", "fake", "-o", out, "-q", *args), out


def records_of(out) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


# -- planning and parsing -------------------------------------------------------------------------


def test_plans_are_seeded_and_use_every_task_of_a_pair(tmp_path):
    config = cm.CamelConfig(output=tmp_path, num_dialogues=95, tasks_per_pair=10)
    plans = cm.plan_dialogues(config, 50, 50)
    assert plans == cm.plan_dialogues(config, 50, 50) and len(plans) == len(set(plans)) == 95
    per_pair = Counter((p.assistant, p.user) for p in plans)
    assert len(per_pair) == 10 and sorted(per_pair.values()) == [5] + [10] * 9
    assert all(0 <= p.assistant < 50 and 0 <= p.user < 50 and 0 <= p.task < 10 for p in plans)
    assert len({(p.assistant, p.user) for p in plans[:10]}) > 3  # pairs interleaved
    other = cm.CamelConfig(output=tmp_path, num_dialogues=95, tasks_per_pair=10, seed=1)
    assert cm.plan_dialogues(other, 50, 50) != plans
    # The paper's whole grid: every task of every pair, once.
    whole = cm.CamelConfig(output=tmp_path, num_dialogues=24, tasks_per_pair=2)
    grid = cm.plan_dialogues(whole, 3, 4)
    assert len(grid) == 24 and set(grid) == {cm.RolePlayPlan(a, u, t) for a in range(3) for u in range(4) for t in range(2)}
    with pytest.raises(ConfigError, match="--num-dialogues 25 is more than"):
        cm.plan_dialogues(cm.CamelConfig(output=tmp_path, num_dialogues=25, tasks_per_pair=2), 3, 4)


def test_role_and_task_lists_parse():
    reply = scripted([{"role": "user", "content": render("camel", "assistant_roles.j2", n=3)}])
    assert list_items(reply) == ["Expert 1", "Expert 2", "Expert 3"]
    assert list_items("1. Accountant\n2. Actor\n3. Archi", truncated=True) == ["Accountant", "Actor"]
    prompt = render("camel", "tasks.j2", n=2, assistant_role="Chef", user_role="Student")
    assert '"Chef"' in prompt and '"Student"' in prompt and "2 varied tasks" in prompt
    assert list_items(scripted([{"role": "user", "content": prompt}])) == ["Task 1 of Chef for Student", "Task 2 of Chef for Student"]


@pytest.mark.parametrize("reply, truncated, items", [
    # What instruct models write (SmolLM2-135M-Instruct, measured): other markers, outline numbers, labels.
    ("1- Teacher\n2- Nurse\n3- Software engineer", False, ["Teacher", "Nurse", "Software engineer"]),
    ("1) Teacher\n2) Nurse", False, ["Teacher", "Nurse"]),
    ("Sure! Here they are:\n- Teacher\n* Nurse\n• Chef", False, ["Teacher", "Nurse", "Chef"]),
    ("1. 5: AI Assistant\n2. 6: General Services\n3. 7: Business and Economics\n", False,
     ["AI Assistant", "General Services", "Business and Economics"]),
    ("1. 1.1.1.1: Art Expert\n2. 1.1.1.2: Art Expert\n3. 1.1.1.3: Chef", False, ["Art Expert", "Chef"]),
    ("Task 1: Plan a lesson on fractions.\nTask 2: Write a quiz with 10 questions.", False,
     ["Plan a lesson on fractions.", "Write a quiz with 10 questions."]),
    ("**Task 1:** Plan a lesson.\n**Task 2:** Grade 3.5 essays.", False, ["Plan a lesson.", "Grade 3.5 essays."]),
    ("1. Accountant\n2. Actor (film, 2.5 years)\n3. Archi", True, ["Accountant", "Actor (film, 2.5 years)"]),
    # Not a list: nothing, rather than prose taken for a role.
    ("Sure! I can help you with that.", False, []),
    ("Task 1:\nTask 2:\nTask 3:", False, []),
])
def test_role_and_task_lists_in_the_shapes_instruct_models_write(reply, truncated, items):
    assert cm.list_reply_items(reply, truncated) == items


def test_turns_parse_and_lose_their_scaffolding():
    assert cm.split_instruction("Instruction: Draft the menu.\nInput: None") == ("Draft the menu.", "")
    assert cm.split_instruction("Sure.\n**Instruction:** Price it.\n**Input:** 12 dishes, $9 each") == ("Price it.", "12 dishes, $9 each")
    assert cm.split_instruction("Thanks, that is all!") is None
    assert cm.clean_instruction("Instruction: Draft the menu.\nInput: None.") == "Draft the menu."
    assert cm.clean_instruction("Instruction: Price it.\nInput: 12 dishes") == "Price it.\n\n12 dishes"
    assert cm.clean_solution("Solution: Use a grid.\n\nStep 1: ...\nNext request.") == "Use a grid.\n\nStep 1: ..."
    assert cm.clean_solution("**Solution**: Done. **Next request.**") == "Done."
    assert cm.clean_solution("Plain answer. I await your next request.") == "Plain answer. I await your next request."


def test_inception_prompts_name_both_roles_and_the_task():
    values = {"assistant_role": "Chef", "user_role": "Student", "task": "Plan a vegan dinner for six"}
    assistant = render("camel", "assistant_system.j2", **values)
    user = render("camel", "user_system.j2", end_token=cm.END_TOKEN, **values)
    assert roles_of(assistant) == ("Chef", "Student") and roles_of(user) == ("Student", "Chef")
    for prompt in (assistant, user):
        assert values["task"] in prompt and "swap roles" in prompt
    assert "Solution:" in assistant and "Next request." in assistant and "cannot carry out" in assistant
    assert "Instruction:" in user and "Input: None" in user and cm.END_TOKEN in user
    assert "one instruction per message" in user


def test_list_and_specifier_prompts_keep_the_rules():
    assistants = render("camel", "assistant_roles.j2", n=50)
    assert "50 different roles" in assistants and "alphabetically" in assistants and "do not explain" in assistants
    users = render("camel", "user_roles.j2", n=50)
    assert "50 kinds" in users and "internet" in users and "occupations" in users and "singular" in users
    assert "alphabetically" in users and "do not explain" in users
    tasks = render("camel", "tasks.j2", n=10, assistant_role="Chef", user_role="Student")
    assert "10 varied tasks" in tasks and '"Chef"' in tasks and '"Student"' in tasks and "together" in tasks
    assert "briefly" in tasks and "inventive" in tasks
    specify = render("camel", "specify.j2", assistant_role="Chef", user_role="Student", task="Plan a dinner", word_limit=50)
    assert '"Chef"' in specify and '"Student"' in specify and "this task: Plan a dinner" in specify
    assert "more specific" in specify and "imagination" in specify and "at most 50 words" in specify
    assert "rewritten task only" in specify
    assert "specific" in render("camel", "specify_system.j2")


def test_perspective_flips_only_for_the_user():
    dialogue = [{"role": "user", "content": "Instruction: a"}, {"role": "assistant", "content": "Solution: b"}]
    assert cm.perspective(dialogue, "assistant") == dialogue
    assert cm.perspective(dialogue, "user") == [{"role": "assistant", "content": "Instruction: a"},
                                                {"role": "user", "content": "Solution: b"}]


# -- the whole pipeline on the fake backend -------------------------------------------------------


def test_pipeline_makes_role_play_dialogues(cli, tmp_path, monkeypatch):
    teacher = Teacher()
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "12", "--num-roles", "3", "--tasks-per-pair", "2",
                           "--test-size", "0.25", teacher=teacher)
    assert result.code == 0, result.err
    loaded = datasets.load_dataset(str(out))
    assert (loaded["train_sft"].num_rows, loaded["test_sft"].num_rows) == (9, 3)
    provenance = {k: datasets.Value("int64" if k == "num_turns" else "string") for k in cm.PROVENANCE}
    assert loaded["train_sft"].features == with_provenance(DIALOGUE, **provenance)
    rows = loaded["train_sft"].to_list() + loaded["test_sft"].to_list()
    assert len({(r["assistant_role"], r["user_role"], r["original_task"]) for r in rows}) == 12
    for row in rows:
        messages = row["messages"]
        assert row["assistant_role"].startswith("Expert ") and row["user_role"].startswith("Person ")
        assert row["original_task"].startswith("Task ") and row["specified_task"] == row["original_task"] + ", done by Friday."
        assert (row["stop_reason"], row["num_turns"]) == ("task_done", DONE_AFTER)
        # The AI user's task-done message closes the dialogue, as in the original's data.
        assert [m["role"] for m in messages] == ["user", "assistant"] * DONE_AFTER + ["user"]
        assert messages[-1]["content"] == cm.END_TOKEN
        task = row["specified_task"]
        assert row["prompt"] == messages[0]["content"] == f"Do step 1 of: {task}" and row["prompt_id"] == prompt_id(row["prompt"])
        # Clean turns: the instruction with its input, the solution without its frame.
        assert messages[2]["content"] == f"Do step 2 of: {task}\n\nthe figures of week 1"
        assert messages[1]["content"] == f"For 'Do step 1 of: {task}', here is answer 1."
        assert not any(cm.END_TOKEN in m["content"] or "Next request" in m["content"] for m in messages[:-1])
        assert row["assistant_model"] == row["user_model"] == "fake-model"
    # Shared steps are asked once: one request per role list and per pair's task list.
    assert len(teacher.asked("you could play")) == len(teacher.asked("people who use the internet")) == 1
    assert len([r for r in teacher.requests if r[-1]["content"].startswith("Suggest")]) == 6
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["stop_reasons"] == {"task_done": 12} and stats["postprocess"]["unspecified_tasks"] == 0
    assert {f["name"]: f["removed"] for f in stats["filters"]} == {"no-task": 0, "empty": 0, "min-turns": 0}
    assert "Li et al. 2023" in (out / "README.md").read_text()


def test_each_agent_sees_its_own_side(cli, tmp_path, monkeypatch):
    teacher = Teacher()
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "1", "--num-roles", "1", "--tasks-per-pair", "1",
                           teacher=teacher)
    assert result.code == 0, result.err
    row = datasets.load_dataset(str(out), split="train_sft")[0]
    task, roles = row["specified_task"], (row["assistant_role"], row["user_role"])
    user_calls, assistant_calls = teacher.asked(cm.END_TOKEN), teacher.asked("Next request.")
    assert len(user_calls) == DONE_AFTER + 1 and len(assistant_calls) == DONE_AFTER
    # The AI user: its inception prompt, the kick-off (which repeats that prompt, as the
    # original's did), then its instructions as `assistant`.
    last_user = user_calls[-1]
    inception = last_user[0]["content"]
    assert roles_of(inception) == roles[::-1] and task in inception
    assert last_user[1] == {"role": "user", "content": inception + "\n\n" + render("camel", "kickoff.j2")}
    assert [m["role"] for m in last_user[2:]] == ["assistant", "user"] * DONE_AFTER
    assert all(m["content"].startswith("Instruction:") for m in last_user[2::2])
    assert all(m["content"].startswith("Solution:") for m in last_user[3::2])
    # The AI assistant: its inception prompt, then the instructions as `user`, its solutions as `assistant`.
    last_assistant = assistant_calls[-1]
    assert roles_of(last_assistant[0]["content"]) == roles and task in last_assistant[0]["content"]
    assert [m["role"] for m in last_assistant[1:]] == ["user", "assistant"] * (DONE_AFTER - 1) + ["user"]
    assert all(m["content"].startswith("Instruction:") for m in last_assistant[1::2])
    assert all(m["content"].startswith("Solution:") for m in last_assistant[2::2])
    # The dialogue as the AI assistant saw it is the record, scaffolding included, and then
    # the AI user's task-done message (the AI assistant is not asked to answer it).
    record = records_of(out)[0]
    done = {"role": "user", "content": cm.END_TOKEN}
    assert record["messages"] == last_assistant[1:] + [{"role": "assistant", "content": scripted(last_assistant)}, done]
    assert cm.perspective(record["messages"][:-1], "user") == last_user[2:]


def test_keep_scaffolding(cli, tmp_path, monkeypatch):
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "2", "--num-roles", "1", "--tasks-per-pair", "2",
                           "--keep-scaffolding")
    assert result.code == 0, result.err
    for row in datasets.load_dataset(str(out), split="train_sft"):
        assert row["messages"][-1] == {"role": "user", "content": cm.END_TOKEN}
        assert all(m["content"].startswith("Instruction: ") and "\nInput: " in m["content"] for m in row["messages"][:-1:2])
        assert all(m["content"].startswith("Solution: ") and m["content"].endswith("Next request.") for m in row["messages"][1::2])


FAULTS = {
    # user role: what goes wrong, then (stop reason, exchanges kept) under the original's stops
    # and with --extra-stops (distill's own checks of empty, repeated and answering turns)
    "Finisher": ("nothing", ("task_done", 3), ("task_done", 3)),
    "Talker": ("never says done; the specifier says nothing", ("max_turns", 4), ("max_turns", 4)),
    "Quitter": ("says done at once", ("task_done", 0), ("task_done", 0)),
    "Nobody": ("no task list", ("no_task", 0), ("no_task", 0)),
    "Flipper": ("answers as the assistant", ("no_instruction", 3), ("user_as_assistant", 1)),
    "Chatter": ("stops instructing", ("no_instruction", 3), ("repeated_turn", 2)),
    "Mute": ("empty instructions", ("max_turns", 4), ("empty_turn", 1)),
    "Parrot": ("repeats its first instruction", ("max_turns", 4), ("repeated_turn", 1)),
    "Thanker": ("thanks and says goodbye in every turn", ("task_done", 3), ("task_done", 3)),
    "Bossed": ("the assistant instructs", ("assistant_as_user", 1), ("assistant_as_user", 1)),
    "Echoed": ("the assistant repeats its first solution", ("task_done", 3), ("repeated_turn", 1)),
    "Blank": ("empty solutions", ("task_done", 3), ("empty_turn", 1)),
    "Rambled": ("the first solution cut off by the token limit", ("truncated", 0), ("truncated", 0)),
    "Overflow": ("the conversation outgrows the context", ("rejected", 2), ("rejected", 2)),
}


def faulty(messages: list[dict]) -> str:
    """The scripted teacher with a fault per user role (FAULTS)."""
    system, last = messages[0]["content"], messages[-1]["content"]
    if last.startswith("Suggest") and '"Nobody"' in last:
        return "I cannot think of any."
    if system.startswith("You turn broad task") and '"Talker"' in last:
        return ""
    if cm.END_TOKEN in system:
        return user_fault(messages)
    if "Next request." in system:
        return assistant_fault(messages)
    return scripted(messages)


def user_fault(messages: list[dict]) -> str:
    role, turn = roles_of(messages[0]["content"])[0], own_turns(messages)
    if role == "Quitter":
        return cm.END_TOKEN
    if role == "Talker":
        return f"Instruction: Keep going.\nInput: round {turn}"
    if role == "Thanker" and turn < DONE_AFTER:
        return f"Instruction: Thank you! Goodbye, good bye, bye, you are welcome. Now step {turn + 1}.\nInput: None"
    faults = {"Flipper": "Solution: I did it myself.\nNext request.",
              "Chatter": "Thank you, that is wonderful!",
              "Mute": "Instruction:\nInput: None",
              "Parrot": messages[2]["content"] if turn else ""}  # its first instruction
    return faults[role] if turn >= 1 and role in faults else scripted(messages)


def assistant_fault(messages: list[dict]) -> str:
    role, turn = roles_of(messages[0]["content"])[1], own_turns(messages)
    if role == "Overflow" and turn == 2:
        raise RejectedError("the prompt is longer than the context window")
    if role == "Rambled":
        return "Solution: " + "word " * 2000
    faults = {"Bossed": "Solution: Gladly. Instruction: You write the menu yourself.\nNext request.",
              "Echoed": messages[2]["content"] if turn else "",  # its first solution
              "Blank": "Solution: Next request."}
    return faults[role] if turn >= 1 and role in faults else scripted(messages)


def play(cli, tmp_path, monkeypatch, user_role: str, *args, name="run") -> tuple[dict, list[dict]]:
    """One dialogue between a Chef and `user_role` (a FAULTS role): its record and its dataset rows."""
    users = write_jsonl(tmp_path / f"{user_role}.jsonl", [{"role": user_role}])
    experts = write_jsonl(tmp_path / "experts.jsonl", [{"role": "Chef"}])
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "1", "--assistant-roles", experts, "--user-roles", users,
                           "--tasks-per-pair", "1", *args, teacher=Teacher(faulty), name=name)
    assert result.code == 0, result.err
    return records_of(out)[0], datasets.load_dataset(str(out), split="train_sft").to_list()


@pytest.mark.parametrize("extra", [False, True], ids=["original-stops", "extra-stops"])
def test_every_stop_reason_and_post_processing(cli, tmp_path, monkeypatch, extra):
    users = tmp_path / "users.txt"
    users.write_text("\n".join(FAULTS) + "\n")
    experts = write_jsonl(tmp_path / "experts.jsonl", [{"role": "Chef"}])
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", str(len(FAULTS)), "--assistant-roles", experts,
                           "--user-roles", users, "--tasks-per-pair", "1", "--max-turns", "4", "--min-turns", "2",
                           *(["--extra-stops"] if extra else []), teacher=Teacher(faulty))
    assert result.code == 0, result.err
    expected = {role: outcomes[1 if extra else 0] for role, (_, *outcomes) in FAULTS.items()}
    records = {r["user_role"]: r for r in records_of(out)}
    assert {role: (r["stop_reason"], r["num_turns"]) for role, r in records.items()} == expected
    for record in records.values():  # a dialogue ends on a complete solution, on the task-done message, or is empty
        messages, done = record["messages"], record["stop_reason"] == "task_done"
        assert len(messages) == 2 * record["num_turns"] + done and all(m["role"] == "assistant" for m in messages[1::2])
        assert not any(cm.END_TOKEN in m["content"] or "word word" in m["content"] for m in messages[:len(messages) - done])
    assert records["Talker"]["specified_task"] == records["Talker"]["original_task"]  # the specifier gave nothing
    kept = {r["user_role"] for r in datasets.load_dataset(str(out), split="train_sft")}
    assert kept == {role for role, (stop, turns) in expected.items() if stop != "no_task" and turns >= 2}
    stats = json.loads((out / "stats.json").read_text())
    short = sum(turns < 2 for role, (stop, turns) in expected.items() if stop != "no_task" and role != "Rambled")
    assert {f["name"]: f["removed"] for f in stats["filters"]} == {"no-task": 1, "empty": 1, "min-turns": short}
    assert stats["postprocess"]["stop_reasons"] == dict(Counter(stop for stop, _ in expected.values()))
    assert stats["postprocess"]["unspecified_tasks"] == 1


# -- the original's rules, one test each (docs/fidelity.md pins them) ------------------------------


def test_task_done_message_is_kept(cli, tmp_path, monkeypatch):
    record, rows = play(cli, tmp_path, monkeypatch, "Finisher")
    assert (record["stop_reason"], record["num_turns"]) == ("task_done", DONE_AFTER)
    assert record["messages"][-1] == rows[0]["messages"][-1] == {"role": "user", "content": cm.END_TOKEN}
    assert len(rows[0]["messages"]) == 2 * DONE_AFTER + 1
    # --drop-task-done ends the dataset's dialogue on the last solution; the record keeps the message.
    record, rows = play(cli, tmp_path, monkeypatch, "Finisher", "--drop-task-done", name="dropped")
    assert record["messages"][-1]["content"] == cm.END_TOKEN
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"] * DONE_AFTER


def test_stops_after_three_turns_without_an_instruction(cli, tmp_path, monkeypatch):
    record, _ = play(cli, tmp_path, monkeypatch, "Chatter")
    assert (record["stop_reason"], record["num_turns"]) == ("no_instruction", 3)
    # The first two turns without an instruction are kept, each with the solution that answered it.
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert users[1:] == ["Thank you, that is wonderful!"] * 2 and len(record["messages"]) == 6
    record, _ = play(cli, tmp_path, monkeypatch, "Chatter", "--no-instruction-rounds", "1", name="strict")
    assert (record["stop_reason"], record["num_turns"]) == ("no_instruction", 1)


def test_an_instructing_assistant_ends_the_dialogue_at_once(cli, tmp_path, monkeypatch):
    # "Instruction:" anywhere in a solution is a role flip, as the original tells it.
    record, rows = play(cli, tmp_path, monkeypatch, "Bossed")
    assert (record["stop_reason"], record["num_turns"]) == ("assistant_as_user", 1)
    assert len(rows[0]["messages"]) == 2 and not any("Instruction" in m["content"] for m in rows[0]["messages"])


def test_farewell_words_do_not_stop_a_dialogue(cli, tmp_path, monkeypatch):
    # The original's farewell-word rule never ended a conversation; distill has none.
    record, rows = play(cli, tmp_path, monkeypatch, "Thanker")
    assert (record["stop_reason"], record["num_turns"]) == ("task_done", DONE_AFTER)
    assert "Goodbye" in rows[0]["messages"][0]["content"]


def test_a_dialogue_stops_at_forty_messages(cli, tmp_path, monkeypatch):
    record, rows = play(cli, tmp_path, monkeypatch, "Talker")
    assert (record["stop_reason"], record["num_turns"], len(rows[0]["messages"])) == ("max_turns", 20, 40)


def test_context_overflow_keeps_what_was_said(cli, tmp_path, monkeypatch):
    record, rows = play(cli, tmp_path, monkeypatch, "Overflow")
    assert (record["stop_reason"], record["num_turns"], len(rows[0]["messages"])) == ("rejected", 2, 4)


def test_sampling_follows_the_original(cli, tmp_path, monkeypatch):
    teacher = Teacher()
    result, _ = run_fake(cli, tmp_path, monkeypatch, "-n", "1", "--num-roles", "2", "--tasks-per-pair", "1",
                         teacher=teacher)
    assert result.code == 0, result.err

    def kind(messages: list[dict]) -> str:
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        if system.startswith("You turn broad task"):
            return "specifier"
        if cm.END_TOKEN in system:
            return "user"
        return "assistant" if "Next request." in system else "list"

    seen = {}
    for messages, params in zip(teacher.requests, teacher.params):
        seen.setdefault(kind(messages), set()).add((params.temperature, params.top_p, params.max_tokens))
    assert seen == {"list": {(0.2, 1.0, 512)}, "specifier": {(1.4, 1.0, 512)},
                    "user": {(0.2, 1.0, 512)}, "assistant": {(0.2, 1.0, 1024)}}


def test_roles_from_files_skip_the_role_requests(cli, tmp_path, monkeypatch):
    experts = tmp_path / "experts.txt"
    experts.write_text("1. Chef\n2. Lawyer\n\n3. Chef\n")  # numbered like the paper's lists; repeats dropped
    teacher = Teacher()
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "8", "--assistant-roles", experts, "--num-roles", "2",
                           "--tasks-per-pair", "2", teacher=teacher)
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out), split="train_sft").to_list()
    assert {r["assistant_role"] for r in rows} == {"Chef", "Lawyer"} and {r["user_role"] for r in rows} == {"Person 1", "Person 2"}
    assert not teacher.asked("you could play") and len(teacher.asked("people who use the internet")) == 1
    users = write_jsonl(tmp_path / "users.jsonl", [{"role": "Student", "id": 1}, {"role": "Nurse", "id": 2}])
    teacher = Teacher()
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "4", "--assistant-roles", experts, "--user-roles", users,
                           "--tasks-per-pair", "1", teacher=teacher, name="both")
    assert result.code == 0, result.err
    assert {r["user_role"] for r in datasets.load_dataset(str(out), split="train_sft")} == {"Student", "Nurse"}
    assert not teacher.asked("you could play") and not teacher.asked("people who use the internet")


@pytest.fixture
def role_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    write_jsonl(tmp_path / "names.jsonl", [{"name": "Chef"}])
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["--assistant-roles", "{dir}/empty.txt"], "--assistant-roles"),
    (["--user-roles", "{dir}/names.jsonl"], "no column role or text"),
    (["--user-roles", "{dir}/absent.txt"], "does not exist"),
    (["--backend", "llamacpp", "--assistant-model", "big"], "need an endpoint"),
    (["--user-model", "@http://127.0.0.1:9/v1"], "--user-model"),
    (["-n", "0"], "--num-dialogues"),
    (["--num-roles", "0"], "--num-roles"),
    (["--tasks-per-pair", "-1"], "--tasks-per-pair"),
    (["--word-limit", "0"], "--word-limit"),
    (["--max-turns", "2", "--min-turns", "3"], "--min-turns"),
    (["-n", "9", "--num-roles", "2", "--tasks-per-pair", "2"], "raise --num-roles or --tasks-per-pair"),
], ids=["empty-roles", "missing-column", "missing-file", "model-on-llamacpp", "bad-model", "zero-dialogues",
        "zero-roles", "negative-tasks", "zero-words", "min-above-max", "grid-too-small"])
def test_bad_options(cli, tmp_path, monkeypatch, role_files, args, needle):
    result, out = run_fake(cli, tmp_path, monkeypatch, *[a.format(dir=role_files) for a in args])
    assert_one_line_error(result, needle)
    assert not out.exists()


# -- on the loopback server: killed half-way, resumed ------------------------------------------


def body_reply(body):
    return scripted(body["messages"])


def test_killed_run_resumes_and_makes_the_same_dialogues(tmp_path):
    args = ["generate", "camel", "--backend", "openai", "--model", "m", "-n", "12", "--num-roles", "3",
            "--tasks-per-pair", "2", "--concurrency", "4", "-q"]

    def start(server, out):
        return start_distill(*args, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=body_reply, latency=0.02) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 50)
        records = tmp_path / "killed" / "records.jsonl"
        assert (records.read_text().count("\n") if records.exists() else 0) < 12  # killed with dialogues half-way
        assert start(server, tmp_path / "killed").wait(120) == 0
        # 2 role lists, 6 task lists, 12 specified tasks, 12 x (4 instructions + 3 solutions)
        assert len(server.stats.answered) == 104
        # Nothing answered before the kill and kept in the cache was asked again.
        assert sum(count - 1 for count in server.stats.answered.values() if count > 1) <= 4
        assert start(server, tmp_path / "whole").wait(120) == 0
    killed = datasets.load_dataset(str(tmp_path / "killed"), split="train_sft").to_list()
    whole = datasets.load_dataset(str(tmp_path / "whole"), split="train_sft").to_list()
    assert killed == whole and len(whole) == 12
