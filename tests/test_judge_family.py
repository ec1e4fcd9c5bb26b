"""The self-enhancement flag: a judge grading its own family is named, other pairs are not."""

from __future__ import annotations

import pytest

from distill.judge_family import family, self_enhancement_note, self_judged


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o", "gpt"), ("gpt-4-turbo", "gpt"), ("meta-llama/Llama-3-8B-Instruct", "llama"),
    ("smollm2-135m-instruct", "smollm"), ("runs/zephyr/sft/", "sft"),
    ("o1", None), ("/models/Qwen2.5-7B", "qwen"),
])
def test_family_is_the_leading_letters_of_the_last_path_part(model, expected):
    assert family(model) == expected


def test_a_judge_is_flagged_only_for_its_own_family():
    assert self_judged("gpt-4o", ["gpt-4-turbo", "claude-3-opus", "gpt-4-turbo"]) == ["gpt-4-turbo"]
    assert self_judged("o1", ["o1", "o1-mini"]) == []  # too short to call a family
    assert self_enhancement_note("claude-3-opus", ["gpt-4o", "runs/sft"]) is None
    note = self_enhancement_note("smollm2-135m-instruct", ["gemma3-270m", "smollm2-135m-instruct"])
    assert note and "smollm2-135m-instruct" in note and "gemma3-270m" not in note.split("with ")[1]
