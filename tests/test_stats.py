"""distill stats: describe(), per-split metrics, and the command on run dirs, files, --json, errors."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, write_jsonl

from distill.commands.stats import stats
from distill.stats import dataset_stats, describe, fmt, split_stats


def chat(*pairs: tuple[str, str], system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    for user, assistant in pairs:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        [1, 2, 3, 4],
        [5],
        [3.5, -1.25, 10, 7, 7, 0.5, 2],
        list(range(101)),
        [2.0, 2.0, 2.0],
        [0.1, 1e6, 37, 12.5, 8, 99.9, 3, 3, 44],
    ],
)
def test_describe_matches_numpy_and_statistics(values):
    got = describe(values)
    assert got["count"] == len(values)
    assert got["mean"] == pytest.approx(statistics.fmean(values))
    assert got["min"] == min(values) and got["max"] == max(values)
    for key, q in (("p25", 25), ("p50", 50), ("p75", 75)):
        assert got[key] == pytest.approx(float(np.percentile(values, q)))  # numpy default: linear
    if len(values) > 1:
        assert got["std"] == pytest.approx(statistics.stdev(values))  # sample std, ddof=1
        assert got["std"] == pytest.approx(float(np.std(values, ddof=1)))
    else:
        assert got["std"] is None


def test_describe_known_values():
    assert describe([1, 2, 3, 4]) == {
        "count": 4, "mean": 2.5, "std": pytest.approx(1.2909944), "min": 1,
        "p25": 1.75, "p50": 2.5, "p75": 3.25, "max": 4,
    }


def test_describe_skips_nulls_and_empty_is_none():
    assert describe([None, 1, float("nan"), 3, None]) == describe([1, 3])
    empty = describe([])
    assert empty == {"count": 0, "mean": None, "std": None, "min": None, "p25": None, "p50": None, "p75": None, "max": None}
    assert describe([None, float("nan")]) == empty
    assert describe(x for x in [4, 2])["p50"] == 3.0  # any iterable


# split_stats ------------------------------------------------------------------------------

DIALOGUES = [
    {"prompt": "one two three", "prompt_id": "a", "messages": chat(("one two three", "a b"), ("more please", "c d e f"), system="be brief")},
    {"prompt": "hi", "prompt_id": "b", "messages": chat(("hi", "hello there friend"))},
    {"prompt": None, "prompt_id": "c", "messages": chat(("first user turn here", "ok"))},  # prompt null: first user message
    {"prompt": "x", "prompt_id": "d", "messages": None},  # no chat: skipped for turns and responses
]


def test_split_stats_dialogues():
    got = split_stats(DIALOGUES)
    assert got["rows"] == 4
    assert got["messages"] == describe([4, 2, 2])  # system messages do not count
    assert got["rounds"] == describe([2, 1, 1])  # as ultrachat_200k's num_turns
    assert got["prompt_words"] == describe([3, 1, 4, 1])
    assert got["response_words"] == describe([2, 4, 3, 1])  # every assistant message
    assert not {"chosen_words", "rejected_words", "score_chosen", "score_margin"} & set(got)


def test_split_stats_preferences_scores_and_margin():
    rows = [
        {"prompt": "p q", "chosen": chat(("p q", "good long answer here")), "rejected": chat(("p q", "bad")),
         "messages": chat(("p q", "good long answer here")), "score_chosen": 9.0, "score_rejected": 4.5},
        {"prompt": "r", "chosen": chat(("r", "first"), ("again", "fine answer")), "rejected": chat(("r", "meh no")),
         "messages": chat(("r", "first"), ("again", "fine answer")), "score_chosen": 7.0, "score_rejected": 7.0},
        {"prompt": "s t u", "chosen": chat(("s t u", "yes")), "rejected": chat(("s t u", "no no no no")),
         "messages": chat(("s t u", "yes")), "score_chosen": 8.0, "score_rejected": None},
    ]
    got = split_stats(rows)
    assert got["rows"] == 3
    assert got["chosen_words"] == describe([4, 2, 1])  # the last assistant message
    assert got["rejected_words"] == describe([1, 2, 4])
    assert got["score_chosen"] == describe([9.0, 7.0, 8.0])
    assert got["score_rejected"] == describe([4.5, 7.0])  # null skipped
    assert got["score_margin"] == describe([4.5, 0.0])  # only rows with both scores
    assert got["score_margin"]["mean"] == 2.25
    assert got["prompt_words"] == describe([2, 1, 3])
    assert got["messages"] == describe([2, 4, 2])


def test_split_stats_completions_and_self_instruct():
    completions = [
        {"prompt": "why is the sky blue", "response": "rayleigh scattering", "finish_reason": "stop"},
        {"prompt": "2+2", "response": "four", "finish_reason": "stop"},
        {"prompt": "empty", "response": None, "finish_reason": "length"},
    ]
    got = split_stats(completions)
    assert set(got) == {"rows", "prompt_words", "response_words"}  # no messages: no turns
    assert got["prompt_words"] == describe([5, 1, 1])
    assert got["response_words"] == describe([2, 1])

    self_instruct = [
        {"instruction": "Sort the list", "input": "3 1 2", "output": "1 2 3", "is_classification": False},
        {"instruction": "Is this spam?", "input": "", "output": "No", "is_classification": True},
    ]
    got = split_stats(self_instruct)
    assert got["prompt_words"] == describe([3, 3])
    assert got["response_words"] == describe([3, 1])


def test_split_stats_empty_split():
    assert split_stats([]) == {"rows": 0}


def test_dataset_stats_takes_filters_tokens_and_cost_from_the_run():
    run = {
        "filters": [{"name": "dedup", "removed": 3}, {"name": "decontamination", "removed": 0}, "junk"],
        "tokens": {"prompt": 10, "completion": 20, "total": 30},
        "cost_usd": 0.5,
        "items": {"done": 2},
    }
    got = dataset_stats({"train": DIALOGUES[:2], "test": []}, run)
    assert list(got["splits"]) == ["train", "test"]
    assert got["splits"]["test"] == {"rows": 0}
    assert got["filters"] == [{"name": "dedup", "removed": 3}, {"name": "decontamination", "removed": 0}]
    assert got["tokens"]["total"] == 30 and got["cost_usd"] == 0.5
    assert "items" not in got

    bare = dataset_stats({"train": DIALOGUES}, {"cost_usd": None})
    assert bare["filters"] == [] and "cost_usd" not in bare and "tokens" not in bare
    json.dumps(bare)  # plain JSON types only


def test_fmt():
    assert fmt(None) == "–"
    assert fmt(1234) == "1,234" and fmt(4.0) == "4"
    assert fmt(2.5) == "2.50" and fmt(0.70710678) == "0.71" and fmt(0.5) == "0.50" and fmt(0.00123) == "0.00123" and fmt(123.456) == "123.5"


# the command ------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    write_parquet(run / "data" / "train_sft-00000-of-00001.parquet", [
        {"prompt": f"question {'word ' * i}".strip(), "prompt_id": str(i), "messages": chat((f"question {'word ' * i}", "an answer"))}
        for i in range(5)
    ])
    write_parquet(run / "data" / "test_sft-00000-of-00001.parquet", [
        {"prompt": "held out", "prompt_id": "t", "messages": chat(("held out", "yes"), ("and?", "no"))},
    ])
    (run / "stats.json").write_text(json.dumps({
        "command": "generate ultrachat",
        "tokens": {"prompt": 1200, "completion": 3400, "total": 4600},
        "cost_usd": 0.0123,
        "filters": [{"name": "dedup", "removed": 7}, {"name": "decontamination", "removed": 2}],
    }))
    return run


def invoke(*args):
    result = CliRunner().invoke(stats, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_run_directory_tables(run_dir):
    out = invoke(run_dir)
    assert "Splits" in out
    assert out.index("train_sft") < out.index("test_sft")  # train first
    assert "train_sft: 5 rows (lengths in words)" in out
    assert "test_sft: 1 row (lengths in words)" in out
    for header in ("count", "mean", "std", "min", "25%", "50%", "75%", "max"):
        assert header in out
    for metric in ("messages per dialogue", "rounds (answers) per dialogue", "prompt words", "response words"):
        assert metric in out
    assert "total" in out and "6" in out
    assert "Filters" in out and "dedup" in out and "decontamination" in out
    assert "4,600" in out and "$0.0123" in out
    assert "…" not in out  # no truncated numbers


def test_jsonl_file(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": "a b", "chosen": chat(("a b", "long good answer")), "rejected": chat(("a b", "bad")),
         "score_chosen": 8, "score_rejected": 3},
        {"prompt": "c", "chosen": chat(("c", "fine")), "rejected": chat(("c", "worse one")),
         "score_chosen": 6.5, "score_rejected": 6},
    ])
    out = invoke(path)
    assert "train: 2 rows (lengths in words)" in out
    for metric in ("chosen words", "rejected words", "score chosen", "score rejected", "score margin"):
        assert metric in out
    assert "Filters" not in out and "Run" not in out  # a plain file has no run stats


def test_json_output(run_dir):
    data = json.loads(invoke(run_dir, "--json"))
    assert list(data["splits"]) == ["train_sft", "test_sft"]
    assert data["splits"]["train_sft"]["rows"] == 5
    assert data["splits"]["train_sft"]["prompt_words"] == describe([1, 2, 3, 4, 5])
    assert data["splits"]["test_sft"]["messages"]["mean"] == 4.0
    assert data["filters"] == [{"name": "dedup", "removed": 7}, {"name": "decontamination", "removed": 2}]
    assert data["tokens"]["total"] == 4600 and data["cost_usd"] == 0.0123

    only = json.loads(invoke(run_dir, "--split", "test_sft", "--json"))
    assert list(only["splits"]) == ["test_sft"]


def test_subset_of_a_run_directory(run_dir):
    write_parquet(run_dir / "ratings" / "train_prefs-00000-of-00001.parquet", [{"prompt": "x y", "response": "z"}])
    data = json.loads(invoke(run_dir, "--subset", "ratings", "--json"))
    assert list(data["splits"]) == ["train_prefs"]
    assert json.loads(invoke(run_dir, "--subset", "default", "--json"))["splits"].keys() == {"train_sft", "test_sft"}


def test_stats_help_is_light():
    code = (
        "import sys\nfrom distill.commands.stats import stats\n"
        "try:\n    stats.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'datasets', 'pyarrow', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "SOURCE" in out


# errors, through the real entry point: one line on stderr, non-zero exit ---------------------


def test_unknown_split_names_the_available_ones(cli, run_dir):
    result = cli("stats", run_dir, "--split", "validation")
    assert_one_line_error(result, "validation", "train_sft", "test_sft")


def test_missing_path(cli, tmp_path):
    assert_one_line_error(cli("stats", tmp_path / "nope.jsonl"), "does not exist")
    assert_one_line_error(cli("stats", tmp_path / "no" / "such" / "run"), "does not exist")


def test_empty_dataset(cli, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert_one_line_error(cli("stats", tmp_path / "empty.jsonl"), "empty")


def test_unknown_subset_and_bad_stats_json(cli, run_dir):
    assert_one_line_error(cli("stats", run_dir, "--subset", "ratings"), "ratings", "default")
    (run_dir / "stats.json").write_text("{not json")
    assert_one_line_error(cli("stats", run_dir), "stats.json")


def test_registered_in_the_cli(cli, run_dir):
    result = cli("stats", run_dir, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["splits"]["train_sft"]["messages"]["mean"] == 2.0
