"""distill.eval_stats: the length-controlled win rate on hand-computed cases, its degenerate cases,
and the seeded bootstrap."""

from __future__ import annotations

import math
import warnings

import pytest

from distill.eval_stats import bootstrap_interval, far_from_raw, length_controlled_win_rate


def logit(p):
    return math.log(p / (1 - p))


def logistic(x):
    return 1 / (1 + math.exp(-x))


def test_symmetric_length_differences_give_the_mean_of_the_two_logits():
    # Longer answers (+300 chars) win 3 of 4 pairs, shorter ones (-300) 1 of 4 with a tie: the fitted
    # intercept is (logit p1 + logit p2) / 2, the preference at equal lengths its logistic.
    longer, shorter = [1, 1, 1, 0], [1, 0.5, 0, 0]
    p1, p2 = sum(longer) / 4, sum(shorter) / 4
    lc = length_controlled_win_rate(longer + shorter, [300] * 4 + [-300] * 4)
    assert lc == pytest.approx(logistic((logit(p1) + logit(p2)) / 2), abs=1e-9)
    assert lc != pytest.approx((p1 + p2) / 2)  # not the raw rate: a mean on the logit scale


def test_wins_that_come_only_with_length_are_discounted():
    prefs, deltas = [1, 1, 1, 1, 0.5, 0, 0.5, 0], [50, 80, 120, 200, -20, -60, 10, -150]
    lc = length_controlled_win_rate(prefs, deltas)
    assert lc < sum(prefs) / len(prefs)
    flipped = length_controlled_win_rate([1 - p for p in prefs], deltas)
    assert lc + flipped == pytest.approx(1)  # the baseline's view is the mirror image


@pytest.mark.parametrize(("prefs", "deltas", "expected"), [
    ([1, 0, 0.5, 1], [40, 40, 40, 40], 0.625),  # every length difference equal: no length term, the raw rate
    ([1, 1, 1, 1], [10, -50, 300, 2], 1.0),  # every verdict a win
    ([0, 0, 0], [10, -50, 300], 0.0),
    ([0.5, 0.5, 0.5], [1, 2, 3], 0.5),
    ([1, 0], [100, -100], None),  # too few pairs for a fit
    ([], [], None),
])
def test_degenerate_cases(prefs, deltas, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert length_controlled_win_rate(prefs, deltas) == expected


def test_perfect_separation_by_length_gives_a_finite_estimate_without_a_warning():
    # Every longer answer wins, every shorter one loses: the plain fit's slope is infinite.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lc = length_controlled_win_rate([1, 1, 1, 0, 0, 0], [100, 250, 40, -100, -250, -40])
        skewed = length_controlled_win_rate([1, 1, 1, 1, 0, 0], [100, 250, 40, 30, -100, -250])
    assert lc == pytest.approx(0.5, abs=1e-6)  # symmetric: nothing left to prefer at equal lengths
    assert 0 < skewed < 1


def mean(xs):
    return sum(xs) / len(xs)


def test_bootstrap_is_deterministic_for_a_seed():
    values = [1, 0, 0.5, 1, 1, 0, 1, 0.5, 0, 1]
    first = bootstrap_interval(values, mean, seed=7)
    assert first == bootstrap_interval(values, mean, seed=7)
    assert first != bootstrap_interval(values, mean, seed=8)
    low, high = first
    assert 0 <= low < mean(values) < high <= 1


def test_bootstrap_interval_covers_the_truth_about_as_often_as_it_says():
    import numpy as np

    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(200):
        values = list(rng.binomial(1, 0.7, size=60).astype(float))
        low, high = bootstrap_interval(values, mean, seed=trial, resamples=400)
        covered += low <= 0.7 <= high
    assert 0.88 <= covered / 200 <= 0.99  # nominal 95%


def test_bootstrap_narrows_with_more_prompts_and_honours_the_level():
    few = bootstrap_interval([1, 0] * 10, mean, seed=1)
    many = bootstrap_interval([1, 0] * 200, mean, seed=1)
    assert many[1] - many[0] < few[1] - few[0]
    half = bootstrap_interval([1, 0] * 10, mean, seed=1, level=0.5)
    assert few[0] <= half[0] <= half[1] <= few[1]


def test_no_resamples_or_no_values_give_no_interval():
    assert bootstrap_interval([1, 0, 1], mean, seed=0, resamples=0) is None
    assert bootstrap_interval([], mean, seed=0) is None


def test_the_lc_interval_refits_on_resampled_prompts():
    pairs = [(1, 300), (1, 300), (1, 300), (0, 300), (1, -300), (0.5, -300), (0, -300), (0, -300)] * 3
    interval = bootstrap_interval(pairs, lambda s: length_controlled_win_rate(*zip(*s)), seed=3, resamples=200)
    point = length_controlled_win_rate(*zip(*pairs))
    assert interval[0] < point < interval[1]


@pytest.mark.parametrize(("raw", "lc", "far"), [
    (0.5, 0.38, False), (0.5, 0.37, True), (0.5, 0.62, False), (0.5, 0.63, True),
    (0.2, 0.11, False), (0.2, 0.09, True),  # near 0 the ten points decide
    (0.9, 0.99, False), (0.9, 0.67, True),  # near 1 a quarter of the room decides
])
def test_an_lc_rate_far_from_the_raw_one_is_flagged_at_alpacaevals_thresholds(raw, lc, far):
    assert far_from_raw(raw, lc) is far
