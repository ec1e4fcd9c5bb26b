"""The command line: help, bad input (one clear line, non-zero exit), resume, secrets."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import assert_one_line_error, read_dataset, write_jsonl

from distill import __version__
from distill.testing.openai_server import LoopbackServer

KEY = "sk-test-secret-4f9a2c"


@pytest.fixture
def server():
    with LoopbackServer(api_key=KEY) as srv:
        yield srv


def openai_args(server, prompts_file, out, *extra):
    return ["generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "teacher",
            "--base-url", server.url, "-o", out, "-q", *extra]


def test_version_and_help(cli):
    assert cli("--version").out.strip().endswith(__version__)
    top = cli("--help")
    assert top.code == 0 and "generate" in top.out
    for command in (["generate"], ["generate", "completions"]):
        result = cli(*command, "--help")
        assert result.code == 0 and "Usage:" in result.out


def test_help_imports_neither_torch_nor_vllm():
    code = (
        "import sys\nfrom distill.cli import main\n"
        "for argv in (['--help'], ['generate', '--help'], ['generate', 'completions', '--help'], ['generate', 'ultrachat', '--help'],\n"
        "             ['rate', 'ultrafeedback', '--help'], ['binarize', '--help'], ['filter', '--help'], ['filter', 'run', '--help'],\n"
        "             ['train', '--help'], ['train', 'sft', '--help'], ['push', '--help'], ['stats', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'llama_cpp', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_answers_every_prompt_through_an_openai_server(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    result = cli(*openai_args(server, prompts_file, out), env={"OPENAI_API_KEY": KEY})
    assert result.code == 0, result.err
    rows = read_dataset(out)
    assert [r["prompt"] for r in rows] == [f"Question number {i}: why?" for i in range(20)]
    assert all(r["response"].startswith("Answer ") and r["completion_tokens"] > 0 for r in rows)
    assert server.stats.answered_total == 20
    stats = json.loads((out / "stats.json").read_text())
    assert stats["items"] == {"done": 20, "total": 20, "failed": 0}
    assert stats["tokens"]["total"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)


def test_same_command_resumes_without_asking_again(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": KEY}
    assert cli(*openai_args(server, prompts_file, out), env=env).code == 0
    first = read_dataset(out)
    again = cli(*openai_args(server, prompts_file, out), env=env)
    assert again.code == 0, again.err
    assert server.stats.received == 20
    assert read_dataset(out) == first
    fresh = cli(*openai_args(server, prompts_file, out, "--fresh"), env=env)
    assert fresh.code == 0 and server.stats.received == 40


def test_changed_settings_on_an_existing_run_are_refused(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": KEY}
    assert cli(*openai_args(server, prompts_file, out), env=env).code == 0
    result = cli(*openai_args(server, prompts_file, out, "--temperature", "0.1"), env=env)
    assert_one_line_error(result, "temperature", "--fresh")
    # Runtime knobs may change on resume.
    assert cli(*openai_args(server, prompts_file, out, "--concurrency", "3"), env=env).code == 0


def test_api_key_never_lands_in_the_run_directory(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    assert cli(*openai_args(server, prompts_file, out), env={"OPENAI_API_KEY": KEY}).code == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path


def test_config_file_then_flags(cli, server, prompts_file, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": "from-yaml", "temperature": 0.2, "max-new-tokens": 7, "backend": "openai"}))
    out = tmp_path / "run"
    result = cli("generate", "completions", "--config", config, "--input", prompts_file, "--base-url", server.url,
                 "--model", "from-flag", "-o", out, "-q", "-n", "2", env={"OPENAI_API_KEY": KEY})
    assert result.code == 0, result.err
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["model"] == "from-flag" and stored["temperature"] == 0.2 and stored["max_new_tokens"] == 7
    assert KEY not in (out / "config.yaml").read_text()


def test_token_budget_stops_cleanly_and_resumes(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": KEY}
    # Each request's worst case is its prompt estimate + 16 new tokens: about 30 tokens.
    stopped = cli(*openai_args(server, prompts_file, out, "--max-new-tokens", "16", "--max-tokens", "200",
                               "--concurrency", "1"), env=env)
    assert_one_line_error(stopped, "token budget", "resumes")
    assert stopped.code == 3
    stats = json.loads((out / "stats.json").read_text())
    assert 0 < stats["items"]["done"] < 20 and stats["tokens"]["total"] <= 200
    done_before = server.stats.received
    resumed = cli(*openai_args(server, prompts_file, out, "--max-new-tokens", "16"), env=env)
    assert resumed.code == 0, resumed.err
    assert server.stats.received == 20 and done_before == stats["items"]["done"]
    assert len(read_dataset(out)) == 20


def test_chats_and_system_prompt(cli, server, tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                      {"role": "user", "content": "tell me more"}]},
    ])
    seen = []
    server.reply = lambda body: seen.append(body) or "sure"
    out = tmp_path / "run"
    result = cli("generate", "completions", "--input", chats, "--backend", "openai", "--model", "m", "--base-url",
                 server.url, "--system", "Be brief.", "--samples", "3", "-o", out, "-q", env={"OPENAI_API_KEY": KEY})
    assert result.code == 0, result.err
    assert len(seen) == 3 and len({b["seed"] for b in seen}) == 3
    assert seen[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [r["sample"] for r in read_dataset(out)] == [0, 1, 2]


def test_text_mode_uses_plain_completions(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    result = cli(*openai_args(server, prompts_file, out, "--mode", "text", "-n", "3"), env={"OPENAI_API_KEY": KEY})
    assert result.code == 0, result.err
    assert all(r["response"].startswith("Answer") for r in read_dataset(out))


# -- bad input: one clear line on stderr, a non-zero exit, nothing written over --------------


def test_unknown_backend(cli, prompts_file, tmp_path):
    assert_one_line_error(cli("generate", "completions", "--input", prompts_file, "--backend", "nope", "-o", tmp_path / "r"), "nope")


def test_missing_api_key(cli, prompts_file, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m", "-o", tmp_path / "r")
    assert_one_line_error(result, "OPENAI_API_KEY")
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m",
                 "--api-key-env", "MY_PROVIDER_KEY", "-o", tmp_path / "r")
    assert_one_line_error(result, "MY_PROVIDER_KEY")


def test_unreachable_server(cli, prompts_file, tmp_path):
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "openai", "--model", "m",
                 "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "1", "--timeout", "5", "-o", tmp_path / "r", "-q",
                 env={"OPENAI_API_KEY": "x"})
    assert_one_line_error(result, "cannot connect to http://127.0.0.1:9/v1: connection refused")
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert "connection refused" in stats["stopped"] and stats["items"]["done"] == 0


def test_wrong_api_key_is_not_retried(cli, server, prompts_file, tmp_path):
    result = cli(*openai_args(server, prompts_file, tmp_path / "r"), env={"OPENAI_API_KEY": "wrong"})
    assert_one_line_error(result, "refused the API key")
    assert result.code == 1
    # The server refuses the key before it reads the body, so `received` counts none of them;
    # keys_seen counts every request. All 20 prompts fit the first window (64): each is sent
    # once, with the key it was given, and none again: no retry storm.
    assert server.stats.keys_seen == ["Bearer wrong"] * 20
    assert server.stats.received == 0 and server.stats.answered_total == 0


@pytest.mark.parametrize(
    "make_input, needle",
    [
        (lambda d: d / "absent.jsonl", "does not exist"),
        (lambda d: write_jsonl(d / "other.jsonl", [{"question_text": "x"}]), "question_text"),
        (lambda d: write_jsonl(d / "empty.jsonl", []), "empty"),
        (lambda d: (d / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n') and d / "bad.jsonl", "line 2"),
        (lambda d: write_jsonl(d / "blank.jsonl", [{"prompt": "  "}]), "empty prompt"),
        (lambda d: write_jsonl(d / "msgs.jsonl", [{"messages": [{"role": "user"}]}]), "role, content"),
    ],
    ids=["missing-file", "missing-column", "empty-input", "bad-jsonl", "empty-prompt", "bad-messages"],
)
def test_bad_input_files(cli, tmp_path, make_input, needle):
    result = cli("generate", "completions", "--input", make_input(tmp_path), "--backend", "fake", "--model", "m", "-o", tmp_path / "r")
    assert_one_line_error(result, needle)


def test_named_column_that_is_missing(cli, prompts_file, tmp_path):
    result = cli("generate", "completions", "--input", prompts_file, "--column", "query", "--backend", "fake", "-o", tmp_path / "r")
    assert_one_line_error(result, "'query'", "prompt")


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"concurrency": -3}, "concurrency"),
        ({"modle": "x"}, "'modle'"),
        ({"temperature": "hot"}, "temperature"),
    ],
    ids=["invalid-value", "unknown-key", "wrong-type"],
)
def test_bad_config_file(cli, prompts_file, tmp_path, config, needle):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("generate", "completions", "--config", path, "--input", prompts_file, "--backend", "fake", "-o", tmp_path / "r")
    assert_one_line_error(result, needle)


def test_config_file_that_is_not_yaml(cli, prompts_file, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: [unclosed\n")
    result = cli("generate", "completions", "--config", path, "--input", prompts_file, "-o", tmp_path / "r")
    assert_one_line_error(result, "not valid YAML")


def test_zero_items(cli, prompts_file, tmp_path):
    result = cli("generate", "completions", "--input", prompts_file, "-n", "0", "--backend", "fake", "-o", tmp_path / "r")
    assert_one_line_error(result, "limit")


def test_output_path_that_is_a_file(cli, prompts_file, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    result = cli("generate", "completions", "--input", prompts_file, "--backend", "fake", "-o", target)
    assert_one_line_error(result, "is a file")
    assert target.read_text() == "keep me"


def test_output_dir_with_other_files_is_left_alone(cli, prompts_file, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    for extra in ([], ["--fresh"]):
        result = cli("generate", "completions", "--input", prompts_file, "--backend", "fake", "-o", other, *extra)
        assert_one_line_error(result, "not empty")
    assert (other / "notes.txt").read_text() == "precious"


def test_missing_output_option(cli, prompts_file):
    assert_one_line_error(cli("generate", "completions", "--input", prompts_file, "--backend", "fake"), "output")


def test_unknown_option(cli):
    assert_one_line_error(cli("generate", "completions", "--frobnicate"), "--frobnicate")


def test_text_mode_refuses_chats(cli, tmp_path):
    chats = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    result = cli("generate", "completions", "--input", chats, "--mode", "text", "--backend", "fake", "-o", tmp_path / "r")
    assert_one_line_error(result, "--mode text")


def test_cost_budget_with_a_user_price_table(cli, server, prompts_file, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("teacher: {input: 10000.0, output: 20000.0}\n")
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": KEY}
    result = cli(*openai_args(server, prompts_file, out, "--prices", prices, "--max-cost-usd", "1.5",
                              "--max-new-tokens", "16", "--concurrency", "2"), env=env)
    assert_one_line_error(result, "cost budget ($1.50)")
    stats = json.loads((out / "stats.json").read_text())
    assert 0 < stats["cost_usd"] <= 1.5 and 0 < stats["items"]["done"] < 20


def test_a_cost_cap_needs_a_price(cli, server, prompts_file, tmp_path):
    result = cli(*openai_args(server, prompts_file, tmp_path / "r", "--max-cost-usd", "1"), env={"OPENAI_API_KEY": KEY})
    assert_one_line_error(result, "--prices")
    assert server.stats.received == 0 and not (tmp_path / "r").exists()


def test_a_smaller_limit_on_resume_exports_only_those_rows(cli, server, prompts_file, tmp_path):
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": KEY}
    assert cli(*openai_args(server, prompts_file, out), env=env).code == 0
    assert cli(*openai_args(server, prompts_file, out, "-n", "5"), env=env).code == 0
    assert len(read_dataset(out)) == 5 and server.stats.received == 20
    stats = json.loads((out / "stats.json").read_text())
    assert stats["items"]["total"] == stats["items"]["done"] == 5
