"""UltraChat: sectors, dialogues between an assistant and a simulated user, post-processing."""

import json
import re
from collections import Counter

import datasets
import pytest
import yaml
from conftest import assert_one_line_error, kill_after_answers, start_distill, write_jsonl

from distill.errors import InputError
from distill.parsing import list_items
from distill.pipelines import ultrachat as uc
from distill.prompting import names, render, word_list
from distill.schemas import DIALOGUE, prompt_id
from distill.testing.openai_server import LoopbackServer


def asked_for(prompt: str) -> int:
    match = re.match(r"(?:Write|Give me) (\d+|one)", prompt)
    return 1 if match.group(1) == "one" else int(match.group(1))


LIST_PROMPT = re.compile(r"numbered list only|Reply with the (?:new )?(?:question|request|subtopic) only")


def listed(last: str, item) -> str:
    """A list of `item(i)` as many as asked; one item alone, labelled and quoted as instruct models write it."""
    n = asked_for(last)
    if n == 1:
        return f'Question: "{item(1)}"' if "question" in last else f'"{item(1)}"'
    return "\n".join(f"{i}. {item(i)}" for i in range(1, n + 1))


def scripted(messages: list[dict]) -> str:
    """A teacher that follows the prompts: lists when asked for lists, answers, user turns."""
    last = messages[-1]["content"]
    is_list = LIST_PROMPT.search(last)
    if "about the text below" in last and is_list:
        return listed(last, lambda i: f"Summarise part {i} of this text.")
    if "related to the question below" in last:
        question = last.rsplit("Question: ", 1)[1].rstrip("?")
        return listed(last, lambda i: f"{question}, follow-up {i}?")
    if "subtopic" in last and is_list and last.startswith("Give me"):
        topic = last.split('"')[1]
        return listed(last, lambda i: f"{topic} part {i}")
    if "question" in last and is_list:
        subtopic = last.split('"')[1]
        return "Here you go:\n" + listed(last, lambda i: f"What about {subtopic}, point {i}?")
    if "person might send to an AI assistant" in last:
        kind = last.split("write a ")[1].split(".")[0]
        return listed(last, lambda i: f"Please write a {kind} about theme {i}.")
    if last.startswith("Someone sent this request"):
        return "User: " + last.split("\n\n")[1] + " Make it funny and under 200 words."
    if last.startswith("Here is the conversation so far"):
        turns = last.count("\nAssistant: ") + last.startswith("Assistant")
        return f"interesting! Can you say more about point {turns}?"
    answers = sum(m["role"] == "assistant" for m in messages)
    return f"Answer {answers} to: {last[:60]}"


def fake_teacher(request):
    return scripted(list(request.messages))


def recording(asked: list):
    """The scripted teacher, keeping every request it was asked."""
    def reply(request):
        asked.append(list(request.messages))
        return fake_teacher(request)
    return reply


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "corpus.jsonl", [{"text": f"Document {i}: the river runs past the mill."} for i in range(8)])


def run_fake(cli, tmp_path, monkeypatch, *args, reply=fake_teacher, name="run"):
    monkeypatch.setattr("distill.backends.fake.echo_reply", reply)
    out = tmp_path / name
    return cli("generate", "ultrachat", "--backend", "fake", "-o", out, "-q", *args), out


def rows_of(out) -> list[dict]:
    loaded = datasets.load_dataset(str(out))
    return [row for name, split in loaded.items() if name.endswith("_sft") for row in split.to_list()]


TEMPLATES = names("ultrachat", "materials")
STYLES = word_list("ultrachat", "user_styles.txt")


def plan(config, topics=("t1", "t2", "t3"), kinds=("poem", "email"), texts=tuple(f"text {i}" for i in range(20))):
    return uc.plan_dialogues(config, list(topics), list(kinds), list(texts), TEMPLATES, STYLES)


# -- planning ---------------------------------------------------------------------------------


def test_mix_and_rounds_parsing():
    assert uc.parse_mix("world=2,creation=1,materials=1") == {"world": 0.5, "creation": 0.25, "materials": 0.25}
    assert uc.parse_mix({"world": 1}) == {"world": 1.0}
    for bad in ("planets=1", "world=x", "world=-1", "world=0"):
        with pytest.raises(ValueError):
            uc.parse_mix(bad)
    assert uc.parse_rounds("3-7") == (3, 7) and uc.parse_rounds("4") == (4, 4) and uc.parse_rounds([2, 3]) == (2, 3)
    for bad in ("7-3", "0-2", "a-b"):
        with pytest.raises(ValueError):
            uc.parse_rounds(bad)
    assert uc.allocate(10, {"world": 0.5, "creation": 0.3, "materials": 0.2}) == {"world": 5, "creation": 3, "materials": 2}
    assert sum(uc.allocate(7, {"world": 1 / 3, "creation": 1 / 3, "materials": 1 / 3}).values()) == 7


def test_default_mix_is_a_third_each(tmp_path):
    """The paper's sectors are about the same size; without a corpus there is no materials sector."""
    third = 1 / 3
    assert uc.UltraChatConfig(output=tmp_path, materials="c.jsonl").sectors == pytest.approx(
        {"world": third, "creation": third, "materials": third})
    assert uc.UltraChatConfig(output=tmp_path).sectors == {"world": 0.5, "creation": 0.5}
    counts = Counter(p.sector for p in plan(uc.UltraChatConfig(output=tmp_path, num_dialogues=90, materials="c.jsonl")))
    assert counts == {"world": 30, "creation": 30, "materials": 30}


def test_plans_are_seeded_and_follow_the_mix(tmp_path):
    config = uc.UltraChatConfig(output=tmp_path, num_dialogues=200, materials="corpus.jsonl")
    plans = plan(config)
    assert plans == plan(config)
    assert Counter(p.sector for p in plans) == {"world": 67, "creation": 67, "materials": 66}
    for p in plans:
        low, high = config.rounds(p.sector)
        assert low <= p.rounds <= high and p.style in STYLES
    world = [(p.topic, p.slot) for p in plans if p.sector == "world"]
    assert len(set(world)) == len(world)  # no two dialogues open with the same question
    creation = [(p.topic, p.slot) for p in plans if p.sector == "creation"]
    assert len(set(creation)) == len(creation)
    assert {p.sector for p in plans[:20]} == {"world", "creation", "materials"}  # interleaved
    assert plan(uc.UltraChatConfig(output=tmp_path, num_dialogues=200, materials="corpus.jsonl", seed=1)) != plans


def test_world_openings_come_from_the_question_pool(tmp_path):
    """Per meta-topic 30-50 subtopics, per subtopic 10 questions, per question 10 related questions;
    the openings are drawn from all of them (the questions themselves and the related ones)."""
    config = uc.UltraChatConfig(output=tmp_path, num_dialogues=3000, sectors="world=1")
    counts = {topic: uc.subtopic_count(config, topic) for topic in ("t1", "t2", "t3")}
    assert all(30 <= n <= 50 for n in counts.values()) and counts == {t: uc.subtopic_count(config, t) for t in counts}
    plans = plan(config)
    assert all(s < counts[p.topic] and 0 <= q < 10 and -1 <= r < 10 for p in plans for s, q, r in [p.slot])
    related = sum(p.slot[2] >= 0 for p in plans) / len(plans)
    assert 0.85 < related < 0.95  # 10 related questions for each question: 10 of every 11 openings
    small = uc.UltraChatConfig(output=tmp_path, num_dialogues=12, sectors="world=1", subtopics=2,
                               questions_per_subtopic=2, related_questions=2)
    assert sorted(p.slot for p in plan(small, topics=["t1"])) == sorted(
        (s, q, r) for s in range(2) for q in range(2) for r in (-1, 0, 1))
    with pytest.raises(InputError, match="--related-questions"):
        plan(small.model_copy(update={"num_dialogues": 13}), topics=["t1"])


def test_world_questions_are_asked_level_by_level(cli, tmp_path, monkeypatch):
    topics = tmp_path / "topics.txt"
    topics.write_text("Rivers\n")
    asked = []
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "12", "--sectors", "world=1", "--topics", topics,
                           "--subtopics", "2", "--questions-per-subtopic", "2", "--related-questions", "2",
                           "--world-rounds", "1", reply=recording(asked))
    assert result.code == 0, result.err
    lists = Counter(asked_for(m[-1]["content"]) for m in asked if "numbered list" in m[-1]["content"])
    assert lists == {2: 1 + 2 + 4}  # one list of subtopics, 2 of questions, 4 of related questions, each of 2
    prompts = sorted(r["prompt"] for r in rows_of(out))
    assert len(set(prompts)) == 12
    assert sum(", follow-up " in p for p in prompts) == 8  # 4 questions and 8 related questions open dialogues


def test_creation_requests_come_from_a_pool_per_kind(tmp_path):
    config = uc.UltraChatConfig(output=tmp_path, num_dialogues=2000, sectors="creation=1")
    plans = plan(config, kinds=[f"kind {k}" for k in range(20)])
    assert all(0 <= p.slot[0] < 200 for p in plans)  # 200 requests per kind of writing
    assert max(p.slot[0] for p in plans) > 150
    assert 0.77 < sum(p.detailed for p in plans) / len(plans) < 0.83  # 80% rewritten in more detail
    big = plan(config.model_copy(update={"num_dialogues": 1000}), kinds=["poem"])
    assert max(p.slot[0] for p in big) >= 200 and len({p.slot for p in big}) == 1000  # the pool grows when -n needs it


def test_materials_openings_join_a_text_and_a_written_request(cli, tmp_path, monkeypatch):
    """The teacher writes up to 5 requests about each text; a template joins the text and one of them."""
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": f"Text number {i} about mills."} for i in range(3)])
    asked = []
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "6", "--sectors", "materials=1", "--materials", corpus,
                           "--materials-rounds", "1", reply=recording(asked))
    assert result.code == 0, result.err
    lists = [m[-1]["content"] for m in asked if "about the text below" in m[-1]["content"]]
    assert len(lists) == 3 and all(text.startswith("Write 5 different requests") for text in lists)
    rows = rows_of(out)
    assert sorted(r["topic"] for r in rows) == ["text 0", "text 0", "text 1", "text 1", "text 2", "text 2"]
    for row in rows:
        number = int(row["topic"].split()[1])
        assert f"Text number {number} about mills." in row["prompt"]
        assert re.search(r"Summarise part [12] of this text\.", row["prompt"])  # each text's first and second request
    assert len(TEMPLATES) == 7
    for name in TEMPLATES:
        joined = render("ultrachat", f"materials/{name}", text="THE TEXT", instruction="THE REQUEST")
        assert "THE TEXT" in joined and "THE REQUEST" in joined
    with pytest.raises(InputError, match="--material-questions"):
        plan(uc.UltraChatConfig(output=tmp_path, num_dialogues=16, sectors="materials=1", materials="c"), texts=["a", "b", "c"])


def test_built_in_lists_have_the_papers_sizes():
    assert len(word_list("ultrachat", "meta_topics.txt")) == 30
    assert len(word_list("ultrachat", "creation_kinds.txt")) == 20


def test_list_parsing():
    assert list_items("Sure!\n1. One\n2. Two (see 3. below)\n3. Three\nHope it helps") == ["One", "Two (see 3. below)", "Three"]
    assert list_items("1. a 2. b 3. c") == ["a", "b", "c"]
    assert list_items("- **x**\n- y") == ["x", "y"]
    assert list_items("1. a\n2. b\n3. half", truncated=True) == ["a", "b"]
    assert list_items("1. a\n2. a") == ["a"]
    assert list_items("nothing listed") == []


# -- the whole pipeline on the fake backend -------------------------------------------------------


def test_pipeline_makes_ultrachat_200k_rows(cli, tmp_path, monkeypatch, corpus):
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "20", "--materials", corpus, "--test-size", "0.2",
                           "--world-rounds", "2-3", "--creation-rounds", "2-2", "--materials-rounds", "1-2")
    assert result.code == 0, result.err
    loaded = datasets.load_dataset(str(out))
    assert {"train_sft", "test_sft"} <= set(loaded) and (loaded["train_sft"].num_rows, loaded["test_sft"].num_rows) == (16, 4)
    assert list(loaded["train_sft"].features)[:3] == list(DIALOGUE)
    assert loaded["train_sft"].features["messages"] == DIALOGUE["messages"]
    rows = loaded["train_sft"].to_list() + loaded["test_sft"].to_list()
    assert Counter(r["sector"] for r in rows) == {"world": 7, "creation": 7, "materials": 6}
    for row in rows:
        messages = row["messages"]
        assert row["prompt"] == messages[0]["content"] and row["prompt_id"] == prompt_id(row["prompt"])
        assert [m["role"] for m in messages] == ["user", "assistant"] * row["num_turns"]
        assert row["stop_reason"] == "completed"
        low, high = {"world": (2, 3), "creation": (2, 2), "materials": (1, 2)}[row["sector"]]
        assert low <= row["num_turns"] <= high
        assert row["assistant_model"] == row["user_model"] == "fake-model"
        # The simulated user's "interesting! ..." was recased as ultrachat_200k did.
        assert all(m["content"][0].isupper() for m in messages)
    world = [r for r in rows if r["sector"] == "world"]
    assert all(r["prompt"].startswith("What about ") and r["topic"] in r["prompt"] for r in world)
    creation = [r for r in rows if r["sector"] == "creation"]
    assert all(r["prompt"].startswith("Please write a ") for r in creation)
    materials = [r for r in rows if r["sector"] == "materials"]
    assert all("the river runs past the mill" in r["prompt"] and "Summarise part" in r["prompt"] for r in materials)
    assert len({r["topic"] for r in materials}) == 6  # six texts, each opened once
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["recased_turns"] > 0 and stats["postprocess"]["stop_reasons"] == {"completed": 20}
    card = (out / "README.md").read_text()
    assert "Ding et al. 2023" in card and "| train_sft |" not in card.split("## Contents")[0]


def test_detailed_rewrites_follow_the_share(cli, tmp_path, monkeypatch):
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "12", "--sectors", "creation=1", "--detail-share", "1",
                           "--creation-rounds", "1")
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out), split="train_sft").to_list()
    assert len(rows) == 12 and all(r["prompt"].endswith("Make it funny and under 200 words.") for r in rows)
    assert all(not r["prompt"].startswith("User:") for r in rows)  # the label the model wrote is stripped


def test_a_rewrite_loses_its_lead_in_and_one_that_is_no_request_is_not_used(cli, tmp_path, monkeypatch):
    rewrites = []

    def rewriter(request):
        last = request.messages[-1]["content"]
        if last.startswith("Someone sent this request"):
            rewrites.append(original := last.split("\n\n")[1])
            if len(rewrites) == 1:  # as SmolLM2-135M-Instruct writes it
                return f"Here's a rewritten version of the request with specific requirements:\n\n{original} Make it rhyme."
            return "I'd be happy to help you refine your request!"
        return fake_teacher(request)

    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "2", "--sectors", "creation=1", "--detail-share", "1",
                           "--creation-rounds", "1", "--instructions-per-kind", "1", reply=rewriter)
    assert result.code == 0, result.err
    assert len(rewrites) == 2
    assert {r["prompt"] for r in rows_of(out)} == {f"{rewrites[0]} Make it rhyme.", rewrites[1]}  # the second as it was


def point(text: str) -> int:
    match = re.search(r"point (\d+)\?", text)
    return int(match.group(1)) if match else 0


def degenerate(request):
    """Scripted faults, chosen by the opening question ("..., point N?") of each dialogue."""
    messages = list(request.messages)
    last = messages[-1]["content"]
    if "numbered list" in last:
        return scripted(messages)
    if last.startswith("Here is the conversation so far"):
        n = point(last.split("\n\n")[1])
        if n == 1:
            return "As an AI, I can help you with that."  # the user model answering as the assistant
        if n == 2:
            return ""  # an empty user turn
        if n == 3:
            return last.split("\n\n")[1].removeprefix("User: ")  # repeats the opening
        return scripted(messages)
    n = point(messages[0]["content"])
    turn = len(messages) // 2
    if n == 4 and turn > 0:
        return "word " * 500  # cut off by the token limit
    if n == 5:
        return f"As an AI language model, I do not have opinions, but here is take {turn}."
    if n == 6:
        return f"sure, here is take {turn}."
    return scripted(messages)


def test_degenerate_turns_stop_and_post_processing_drops(cli, tmp_path, monkeypatch):
    topics = tmp_path / "topics.txt"
    topics.write_text("Rivers\n")
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "8", "--sectors", "world=1", "--topics", topics,
                           "--subtopics", "1", "--questions-per-subtopic", "8", "--related-questions", "0", "--world-rounds", "3", "--max-new-tokens", "100", "--min-turns", "2",
                           reply=degenerate)
    assert result.code == 0, result.err
    records = {point(json.loads(line)["prompt"]): json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()}
    assert sorted(records) == list(range(1, 9))
    reason = {n: r["stop_reason"] for n, r in records.items()}
    assert reason == {1: "user_as_assistant", 2: "empty_turn", 3: "repeated_turn", 4: "truncated",
                      5: "completed", 6: "completed", 7: "completed", 8: "completed"}
    # A stopped dialogue ends on a complete answer: theme 4 lost its cut-off second answer.
    assert [records[n]["num_turns"] for n in (1, 2, 3, 4)] == [1, 1, 1, 1]
    kept = {point(r["prompt"]): r for r in datasets.load_dataset(str(out), split="train_sft").to_list()}
    # --min-turns 2 drops the four stopped after one round; 5's assistant disclaims.
    assert sorted(kept) == [6, 7, 8]
    assert [m["content"] for m in kept[6]["messages"] if m["role"] == "assistant"] == [f"Sure, here is take {t}." for t in range(3)]
    stats = json.loads((out / "stats.json").read_text())
    assert {f["name"]: f["removed"] for f in stats["filters"]} == {"no-opening": 0, "assistant-disclaimer": 1, "min-turns": 4}
    assert stats["postprocess"]["stop_reasons"] == {"user_as_assistant": 1, "empty_turn": 1, "repeated_turn": 1,
                                                    "truncated": 1, "completed": 4}


def test_user_meta_text_stops_the_dialogue_and_a_lead_in_is_taken_off(cli, tmp_path, monkeypatch):
    config = uc.UltraChatConfig(output=tmp_path)
    lead_ins, meta = uc.patterns(config.user_lead_in_patterns), uc.patterns(config.user_meta_patterns)
    # Replies of SmolLM2-135M-Instruct playing the user, and the like.
    for said, message in [
        ("Here's my next message:\n\n\"Can you make it rhyme?\"", "Can you make it rhyme?"),
        ("Sure! Here is my follow-up question: why is the sky blue?", "why is the sky blue?"),
        ("Next message: What about tides?", "What about tides?"),
        ("As the user, I would ask: how long does it take?", "how long does it take?"),
        ("Here is the next message.", ""),
        ("Here is the user's next message.", ""),
        ("Here is a question I have been wondering about.", ""),  # announced, never written
        ("Here is a poem I wrote: roses are red. Is it good?", "Here is a poem I wrote: roses are red. Is it good?"),
        ("Question everything, my teacher said. Why?", "Question everything, my teacher said. Why?"),
        ("Can you shorten it?", "Can you shorten it?"),
    ]:
        assert uc.without_lead_in(said, lead_ins) == message, said
    for text in ("The user wants to know how tides work.", "The user has asked me to explain tides.",
                 "As the user, I would ask about the moon.",
                 "Here is my next message, short and in my own voice"):
        assert any(p.search(uc.without_lead_in(text, lead_ins)) for p in meta), text
    assert not any(p.search("Is the user manual wrong, or am I?") for p in meta)

    said = {1: "Here is the next message.", 2: "The user wants to know more about rivers.",
            3: "Here's my next message: \"Why do rivers bend?\""}

    stops = set()

    def meta_user(request):
        last = request.messages[-1]["content"]
        if last.startswith("Here is the conversation so far"):
            stops.add(request.params.stop)
            return said.get(point(last.split("\n\n")[1]), "And then?")
        return fake_teacher(request)

    topics = tmp_path / "topics.txt"
    topics.write_text("Rivers\n")
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "3", "--sectors", "world=1", "--topics", topics,
                           "--subtopics", "1", "--questions-per-subtopic", "3", "--related-questions", "0",
                           "--world-rounds", "2", reply=meta_user)
    assert result.code == 0, result.err
    records = {point(r["prompt"]): r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    assert {n: r["stop_reason"] for n, r in records.items()} == {1: "meta_text", 2: "meta_text", 3: "completed"}
    # The user model's message ends where it would go on to write the assistant's part of the transcript.
    assert stops == {("\nAssistant:", "\nUser:")}
    assert [records[n]["num_turns"] for n in (1, 2, 3)] == [1, 1, 2]
    assert records[3]["messages"][2] == {"role": "user", "content": "Why do rivers bend?"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["postprocess"]["stop_reasons"] == {"meta_text": 2, "completed": 1}
    assert len(rows_of(out)) == 3  # what came before the meta-text is kept


def test_openings_that_read_as_the_assistant_or_meta_text_are_not_used(cli, tmp_path, monkeypatch):
    def odd_lists(request):
        last = request.messages[-1]["content"]
        if "different questions" in last:
            return ("1. What can I help you with today?\n2. The user wants to know about rivers.\n3. Why do rivers bend?\n"
                    "4. I'm here to help with any question about rivers.")
        return fake_teacher(request)

    topics = tmp_path / "topics.txt"
    topics.write_text("Rivers\n")
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "2", "--sectors", "world=1", "--topics", topics,
                           "--subtopics", "1", "--questions-per-subtopic", "4", "--related-questions", "0",
                           "--world-rounds", "1", reply=odd_lists)
    assert result.code == 0, result.err
    assert {r["prompt"] for r in rows_of(out)} == {"Why do rivers bend?"}


def test_user_turn_prompt_follows_the_sector(cli, tmp_path, monkeypatch, corpus):
    """The simulated user is a separate request: a kind of user drawn per dialogue as its system prompt,
    the dialogue so far, then (after it) the sector's goal and what to write."""
    asked = []
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "12", "--materials", corpus, "--world-rounds", "2",
                           "--creation-rounds", "2", "--materials-rounds", "2", reply=recording(asked))
    assert result.code == 0, result.err
    goals = {"world": "ask a follow-up question", "creation": "What you want from this conversation is a piece of writing",
             "materials": "The conversation is about a text you shared"}
    users = [m for m in asked if m[-1]["content"].startswith("Here is the conversation so far")]
    assert len(users) == 12  # one user turn per two-round dialogue
    by_opening = {r["prompt"]: r["sector"] for r in rows_of(out)}
    styles = set()
    for messages in users:
        system, turn = messages[0]["content"], messages[-1]["content"]
        assert system.startswith("You play a human user") and len(messages) == 2
        styles |= {style for style in STYLES if style in system}
        sector = next(sector for opening, sector in by_opening.items() if f"User: {opening}" in turn)
        assert goals[sector] in turn and turn.index(goals[sector]) > turn.index("Assistant: ")
        assert not any(goal in turn for other, goal in goals.items() if other != sector)
    assert len(styles) > 1  # kinds of user vary between dialogues


def test_polite_sentences_are_removed_from_user_turns(cli, tmp_path, monkeypatch):
    polite = uc.patterns(uc.UltraChatConfig(output=tmp_path).polite_patterns)
    assert uc.strip_polite("Thank you so much for the information! Can you tell me more?", polite) == "Can you tell me more?"
    assert uc.strip_polite("That's really helpful. I appreciate it. Now write a poem.", polite) == "Now write a poem."
    assert uc.strip_polite("Thanks for that, but why?", polite) == "Thanks for that, but why?"  # never a question
    assert uc.strip_polite("Great, thanks!", polite) == ""

    def thankful(request):
        last = request.messages[-1]["content"]
        if last.startswith("Here is the conversation so far"):
            return "Thanks! That's helpful." if "point 2?" in last else "Thank you. Why is that?"
        return fake_teacher(request)

    topics = tmp_path / "topics.txt"
    topics.write_text("Rivers\n")
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "2", "--sectors", "world=1", "--topics", topics,
                           "--subtopics", "1", "--questions-per-subtopic", "2", "--related-questions", "0",
                           "--world-rounds", "2", reply=thankful)
    assert result.code == 0, result.err
    records = {r["prompt"][-8:]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    assert records["point 1?"]["messages"][2]["content"] == "Why is that?"
    assert records["point 2?"]["stop_reason"] == "only_thanks" and records["point 2?"]["num_turns"] == 1


def test_truecasing_capitalises_every_sentence_start():
    """ultrachat_200k truecased sentences starting in lower case ("Hello. how are you?"), not only a turn's first letter."""
    assert uc.truecase("Hello. how are you? fine! thanks") == ("Hello. How are you? Fine! Thanks", 3)
    assert uc.truecase("hello there.\n\nnext paragraph") == ("Hello there.\n\nNext paragraph", 2)
    kept = ["Use e.g. the mill. Then stop.", "Wait... what?", "iPhone sales grew.", "Run it. `x. y` stays.",
            "Done.\n```\nfoo. bar\n```", "Visit it. example.com is down.", "Already Fine. All Good."]
    for text in kept:
        assert uc.truecase(text) == (text, 0), text
    records = [{"prompt": "q", "messages": [{"role": "user", "content": "q. and more"}, {"role": "assistant", "content": "a. b"}],
                "sector": "world", "topic": "t", "num_turns": 1, "stop_reason": "completed", "assistant_model": "m",
                "user_model": "m"}]
    rows, _, notes = uc.postprocess(records, uc.UltraChatConfig(output="x"))
    assert [m["content"] for m in rows[0]["messages"]] == ["Q. And more", "A. B"] and rows[0]["prompt"] == "Q. And more"
    assert notes["recased_turns"] == 2 and notes["recased_sentences"] == 4


def test_config_file_and_flags(cli, tmp_path, monkeypatch):
    config = tmp_path / "uc.yaml"
    config.write_text(yaml.safe_dump({"num_dialogues": 3, "sectors": {"world": 1}, "world_rounds": "1-1", "seed": 5}))
    result, out = run_fake(cli, tmp_path, monkeypatch, "--config", config, "--world-rounds", "2-2")
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out), split="train_sft").to_list()
    assert len(rows) == 3 and {r["num_turns"] for r in rows} == {2}
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["seed"] == 5 and stored["world_rounds"] == [2, 2]


@pytest.mark.parametrize("args, needle", [
    (["--sectors", "world=1,planets=1"], "planets"),
    (["--sectors", "materials=1"], "--materials"),
    (["--world-rounds", "5-2"], "--world-rounds"),
    (["-n", "0"], "--num-dialogues"),
    (["--materials", "missing.jsonl"], "does not exist"),
    (["--disclaimer-patterns", "(unclosed"], "regular expression"),
    (["--topics", "absent.txt"], "does not exist"),
    (["--subtopics", "50-30"], "--subtopics"),
    (["--polite-patterns", "(unclosed"], "regular expression"),
    (["-n", "100", "--sectors", "world=1", "--subtopics", "1", "--questions-per-subtopic", "1", "--related-questions", "2"],
     "--related-questions"),
], ids=["unknown-sector", "materials-without-corpus", "bad-rounds", "zero", "missing-corpus", "bad-regex", "missing-topics",
        "bad-subtopics", "bad-polite-regex", "pool-too-small"])
def test_bad_options(cli, tmp_path, monkeypatch, args, needle):
    result, out = run_fake(cli, tmp_path, monkeypatch, *args)
    assert_one_line_error(result, needle)
    assert not out.exists()


def test_own_topics_file(cli, tmp_path, monkeypatch):
    topics = tmp_path / "topics.txt"
    topics.write_text("Beekeeping\nOrigami\n")
    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "6", "--sectors", "world=1", "--topics", topics, "--world-rounds", "1",
                           "--subtopics", "1", "--questions-per-subtopic", "3", "--related-questions", "0")
    assert result.code == 0, result.err
    assert {r["topic"] for r in datasets.load_dataset(str(out), split="train_sft")} == {"Beekeeping", "Origami"}


# -- on the loopback server --------------------------------------------------------------------


def body_reply(body):
    return scripted(body["messages"])


def test_dialogues_advance_independently(cli, tmp_path):
    """One dialogue whose first answer is slow holds up none of the others."""
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "SLOW text"}] + [{"text": f"fast text {i}"} for i in range(5)])
    arrivals = []

    def latency(body):
        arrivals.append(body["messages"][-1]["content"][:200])
        first = body["messages"][0]["content"]
        return 1.5 if "SLOW" in first and len(body["messages"]) == 1 else 0.01

    with LoopbackServer(reply=body_reply, latency=latency) as server:
        result = cli("generate", "ultrachat", "--backend", "openai", "--model", "m", "--base-url", server.url,
                     "-n", "6", "--sectors", "materials=1", "--materials", corpus, "--materials-rounds", "3",
                     "-o", tmp_path / "run", "-q", env={"OPENAI_API_KEY": "k"})
        assert result.code == 0, result.err
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and "SLOW" in records[-1]["prompt"]  # finished last
    assert all(r["num_turns"] == 3 for r in records)
    # Every fast dialogue went through all its 6 requests (its text's list of requests, 3 answers, 2 user
    # turns) while the slow one waited on its first two.
    slow_second = next(i for i, text in enumerate(arrivals) if "SLOW" in text and text.startswith("Here is the conversation"))
    assert len(arrivals) == 36 and slow_second >= 32


def test_killed_run_resumes_mid_dialogue_and_makes_the_same_dialogues(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": f"text number {i}"} for i in range(30)])
    args = ["generate", "ultrachat", "--backend", "openai", "--model", "m", "-n", "30", "--sectors",
            "world=0.5,materials=0.5", "--materials", corpus, "--world-rounds", "3-4", "--materials-rounds", "3-4",
            "--concurrency", "4", "-q"]

    def start(server, out):
        return start_distill(*args, "--base-url", server.url, "-o", out, env={"OPENAI_API_KEY": "k"})

    with LoopbackServer(reply=body_reply, latency=0.02) as server:
        kill_after_answers(start(server, tmp_path / "killed"), server, 60)
        records = (tmp_path / "killed" / "records.jsonl")
        done_before = records.read_text().count("\n") if records.exists() else 0
        assert done_before < 30  # killed mid-run, with dialogues half-way
        assert start(server, tmp_path / "killed").wait(120) == 0
        # Nothing answered before the kill and kept in the cache was asked again.
        repeats = sum(count - 1 for count in server.stats.answered.values() if count > 1)
        assert repeats <= 4  # at most the requests in flight when it was killed
        assert start(server, tmp_path / "whole").wait(120) == 0
    killed = datasets.load_dataset(str(tmp_path / "killed"), split="train_sft").to_list()
    whole = datasets.load_dataset(str(tmp_path / "whole"), split="train_sft").to_list()
    assert killed == whole and len(whole) == 30


# -- the embedded model ------------------------------------------------------------------------


def test_short_real_run_on_the_embedded_model(cli, tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "run"
    result = cli("generate", "ultrachat", "-n", "2", "--sectors", "creation=1", "--creation-rounds", "1",
                 "--list-max-new-tokens", "48", "--max-new-tokens", "32", "--user-max-new-tokens", "16", "--detail-share", "0",
                 "-o", out, "-q")
    # A 135M model may or may not give a usable dialogue: the run must end cleanly either way.
    stats = json.loads((out / "stats.json").read_text())
    assert stats["items"]["done"] == 2 and stats["models"] == ["smollm2-135m-instruct"]
    assert sum(stats["postprocess"]["stop_reasons"].values()) == 2
    if result.code == 0:
        assert datasets.load_dataset(str(out), split="train_sft").num_rows >= 1
    else:
        assert_one_line_error(result, "no row survived post-processing")


# -- TRL -----------------------------------------------------------------------------------------


def test_trl_sft_trainer_trains_on_the_dialogues(cli, tmp_path, monkeypatch):
    """TRL 1.x reads any `prompt` column as prompt-completion data, so SFT takes the
    `messages` column alone (as `distill train sft` does); the rows need nothing else."""
    pytest.importorskip("trl")
    from tiny_models import build_tiny_model
    from trl import SFTConfig, SFTTrainer

    result, out = run_fake(cli, tmp_path, monkeypatch, "-n", "6", "--sectors", "world=1", "--world-rounds", "2")
    assert result.code == 0, result.err
    dialogues = datasets.load_dataset(str(out), split="train_sft")
    corpus = [m["content"] for row in dialogues for m in row["messages"]]
    model = build_tiny_model(tmp_path / "tiny", corpus)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2, max_length=128,
                     assistant_only_loss=True, use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1)
    trainer = SFTTrainer(model=str(model), args=args, train_dataset=dialogues.select_columns(["messages"]))
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # user turns masked, answers kept
    assert trainer.train().training_loss > 0
