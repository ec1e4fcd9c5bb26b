"""One row of a dataset as the page shows it: a sample (title, meta chips, blocks; see the contract in
distill/view/__init__.py), chosen by the row's shape, so that a dataset from anywhere shows as well as a run:

    chosen + rejected           a preference pair: the prompt, then chosen | rejected side by side, each with
                                its per-aspect ratings and rationales when the run kept them (`completions`)
    turns + answers (+ scores)  an MT-Bench grading: the two-turn chat, the reference, the judge's replies
    answer + baseline_answer    a pairwise judgement: the prompt, the two answers side by side, the verdicts
    messages                    a dialogue (UltraChat, CAMEL, completions, self-instruct's chat form)
    instruction / prompt ...    a single exchange made into a chat
    anything else               each column as text

Columns a shape does not show in its blocks become meta chips (short values) or text blocks (long ones),
so no column of a row is hidden. Every string stays untrusted text: the page renders it safely.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

SHORT = 80  # characters: a value up to this long is a chip, a longer one a text block
TITLE = 120
# Columns shown by the shape's blocks (or pure bookkeeping): never repeated as chips.
HIDDEN = {"prompt_id", "messages", "chosen", "rejected", "prompt", "judge_replies", "turns", "answers", "reference",
          "answer", "baseline_answer", "instruction", "input", "output", "response"}


def chat_of(value: Any) -> list[dict[str, str]] | None:
    """A list of {role, content} messages, or None when the value is not a chat."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    chat = []
    for message in value:
        if not isinstance(message, dict) or "role" not in message:
            return None
        chat.append({"role": str(message.get("role")), "content": as_text(message.get("content"))})
    return chat


def as_text(value: Any) -> str:
    """A value as the text the page shows: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE else line[: TITLE - 1] + "…"


def _first_user(chat: list[dict[str, str]] | None) -> str:
    return next((m["content"] for m in chat or () if m["role"] == "user"), "")


def _last_answer(chat: list[dict[str, str]] | None, fallback: Any) -> str:
    answers = [m["content"] for m in chat or () if m["role"] == "assistant"]
    return answers[-1] if answers else as_text(fallback)


def _rest(row: dict[str, Any], shown: set[str], hidden: set[str] = HIDDEN) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """The columns not shown otherwise: short ones as meta chips, long ones as text blocks."""
    meta, blocks = [], []
    for key, value in row.items():
        if key in shown or key in hidden or is_missing(value):
            continue
        text = as_text(value)
        if len(text) <= SHORT and "\n" not in text:
            meta.append([key, text])
        else:
            blocks.append({"t": "text", "label": key, "text": text})
    return meta, blocks


Ratings = Callable[[str, str], list[dict[str, Any]] | None]  # (prompt_id, model) -> that completion's ratings rows


def pair_sample(row: dict[str, Any], ratings: Ratings | None = None) -> dict[str, Any]:
    chosen, rejected = chat_of(row.get("chosen")), chat_of(row.get("rejected"))
    prompt = as_text(row.get("prompt")) if isinstance(row.get("prompt"), str) else _first_user(chosen)
    # The conversation before the answers (a multi-turn prompt), then the two last answers side by side.
    context = chosen[:-1] if chosen and chosen[-1]["role"] == "assistant" else [{"role": "user", "content": prompt}]
    sides = []
    for side, chat, score, model in (("chosen", chosen, "score_chosen", "chosen_model"),
                                     ("rejected", rejected, "score_rejected", "rejected_model")):
        label = side + (f" · {as_text(row[model])}" if not is_missing(row.get(model)) else "")
        if not is_missing(row.get(score)):
            label += f" · score {_number(row[score])}"
        blocks: list[dict[str, Any]] = [{"t": "chat", "messages": [
            {"role": "assistant", "content": _last_answer(chat, row.get(side))}]}]
        rated = ratings(as_text(row.get("prompt_id")), as_text(row.get(model))) if ratings else None
        if rated:
            blocks.append({"t": "table", "columns": ["aspect", "rating", "rationale"],
                           "rows": [[r["aspect"], r["rating"], r["rationale"]] for r in rated]})
        sides.append({"label": label, "blocks": blocks})
    meta, extra = _rest(row, {"score_chosen", "score_rejected", "chosen_model", "rejected_model"})
    scores = [["score chosen", _number(row.get("score_chosen"))], ["score rejected", _number(row.get("score_rejected"))]]
    return {"title": _title(prompt), "meta": [s for s in scores if s[1]] + meta,
            "blocks": [{"t": "chat", "messages": context}, {"t": "columns", "items": sides}, *extra]}


def mt_bench_sample(row: dict[str, Any]) -> dict[str, Any]:
    turns, answers = row.get("turns") or [], row.get("answers") or []
    chat = []
    for i, question in enumerate(turns):
        chat.append({"role": "user", "content": as_text(question)})
        if i < len(answers):
            chat.append({"role": "assistant", "content": as_text(answers[i])})
    blocks: list[dict[str, Any]] = [{"t": "chat", "messages": chat}]
    references = [r for r in (row.get("reference") or []) if isinstance(r, str) and r]
    for i, reference in enumerate(references, start=1):
        blocks.append({"t": "text", "label": f"reference answer, turn {i}", "text": reference})
    for i, reply in enumerate(row.get("judge_replies") or [], start=1):
        grade = row.get(f"score_turn_{i}")
        label = f"judge, turn {i}: " + (f"grade {_number(grade)}" if not is_missing(grade) else "no grade read")
        blocks.append({"t": "text", "label": label, "text": as_text(reply)})
    meta, extra = _rest(row, set())
    return {"title": _title(as_text(turns[0]) if turns else as_text(row.get("question_id"))), "meta": meta,
            "blocks": blocks + extra}


def pairwise_sample(row: dict[str, Any]) -> dict[str, Any]:
    prompt = as_text(row.get("prompt"))
    model, baseline = as_text(row.get("model")) or "model", as_text(row.get("baseline")) or "baseline"
    sides = [{"label": f"{model} (judged)", "blocks": [{"t": "chat", "messages": [
                  {"role": "assistant", "content": as_text(row.get("answer"))}]}]},
             {"label": f"{baseline} (baseline)", "blocks": [{"t": "chat", "messages": [
                  {"role": "assistant", "content": as_text(row.get("baseline_answer"))}]}]}]
    blocks: list[dict[str, Any]] = [{"t": "chat", "messages": [{"role": "user", "content": prompt}]},
                                    {"t": "columns", "items": sides}]
    for order, reply in zip(("model's answer first", "baseline's answer first"), row.get("judge_replies") or []):
        blocks.append({"t": "text", "label": f"judge, {order}", "text": as_text(reply)})
    meta, extra = _rest(row, set())
    return {"title": _title(prompt), "meta": meta, "blocks": blocks + extra}


def dialogue_sample(row: dict[str, Any]) -> dict[str, Any]:
    chat = chat_of(row.get("messages")) or []
    meta, extra = _rest(row, set())
    title = as_text(row.get("prompt")) if isinstance(row.get("prompt"), str) else _first_user(chat)
    return {"title": _title(title or _first_user(chat)), "meta": meta, "blocks": [*extra, {"t": "chat", "messages": chat}]}


def exchange_sample(row: dict[str, Any]) -> dict[str, Any]:
    """instruction (+ input) -> output, or prompt -> response: one exchange as a chat."""
    if "instruction" in row:
        question = as_text(row.get("instruction"))
        if as_text(row.get("input")).strip():
            question += "\n\n" + as_text(row.get("input"))
        answer = row.get("output")
    else:
        question, answer = as_text(row.get("prompt")), row.get("response", row.get("output"))
    chat = [{"role": "user", "content": question}]
    if not is_missing(answer):
        chat.append({"role": "assistant", "content": as_text(answer)})
    meta, extra = _rest(row, set())
    return {"title": _title(question), "meta": meta, "blocks": [*extra, {"t": "chat", "messages": chat}]}


def plain_sample(row: dict[str, Any]) -> dict[str, Any]:
    meta, blocks = _rest(row, set(), hidden=set())
    title = next((b["text"] for b in blocks), next((m[1] for m in meta), "(empty row)"))
    return {"title": _title(title), "meta": meta, "blocks": blocks}


def sample_of(row: dict[str, Any], ratings: Ratings | None = None) -> dict[str, Any]:
    """The sample (without its id) of one row, by the row's shape."""
    if "chosen" in row and "rejected" in row:
        return pair_sample(row, ratings)
    if "turns" in row and "answers" in row:
        return mt_bench_sample(row)
    if "answer" in row and "baseline_answer" in row:
        return pairwise_sample(row)
    if chat_of(row.get("messages")) is not None:
        return dialogue_sample(row)
    if isinstance(row.get("instruction"), str) or (isinstance(row.get("prompt"), str) and "response" in row):
        return exchange_sample(row)
    return plain_sample(row)


def _number(value: Any) -> str:
    if is_missing(value) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if is_missing(value) else as_text(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
