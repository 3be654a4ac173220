"""The statistics behind every verdict: exact sign tests, intervals, nulls, verdict words."""

from __future__ import annotations

import numpy as np
import pytest

from cldyn_lib.stats import (
    VERDICTS,
    Criterion,
    combine_scales,
    decide,
    sign_p,
    verdict_of,
    verdict_word,
)

UP = Criterion(direction="greater", delta=0.1)


def test_sign_test_is_exact_and_needs_five_seeds_at_five_percent():
    assert sign_p(5, 5) == pytest.approx(1 / 32)
    assert sign_p(4, 5) == pytest.approx(6 / 32)
    assert sign_p(0, 5) == 1.0
    assert UP.min_seeds() == 5 and Criterion(alpha=0.01).min_seeds() == 7


def test_contrast_outcomes():
    assert decide([0.5] * 5, [0.1] * 5, UP).outcome == "passes"
    # every seed agrees, but three seeds cannot reach p = 0.05
    three = decide([0.5] * 3, [0.1] * 3, UP)
    assert three.outcome == "indicative" and three.p == pytest.approx(1 / 8)
    # a difference that never exceeds the minimum effect: absent, the interval says so
    small = decide([0.12, 0.15, 0.13, 0.11, 0.14], [0.1] * 5, UP)
    assert small.outcome == "absent" and small.high < UP.delta
    # a significant effect the other way
    assert decide([0.0] * 5, [0.5] * 5, UP).outcome == "reversed"
    # paired per seed: a control that moves with the effect arm cancels
    e = np.array([0.3, 0.5, 0.7, 0.9, 1.1])
    assert decide(e, e - 0.2, UP).outcome == "passes"
    assert decide(e, e - 0.05, UP).outcome == "absent"


def test_direction_less_and_nan_seeds():
    down = Criterion(direction="less", delta=0.02)
    assert decide([0.1] * 5, [0.2] * 5, down).outcome == "passes"
    out = decide([0.1, np.nan, 0.1, 0.1, 0.1, 0.1], [0.2] * 6, down)
    assert out.n == 5 and out.outcome == "passes"  # a diverged seed is left out, and counted


def test_equivalence_needs_both_sides():
    eq = Criterion(kind="equivalence", delta=0.1)
    assert decide([0.51, 0.5, 0.49, 0.5, 0.52], [0.5] * 5, eq).outcome == "passes"
    assert decide([0.9] * 5, [0.5] * 5, eq).outcome == "absent"
    with pytest.raises(ValueError, match="margin"):
        Criterion(kind="equivalence", delta=0.0)


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="direction"):
        Criterion(direction="up")
    with pytest.raises(ValueError, match="alpha"):
        Criterion(alpha=0.7)


def test_a_passing_null_makes_a_claim_not_discriminating():
    good = decide([0.5] * 5, [0.1] * 5, UP)
    null_fails = decide([0.1] * 5, [0.1] * 5, UP)
    assert verdict_of(good, {"reshuffled": null_fails}) == "reproduced"
    assert verdict_of(good, {"reshuffled": good}) == "not discriminating"
    assert verdict_of(good, {}, {"one output per task": null_fails}).startswith("confounded")
    # with too few seeds the same standard: a null that clears delta in every seed too, or an
    # arm that fails, is not hidden behind "indicative"
    three = decide([0.5] * 3, [0.1] * 3, UP)
    three_null = decide([0.1] * 3, [0.1] * 3, UP)
    assert verdict_of(three, {"reshuffled": three_null}) == "indicative (3 seeds)"
    assert verdict_of(three, {"reshuffled": three}) == "not discriminating"
    assert verdict_of(three, {}, {"one output per task": three}) == "indicative (3 seeds)"
    assert verdict_of(three, {}, {"one output per task": three_null}) == (
        "confounded (one output per task)"
    )


def test_combining_scales_and_verdict_words():
    assert combine_scales(["reproduced", "reproduced"]) == "reproduced"
    assert combine_scales(["inconclusive", "reproduced"]) == "reproduced at the larger scale only"
    assert combine_scales(["reproduced", "contradicted"]) == "contradicted"
    for v in ("indicative (3 seeds)", "confounded (x)", *VERDICTS):
        assert verdict_word(v) in VERDICTS
    with pytest.raises(ValueError):
        verdict_word("reproduced at ci scale only")
