"""The dataset formats distill writes, drop-in with the datasets of the Zephyr recipe.

Core columns match HuggingFaceH4/ultrachat_200k (dialogues) and
HuggingFaceH4/ultrafeedback_binarized (preferences) column for column, type for type;
provenance columns (method, models, seed, ...) follow them.
"""

from __future__ import annotations

import hashlib

from datasets import Features, List, Value

MESSAGES = List({"content": Value("string"), "role": Value("string")})

# HuggingFaceH4/ultrachat_200k: splits train_sft / test_sft.
DIALOGUE = Features({"prompt": Value("string"), "prompt_id": Value("string"), "messages": MESSAGES})

# Self-Instruct (Wang et al. 2023) rows, with the same task as a chat for SFT.
SELF_INSTRUCT = Features({
    "instruction": Value("string"),
    "input": Value("string"),
    "output": Value("string"),
    "is_classification": Value("bool"),
    "messages": MESSAGES,
})

# Alpaca (tatsu-lab/stanford_alpaca's alpaca_data.json) rows, with the same task as a chat for SFT.
ALPACA = Features({
    "instruction": Value("string"),
    "input": Value("string"),
    "output": Value("string"),
    "messages": MESSAGES,
})

# HuggingFaceH4/ultrafeedback_binarized: splits train_prefs / test_prefs (+ *_sft, *_gen).
PREFERENCE = Features({
    "prompt": Value("string"),
    "prompt_id": Value("string"),
    "chosen": MESSAGES,
    "rejected": MESSAGES,
    "messages": MESSAGES,
    "score_chosen": Value("float64"),
    "score_rejected": Value("float64"),
})

# `distill generate completions`: one response per prompt and sample, as a chat for SFT too.
COMPLETION = Features({
    "prompt": Value("string"),
    "prompt_id": Value("string"),
    "messages": MESSAGES,
    "sample": Value("int64"),
    "response": Value("string"),
    "finish_reason": Value("string"),
    "model": Value("string"),
    "prompt_tokens": Value("int64"),
    "completion_tokens": Value("int64"),
})

# `distill eval pairwise`: a model's answer against the baseline's, with the verdict of each order.
PAIRWISE = Features({
    "prompt": Value("string"),
    "prompt_id": Value("string"),
    "model": Value("string"),
    "answer": Value("string"),
    "baseline": Value("string"),
    "baseline_answer": Value("string"),
    "judge": Value("string"),
    "verdict_model_first": Value("string"),  # "A" (the model's answer), "B", or null: unreadable
    "verdict_model_second": Value("string"),  # "B" (the model's answer), "A", or null
    "judge_replies": List(Value("string")),
    "outcome": Value("string"),  # win, tie, loss or unjudged
})

# `distill eval mt-bench`: a model's two answers to a two-turn question, each graded 1-10 by the judge.
MT_BENCH = Features({
    "question_id": Value("string"),
    "category": Value("string"),
    "model": Value("string"),
    "turns": List(Value("string")),  # the two user turns
    "answers": List(Value("string")),  # the model's answer to each
    "reference": List(Value("string")),  # per turn, for math, reasoning and coding; else empty
    "reference_source": Value("string"),  # "question", "judge", "question+judge", or null: no reference
    "judge": Value("string"),
    "judge_replies": List(Value("string")),  # the grading of turn 1, then of turn 2
    "score_turn_1": Value("float64"),  # 1-10, or null: no rating could be read
    "score_turn_2": Value("float64"),
})


def with_provenance(core: Features, **columns: object) -> Features:
    """Core columns first, then provenance columns (name=datasets feature)."""
    return Features({**core, **columns})


def prompt_id(prompt: str) -> str:
    """sha256 of the prompt text, as in ultrachat_200k and ultrafeedback_binarized."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()
