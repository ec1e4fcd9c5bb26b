"""distill.inputs: every input format, and a clear InputError for every bad input."""

from __future__ import annotations

import json
import socket

import pytest

from distill.errors import InputError
from distill.inputs import check_prompt, load_rows, load_splits, pick_column, select

ROWS = [
    {"prompt": "What is 2+2?", "n": 1},
    {"prompt": "Name a colour.", "n": 2},
    {"prompt": "Say hi \u00e9\u4e16", "n": 3},
]
CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def error_of(source, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_rows(str(source), **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- formats


def test_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", ROWS)
    assert load_rows(str(path)) == ROWS


def test_jsonl_skips_blank_lines_and_accepts_crlf(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\r\n   \n{"a": 2}\r\n')
    assert load_rows(str(path)) == [{"a": 1}, {"a": 2}]


def test_ndjson_suffix_and_uppercase_suffix(tmp_path):
    assert load_rows(str(write_jsonl(tmp_path / "in.ndjson", ROWS))) == ROWS
    assert load_rows(str(write_jsonl(tmp_path / "IN.JSONL", ROWS))) == ROWS


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028/U+0085/form feed raw; they are not line ends.
    rows = [{"text": "a\u2028b"}, {"text": "c\x85d\x0ce\x1cf"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    assert load_rows(str(path)) == rows


def test_jsonl_with_utf8_bom(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\n{"a": 2}\n')
    assert load_rows(str(path)) == [{"a": 1}, {"a": 2}]


def test_json_list(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_rows(str(path)) == ROWS


def test_json_data_wrapper(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    assert load_rows(str(path)) == ROWS


def test_json_data_wrapper_beside_metadata(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"version": "1.0", "data": ROWS}), encoding="utf-8")
    assert load_rows(str(path)) == ROWS


def test_json_dict_of_columns(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"prompt": [r["prompt"] for r in ROWS], "n": [r["n"] for r in ROWS]}), encoding="utf-8")
    assert load_rows(str(path)) == ROWS


def test_json_dict_of_one_column(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"text": ["a", "b"]}), encoding="utf-8")
    assert load_rows(str(path)) == [{"text": "a"}, {"text": "b"}]


def test_json_columns_of_unequal_length_refused(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"a": [1, 2], "b": [1]}), encoding="utf-8")
    assert "expected a JSON list of objects" in error_of(path)


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, [{"a": 1}, "b"]])
def test_json_not_a_list_of_objects(tmp_path, payload):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "expected a JSON list of objects" in message


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('[\n {"a": 1},\n {"a": oops}\n]\n', encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 3" in message


def test_txt_one_row_per_non_empty_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbf  first prompt \r\n\n   \nsecond \xe2\x80\xa8 still second\nthird")
    assert load_rows(str(path)) == [
        {"text": "first prompt"},
        {"text": "second \u2028 still second"},
        {"text": "third"},
    ]


def test_csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('prompt,n\n"What is 2+2?",1\n"Name a colour, please.",2\n', encoding="utf-8")
    assert load_rows(str(path)) == [{"prompt": "What is 2+2?", "n": 1}, {"prompt": "Name a colour, please.", "n": 2}]


def test_csv_unreadable(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("", encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "csv" in message


def test_parquet(tmp_path):
    rows = [{"prompt": "p1", "messages": CHAT}, {"prompt": "p2", "messages": CHAT[:1]}]
    path = write_parquet(tmp_path / "in.parquet", rows)
    assert load_rows(str(path)) == rows


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_bytes(b"this is not parquet at all")
    message = error_of(path)
    assert str(path) in message and "cannot read as parquet" in message


def test_saved_dataset_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert load_rows(str(tmp_path / "ds")) == ROWS


def test_saved_dataset_dict_splits(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_list([{"prompt": "t"}]),
            "train": datasets.Dataset.from_list([{"prompt": "a"}, {"prompt": "b"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    assert load_rows(str(tmp_path / "dd")) == [{"prompt": "a"}, {"prompt": "b"}]  # train by default
    assert load_rows(str(tmp_path / "dd"), split="test") == [{"prompt": "t"}]
    message = error_of(tmp_path / "dd", split="validation")
    assert "'validation'" in message and "test" in message and "train" in message


def test_saved_dataset_dict_without_train_takes_first_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train_sft": datasets.Dataset.from_list([{"prompt": "a"}])}).save_to_disk(str(tmp_path / "dd"))
    assert load_rows(str(tmp_path / "dd")) == [{"prompt": "a"}]


def test_run_directory_with_parquet_export(tmp_path):
    run = tmp_path / "run"
    write_parquet(run / "data" / "train-00000-of-00001.parquet", ROWS)
    write_parquet(run / "data" / "test-00000-of-00001.parquet", [{"prompt": "t", "n": 9}])
    write_jsonl(run / "records.jsonl", [{"id": "x", "stale": True}])  # the export wins
    assert load_rows(str(run)) == ROWS
    assert load_rows(str(run), split="test") == [{"prompt": "t", "n": 9}]
    message = error_of(run, split="dev")
    assert "'dev'" in message and "test, train" in message


def test_run_directory_multiple_shards_in_order(tmp_path):
    run = tmp_path / "run"
    write_parquet(run / "data" / "train-00001-of-00002.parquet", [{"i": 2}])
    write_parquet(run / "data" / "train-00000-of-00002.parquet", [{"i": 1}])
    assert load_rows(str(run)) == [{"i": 1}, {"i": 2}]


def test_hub_layout_unsharded_split_file(tmp_path):
    run = tmp_path / "export"
    write_parquet(run / "data" / "train.parquet", [{"i": 1}])
    write_parquet(run / "data" / "test.parquet", [{"i": 2}])
    assert load_rows(str(run)) == [{"i": 1}]
    assert load_rows(str(run), split="test") == [{"i": 2}]


def test_run_directory_with_only_records(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"id": "0:0", "prompt": "a", "response": "b"}, {"id": "1:0", "prompt": "c", "response": "d"}]
    write_jsonl(run / "records.jsonl", records)
    assert load_rows(str(run)) == records


def test_run_directory_records_torn_last_line_is_ignored(tmp_path):
    # A run killed mid-append leaves a torn last line; resuming cuts it off (RecordLog).
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text('{"id": "a"}\n{"id": "b", "resp', encoding="utf-8")
    assert load_rows(str(run)) == [{"id": "a"}]
    # ...but a broken line in the middle is still an error.
    (run / "records.jsonl").write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n', encoding="utf-8")
    assert "line 2" in error_of(run)


def test_directory_with_no_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    message = error_of(tmp_path / "empty")
    assert str(tmp_path / "empty") in message and "no dataset" in message


# ---------------------------------------------------------------- file errors


def test_invalid_jsonl_names_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n', encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 3" in message and "not valid JSON" in message


def test_jsonl_line_not_an_object(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n["a", 2]\n', encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 2" in message and "not a JSON object" in message


def test_jsonl_torn_last_line_of_plain_file_is_an_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": ', encoding="utf-8")
    assert "line 2" in error_of(path)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("suffix", [".jsonl", ".txt", ".json"])
def test_not_utf8_names_line(tmp_path, suffix, bom):
    path = tmp_path / f"in{suffix}"
    path.write_bytes(bom + b'["x",\n"y",\n"caf\xe9"]\n')
    message = error_of(path)
    assert str(path) in message and "not UTF-8" in message and "line 3" in message


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "in.xlsx"
    path.write_bytes(b"whatever")
    message = error_of(path)
    assert str(path) in message and ".xlsx" in message and ".jsonl" in message
    noext = tmp_path / "README"
    noext.write_text("x")
    assert "(none)" in error_of(noext)


def test_missing_path(tmp_path):
    message = error_of(tmp_path / "nope.jsonl")
    assert "does not exist" in message and "nope.jsonl" in message


def test_missing_relative_file_is_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    # "data/prompts.jsonl" also matches org/name; it must be reported as missing, not fetched.
    import datasets

    def boom(*args, **kwargs):
        raise AssertionError("a missing local file was looked up on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    monkeypatch.chdir(tmp_path)
    for source in ("data/prompts.jsonl", "data/prompts.csv", "data/prompts.parquet"):
        message = error_of(source)
        assert "does not exist" in message and source in message


def test_not_a_hub_id_and_missing():
    message = error_of("/definitely/not/here")
    assert "does not exist" in message


# ---------------------------------------------------------------- the Hub, offline


@pytest.fixture
def no_network(monkeypatch):
    """Offline mode on, and any socket connection fails loudly instead of reaching out."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read the variable at import time.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network access in a unit test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_hub_id_offline_is_a_clean_input_error(no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = error_of("distill-test-org/no-such-dataset")
    assert message.startswith("cannot load Hub dataset distill-test-org/no-such-dataset")
    assert "\n" not in message
    assert no_network == []


def test_hub_errors_are_wrapped_with_the_arguments_passed(monkeypatch, tmp_path):
    import datasets

    calls = []

    def fake_load_dataset(name, subset=None, **kwargs):
        calls.append((name, subset, kwargs))
        raise ConnectionError("Couldn't reach\n   the Hub\tat all")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.chdir(tmp_path)
    message = error_of("org/name", split="test", subset="cfg", revision="abc123")
    assert message == "cannot load Hub dataset org/name: Couldn't reach the Hub at all"
    assert calls == [("org/name", "cfg", {"split": "test", "revision": "abc123"})]
    error_of("org/name")
    assert calls[-1] == ("org/name", None, {"split": "train", "revision": None})


def cache_hub_dataset(cache_dir, repo_id, splits, config="default"):
    """Put a dataset in the datasets cache as a download from the Hub leaves it, so that
    `datasets.load_dataset(repo_id)` finds it offline (its cached-dataset fallback)."""
    import datasets

    class HubDataset(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo()

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=name, gen_kwargs={"rows": rows}) for name, rows in splits.items()]

        def _generate_examples(self, rows):
            yield from enumerate(rows)

    HubDataset(cache_dir=str(cache_dir), dataset_name=repo_id.split("/")[1], repo_id=repo_id, config_name=config,
               hash="0123456789abcdef").download_and_prepare()


def test_hub_dataset_rows(no_network, monkeypatch, tmp_path):
    # The real datasets.load_dataset, offline, on a dataset in its cache: no stand-in for it.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    others = [{"prompt": "Held out.", "n": 9}]
    cache_hub_dataset(tmp_path / "hf-datasets", "org/name", {"train": ROWS, "test": others})
    monkeypatch.chdir(tmp_path)
    assert load_rows("org/name") == ROWS  # train, by default
    assert load_rows("org/name", split="test") == others
    assert load_splits("org/name") == {"train": ROWS, "test": others}
    message = error_of("org/name", split="validation")
    assert message.startswith("cannot load Hub dataset org/name: ") and "validation" in message
    assert no_network == []


def test_local_directory_wins_over_hub_id(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the Hub"))
    monkeypatch.chdir(tmp_path)
    write_parquet(tmp_path / "org" / "name" / "data" / "train-00000-of-00001.parquet", ROWS)
    assert load_rows("org/name") == ROWS


# ---------------------------------------------------------------- select


def test_select_empty_input():
    with pytest.raises(InputError, match="input in.jsonl is empty"):
        select([], "in.jsonl")


def test_select_limit_and_no_shuffle_keeps_order():
    rows = [{"i": i} for i in range(10)]
    assert select(rows, "s") == rows
    assert select(rows, "s", limit=3) == rows[:3]
    assert select(rows, "s", limit=100) == rows


def test_select_seeded_shuffle():
    rows = [{"i": i} for i in range(50)]
    original = [dict(r) for r in rows]
    a = select(rows, "s", shuffle_seed=1)
    b = select(rows, "s", shuffle_seed=1)
    c = select(rows, "s", shuffle_seed=2)
    assert a == b
    assert a != c
    assert a != rows
    assert sorted(r["i"] for r in a) == list(range(50))
    assert rows == original  # the caller's list is not shuffled in place
    limited = select(rows, "s", limit=5, shuffle_seed=1)
    assert limited == a[:5]  # limit applies after the shuffle


# ---------------------------------------------------------------- pick_column


def test_pick_column_explicit():
    assert pick_column(ROWS, "in", "n", ("prompt",)) == "n"


def test_pick_column_missing_lists_present_columns():
    with pytest.raises(InputError) as info:
        pick_column([{"question": "q", "answer": "a"}], "in.jsonl", "prompt", ("prompt",))
    message = str(info.value)
    assert "in.jsonl" in message and "'prompt'" in message and "question, answer" in message


def test_pick_column_auto_order():
    candidates = ("prompt", "messages", "instruction", "text", "question")
    row = {"question": 1, "text": 2, "instruction": 3, "messages": 4, "other": 5}
    assert pick_column([row], "in", None, candidates) == "messages"
    row["prompt"] = 0
    assert pick_column([row], "in", None, candidates) == "prompt"
    assert pick_column([{"question": 1, "text": 2}], "in", None, candidates) == "text"
    assert pick_column([{"other": 1, "question": 2}], "in", None, candidates) == "question"


def test_pick_column_none_found():
    with pytest.raises(InputError) as info:
        pick_column([{"a": 1, "b": 2}], "in.csv", None, ("prompt", "text"))
    message = str(info.value)
    assert "prompt, text" in message and "a, b" in message and "--column" in message


def test_pick_column_empty_rows():
    with pytest.raises(InputError, match="empty"):
        pick_column([], "in", None, ("prompt",))


# ---------------------------------------------------------------- check_prompt


def test_check_prompt_accepts_string_and_chat():
    check_prompt("hello", "in", 0, "prompt")
    check_prompt(CHAT, "in", 0, "messages")
    check_prompt([{"role": "user", "content": ""}], "in", 0, "messages")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("", "empty prompt"),
        ("  \n\t", "empty prompt"),
        ([], "empty list of messages"),
        ([{"role": "user"}], "{role, content}"),
        ([{"content": "x"}], "{role, content}"),
        ([{"role": "user", "content": 3}], "{role, content}"),
        ([{"role": None, "content": "x"}], "{role, content}"),
        (["hello"], "{role, content}"),
        ([CHAT[0], "oops"], "{role, content}"),
        (3, "got int"),
        ({"role": "user", "content": "x"}, "got dict"),
        (None, "missing or null"),
    ],
)
def test_check_prompt_refuses(value, expected):
    with pytest.raises(InputError) as info:
        check_prompt(value, "in.jsonl", 4, "prompt")
    message = str(info.value)
    assert expected in message
    assert message.startswith("input in.jsonl, row 5, column 'prompt':")


# ---------------------------------------------------------------- hostile files (issue 11, item 20)


def test_a_lone_surrogate_is_refused_with_its_line(tmp_path):
    # json.loads accepts "\ud800" and makes a str that no file or tokenizer can encode later.
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": "half \\ud800 a pair"}\n', encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 2" in message and "\\ud800" in message
    path.write_text('{"prompt": "fine", "\\udc00": 1}\n', encoding="utf-8")  # in a key too
    assert "line 1" in error_of(path)
    whole = tmp_path / "in.json"
    whole.write_text('[\n{"a": "\\ud83d\\ude00"},\n{"a": "\\ud83d"}\n]', encoding="utf-8")  # a pair, then half of one
    message = error_of(whole)
    assert "line 3" in message and "\\ud83d" in message


def test_surrogate_pairs_and_escaped_backslashes_are_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": "\\ud83d\\ude00"}\n{"a": "\\\\ud800 is how JSON writes half a pair"}\n', encoding="utf-8")
    assert load_rows(str(path)) == [{"a": "\U0001F600"}, {"a": "\\ud800 is how JSON writes half a pair"}]


@pytest.mark.parametrize("line", ['{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", "[" * 100_000 + "]" * 100_000])
def test_json_nested_past_the_stack_names_the_line(tmp_path, line):
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "a"}\n' + line + "\n", encoding="utf-8")
    message = error_of(path)
    assert str(path) in message and "line 2" in message and "nested too deeply" in message
    whole = tmp_path / "in.json"
    whole.write_text('[\n{"prompt": "a"},\n' + line + "\n]", encoding="utf-8")
    message = error_of(whole)
    assert str(whole) in message and "line 3" in message and "nested too deeply" in message


def test_a_fifo_is_refused_without_reading_it(tmp_path):
    import os

    os.mkfifo(tmp_path / "in.jsonl")  # reading it would wait for a writer forever
    assert "not a regular file" in error_of(tmp_path / "in.jsonl")


def test_a_file_that_cannot_be_read(tmp_path):
    from pathlib import Path

    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc/self/mem")
    (tmp_path / "in.jsonl").symlink_to("/proc/self/mem")  # fails to read (EIO), even for root
    message = error_of(tmp_path / "in.jsonl")
    assert message.startswith("cannot read") and "in.jsonl" in message


def test_text_columns_that_are_not_utf8(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([b"fine", b"caf\xe9"], type=pa.binary())
    pq.write_table(pa.table({"prompt": pa.Array.from_buffers(pa.string(), 2, raw.buffers())}), tmp_path / "in.parquet")
    assert "not UTF-8" in error_of(tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_bytes(b"prompt,n\nfine,1\ncaf\xe9,2\n")
    assert "column 'prompt' is not UTF-8" in error_of(tmp_path / "in.csv")


def test_a_damaged_saved_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    (tmp_path / "ds" / "state.json").write_bytes(b"\x80\x81 not json")
    message = error_of(tmp_path / "ds")
    assert "cannot read the saved dataset" in message and "\n" not in message


def test_subset_and_revision_of_local_inputs(tmp_path):
    run = tmp_path / "run"
    write_parquet(run / "data" / "train-00000-of-00001.parquet", ROWS)
    write_parquet(run / "completions" / "train-00000-of-00001.parquet", [{"c": 1}])
    assert load_rows(str(run), subset="completions") == [{"c": 1}]  # not silently the default config
    assert "revision" in error_of(run, revision="main")
    assert "revision" in error_of(write_jsonl(tmp_path / "in.jsonl", ROWS), revision="main")


def test_a_row_with_no_columns():
    with pytest.raises(InputError, match=r"\(columns: none\)"):
        pick_column([{}], "in.jsonl", None, ("prompt",))


def test_a_hub_dataset_without_a_train_split_is_read_from_train_sft(no_network, monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    cache_hub_dataset(tmp_path / "hf-datasets", "org/chats", {"train_sft": ROWS, "test_sft": [{"prompt": "x", "n": 0}]})
    monkeypatch.chdir(tmp_path)
    assert load_rows("org/chats") == ROWS  # as ultrachat_200k is laid out
