"""The embedded default backend: a real end-to-end run through llama.cpp and Gemma 3 270M."""

import pytest

from conftest import read_dataset, write_jsonl
from distill.backends.llamacpp import render_transcript

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")


def test_transcript_for_a_base_model():
    text = render_transcript((
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "Hi "},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ))
    assert text == "You are kind.\n\nUser: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:"


def test_embedded_default_answers_end_to_end(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is the capital of France?"}, {"prompt": "Name a color."}])
    out = tmp_path / "run"
    args = ["generate", "completions", "--input", prompts, "--max-new-tokens", "16", "--temperature", "0", "-o", out, "-q"]
    result = cli(*args)
    assert result.code == 0, result.err
    rows = read_dataset(out)
    assert len(rows) == 2
    for row in rows:
        assert row["model"] == "gemma-3-270m-q4_k_m.gguf"
        assert row["finish_reason"] in ("stop", "length")
        assert 0 < row["completion_tokens"] <= 16 and row["prompt_tokens"] > 5
        assert "\nUser:" not in row["response"]
    # The same command again is answered from the cache: same data, no new generation.
    again = cli(*args)
    assert again.code == 0 and read_dataset(out) == rows
    assert '"requests": 0' in (out / "stats.json").read_text()


def test_text_mode_and_a_gguf_path(cli, tmp_path):
    from distill.backends.llamacpp import embedded_model_path

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": "The three primary colors are"}])
    result = cli("generate", "completions", "--input", prompts, "--backend", "llamacpp", "--model", embedded_model_path(),
                 "--mode", "text", "--max-new-tokens", "8", "-o", tmp_path / "run", "-q")
    assert result.code == 0, result.err
    (row,) = read_dataset(tmp_path / "run")
    assert row["prompt"] == "The three primary colors are" and row["completion_tokens"] > 0


def test_a_missing_or_broken_gguf_is_one_line(cli, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    missing = cli("generate", "completions", "--input", prompts, "--model", tmp_path / "nope.gguf", "-o", tmp_path / "r")
    assert missing.code != 0 and missing.err.count("\n") == 1 and "not found" in missing.err
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf at all" * 100)
    result = cli("generate", "completions", "--input", prompts, "--model", broken, "-o", tmp_path / "r2")
    assert result.code != 0 and result.err.count("\n") == 1 and "cannot load GGUF model" in result.err
