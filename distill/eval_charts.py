"""The charts of `distill eval` runs, drawn with matplotlib as PNG bytes for RUN_DIR/results/.

matplotlib (the `eval` extra) is imported only when a chart is drawn, with its file-only Agg
backend, so no display is needed and `distill --help` stays light.
"""

from __future__ import annotations

import io
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open one alive)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def win_rate_chart(table: list[dict[str, Any]], baseline: str) -> bytes:
    """`distill eval pairwise`: each model's win rate and length-controlled win rate against the
    baseline, as horizontal bars with their 95% intervals (where drawn), 50% marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.7 * len(table)))
    height = 0.38
    for offset, (key, label) in ((-height / 2, ("win_rate", "win rate")), (height / 2, ("lc_win_rate", "LC win rate"))):
        rates = [100 * row[key] if row[key] is not None else 0.0 for row in table]
        # Error bars as distances below and above the rate; none where no interval was drawn.
        spans = [(100 * (row[key] - row[f"{key}_interval"][0]), 100 * (row[f"{key}_interval"][1] - row[key]))
                 if row[key] is not None and row[f"{key}_interval"] else (0.0, 0.0) for row in table]
        ax.barh([i + offset for i in range(len(table))], rates, height, label=label,
                xerr=list(zip(*spans)) if spans else None, capsize=3)
    ax.axvline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(table)), [row["model"] for row in table])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of prompts won against {baseline} (ties count half)")
    ax.set_title("Win rates with 95% bootstrap intervals")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize="small")
    return _png(fig)


def radar_chart(scores: dict[str, dict[str, float | None]]) -> bytes:
    """MT-Bench's per-category scores (0-10), one polygon per model, as in the Zephyr paper's
    figure; a category a model has no score for is a gap in its line."""
    import math

    plt = _pyplot()
    categories = list(dict.fromkeys(c for per_model in scores.values() for c in per_model))
    angles = [2 * math.pi * i / len(categories) for i in range(len(categories))]
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"projection": "polar"})
    for model, per_model in scores.items():
        values = [math.nan if per_model.get(c) is None else per_model[c] for c in categories]
        # Closed polygon: the first point again at the end.
        ax.plot(angles + angles[:1], values + values[:1], marker="o", linewidth=1.5, label=model)
        ax.fill(angles + angles[:1], [0 if math.isnan(v) else v for v in values + values[:1]], alpha=0.1)
    ax.set_xticks(angles, [c.upper() if c == "stem" else c.capitalize() for c in categories])
    ax.set_ylim(0, 10)
    ax.set_yticks([2, 4, 6, 8, 10])
    ax.set_title("MT-Bench score per category", pad=20)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize="small")
    return _png(fig)
