"""The final dataset in the Hub layout: loadable by datasets as is, with its card."""

import json

import datasets
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
    assert stats["splits"] == {"default/train": 9, "default/test": 3}
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
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]
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
