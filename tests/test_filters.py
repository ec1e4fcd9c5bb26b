"""distill filter: quality filters, decontamination, YAML composition, the removed config."""

import json
import shutil

import datasets
import pytest
import yaml
from conftest import assert_one_line_error, write_jsonl

from distill.filters.decontaminate import decontaminate
from distill.filters.quality import Blocklist, Degenerate, Length, Refusal, Repetition
from distill.filters.rows import Rows


def chat(user, assistant):
    return {"prompt": user, "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def judge(filter_, rows):
    return filter_.decide(Rows.from_list(rows))


def test_length():
    rows = [chat("hi", "ok"), chat("tell me about rivers", "Rivers flow downhill to the sea, carving valleys."), chat("x", "y " * 50)]
    reasons = judge(Length(min_words=4, max_words=40), rows)
    assert reasons[0] == "2 words < 4" and reasons[1] is None and reasons[2] == "51 words > 40"
    assert judge(Length(turn_min_words=2), rows) == ["a turn under 2 words", None, "a turn under 2 words"]
    assert judge(Length(max_chars=30), rows)[1].endswith("characters > 30")


def test_blocklist_matches_whole_words_only():
    rows = [chat("Use an assertion", "fine"), chat("what does ASS mean", "a donkey"), chat("lorem ipsum dolor", "text")]
    assert judge(Blocklist(words=["ass", "lorem ipsum"]), rows) == [None, "blocklisted 'ass'", "blocklisted 'lorem ipsum'"]
    assert judge(Blocklist(), rows) == [None, None, None]


def test_refusals_in_assistant_turns():
    rows = [chat("Say something", "As an AI language model, I cannot do that."),
            chat("As an AI, what would you do?", "I would read a book."),
            chat("Help me", "I'm sorry, but I can't help with that."),
            chat("Help me", "Sure, here is how.")]
    reasons = judge(Refusal(), rows)
    assert reasons[0] and reasons[1] is None and reasons[2] and reasons[3] is None  # the user may say "as an AI"


def test_degenerate_and_repetition():
    rows = [chat("hi", ""), chat("hi", "hi"), {"messages": [{"role": "user", "content": "a"}]}, chat("q", "a fine answer")]
    assert judge(Degenerate(), rows) == ["an empty turn", "a repeated turn", "ends on a user turn", None]
    loop = "the cat sat on the mat. " * 20
    lines = "\n".join(["same line"] * 5 + ["other"])
    reasons = judge(Repetition(), [chat("q", loop), chat("q", "a short and varied answer here")])
    assert reasons[0] == "94% of its 3-grams are repeats" and reasons[1] is None
    assert judge(Repetition(max_repeated_ngrams=1.0), [chat("q", lines)]) == ["57% of its lines are repeats"]


def test_a_closing_task_done_turn_is_not_an_unanswered_question():
    done = chat("Instruction: list the steps", "Solution: first, then.")["messages"] + [
        {"role": "user", "content": "<CAMEL_TASK_DONE>"}]
    asked = done[:-1] + [{"role": "user", "content": "and then?"}]
    assert judge(Degenerate(), [{"messages": done}, {"messages": asked}]) == [None, "ends on a user turn"]
    assert judge(Degenerate(closing_user_turns=[]), [{"messages": done}]) == ["ends on a user turn"]


def test_a_turn_without_content_is_an_empty_turn():
    rows = [{"messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": None}]},
            {"messages": [{"role": "user", "content": "hello there"}, {"role": "assistant"}]}]
    assert judge(Degenerate(), rows) == ["an empty turn", "an empty turn"]
    assert judge(Length(min_words=3), rows) == ["2 words < 3", "2 words < 3"]


def test_decontamination_names_the_benchmark(tmp_path):
    mt_bench = write_jsonl(tmp_path / "mt_bench.jsonl", [
        {"turns": ["Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions.", "Rewrite it."]}])
    alpaca = write_jsonl(tmp_path / "alpaca_eval.jsonl", [{"instruction": "Who won the 1998 world cup?"}])
    rows = [
        chat("Please compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions!", "..."),
        chat("who won the 1998 World Cup? I forgot", "France"),
        chat("Write a poem about Hawaii", "..."),
    ]
    reasons = decontaminate(rows, [str(mt_bench), str(alpaca)])
    assert reasons[0].startswith("13-gram overlap with mt_bench")
    assert "alpaca_eval" in reasons[1] and reasons[2] is None
    # A benchmark prompt shorter than n words matches only a row that contains all of it.
    assert decontaminate(rows, [str(mt_bench)], ngram=30)[0].startswith("19-gram overlap")
    part = [chat("Compose an engaging travel blog post about a recent trip to Hawaii", "...")]
    assert decontaminate(part, [str(mt_bench)], ngram=30) == [None]
    assert decontaminate(part, [str(mt_bench)], ngram=8)[0].startswith("8-gram overlap")


def filtered_run(cli, tmp_path, rows_by_split, config, name="out"):
    source = tmp_path / "src"
    shutil.rmtree(source, ignore_errors=True)
    (source / "data").mkdir(parents=True)
    for split, rows in rows_by_split.items():
        datasets.Dataset.from_list(rows).to_parquet(str(source / "data" / f"{split}-00000-of-00001.parquet"))
    (source / "stats.json").write_text(json.dumps({"tokens": {"prompt": 1, "completion": 2, "total": 3}, "models": ["teacher"]}))
    plan = tmp_path / "filters.yaml"
    plan.write_text(yaml.safe_dump(config))
    return cli("filter", "run", source, "--config", plan, "-o", tmp_path / name), tmp_path / name


def test_filters_compose_in_order_and_removed_rows_are_kept_aside(cli, tmp_path):
    train = [chat(f"question {i} about rivers and mills", f"answer {i} with enough words to pass") for i in range(6)]
    train.append(chat("tell me", "As an AI language model, I cannot."))
    train.append(chat("short", "no"))
    test = [chat("question 99 about mountains", "a good long answer about mountains")]
    config = {"column": "messages", "filters": [{"length": {"min_words": 5}}, "refusal", {"blocklist": {"words": ["mountains"]}}]}
    result, out = filtered_run(cli, tmp_path, {"train_sft": train, "test_sft": test}, config)
    assert result.code == 0, result.err
    kept = datasets.load_dataset(str(out))
    assert kept["train_sft"].num_rows == 6 and "test_sft" not in kept
    removed = datasets.load_dataset(str(out), "removed")
    reasons = {(r["removed_by"], r["row"]) for split in removed.values() for r in split}
    assert reasons == {("length", "train_sft/7"), ("refusal", "train_sft/6"), ("blocklist", "test_sft/0")}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["filters"] == [{"name": "length", "removed": 1}, {"name": "refusal", "removed": 1}, {"name": "blocklist", "removed": 1}]
    card = (out / "README.md").read_text()
    assert "| length | 1 |" in card and "| refusal | 1 |" in card and "| 1. length | min_words=5 |" in card
    assert str(tmp_path) not in card
    # Running again replaces the earlier output.
    assert filtered_run(cli, tmp_path, {"train_sft": train}, config)[0].code == 0


@pytest.mark.parametrize("config, needle", [
    ({"filters": [{"lenght": {}}]}, "lenght"),
    ({"filters": [{"length": {"min_wrds": 3}}]}, "min_wrds"),
    ({"filters": [{"dedup": {"threshold": 1.5}}]}, "threshold"),
    ({"filters": []}, "filters"),
    ({"column": "text", "filters": ["refusal"]}, "'text'"),
], ids=["unknown-filter", "unknown-option", "threshold-out-of-range", "no-filters", "missing-column"])
def test_bad_filter_files(cli, tmp_path, config, needle):
    result, out = filtered_run(cli, tmp_path, {"train": [chat("a b c", "d e f")]}, config)
    assert_one_line_error(result, needle)


def test_filter_output_protects_other_directories(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result, _ = filtered_run(cli, tmp_path, {"train": [chat("a b c", "d e f")]}, {"filters": ["degenerate"]}, name="mine")
    assert_one_line_error(result, "not empty")
    assert (mine / "notes.txt").read_text() == "keep"


def test_decontaminate_command(cli, tmp_path):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"prompt": "What is the capital of Australia?"}])
    rows = write_jsonl(tmp_path / "rows.jsonl", [chat("What is the capital of Australia?", "Canberra"), chat("Name a river", "Nile")])
    result = cli("filter", "decontaminate", rows, "--against", bench, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    assert [r["prompt"] for r in datasets.load_dataset(str(tmp_path / "out"), split="train")] == ["Name a river"]
    removed = datasets.load_dataset(str(tmp_path / "out"), "removed", split="train")
    assert "bench" in removed[0]["reason"]
    assert_one_line_error(cli("filter", "decontaminate", rows, "--against", tmp_path / "nope.jsonl", "-o", tmp_path / "o2"), "does not exist")


def test_dedup_command_keeps_the_first_of_each_cluster(cli, tmp_path):
    story = ("the old mill stood by the river for two hundred years and the miller ground wheat for the whole valley "
             "every autumn while the children of the village watched the great wheel turn in the cold water and the "
             "farmers waited in line with their carts full of grain")
    rows = [chat("Tell me a story", story), chat("Something else entirely", "a completely different answer about mountains and snow"),
            chat("Tell me a story", story.replace("two hundred", "three hundred")), chat("Tell me a story", story)]
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    result = cli("filter", "dedup", source, "--threshold", "0.7", "-o", tmp_path / "out")
    assert result.code == 0, result.err
    kept = datasets.load_dataset(str(tmp_path / "out"), split="train").to_list()
    assert [r["messages"][1]["content"] for r in kept] == [story, rows[1]["messages"][1]["content"]]
    removed = datasets.load_dataset(str(tmp_path / "out"), "removed", split="train").to_list()
    assert [(r["row"], r["reason"]) for r in removed] == [("train/2", "near-duplicate of train/0"), ("train/3", "near-duplicate of train/0")]
    for bad, needle in ((["--threshold", "1.5"], "threshold"), (["--column", "nope"], "'nope'")):
        assert_one_line_error(cli("filter", "dedup", source, *bad, "-o", tmp_path / "bad"), needle)


def test_rouge_filter_and_minhash_decontamination(cli, tmp_path):
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"prompt": "Explain how photosynthesis turns sunlight water and carbon dioxide into sugar"}])
    train = [chat("Explain how photosynthesis turns sunlight, water and carbon dioxide into sugar.", "Plants do it."),
             chat("Give three tips for learning a new language quickly", "Practice daily."),
             chat("Give three tips for learning a new language fast", "Speak a lot."),
             chat("What is the tallest mountain on Earth?", "Everest.")]
    config = {"column": "prompt", "filters": [{"decontaminate": {"against": [str(bench)], "method": "minhash", "threshold": 0.7}},
                                              {"rouge": {"threshold": 0.7}}]}
    result, out = filtered_run(cli, tmp_path, {"train": train}, config)
    assert result.code == 0, result.err
    assert [r["prompt"] for r in datasets.load_dataset(str(out), split="train")] == [train[1]["prompt"], train[3]["prompt"]]
    removed = {r["row"]: r for r in datasets.load_dataset(str(out), "removed", split="train")}
    assert removed["train/0"]["removed_by"] == "decontaminate" and "MinHash similarity" in removed["train/0"]["reason"]
    assert removed["train/2"]["removed_by"] == "rouge" and removed["train/2"]["reason"] == "ROUGE-L > 0.7 with train/1"


# -- streaming: Arrow in, Arrow out, a batch at a time ------------------------------------------------------


def load_all(out):
    """Every config and split of an output, as Python rows."""
    found = {}
    for config in ("default", "removed"):
        if config == "default" or (out / "removed").is_dir():
            for split, ds in datasets.load_dataset(str(out), config).items():
                found[(config, split)] = ds.to_list()
    return found


def looping_rows(n):
    story = ("the old mill stood by the river for two hundred years and the miller ground wheat for the whole valley "
             "every autumn while the children watched the great wheel turn")
    rows = []
    for i in range(n):
        if i % 5 == 0:
            answer = story.replace("two hundred", f"{i % 3} hundred")  # near-duplicates of one another
        elif i % 7 == 0:
            answer = f"give three tips for learning language number {i % 2}"  # ROUGE-L twins
        else:
            answer = f"answer {i}: " + " ".join(f"w{(i * 7919 + k * 104729) % 5003}" for k in range(12))
        rows.append({"prompt": f"question {i}", "messages": [{"role": "user", "content": f"question {i}"},
                                                              {"role": "assistant", "content": answer}], "n": i})
    return rows


PLAN = {"column": "messages", "filters": ["dedup", {"length": {"min_words": 6}}, {"rouge": {"threshold": 0.8}}, "degenerate"]}


def test_batches_do_not_change_any_decision(cli, tmp_path, monkeypatch):
    from distill.filters import rows as rows_module
    from distill.filters import similarity

    splits = {"train_sft": looping_rows(150), "test_sft": looping_rows(40)}
    result, whole_out = filtered_run(cli, tmp_path, splits, PLAN, name="whole")
    assert result.code == 0, result.err
    whole = load_all(whole_out)
    monkeypatch.setattr(rows_module, "BATCH", 7)
    monkeypatch.setattr(similarity, "DEDUP_BATCH", 5)
    result, out = filtered_run(cli, tmp_path, splits, PLAN, name="batched")
    assert result.code == 0, result.err
    assert load_all(out) == whole
    removed = [r for key, rows in whole.items() if key[0] == "removed" for r in rows]
    assert {r["removed_by"] for r in removed} == {"dedup", "rouge"}
    assert any(r["row"].startswith("test_sft/") and "train_sft/" in r["reason"] for r in removed)  # test rows against train
    assert not (out / ".filter").exists()


def test_parquet_and_json_lines_inputs_give_the_same_output(cli, tmp_path):
    rows = looping_rows(60)
    result, from_parquet = filtered_run(cli, tmp_path, {"train": rows}, PLAN, name="a")
    assert result.code == 0, result.err
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    result = cli("filter", "run", source, "--config", plan, "-o", tmp_path / "b")
    assert result.code == 0, result.err
    assert load_all(from_parquet) == load_all(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "stats.json").read_text())["filters"] == \
        json.loads((from_parquet / "stats.json").read_text())["filters"]


def test_removed_rows_keep_their_columns_and_replace_clashing_ones(cli, tmp_path):
    rows = [{"text": "a short one", "reason": "mine", "id": 1}, {"text": "long enough to stay here", "reason": "x", "id": 2}]
    result, out = filtered_run(cli, tmp_path, {"train": rows}, {"column": "text", "filters": [{"length": {"min_words": 4}}]})
    assert result.code == 0, result.err
    removed = datasets.load_dataset(str(out), "removed", split="train")
    assert removed.column_names == ["text", "reason", "id", "removed_by", "row"]
    assert removed.to_list() == [{"text": "a short one", "reason": "3 words < 4", "id": 1, "removed_by": "length", "row": "train/0"}]
    kept = datasets.load_dataset(str(out), split="train")
    assert kept.to_list() == [rows[1]] and kept.features == datasets.load_dataset(str(tmp_path / "src"), split="train").features


def test_dedup_of_many_rows_matches_find_duplicates(cli, tmp_path):
    from distill.filters.minhash import find_duplicates

    rows = looping_rows(5000)
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    result = cli("filter", "dedup", source, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    texts = ["\n".join(m["content"] for m in r["messages"]) for r in rows]
    expected = [i for i, d in enumerate(find_duplicates(texts)) if d is not None]
    removed = datasets.load_dataset(str(tmp_path / "out"), "removed", split="train")
    assert [int(r.split("/")[1]) for r in removed["row"]] == expected and len(expected) > 900
    assert datasets.load_dataset(str(tmp_path / "out"), split="train").num_rows == 5000 - len(expected)


def test_a_failed_filter_leaves_no_work_files(cli, tmp_path):
    result, out = filtered_run(cli, tmp_path, {"train": looping_rows(20)}, {"filters": [{"length": {"min_words": 1000}}]})
    assert_one_line_error(result, "removed every row")
    assert not out.exists()  # the folder it made is gone, work files and all


def test_a_full_disk_while_reading_the_input_in_is_one_line(cli, tmp_path, monkeypatch):
    import pyarrow as pa

    def full(*args, **kwargs):  # as Arrow says it: the errno in the text only
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    source = write_jsonl(tmp_path / "rows.jsonl", looping_rows(10))
    monkeypatch.setattr(pa, "OSFile", full)
    assert_one_line_error(cli("filter", "dedup", source, "-o", tmp_path / "out"), "disk full")
    assert not (tmp_path / "out").exists()
