"""The page's plots, measured and binned here (the page only draws them): lengths, turns, scores, margins,
shares of a category, judge ratings per aspect and model, filters, win rates, grades, training curves.

`Measures` sees each row of a sample set once (a 100k-row run is never held twice) and keeps only numbers;
`charts()` bins them. A chart is the contract's dict (distill/view/__init__.py): a histogram is a bar chart
of bin counts whose labels are the bins.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from distill.stats import words
from distill.view.samples import chat_of, is_missing

BINS = 30  # at most, for a histogram of lengths
ROLES = ("system", "user", "assistant")


def chart(id: str, title: str, x: str, y: str, labels: list[str], series: dict[str, list], kind: str = "bar",
          stacked: bool = False) -> dict[str, Any]:
    return {"id": id, "title": title, "type": kind, "x": x, "y": y, "labels": labels,
            "series": [{"label": name, "data": data} for name, data in series.items()], "stacked": stacked}


def histogram(id: str, title: str, x: str, series: dict[str, list[float]], integer: bool = False) -> dict | None:
    """Bin counts of each series on shared bins: one bin per value for a few integers, else about BINS
    bins of a round width. None when there is nothing to count."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        return None
    lo, hi = min(values), max(values)
    if integer and hi - lo < BINS:
        edges = [lo + i for i in range(int(hi - lo) + 2)]
        labels = [_fmt(e) for e in edges[:-1]]
    else:
        width = _round_width((hi - lo) / BINS) if hi > lo else 1.0
        if integer:
            width = max(1.0, math.ceil(width))
        start = math.floor(lo / width) * width
        count = max(1, math.floor((hi - start) / width) + 1)
        edges = [start + i * width for i in range(count + 1)]
        labels = [f"{_fmt(a)}–{_fmt(b - 1 if integer else b)}" if not (integer and width == 1) else _fmt(a)
                  for a, b in itertools.pairwise(edges)]
    counts = {}
    for name, vs in series.items():
        bins = [0] * (len(edges) - 1)
        width = edges[1] - edges[0]
        for v in vs:
            bins[min(int((v - edges[0]) // width), len(bins) - 1)] += 1
        counts[name] = bins
    return {**chart(id, title, x, "rows" if len(series) == 1 else "count", labels, counts), "histogram": True}


def _round_width(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    power = 10 ** math.floor(math.log10(raw))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= raw)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def shares(id: str, title: str, counts: Counter, top: int = 25) -> dict | None:
    """Rows per value, most common first; the rest summed as "(other)"."""
    if len(counts) < 2:
        return None
    common = counts.most_common(top)
    rest = sum(counts.values()) - sum(n for _, n in common)
    labels = [name for name, _ in common] + (["(other)"] if rest else [])
    return chart(id, title, "", "rows", labels, {"rows": [n for _, n in common] + ([rest] if rest else [])})


class Measures:
    """The numbers of one sample set, row by row."""

    def __init__(self) -> None:
        self.words_by_role: dict[str, list[int]] = defaultdict(list)
        self.rounds: list[int] = []
        self.prompt_words: list[int] = []
        self.answer_words: dict[str, list[int]] = defaultdict(list)  # chosen/rejected, model/baseline
        self.scores: dict[str, list[float]] = defaultdict(list)
        self.margins: list[float] = []
        self.grades: dict[str, list[float]] = defaultdict(list)  # MT-Bench, per model

    def add(self, row: dict[str, Any]) -> None:
        chat = chat_of(row.get("messages"))
        if chat is not None and "chosen" not in row:
            for message in chat:
                if message["role"] in ROLES:
                    self.words_by_role[message["role"]].append(words(message["content"]))
            self.rounds.append(sum(1 for m in chat if m["role"] == "assistant"))
        prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else row.get("instruction")
        if isinstance(prompt, str):
            self.prompt_words.append(words(prompt))
        elif chat:
            first = next((m["content"] for m in chat if m["role"] == "user"), None)
            if first is not None:
                self.prompt_words.append(words(first))
        for side in ("chosen", "rejected"):
            side_chat = chat_of(row.get(side))
            answers = [m["content"] for m in side_chat or () if m["role"] == "assistant"]
            if answers:
                self.answer_words[side].append(words(answers[-1]))
            elif isinstance(row.get(side), str):
                self.answer_words[side].append(words(row[side]))
        for column, name in (("answer", "judged model"), ("baseline_answer", "baseline")):
            if isinstance(row.get(column), str):
                self.answer_words[name].append(words(row[column]))
        if chat is None and "chosen" not in row:
            for column in ("response", "output"):
                if isinstance(row.get(column), str):
                    self.words_by_role["assistant"].append(words(row[column]))
                    break
        scores = {k: row.get(k) for k in ("score_chosen", "score_rejected")}
        for key, value in scores.items():
            if _number(value):
                self.scores[key.replace("score_", "")].append(value)
        if _number(scores["score_chosen"]) and _number(scores["score_rejected"]):
            self.margins.append(scores["score_chosen"] - scores["score_rejected"])
        for turn in (1, 2):
            grade = row.get(f"score_turn_{turn}")
            if _number(grade):
                self.grades[str(row.get("model", "model"))].append(grade)

    def charts(self, run: str) -> list[dict[str, Any]]:
        made = [
            histogram(f"{run}-rounds", "Turns per dialogue (assistant answers)", "turns", {"dialogues": self.rounds},
                      integer=True),
            histogram(f"{run}-prompt", "Prompt length (words)", "words", {"prompts": self.prompt_words}, integer=True),
            histogram(f"{run}-roles", "Message length by role (words)", "words",
                      {role: self.words_by_role[role] for role in ROLES if self.words_by_role.get(role)}, integer=True),
            histogram(f"{run}-answers", "Answer length (words)", "words", dict(self.answer_words), integer=True),
            histogram(f"{run}-scores", "Scores of chosen and rejected", "score", dict(self.scores)),
            histogram(f"{run}-margins", "Score margin (chosen − rejected)", "margin", {"pairs": self.margins}),
            histogram(f"{run}-grades", "MT-Bench grades (both turns)", "grade", dict(self.grades), integer=True),
        ]
        return [c for c in made if c is not None]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not is_missing(value)


def aspect_ratings(run: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """UltraFeedback's `completions` config: the mean rating of each aspect per model, and how the ratings
    of each aspect are spread (1..5)."""
    by_model: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    spread: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        for key, value in row.items():
            if key.endswith("_rating") and _number(value):
                aspect = key[: -len("_rating")]
                by_model[str(row.get("model"))][aspect].append(value)
                spread[aspect][value] += 1
    if not spread:
        return []
    aspects = sorted(spread)
    means = {model: [_mean(ratings.get(a, [])) for a in aspects] for model, ratings in sorted(by_model.items())}
    values = sorted({v for c in spread.values() for v in c})
    return [chart(f"{run}-aspects", "Judge ratings: mean per aspect and model", "aspect", "mean rating", aspects, means),
            chart(f"{run}-ratings", "Judge ratings: how each aspect's ratings spread", "rating", "completions",
                  [_fmt(v) for v in values], {a: [spread[a][v] for v in values] for a in aspects})]


def _mean(values: list[float]) -> float | None:
    return round(math.fsum(values) / len(values), 3) if values else None


def filters_chart(run: str, filters: list[dict[str, Any]]) -> dict | None:
    named = [f for f in filters if isinstance(f.get("removed"), int)]
    if not named:
        return None
    return chart(f"{run}-filters", "Rows removed by each filter", "", "rows",
                 [f["name"] for f in named], {"removed": [f["removed"] for f in named]})


def win_rate_charts(run: str, win_rates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A pairwise evaluation: win/tie/loss per model (stacked), and the win and length-controlled win rates."""
    if not win_rates:
        return []
    models = [str(w.get("model")) for w in win_rates]
    outcomes = {k: [w.get(k) for w in win_rates] for k in ("win", "tie", "loss", "unjudged")}
    rates = {"win rate (%)": [_percent(w.get("win_rate")) for w in win_rates],
             "LC win rate (%)": [_percent(w.get("lc_win_rate")) for w in win_rates]}
    return [chart(f"{run}-outcomes", "Pairwise outcomes per model", "model", "prompts", models, outcomes, stacked=True),
            chart(f"{run}-winrates", "Win rates against the baseline", "model", "%", models, rates)]


def mt_bench_charts(run: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An MT-Bench evaluation: each model's mean grade per category."""
    categories = list(dict.fromkeys(c for r in results for c in (r.get("categories") or {})))
    if not categories:
        return []
    series = {str(r.get("model")): [(r.get("categories") or {}).get(c, {}).get("overall") for c in categories]
              for r in results}
    return [chart(f"{run}-categories", "MT-Bench: mean grade per category", "category", "grade (1–10)", categories,
                  series)]


def _percent(value: Any) -> float | None:
    return round(100 * value, 1) if _number(value) else None


def training_charts(run: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A training stage's log (trainer_state.json's log_history): loss per step, and DPO's reward accuracy
    and margin."""
    made = []
    for key, title, y in (("loss", "Training loss", "loss"),
                          ("rewards/accuracies", "DPO reward accuracy (chosen rewarded above rejected)", "share"),
                          ("rewards/margins", "DPO reward margin (chosen − rejected)", "margin")):
        points = [(e["step"], e[key]) for e in history if _number(e.get(key)) and _number(e.get("step"))]
        if points:
            made.append(chart(f"{run}-{key.replace('/', '-')}", title, "step", y, [_fmt(s) for s, _ in points],
                              {y: [v for _, v in points]}, kind="line"))
    return made
