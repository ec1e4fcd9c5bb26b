"""Statistics of a dataset: row counts, turn counts, lengths, scores, what the filters removed.

Pure functions over rows (lists of dicts), so they need neither `datasets` nor numpy:

    describe(values)            count, mean, std, min, 25%, 50%, 75%, max of numbers
    split_stats(rows)           the metrics of one split
    dataset_stats(splits, run)  every split's metrics, plus a run's filters, tokens and cost

Lengths are counted in words: whitespace-separated pieces of text (`len(text.split())`),
not tokens, so the numbers do not depend on a tokenizer. Null values (None, NaN, a
missing column in a row) are skipped, never counted as zero.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

QUANTILES = {"p25": 0.25, "p50": 0.50, "p75": 0.75}
DESCRIBE_KEYS = ("count", "mean", "std", "min", "p25", "p50", "p75", "max")


def describe(values: Iterable[Any]) -> dict[str, Any]:
    """count, mean, std, min, p25, p50, p75 and max of the numbers among `values`.

    None and NaN are skipped. `std` is the sample standard deviation (ddof=1, as pandas'
    `describe`), None for fewer than two values. Quartiles interpolate linearly between
    the closest ranks (numpy's default `method="linear"`). With no values: count 0 and
    None everywhere else.
    """
    xs = sorted(v for v in values if _is_number(v))
    n = len(xs)
    if n == 0:
        return {"count": 0, **{key: None for key in DESCRIBE_KEYS[1:]}}
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {
        "count": n,
        "mean": mean,
        "std": std,
        "min": xs[0],
        **{key: _quantile(xs, q) for key, q in QUANTILES.items()},
        "max": xs[-1],
    }


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not math.isnan(value)


def _quantile(xs: list[float], q: float) -> float:
    """The q-quantile of sorted numbers, linear between closest ranks (numpy's default)."""
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (h - lo) * (xs[hi] - xs[lo]))


def words(text: Any) -> int | None:
    """Length of a text in whitespace-separated words; None when it is not a string."""
    return len(text.split()) if isinstance(text, str) else None


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """A chat as a list of message dicts, or None when the value is not a chat."""
    if not isinstance(value, (list, tuple)):
        return None
    return [m for m in value if isinstance(m, dict)]


def _contents(chat: list[dict[str, Any]], role: str) -> list[str]:
    return [m["content"] for m in chat if m.get("role") == role and isinstance(m.get("content"), str)]


def _prompt_words(row: dict[str, Any]) -> int | None:
    """`prompt` (a string, or a chat's first user message), else the first user message of
    `messages`, else `instruction`."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return words(prompt)
    for chat in (_messages(prompt), _messages(row.get("messages"))):
        if chat:
            users = _contents(chat, "user")
            if users:
                return words(users[0])
    return words(row.get("instruction"))


def _response_words(row: dict[str, Any]) -> list[int]:
    """Every assistant message of `messages`, else `response`, else `output`."""
    chat = _messages(row.get("messages"))
    if chat:
        answers = _contents(chat, "assistant")
        if answers:
            return [words(a) for a in answers]
    for column in ("response", "output"):
        count = words(row.get(column))
        if count is not None:
            return [count]
    return []


def _last_answer_words(value: Any) -> int | None:
    """A preference side: the last assistant message of a chat, or the text itself."""
    if isinstance(value, str):
        return words(value)
    chat = _messages(value)
    if chat:
        answers = _contents(chat, "assistant")
        if answers:
            return words(answers[-1])
    return None


def _score(value: Any) -> float | None:
    return value if _is_number(value) else None


def split_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one split. Always `rows`; each metric below only when its columns exist.

    messages        non-system messages per dialogue (rows whose `messages` is a list)
    rounds          assistant answers per dialogue: what ultrachat_200k's `num_turns` counts
    prompt_words    `prompt`, else the first user message of `messages`, else `instruction`
    response_words  every assistant message of `messages` (one value each), else `response`/`output`
    chosen_words, rejected_words    the last assistant message of `chosen` / `rejected`
    score_chosen, score_rejected    as stored
    score_margin    score_chosen - score_rejected, for rows that have both

    Every metric but `rows` is a `describe()` dict; lengths are in words.
    """
    columns: set[str] = set()
    for row in rows:
        columns.update(row)
    out: dict[str, Any] = {"rows": len(rows)}

    if "messages" in columns:
        chats = [_messages(row.get("messages")) for row in rows]
        out["messages"] = describe(
            sum(1 for m in chat if m.get("role") != "system") for chat in chats if chat is not None
        )
        out["rounds"] = describe(sum(1 for m in chat if m.get("role") == "assistant") for chat in chats if chat is not None)
    if columns & {"prompt", "messages", "instruction"}:
        out["prompt_words"] = describe(_prompt_words(row) for row in rows)
    if columns & {"messages", "response", "output"}:
        out["response_words"] = describe(n for row in rows for n in _response_words(row))
    if "chosen" in columns:
        out["chosen_words"] = describe(_last_answer_words(row.get("chosen")) for row in rows)
    if "rejected" in columns:
        out["rejected_words"] = describe(_last_answer_words(row.get("rejected")) for row in rows)
    if "score_chosen" in columns:
        out["score_chosen"] = describe(row.get("score_chosen") for row in rows)
    if "score_rejected" in columns:
        out["score_rejected"] = describe(row.get("score_rejected") for row in rows)
    if {"score_chosen", "score_rejected"} <= columns:
        margins = []
        for row in rows:
            chosen, rejected = _score(row.get("score_chosen")), _score(row.get("score_rejected"))
            if chosen is not None and rejected is not None:
                margins.append(chosen - rejected)
        out["score_margin"] = describe(margins)
    return out


def dataset_stats(splits: dict[str, list[dict[str, Any]]], run_stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every split's `split_stats`, and from a run's stats.json its filters, tokens and cost.

    Returns {"splits": {name: split_stats}, "filters": [{"name", "removed", ...}, ...]},
    plus "tokens" and "cost_usd" when the run recorded them (not null).
    """
    run_stats = run_stats or {}
    out: dict[str, Any] = {
        "splits": {name: split_stats(rows) for name, rows in splits.items()},
        "filters": _filters(run_stats.get("filters")),
    }
    for key in ("tokens", "cost_usd"):
        if run_stats.get(key) is not None:
            out[key] = run_stats[key]
    return out


def _filters(entries: Any) -> list[dict[str, Any]]:
    """stats.json's `filters`: a list of {"name": str, "removed": int} (extra keys kept)."""
    if not isinstance(entries, list):
        return []
    return [dict(e) for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def describe_source(source: str, split: str | None = None, subset: str | None = None, revision: str | None = None) -> dict:
    """dataset_stats of anything the input loader reads; a run directory adds its stats.json."""
    from pathlib import Path

    from distill.errors import InputError
    from distill.inputs import load_splits, pick_split

    splits = load_splits(source, subset, revision)
    if split is not None:
        splits = {split: pick_split(splits, source, split)}
    if not splits or not any(splits.values()):
        which = f"split {split!r} of input {source}" if split is not None else f"input {source}"
        raise InputError(f"{which} is empty: no rows to describe")
    splits = dict(sorted(splits.items(), key=lambda item: _split_order(item[0])))
    return dataset_stats(splits, _run_stats(Path(source)))


METRIC_LABELS = {
    "messages": "messages per dialogue",
    "rounds": "rounds (answers) per dialogue",
    "prompt_words": "prompt words",
    "response_words": "response words",
    "chosen_words": "chosen words",
    "rejected_words": "rejected words",
    "score_chosen": "score chosen",
    "score_rejected": "score rejected",
    "score_margin": "score margin",
}
COLUMNS = (("count", "count"), ("mean", "mean"), ("std", "std"), ("min", "min"), ("p25", "25%"), ("p50", "50%"), ("p75", "75%"), ("max", "max"))


def _split_order(name: str) -> int:
    """train first, then validation, then test, then the rest (stable: ties keep their order)."""
    for rank, prefixes in enumerate((("train",), ("valid", "dev", "eval"), ("test",))):
        if name.lower().startswith(prefixes):
            return rank
    return 3


def _run_stats(path) -> dict | None:
    """A run directory's stats.json, or None."""
    from distill.errors import ConfigError, InputError
    from distill.run_dir import RunDir

    if not path.is_dir():
        return None
    try:
        return RunDir(path).read_stats(strict=True) or None
    except ConfigError as err:
        raise InputError(str(err)) from None


def fmt(value) -> str:
    """A number for a table: whole numbers as integers, others with 2 decimals below 100 and
    1 above (3 significant digits below 0.01); none as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        size = abs(value)
        if size < 0.01:
            return f"{value:.3g}"
        return f"{value:,.2f}" if size < 100 else f"{value:,.1f}"
    return str(value)


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # piped or captured: never wrap the numbers
    splits = result["splits"]

    summary = Table(title="Splits")
    summary.add_column("split")
    summary.add_column("rows", justify="right")
    for name, split in splits.items():
        summary.add_row(escape(name), fmt(split["rows"]))
    if len(splits) > 1:
        summary.add_section()
        summary.add_row("total", fmt(sum(s["rows"] for s in splits.values())), style="bold")
    console.print(summary)

    for name, split in splits.items():
        metrics = [key for key in split if key != "rows"]
        if not metrics:
            continue
        table = Table(title=f"{escape(name)}: {fmt(split['rows'])} row{'' if split['rows'] == 1 else 's'} (lengths in words)")
        table.add_column("metric")
        for _, header in COLUMNS:
            table.add_column(header, justify="right", no_wrap=True)
        for key in metrics:
            table.add_row(METRIC_LABELS.get(key, key), *(fmt(split[key][k]) for k, _ in COLUMNS))
        console.print(table)

    if result["filters"]:
        table = Table(title="Filters (rows removed)")
        table.add_column("filter")
        table.add_column("removed", justify="right")
        for entry in result["filters"]:
            table.add_row(escape(entry["name"]), fmt(entry.get("removed")))
        console.print(table)

    tokens, cost = result.get("tokens"), result.get("cost_usd")
    if tokens is not None or cost is not None:
        table = Table(title="Run")
        table.add_column("")
        table.add_column("value", justify="right")
        if isinstance(tokens, dict):
            for key, value in tokens.items():
                table.add_row(f"{escape(str(key))} tokens", fmt(value))
        elif tokens is not None:
            table.add_row("tokens", fmt(tokens))
        if cost is not None:
            table.add_row("cost (USD)", f"${cost:,.4f}" if isinstance(cost, (int, float)) else escape(str(cost)))
        console.print(table)
