"""The statistics of `distill eval`: seeded bootstrap intervals over prompts, and AlpacaEval 2's
length-controlled win rate (Dubois et al. 2024).

The length control fits a logistic GLM of the model's preference over the baseline (win 1, tie
0.5, loss 0) on an intercept and tanh(length difference / its standard deviation), lengths in
characters, and reads the preference it predicts where the lengths are equal: the logistic of
the intercept. AlpacaEval's instruction-difficulty term and its pull toward "gamed" baselines
are fitted on its own 805 prompts, so they cannot carry over to a user's prompts and are left out.

statsmodels (the `eval` extra) is imported only when a GLM is fitted.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from typing import Any

MIN_PAIRS = 3  # below this, a two-parameter fit is a perfect fit, not an estimate: no LC win rate
# Ridge strength on the length slope when the length alone separates wins from losses (the plain
# fit's slope runs off to infinity): small enough to leave ordinary fits' shape alone.
SEPARATION_PENALTY = 0.1


def require_eval_extra(command: str) -> None:
    """One ConfigError line, before anything is asked, where the `eval` extra is not installed."""
    from distill.errors import ConfigError

    if any(importlib.util.find_spec(name) is None for name in ("statsmodels", "matplotlib")):
        raise ConfigError(f"{command} needs statsmodels and matplotlib: pip install 'distill[eval]'")


def bootstrap_interval(values: Sequence[Any], statistic: Callable[[list[Any]], float], seed: int,
                       resamples: int = 1000, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile bootstrap interval of `statistic` over `values` (one per prompt), drawn with
    numpy's default_rng(seed): the same seed gives the same interval. None without resamples or values."""
    import numpy as np

    if resamples <= 0 or not values:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    estimates = [statistic([values[i] for i in pick]) for pick in picks]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def length_controlled_win_rate(preferences: Sequence[float], length_differences: Sequence[float]) -> float | None:
    """The model's win rate over the baseline had its answers been as long as the baseline's.

    `preferences`: per judged pair, 1 win, 0.5 tie, 0 loss; `length_differences`: the model's
    answer's length minus the baseline's, in characters. None with fewer than MIN_PAIRS pairs."""
    import numpy as np

    y = np.asarray(preferences, dtype=float)
    if len(y) < MIN_PAIRS:
        return None
    delta = np.asarray(length_differences, dtype=float)
    spread = delta.std(ddof=1)  # pandas' std, as AlpacaEval
    if spread == 0 or np.all(y == y[0]):
        # No length term to fit, or one verdict throughout (which no length can change): the raw rate.
        return float(y.mean())
    return _logistic(_intercept(y, np.tanh(delta / spread)))


def far_from_raw(raw: float, lc: float) -> bool:
    """Whether the LC win rate moved so far from the raw one that the fit is suspect (typically
    extrapolating: the model's answers longer, or shorter, on nearly every prompt). AlpacaEval's
    thresholds: more than 10 points and more than a quarter of the room toward 0 or 1."""
    return lc < min(raw - raw / 4, raw - 0.1) or lc > max(raw + (1 - raw) / 4, raw + 0.1)


def _intercept(y: Any, x: Any) -> float:
    import numpy as np
    import statsmodels.api as sm

    model = sm.GLM(y, np.column_stack([np.ones_like(x), x]), family=sm.families.Binomial())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit()
        if not caught and fit.converged:
            return float(fit.params[0])
        # Separation: the length alone predicts every verdict; penalize the slope only, so the
        # intercept (the preference at equal lengths) stays finite.
        return float(model.fit_regularized(alpha=np.array([0.0, SEPARATION_PENALTY]), L1_wt=0.0).params[0])


def _logistic(value: float) -> float:
    import numpy as np

    return float(np.exp(-np.logaddexp(0.0, -value)))
