"""The final dataset in the Hub layout: loadable by datasets as is, with its card."""

import json

import datasets
import pytest
import yaml
from conftest import assert_one_line_error, write_jsonl

from distill import export as export_module
from distill.card import card_features
from distill.export import DatasetConfig, train_test_split, write_configs
from distill.schemas import (
    COMPLETION,
    DIALOGUE,
    MESSAGES,
    PREFERENCE,
    SELF_INSTRUCT,
    prompt_id,
)
from distill.testing.openai_server import LoopbackServer

# The column lists and types of the datasets the Zephyr recipe trained on, as their cards declare them.
MESSAGES_YAML = {"list": [{"name": "content", "dtype": "string"}, {"name": "role", "dtype": "string"}]}
ULTRACHAT_200K = [
    {"name": "prompt", "dtype": "string"},
    {"name": "prompt_id", "dtype": "string"},
    {"name": "messages", **MESSAGES_YAML},
]
ULTRAFEEDBACK_BINARIZED = [
    {"name": "prompt", "dtype": "string"},
    {"name": "prompt_id", "dtype": "string"},
    {"name": "chosen", **MESSAGES_YAML},
    {"name": "rejected", **MESSAGES_YAML},
    {"name": "messages", **MESSAGES_YAML},
    {"name": "score_chosen", "dtype": "float64"},
    {"name": "score_rejected", "dtype": "float64"},
]


def test_schemas_match_the_zephyr_datasets_column_for_column():
    assert card_features(DIALOGUE) == ULTRACHAT_200K
    assert card_features(PREFERENCE) == ULTRAFEEDBACK_BINARIZED
    assert list(SELF_INSTRUCT) == ["instruction", "input", "output", "is_classification", "messages"]
    assert card_features(COMPLETION)[:3] == ULTRACHAT_200K
    assert prompt_id("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def generate(cli, tmp_path, *extra, name="run", rows=12, samples=1):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"prompt {i}"} for i in range(rows)])
    out = tmp_path / name
    result = cli("generate", "completions", "--input", prompts, "--backend", "fake", "--samples", samples, "-o", out, "-q", *extra)
    assert result.code == 0, result.err
    return out


def test_run_loads_with_datasets_as_is(cli, tmp_path):
    out = generate(cli, tmp_path, "--test-size", "0.25", "--samples", "2", rows=12)
    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].features == COMPLETION
    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (18, 6)
    # Both samples of a prompt sit on the same side of the split.
    assert not {r["prompt_id"] for r in loaded["train"]} & {r["prompt_id"] for r in loaded["test"]}
    row = loaded["train"][0]
    assert row["messages"] == [{"content": row["prompt"], "role": "user"}, {"content": row["response"], "role": "assistant"}]
    assert row["prompt_id"] == prompt_id(row["prompt"])


def test_test_split_is_seeded():
    rows = [{"prompt_id": str(i)} for i in range(100)]
    first = train_test_split(rows, 0.1, seed=1)[1]
    assert first == train_test_split(rows, 0.1, seed=1)[1] and len(first) == 10
    assert first != train_test_split(rows, 0.1, seed=2)[1]
    assert len(train_test_split(rows, 7, seed=1)[1]) == 7


def test_test_size_that_leaves_nothing_to_train_on(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    result = cli("generate", "completions", "--input", prompts, "--backend", "fake", "--test-size", "5", "-o", tmp_path / "r", "-q")
    assert_one_line_error(result, "--test-size 5 leaves no training rows")


def test_jsonl_beside_parquet(cli, tmp_path):
    out = generate(cli, tmp_path, "--format", "jsonl")
    lines = [json.loads(line) for line in (out / "jsonl" / "train.jsonl").read_text().splitlines()]
    assert lines == datasets.load_dataset(str(out), split="train").to_list()


def test_export_again_with_other_split_settings_asks_nothing(cli, tmp_path):
    out = generate(cli, tmp_path)
    assert list((out / "data").iterdir())[0].name == "train-00000-of-00001.parquet"
    generate(cli, tmp_path, "--test-size", "3")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["last_session"]["requests"] == 0
    assert stats["splits"] == {"default/train": 9, "default/test": 3, "trl/train": 9, "trl/test": 3}
    assert sorted(p.name for p in (out / "data").iterdir()) == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]


def test_large_splits_are_sharded(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "MAX_SHARD_BYTES", 2_000)
    rows = [{"prompt": f"p{i}" * 20, "prompt_id": str(i), "messages": [{"role": "user", "content": "x" * 50}]} for i in range(60)]
    written = write_configs(tmp_path, [DatasetConfig("default", DIALOGUE, {"train_sft": rows})])
    files = written[0].files
    assert len(files) > 1 and files[0] == f"data/train_sft-00000-of-{len(files):05d}.parquet"
    (tmp_path / "README.md").write_text("---\n" + yaml.safe_dump({"configs": export_module.card_configs(
        [DatasetConfig("default", DIALOGUE, {"train_sft": rows})])}) + "---\n")
    assert datasets.load_dataset(str(tmp_path), split="train_sft").to_list() == rows


def test_companion_configs_load_by_name(tmp_path):
    prefs = [{"prompt": "p", "prompt_id": "1", "chosen": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}],
              "rejected": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "b"}],
              "messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}],
              "score_chosen": 8.0, "score_rejected": 3.5}]
    ratings = datasets.Features({"prompt_id": datasets.Value("string"), "ratings": datasets.List(datasets.Value("float64"))})
    configs = [DatasetConfig("default", PREFERENCE, {"train_prefs": prefs}),
               DatasetConfig("ratings", ratings, {"train": [{"prompt_id": "1", "ratings": [8.0, 3.5]}]})]
    write_configs(tmp_path, configs)
    (tmp_path / "README.md").write_text("---\n" + yaml.safe_dump({"configs": export_module.card_configs(configs)}) + "---\n")
    assert datasets.load_dataset(str(tmp_path), split="train_prefs").to_list() == prefs
    assert datasets.load_dataset(str(tmp_path), "ratings", split="train")[0]["ratings"] == [8.0, 3.5]


def test_dataset_card_says_how_the_data_was_made(cli, tmp_path):
    key = "sk-card-secret-77"
    prompts = write_jsonl(tmp_path / "my-prompts.jsonl", [{"prompt": f"q{i}"} for i in range(5)])
    prices = tmp_path / "prices.yaml"
    prices.write_text("teacher-x: {input: 1.0, output: 2.0}\n")
    out = tmp_path / "run"
    with LoopbackServer() as server:
        result = cli("generate", "completions", "--input", prompts, "--backend", "openai", "--model", "teacher-x",
                     "--base-url", server.url, "--prices", prices, "--temperature", "0.9", "--seed", "42",
                     "--test-size", "0.2", "-o", out, "-q", env={"OPENAI_API_KEY": key})
    assert result.code == 0, result.err
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]},
        {"config_name": "trl", "data_files": [{"split": "train", "path": "trl/train-*"}, {"split": "test", "path": "trl/test-*"}]}]
    splits = {s["name"]: s["num_examples"] for s in header["dataset_info"][0]["splits"]}
    assert splits == {"train": 4, "test": 1}
    assert header["dataset_info"][0]["features"] == card_features(COMPLETION)  # the columns, as the schema says
    stats = json.loads((out / "stats.json").read_text())
    for needle in ("| model | teacher-x |", "| temperature | 0.9 |", "| seed | 42 |", "| input | my-prompts.jsonl |",
                   f"| total | {stats['tokens']['total']:,} |", f"${stats['cost_usd']:.4f}", "| default | train | 4 |",
                   "terms of use", 'load_dataset("YOUR_ORG/YOUR_DATASET")', "No filters were applied"):
        assert needle in card, needle
    # No secret, no local path, no endpoint.
    assert key not in card and str(tmp_path) not in card and "127.0.0.1" not in card


def test_column_map_renames_input_columns(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"query": "what is up?"}])
    out = tmp_path / "r"
    result = cli("generate", "completions", "--input", prompts, "--column-map", "query=prompt", "--backend", "fake", "-o", out, "-q")
    assert result.code == 0, result.err
    assert datasets.load_dataset(str(out), split="train")[0]["prompt"] == "what is up?"
    bad = cli("generate", "completions", "--input", prompts, "--column-map", "nope=prompt", "--backend", "fake", "-o", tmp_path / "r2")
    assert_one_line_error(bad, "'nope'")
    malformed = cli("generate", "completions", "--input", prompts, "--column-map", "query", "--backend", "fake", "-o", tmp_path / "r3")
    assert_one_line_error(malformed, "OLD=NEW")


def test_messages_feature_is_shared():
    assert DIALOGUE["messages"] == MESSAGES == PREFERENCE["chosen"]


def test_card_cells_keep_the_table_whole():
    from distill.card import cell

    assert cell(0.37499999999999994) == "0.375"
    assert cell({"world": 0.625, "creation": 0.375}) == "world=0.625, creation=0.375"
    assert cell(["a|b", "c"]) == "`a\\|b`<br>`c`"
    assert cell([3, 7]) == "3, 7"
    assert cell("two\nlines") == "two lines"
    assert cell(0) == "0"


# --- the H4 layout's *_gen splits and the `trl` config (issue 13, item 8) ---------------------

def chat(*turns):
    return [{"role": role, "content": text} for role, text in zip(["user", "assistant"] * len(turns), turns)]


def test_gen_splits_end_at_the_last_user_turn_and_the_trl_config_keeps_what_trl_reads(tmp_path):
    from distill.export import hub_layout, layout_notes

    dialogue = {"prompt": "p", "prompt_id": "1", "messages": chat("p", "a", "q", "b")}
    opening_only = {"prompt": "s", "prompt_id": "2", "messages": [{"role": "system", "content": "s"}]}
    configs = hub_layout(DatasetConfig("default", DIALOGUE, {"train_sft": [dialogue, opening_only], "test_sft": [dialogue]}))
    default, trl = configs
    assert list(default.splits) == ["train_sft", "test_sft", "train_gen", "test_gen"]  # the order of ultrachat_200k
    # Every column kept (as in the H4 datasets); the conversation cut after its last user turn; none without one.
    assert default.splits["train_gen"] == [{**dialogue, "messages": chat("p", "a", "q")}] == default.splits["test_gen"]
    assert (trl.name, list(trl.splits), list(trl.features)) == ("trl", ["train", "test"], ["messages"])
    assert trl.splits["train"] == [{"messages": dialogue["messages"]}, {"messages": opening_only["messages"]}]
    assert any("trl sft --dataset_name REPO --dataset_config trl" in note for note in layout_notes(configs))

    pair = {"prompt": "p", "prompt_id": "1", "chosen": chat("p", "good"), "rejected": chat("p", "bad"),
            "messages": chat("p", "good"), "score_chosen": 8.0, "score_rejected": 2.0}
    splits = {"train_prefs": [pair], "train_sft": [pair], "test_prefs": [pair], "test_sft": [pair]}
    default, trl = hub_layout(DatasetConfig("default", PREFERENCE, splits))
    assert list(default.splits) == ["train_prefs", "train_sft", "test_prefs", "test_sft", "train_gen", "test_gen"]
    assert default.splits["train_gen"] == [{**pair, "messages": chat("p")}]
    assert list(trl.features) == ["chosen", "rejected"] and trl.splits["test"] == [{"chosen": pair["chosen"], "rejected": pair["rejected"]}]
    assert any("trl dpo" in note for note in layout_notes([default, trl]))

    # Arrow rows (a filter's output) are cut the same way; a config without conversations stays alone.
    arrow = hub_layout(DatasetConfig("default", None, {"train_sft": datasets.Dataset.from_list([dialogue])}))
    assert arrow[0].splits["train_gen"].to_list() == [{**dialogue, "messages": chat("p", "a", "q")}]
    assert arrow[1].splits["train"].column_names == ["messages"]
    assert len(hub_layout(DatasetConfig("default", None, {"train": [{"text": "t"}]}))) == 1


def test_a_gen_prompt_ends_on_the_question_its_last_answer_replies_to():
    from distill.export import before_last_answer

    camel = chat("Instruction: plan it", "Solution: a plan.") + [{"role": "user", "content": "<CAMEL_TASK_DONE>"}]
    assert before_last_answer(camel) == chat("Instruction: plan it")
    assert before_last_answer(chat("p", "a", "q", "b")) == chat("p", "a", "q")
    assert before_last_answer(chat("only a question")) == chat("only a question")
    assert before_last_answer([{"role": "system", "content": "s"}]) == []


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    pytest.importorskip("trl")
    from tiny_models import build_tiny_model

    corpus = ["rivers flow to the sea", "a mill grinds grain", "tell me more about it", "good bad answer"] * 20
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "chat", corpus)


def trl_cli(stage, model, run, out):
    """TRL's own command line, as a user would type it, offline."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "trl"), stage, "--model_name_or_path", str(model), "--dataset_name", str(run),
               "--dataset_config", "trl", "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "128",
               "--output_dir", str(out), "--use_cpu", "--bf16", "false", "--report_to", "none", "--save_strategy", "no"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=900)


def test_trls_own_cli_trains_on_the_trl_config_of_a_run(cli, tmp_path, tiny_chat_model):
    dialogues = tmp_path / "dialogues"
    result = cli("generate", "ultrachat", "--backend", "fake", "-n", "8", "--test-size", "0.25", "-o", dialogues, "-q")
    assert result.code == 0, result.err
    assert set(datasets.load_dataset(str(dialogues))) == {"train_sft", "test_sft", "train_gen", "test_gen"}
    sft = trl_cli("sft", tiny_chat_model, dialogues, tmp_path / "sft")
    assert sft.returncode == 0, sft.stderr[-3000:]
    assert (tmp_path / "sft" / "model.safetensors").exists()

    prefs = tmp_path / "prefs"
    result = cli("rate", "ultrafeedback", "--backend", "fake", "--input", dialogues, "--models", "a,b,c,d",
                 "--test-size", "0.25", "-o", prefs, "-q")
    assert result.code == 0, result.err
    assert {"train", "test"} == set(datasets.load_dataset(str(prefs), "trl"))
    dpo = trl_cli("dpo", tiny_chat_model, prefs, tmp_path / "dpo")
    assert dpo.returncode == 0, dpo.stderr[-3000:]
    assert (tmp_path / "dpo" / "model.safetensors").exists()


def test_gen_splits_sit_apart_so_a_filter_reads_the_data_alone(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("generate", "ultrachat", "--backend", "fake", "-n", "6", "--test-size", "2", "-o", run, "-q").code == 0
    assert sorted(p.name for p in (run / "gen").iterdir()) == ["test_gen-00000-of-00001.parquet", "train_gen-00000-of-00001.parquet"]
    assert sorted(p.name.split("-")[0] for p in (run / "data").iterdir()) == ["test_sft", "train_sft"]
    loaded = datasets.load_dataset(str(run))
    assert [len(r["messages"]) for r in loaded["train_gen"]] == [len(r["messages"]) - 1 for r in loaded["train_sft"]]
    # A row and its prompt-only twin are near-duplicates; the filter sees the dialogues only.
    result = cli("filter", "dedup", str(run), "-o", tmp_path / "clean")
    assert result.code == 0, result.err
    assert datasets.load_dataset(str(tmp_path / "clean"), split="train_sft").num_rows == loaded["train_sft"].num_rows
