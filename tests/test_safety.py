"""Issue 11: defects found by hostile testing that lost user files, wrote outside -o,
overspent a budget or leaked a secret; each test here failed on the code before its fix."""

import json

from conftest import assert_one_line_error, read_dataset, write_jsonl


def fake_completions(prompts, out, *extra):
    return ("generate", "completions", "--input", prompts, "--backend", "fake", "-o", out, "-q", *extra)


def tree(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


# -- 1. --fresh deletes only what distill wrote ---------------------------------------------------------


def test_fresh_never_empties_a_folder_distill_did_not_make(cli, tmp_path, prompts_file):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my: own settings\n")
    (out / "thesis.tex").write_text("years of work")
    before = {p: p.read_bytes() for p in out.iterdir()}
    plain = cli(*fake_completions(prompts_file, out))
    assert_one_line_error(plain)
    assert "--fresh" not in plain.err  # the way out is not to delete the user's folder
    fresh = cli(*fake_completions(prompts_file, out, "--fresh"))
    assert_one_line_error(fresh, "holds no distill run")
    assert {p: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


def test_fresh_refuses_an_unmarked_run_and_resumes_it(cli, tmp_path, prompts_file):
    out = tmp_path / "old"
    assert cli(*fake_completions(prompts_file, out)).code == 0
    (out / ".distill").unlink()  # as a run made before distill marked its folders
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(cli(*fake_completions(prompts_file, out, "--fresh")), "--fresh", "mark")
    assert (out / "records.jsonl").is_file() and (out / "keep.txt").is_file()
    assert cli(*fake_completions(prompts_file, out)).code == 0  # resuming it marks it
    assert json.loads((out / ".distill").read_text())["created"] is False


def test_fresh_deletes_the_run_files_and_keeps_the_users_own(cli, tmp_path, prompts_file):
    out = tmp_path / "run"
    assert cli(*fake_completions(prompts_file, out, "--format", "jsonl")).code == 0
    (out / "notes.md").write_text("my notes on this run")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_bytes(b"png")
    assert cli(*fake_completions(prompts_file, out, "--fresh", "-n", "3")).code == 0
    assert (out / "notes.md").read_text() == "my notes on this run"
    assert (out / "mine" / "plot.png").read_bytes() == b"png"
    assert len(read_dataset(out)) == 3
    assert not (out / "jsonl").exists()  # the earlier export's files went with --fresh


# -- 3. one bad line in records.jsonl drops nothing after it ------------------------------------------


def test_a_bad_line_in_the_middle_of_the_records_is_skipped_not_a_tear(cli, tmp_path, prompts_file):
    out = tmp_path / "run"
    assert cli(*fake_completions(prompts_file, out)).code == 0
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    damaged = json.loads(lines[3])["id"]
    lines[3] = '{"id": "' + damaged + '", "prompt": "cut off\n'  # a damaged line, not the last one
    (out / "records.jsonl").write_text("".join(lines))
    rerun = cli(*fake_completions(prompts_file, out))
    assert rerun.code == 0, rerun.err
    assert "line 4" in rerun.err and "skipped" in rerun.err
    kept = (out / "records.jsonl").read_text().splitlines()
    assert kept[:3] == [line.rstrip("\n") for line in lines[:3]]
    assert kept[4:20] == [line.rstrip("\n") for line in lines[4:]]  # nothing after the bad line was dropped
    assert json.loads(kept[-1])["id"] == damaged  # the bad line's item was done again (from the cache)
    assert len(read_dataset(out)) == 20
    stats = json.loads((out / "stats.json").read_text())
    assert stats["last_session"]["requests"] == 0 and stats["last_session"]["cache_hits"] == 1


def test_only_a_last_line_without_its_newline_is_a_tear(tmp_path):
    from distill.run_dir import RecordLog

    path = tmp_path / "records.jsonl"
    write_jsonl(path, [{"id": "a"}, {"id": "b"}])
    with open(path, "a") as f:
        f.write('{"id": "c", "te')
    log = RecordLog(path)
    assert [r["id"] for r in log] == ["a", "b"]
    assert path.read_text().endswith('{"id": "b"}\n')  # the torn tail is cut off
    with open(path, "a") as f:
        f.write('{"id": "c", "te')
    RecordLog(path, read_only=True)
    assert path.read_text().endswith('"te')  # merge reads shards without changing them


def test_merge_skips_a_bad_shard_line_keeps_the_rest_and_leaves_the_shards_as_they_were(cli, tmp_path, prompts_file):
    shards = [tmp_path / f"s{k}" for k in range(2)]
    for k, out in enumerate(shards):
        assert cli(*fake_completions(prompts_file, out, "--shard", f"{k}/2")).code == 0
    records = shards[0] / "records.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    lines[1] = "garbage\n"
    records.write_text("".join(lines) + '{"id": "torn')
    before = records.read_bytes()
    merged = cli("merge", *shards, "-o", tmp_path / "all")
    assert merged.code != 0 and "not generated yet" in merged.err  # the bad line's item must be done again
    assert records.read_bytes() == before
    assert cli(*fake_completions(prompts_file, tmp_path / "all")).code == 0  # resumes: one item, from the cache
    assert len(read_dataset(tmp_path / "all")) == 20


# -- 5. the input changed: its changed rows are redone, never mixed ---------------------------------


def test_a_changed_input_redoes_the_changed_rows_instead_of_mixing_old_and_new(cli, tmp_path):
    from distill.testing.openai_server import LoopbackServer

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"old question {i}"} for i in range(6)])
    out = tmp_path / "run"
    with LoopbackServer() as server:
        assert cli(*openai_run(server, prompts, out), env={"OPENAI_API_KEY": "k"}).code == 0
        write_jsonl(prompts, [{"prompt": f"{'new' if i % 2 else 'old'} question {i}"} for i in range(6)])
        again = cli(*openai_run(server, prompts, out), env={"OPENAI_API_KEY": "k"})
        assert again.code == 0, again.err
        assert server.stats.answered_total == 9  # the three changed rows, asked once more
    rows = read_dataset(out)
    assert [r["prompt"] for r in rows] == [f"{'new' if i % 2 else 'old'} question {i}" for i in range(6)]
    assert all(r["prompt"] in r["response"] for r in rows)  # each answer is the answer to its own prompt
    stats = json.loads((out / "stats.json").read_text())
    assert stats["items"] == {"done": 6, "total": 6, "failed": 0}


# -- 7-11. budgets -------------------------------------------------------------------------------------


def priced(tmp_path, input_price=1000.0, output_price=1000.0):
    """A price table for the loopback model `m`: USD per million tokens."""
    path = tmp_path / "prices.yaml"
    path.write_text(f"m: {{input: {input_price}, output: {output_price}}}\n")
    return path


def openai_run(server, prompts, out, *extra):
    return ("generate", "completions", "--input", prompts, "--backend", "openai", "--model", "m", "--base-url",
            server.url, "-o", out, "-q", "--max-new-tokens", "20", *extra)


def spent(out):
    return json.loads((out / "stats.json").read_text())["cost_usd"]


def test_the_cost_cap_holds_for_the_run_however_often_it_is_started(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    out = tmp_path / "run"
    cap = "0.35"  # about five of the twenty answers
    with LoopbackServer() as server:
        first = cli(*openai_run(server, prompts_file, out, "--prices", priced(tmp_path), "--max-cost-usd", cap,
                                "--concurrency", "1"), env={"OPENAI_API_KEY": "k"})
        assert first.code == 3, first.err
        after_first = server.stats.answered_total
        assert 0 < after_first < 20 and spent(out) <= 0.35
        for _ in range(2):  # started again with the same cap: the run's spend counts, not this session's
            again = cli(*openai_run(server, prompts_file, out, "--prices", priced(tmp_path), "--max-cost-usd", cap,
                                    "--concurrency", "1"), env={"OPENAI_API_KEY": "k"})
            assert again.code == 3, again.err
            assert spent(out) <= 0.35
        # (A start may fit an answer the one before left out while another was in flight; never past the cap.)
        # The stop message says what the run has spent, not $0.0000.
        assert f"${spent(out):.4f} spent" in again.err and spent(out) > 0


def test_a_server_that_over_reports_usage_cannot_push_the_spend_past_the_cap(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    out = tmp_path / "run"
    with LoopbackServer(usage_factor=1000) as server:
        result = cli(*openai_run(server, prompts_file, out, "--prices", priced(tmp_path), "--max-cost-usd", "0.5",
                                 "--concurrency", "4"), env={"OPENAI_API_KEY": "k"})
    assert result.code == 3, result.err
    assert spent(out) <= 0.5
    assert result.err.count("warning:") == 1 and "reported" in result.err


def test_timed_out_attempts_count_at_their_worst_case(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import FaultPlan, LoopbackServer

    out = tmp_path / "run"
    with LoopbackServer(faults=FaultPlan(rates={"slow": 1.0}, max_per_key=1, slow_seconds=2.0)) as server:
        result = cli(*openai_run(server, prompts_file, out, "--prices", priced(tmp_path), "--timeout", "0.3",
                                 "-n", "3"), env={"OPENAI_API_KEY": "k"})
    assert result.code == 0, result.err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["last_session"]["charged_timeouts"] == 3
    answered = [r["prompt_tokens"] + r["completion_tokens"] for r in read_dataset(out)]
    # Each timed-out attempt is counted at its worst case (prompt bytes + frame + max_tokens), beyond the answers.
    assert stats["tokens"]["total"] > sum(answered) + 3 * 20
    assert spent(out) == stats["tokens"]["total"] * 1000 / 1e6


def test_negative_or_nan_prices_are_refused(cli, tmp_path, prompts_file):
    for bad in ("-1", ".nan", "nan", "-.inf"):
        table = tmp_path / "prices.yaml"
        table.write_text(f"m: {{input: {bad}, output: 1}}\n")
        result = cli("generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m",
                     "--base-url", "http://127.0.0.1:9/v1", "--prices", table, "-o", tmp_path / "run", "--max-cost-usd", "1",
                     env={"OPENAI_API_KEY": "k"})
        assert_one_line_error(result, "price table", "finite and >= 0")
        assert not (tmp_path / "run").exists()


# -- 12, 13. secrets: redacted everywhere, sent only where they belong --------------------------------

SECRET = "sk-live-0123456789abcdefSECRET"


def test_a_key_a_server_echoes_back_never_reaches_the_terminal_stats_or_failed_items(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    out = tmp_path / "run"
    rejected = lambda body: 400 if "number 3:" in body["messages"][-1]["content"] else None  # noqa: E731
    with LoopbackServer(echo_headers=True, status=rejected) as server:
        result = cli(*openai_run(server, prompts_file, out), env={"OPENAI_API_KEY": SECRET})
    assert result.code == 0, result.err
    failed = (out / "failed.jsonl").read_text()
    assert "scripted 400" in failed and "Authorization" in failed  # the echo is kept, the key is not
    with LoopbackServer(echo_headers=True, status=lambda body: 500) as server:
        broken = cli(*openai_run(server, prompts_file, tmp_path / "broken", "--max-retries", "0"),
                     env={"OPENAI_API_KEY": SECRET})
    assert broken.code != 0 and "Authorization" in broken.err
    for text in (result.err, result.out, broken.err, failed, (out / "stats.json").read_text(),
                 (tmp_path / "broken" / "stats.json").read_text()):
        assert SECRET not in text


def test_the_hub_token_is_redacted_from_an_echoing_endpoint(tmp_path):
    from conftest import run_subprocess

    from distill.testing.openai_server import LoopbackServer

    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0" * 2
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "train-00000-of-00001.parquet").write_bytes(b"x")
    (run / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                   "    path: data/train-*\n---\n# card\n")
    with LoopbackServer(echo_headers=True) as server:
        result = run_subprocess("push", run, "--repo-id", "me/data",
                                env={"HF_TOKEN": token, "HF_ENDPOINT": server.url.removesuffix("/v1"), "HF_HUB_OFFLINE": "0"})
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert token not in result.stderr and token not in result.stdout


def test_a_models_own_endpoint_gets_only_the_key_named_for_it(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    with LoopbackServer(reply=judge_reply) as named, LoopbackServer(reply=judge_reply) as bare:
        result = cli("rate", "ultrafeedback", "--input", prompts_file, "-n", "2", "--backend", "fake",
                     "--models", f"a,b@{bare.url},c@{named.url}#C_KEY", "--completions-per-prompt", "3",
                     "--judge", "j", "-o", tmp_path / "run", "-q",
                     env={"OPENAI_API_KEY": SECRET, "C_KEY": "c-key-0123456789"})
    assert result.code == 0, result.err
    assert set(bare.stats.keys_seen) == {"Bearer no-key"}
    assert set(named.stats.keys_seen) == {"Bearer c-key-0123456789"}


def test_a_key_over_plain_http_to_another_host_is_warned_about(cli, tmp_path, prompts_file):
    result = cli("generate", "completions", "--input", prompts_file, "--base-url", "http://192.0.2.1:9/v1", "--model", "m",
                 "-o", tmp_path / "run", "--max-retries", "0", "--timeout", "1", env={"OPENAI_API_KEY": SECRET})
    assert "over plain HTTP" in result.err and SECRET not in result.err


# -- 16, 22, 24. one parser for every option that names a model -----------------------------------------


def judge_reply(body):
    """A loopback reply in the shape the request asks for (the fake backend's), for a real HTTP judge."""
    from distill.backends.fake_replies import shaped_reply
    from distill.request import Request, SamplingParams

    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if "messages" in body:
        request = Request.chat(body["model"], body["messages"], SamplingParams(max_tokens=body["max_tokens"]),
                               json_schema=schema)
    else:
        request = Request.text(body["model"], body["prompt"], SamplingParams(max_tokens=body["max_tokens"]))
    return shaped_reply(request)


def spec_cases(url):
    prompts = "{prompts}"
    return {
        "rate --judge": ["rate", "ultrafeedback", "--input", prompts, "-n", "2", "--models", "a,b",
                         "--completions-per-prompt", "2", "--judge", f"M@{url}"],
        "rate --models": ["rate", "ultrafeedback", "--input", prompts, "-n", "2", "--models", f"a,M@{url}",
                          "--completions-per-prompt", "2", "--judge", "j"],
        "ultrachat --assistant-model": ["generate", "ultrachat", "-n", "2", "--assistant-model", f"M@{url}"],
        "ultrachat --user-model": ["generate", "ultrachat", "-n", "2", "--user-model", f"M@{url}"],
        "camel --assistant-model": ["generate", "camel", "-n", "2", "--num-roles", "2", "--tasks-per-pair", "2",
                                    "--assistant-model", f"M@{url}"],
        "camel --user-model": ["generate", "camel", "-n", "2", "--num-roles", "2", "--tasks-per-pair", "2",
                               "--user-model", f"M@{url}"],
        "camel --task-model": ["generate", "camel", "-n", "2", "--num-roles", "2", "--tasks-per-pair", "2",
                               "--task-model", f"M@{url}"],
        "zephyr --pool": ["zephyr", "--dialogues", "3", "--pool", f"a,M@{url}", "--judge", "j", "--stop-after", "data"],
        "zephyr --judge": ["zephyr", "--dialogues", "3", "--pool", "a,b", "--judge", f"M@{url}", "--stop-after", "data"],
    }


def test_every_option_that_names_a_model_sends_a_model_at_url_to_that_url_by_its_name(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    for name in spec_cases("URL"):
        with LoopbackServer(reply=judge_reply) as server:
            args = [a.format(prompts=prompts_file) for a in spec_cases(server.url)[name]]
            out = tmp_path / name.replace(" ", "_").replace("-", "")
            result = cli(*args, "--backend", "fake", "-o", out, "-q", env={"OPENAI_API_KEY": SECRET})
            assert result.code == 0, (name, result.err)
            assert server.stats.received > 0, name
            assert set(server.stats.keys_seen) == {"Bearer no-key"}, name  # no #KEY_ENV: no key
            models = {json.loads(r["request"])["model"] for r in _cached_requests(out)}
            assert "M" in models and not any("@" in m for m in models), (name, models)


def _cached_requests(out):
    import sqlite3

    runs = [out] if (out / "cache.sqlite").exists() else [p for p in out.iterdir() if (p / "cache.sqlite").exists()]
    rows = []
    for run in runs:
        with sqlite3.connect(run / "cache.sqlite") as db:
            rows += [{"request": r[0]} for r in db.execute("SELECT request FROM responses")]
    return rows


def test_a_rule_between_options_names_the_flag_typed_not_config(cli, tmp_path, prompts_file):
    result = cli("rate", "ultrafeedback", "--input", prompts_file, "--backend", "fake", "--models", "a,b", "--judge", "j",
                 "-o", tmp_path / "run")
    assert_one_line_error(result, "--models needs at least 4 distinct models")
    assert "--config" not in result.err
    result = cli("binarize", tmp_path / "nowhere", "--score", "overall")
    assert "--config" not in result.err


def test_the_same_model_bare_and_at_the_runs_own_url_is_one_model(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    with LoopbackServer(reply=judge_reply) as server:
        result = cli("rate", "ultrafeedback", "--input", prompts_file, "-n", "2", "--base-url", server.url, "--model", "j",
                     "--models", f"a,b,a@{server.url}", "--completions-per-prompt", "2", "-o", tmp_path / "run", "-q",
                     env={"OPENAI_API_KEY": "k"})
    assert result.code == 0, result.err


# -- 2. binarize writes into the run it is given -------------------------------------------------------


def rated_run(cli, tmp_path, prompts_file):
    out = tmp_path / "rated"
    result = cli("rate", "ultrafeedback", "--input", prompts_file, "-n", "6", "--backend", "fake", "--models", "a,b,c",
                 "--completions-per-prompt", "3", "--judge", "j", "-o", out, "-q")
    assert result.code == 0, result.err
    return out


def test_binarize_writes_into_the_run_it_is_given_from_anywhere(cli, tmp_path, prompts_file, monkeypatch):
    import shutil

    original = rated_run(cli, tmp_path, prompts_file)
    before = {p: p.read_bytes() for p in original.rglob("*") if p.is_file() and p.name != ".lock"}
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("binarize", copy, "--rejected", "lowest", "--format", "jsonl")
    assert result.code == 0, result.err
    assert (copy / "jsonl").is_dir() and not (original / "jsonl").exists()
    assert {p: p.read_bytes() for p in original.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert list(elsewhere.iterdir()) == []  # no stray folder where it was run from


def test_a_failed_binarize_leaves_the_runs_config_as_it_was(cli, tmp_path, prompts_file):
    out = rated_run(cli, tmp_path, prompts_file)
    config = (out / "config.yaml").read_text()
    result = cli("binarize", out, "--test-size", "1000")  # leaves no training rows: refused after the run opened
    assert_one_line_error(result, "--test-size")
    assert (out / "config.yaml").read_text() == config


# -- 6. filter: locked, staged, swapped ------------------------------------------------------------------


def test_a_failed_in_place_filter_keeps_the_earlier_output_whole(cli, tmp_path):
    source = write_jsonl(tmp_path / "rows.jsonl", [{"text": f"row {i} " + "word " * i} for i in range(10)]
                         + [{"text": "row 1 word"}])
    out = tmp_path / "clean"
    assert cli("filter", "dedup", source, "--column", "text", "-o", out).code == 0
    assert (out / "removed").is_dir()
    before = tree(out)
    plan = tmp_path / "plan.yaml"
    plan.write_text("column: text\nfilters:\n  - length: {min_words: 1000}\n")  # removes every row: fails
    assert_one_line_error(cli("filter", "run", out, "--config", plan, "-o", out), "removed every row")
    assert tree(out) == before


def test_a_second_filter_into_a_locked_output_is_refused(cli, tmp_path):
    from distill.run_dir import RunDir

    source = write_jsonl(tmp_path / "rows.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "clean"
    busy = RunDir.open_output(out, "filter")  # another process writing there
    try:
        assert_one_line_error(cli("filter", "dedup", source, "--column", "text", "-o", out), "another distill process")
    finally:
        busy.close()
    assert cli("filter", "dedup", source, "--column", "text", "-o", out).code == 0


# -- 14. cards: model and file names only; push: the card and the shards only ------------------------


def test_cards_show_no_endpoint_and_no_local_path(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import LoopbackServer

    with LoopbackServer(reply=judge_reply) as server:
        result = cli("rate", "ultrafeedback", "--input", prompts_file, "-n", "2", "--backend", "fake",
                     "--models", f"a,b@{server.url}", "--completions-per-prompt", "2", "--judge", "j",
                     "-o", tmp_path / "rated", "-q")
    assert result.code == 0, result.err
    card = (tmp_path / "rated" / "README.md").read_text()
    assert "127.0.0.1" not in card and "base_url" not in card and "| a<br>b |" not in card
    blocklist = tmp_path / "secret-words.txt"
    blocklist.write_text("lorem\n")
    benchmark = write_jsonl(tmp_path / "benchmark.jsonl", [{"prompt": "an unrelated benchmark question about otters"}])
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"column: messages\nfilters:\n  - blocklist: {{file: {blocklist}}}\n"
                    f"  - decontaminate: {{against: [{benchmark}]}}\n")
    result = cli("filter", "run", tmp_path / "rated", "--config", plan, "-o", tmp_path / "clean")
    assert result.code == 0, result.err
    card = (tmp_path / "clean" / "README.md").read_text()
    assert str(tmp_path) not in card and "secret-words.txt" in card and "benchmark.jsonl" in card


def test_push_uploads_the_card_and_shards_only_whatever_the_card_says(cli, tmp_path, prompts_file):
    from conftest import StandInHub

    out = tmp_path / "run"
    assert cli(*fake_completions(prompts_file, out)).code == 0
    card = (out / "README.md").read_text()
    (out / "README.md").write_text(card.replace("path: data/train-*", 'path: "*"'))
    hub = StandInHub()
    from distill.hub import push_run

    try:
        push_run(out, "me/data", api=hub)
        uploaded = set(hub.uploaded)
    except Exception as err:  # refused outright is fine too
        assert "does not upload" in str(err)
        uploaded = set()
    assert not uploaded & {"cache.sqlite", "records.jsonl", "config.yaml", "stats.json", ".distill"}
    (out / "README.md").write_text(card)
    push_run(out, "me/data", api=hub)
    assert set(hub.uploaded) == {"README.md", "data/train-00000-of-00001.parquet", "trl/train-00000-of-00001.parquet"}
    assert "load it from its folder" not in hub.uploaded["README.md"].decode()


# -- 15. split names never become paths outside -o ---------------------------------------------------------


def test_a_split_named_like_a_path_is_refused_before_anything_is_written(cli, tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "a b c"}, {"text": "d e f"}])}).save_to_disk(saved)
    info = json.loads((saved / "dataset_dict.json").read_text())
    info["splits"] = ["../../escaped"]
    (saved / "dataset_dict.json").write_text(json.dumps(info))
    import shutil

    shutil.move(str(saved / "train"), str(saved / "../../escaped"))  # where datasets looks for that split
    out = tmp_path / "clean"
    try:
        result = cli("filter", "dedup", saved, "--column", "text", "-o", out)
        assert_one_line_error(result, "not a valid split name")
        assert not (tmp_path / "escaped-00000-of-00001.parquet").exists()
        assert not list(tmp_path.parent.glob("escaped*.parquet")) and not list(tmp_path.glob("**/escaped*.parquet"))
    finally:
        shutil.rmtree(saved / "../../escaped", ignore_errors=True)


# -- 4. a full disk: one clear line, nothing paid for thrown away beyond the reply being written ------


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_written(tmp_path):
    import resource
    import sqlite3
    import subprocess
    import sys

    from distill.testing.openai_server import LoopbackServer

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"question {i} " + "padding " * 40} for i in range(60)])
    out = tmp_path / "run"

    def small_files():  # as `ulimit -f 96`: no file may grow past 96 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))

    with LoopbackServer() as server:
        args = [sys.executable, "-m", "distill", *openai_run(server, prompts, out, "--concurrency", "1",
                                                              "--max-new-tokens", "200")]
        full = subprocess.run(args, capture_output=True, text=True, preexec_fn=small_files,
                              env={**__import__("os").environ, "OPENAI_API_KEY": "k"}, timeout=120)
        assert full.returncode != 0
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: disk full writing {out}"), full.stderr
        with sqlite3.connect(out / "cache.sqlite") as db:
            kept = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        answered = server.stats.answered_total
        assert 0 < kept < 60 and answered - kept <= 1  # at most the reply that was being written is lost
        stats = json.loads((out / "stats.json").read_text())
        assert stats["stopped"].startswith("disk full")
        again = subprocess.run(args, capture_output=True, text=True, env={**__import__("os").environ, "OPENAI_API_KEY": "k"},
                               timeout=120)
        assert again.returncode == 0, again.stderr
        assert server.stats.answered_total == answered + 60 - kept  # the missing ones, once
    assert len(read_dataset(out)) == 60


# -- 26, 31. the closing lines say the rows written and what was dropped, and the next step ----------------


def test_closing_lines_report_rows_written_dropped_and_the_next_step(cli, tmp_path, monkeypatch):
    import re

    import datasets

    from distill.backends.fake_replies import shaped_reply

    def few_kept(request):  # every third dialogue's assistant disowns opinions: dropped by post-processing
        text = shaped_reply(request)
        if request.messages and int(request.key()[:4], 16) % 3 == 0 and not request.answer_prefix:
            return "As an AI language model, I have no opinions. " + text
        return text

    monkeypatch.setattr("distill.backends.fake.echo_reply", few_kept)
    out = tmp_path / "chats"
    result = cli("generate", "ultrachat", "-n", "9", "--backend", "fake", "-o", out, "-q")
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out), split="train_sft").num_rows
    done, next_step = result.out.strip().splitlines()
    assert re.fullmatch(rf"done: 9 dialogues made; {rows} rows written to {re.escape(str(out))}/data/ \(train_sft {rows}\); "
                        rf"{9 - rows} dropped \(assistant-disclaimer {9 - rows}\)", done), done
    assert 0 < rows < 9
    assert next_step.startswith("next: ") and "distill train sft" in next_step


def test_self_instruct_says_rows_written_not_instructions_asked(cli, tmp_path):
    import datasets

    out = tmp_path / "si"
    result = cli("generate", "self-instruct", "-n", "4", "--backend", "fake", "-o", out, "-q")
    assert result.code == 0, result.err
    rows = datasets.load_dataset(str(out), split="train").num_rows
    assert f"; {rows} rows written to" in result.out and f"(train {rows})" in result.out


# -- 21. Retry-After is bounded by --timeout ------------------------------------------------------------------


def test_a_server_asking_to_wait_ten_minutes_is_waited_for_at_most_timeout(cli, tmp_path, prompts_file):
    from distill.testing.openai_server import FaultPlan, LoopbackServer

    plan = FaultPlan(rates={"429": 1.0}, max_per_key=1, retry_after=1000.0)
    with LoopbackServer(faults=plan) as server:
        result = cli(*openai_run(server, prompts_file, tmp_path / "run", "-n", "2", "--timeout", "0.2"),
                     env={"OPENAI_API_KEY": "k"})  # honouring 1000 s would hang the test
    assert result.code == 0, result.err
    assert server.stats.faults["429"] == 2
    help_text = cli("generate", "completions", "--help").out
    assert "Retry-After is honoured up to this long" in " ".join(help_text.split())


def test_a_changed_file_the_plan_is_drawn_from_is_refused_on_resume(cli, tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("rivers\nmountains\n")
    out = tmp_path / "chats"
    args = ("generate", "ultrachat", "-n", "3", "--topics", topics, "--backend", "fake", "-o", out, "-q")
    assert cli(*args).code == 0
    assert cli(*args).code == 0  # unchanged: resumes (nothing to do)
    topics.write_text("rivers\ndeserts\n")
    assert_one_line_error(cli(*args), "--topics", "changed since")
    assert cli(*args, "--fresh").code == 0
