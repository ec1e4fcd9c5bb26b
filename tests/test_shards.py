"""--shard K/N on several machines, `distill merge`, and --export-only."""

import json

import datasets
import pytest
import yaml
from conftest import assert_one_line_error, write_jsonl


def completions(cli, prompts, out, *args):
    return cli("generate", "completions", "--input", prompts, "--backend", "fake", "-o", out, "-q", *args)


def rows(out, split="train"):
    return datasets.load_dataset(str(out), split=split).to_list()


def test_shards_merge_into_the_dataset_of_one_run(cli, tmp_path, prompts_file):
    shards = [tmp_path / f"shard{k}" for k in range(3)]
    for k, out in enumerate(shards):
        assert completions(cli, prompts_file, out, "--shard", f"{k}/3").code == 0
    assert [len(rows(out)) for out in shards] == [7, 7, 6]  # items 0,3,6,... / 1,4,7,... / 2,5,8,...
    merged = cli("merge", *reversed(shards), "-o", tmp_path / "merged")
    assert merged.code == 0, merged.err
    assert "20 items joined from 3 shards; 20 rows written" in merged.out
    assert completions(cli, prompts_file, tmp_path / "whole").code == 0
    assert rows(tmp_path / "merged") == rows(tmp_path / "whole")
    stats = json.loads((tmp_path / "merged" / "stats.json").read_text())
    whole = json.loads((tmp_path / "whole" / "stats.json").read_text())
    assert stats["tokens"] == whole["tokens"] and len(stats["merged_from"]) == 3
    # The merged run is an ordinary run: the command on it (no --shard) has nothing left to ask.
    again = completions(cli, prompts_file, tmp_path / "merged")
    assert again.code == 0, again.err
    assert json.loads((tmp_path / "merged" / "stats.json").read_text())["last_session"]["requests"] == 0


def test_sharded_dialogues_and_preferences(cli, tmp_path, monkeypatch):
    from test_ultrachat import fake_teacher
    from test_ultrafeedback import POOL, teacher

    monkeypatch.setattr("distill.backends.fake.echo_reply", fake_teacher)
    args = ["generate", "ultrachat", "--backend", "fake", "-n", "9", "--world-rounds", "2", "-q"]
    for k in range(2):
        assert cli(*args, "--shard", f"{k}/2", "-o", tmp_path / f"uc{k}").code == 0
    assert cli("merge", tmp_path / "uc0", tmp_path / "uc1", "-o", tmp_path / "uc").code == 0
    assert cli(*args, "-o", tmp_path / "uc-whole").code == 0
    assert rows(tmp_path / "uc", "train_sft") == rows(tmp_path / "uc-whole", "train_sft")

    monkeypatch.setattr("distill.backends.fake.echo_reply", teacher())
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Question {i}: why do rivers bend?"} for i in range(6)])
    args = ["rate", "ultrafeedback", "--input", prompts, "--backend", "fake", "--models", POOL, "-q"]
    for k in range(2):
        assert cli(*args, "--shard", f"{k}/2", "-o", tmp_path / f"uf{k}").code == 0
    assert cli("merge", tmp_path / "uf0", tmp_path / "uf1", "-o", tmp_path / "uf").code == 0
    assert cli(*args, "-o", tmp_path / "uf-whole").code == 0
    assert rows(tmp_path / "uf", "train_prefs") == rows(tmp_path / "uf-whole", "train_prefs")


def test_export_only_rewrites_the_dataset_without_asking(cli, tmp_path, prompts_file, monkeypatch):
    out, unfinished = tmp_path / "run", tmp_path / "unfinished"
    assert completions(cli, prompts_file, out).code == 0
    assert completions(cli, prompts_file, unfinished).code == 0
    records = unfinished / "records.jsonl"
    records.write_text("".join(records.read_text().splitlines(keepends=True)[:12]))  # as if stopped

    def no_backend(*args, **kwargs):
        raise AssertionError("--export-only makes no backend")

    monkeypatch.setattr("distill.generation.route", no_backend)
    again = completions(cli, prompts_file, out, "--export-only", "--test-size", "0.25")
    assert again.code == 0, again.err
    assert len(rows(out)) == 15 and len(rows(out, "test")) == 5
    assert "export_only" not in yaml.safe_load((out / "config.yaml").read_text())
    assert_one_line_error(completions(cli, prompts_file, unfinished, "--export-only"), "8 of 20 items", "not generated yet")
    assert_one_line_error(completions(cli, prompts_file, tmp_path / "nothing", "--export-only"), "holds no run")


def test_merge_refuses_what_is_not_one_sharded_run(cli, tmp_path, prompts_file):
    for k in range(2):
        assert completions(cli, prompts_file, tmp_path / f"s{k}", "--shard", f"{k}/2").code == 0
    assert completions(cli, prompts_file, tmp_path / "other", "--shard", "1/2", "--temperature", "0.2").code == 0
    assert completions(cli, prompts_file, tmp_path / "whole").code == 0
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for runs, out, needle in [
        (["s0"], "m1", "shard 1/2 is missing"),
        (["s0", "s1", "other"], "m2", "both shard 1/2"),
        (["s0", "other"], "m3", "other settings"),
        (["s0", "whole"], "m4", "not a shard"),
        (["s0", "s1"], "full", "not empty"),
        (["s0", "nowhere"], "m5", "not a distill run"),
    ]:
        result = cli("merge", *[tmp_path / r for r in runs], "-o", tmp_path / out)
        assert_one_line_error(result, needle)
    assert not (tmp_path / "m1").exists()


def test_bad_shards(cli, tmp_path, prompts_file):
    for value in ("3/3", "1", "a/b", "-1/2"):
        assert_one_line_error(completions(cli, prompts_file, tmp_path / "r", "--shard", value), "--shard")
    assert_one_line_error(cli("generate", "self-instruct", "--backend", "fake", "--shard", "0/2", "-o", tmp_path / "si"),
                          "cannot be split")


@pytest.mark.parametrize("flag", [["--shard", "0/2"], ["--export-only"]])
def test_zephyr_takes_neither(cli, tmp_path, flag):
    assert_one_line_error(cli("zephyr", "--backend", "fake", "--pool", "a,b", "-o", tmp_path / "z", *flag), "whole recipe")
