"""Contrasts over seeds: the statistics behind every verdict of the book.

A claim of either paper (``book/claims.yml``) is decided by a *contrast*: per seed, the
statistic of the effect arm minus that of a matched reference (a control arm run with the
same seed, or a stated constant), in a declared direction and against a declared minimum
effect ``delta``, all fixed in ``claims.yml`` before the run. The test is the exact one-sided
sign test over seeds (``scipy.stats.binomtest``: how many seeds show a difference beyond
``delta``); the interval is a seeded percentile bootstrap of the mean difference
(``scipy.stats.bootstrap``). An *equivalence* claim ("heads have no big effect") is two
one-sided sign tests against a stated margin (TOST).

Every claim also names its *nulls*: arms in which the phenomenon should be absent (the
reshuffled order, a trajectory of uncorrelated per-document updates, a random walk). The
same test is run with each null in place of the effect arm; a claim that a null passes is
**not discriminating**, whatever its own result. A null must be non-degenerate (finite, and
forgetting at least the stated amount where that matters), else the build fails.

Verdicts (:data:`VERDICTS`): reproduced; reproduced at the larger scale only; not
reproduced at this scale; contradicted (a significant effect the other way); confounded
(named); inconclusive; indicative (n seeds: too few for the test to reach its level);
not discriminating; not testable at this scale (named reason).

:func:`decide` gives the outcome of one arm against its reference; the verdict words are
:data:`VERDICTS`, and :func:`verdict_of` turns outcomes into one. The claims of the status
page (:mod:`cldyn_lib.book.claims`) and the report of ``python -m cldyn_lib analyse`` both
use them. Taught in the appendix *Reproduction status*.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

DIRECTIONS = ("greater", "less")
KINDS = ("contrast", "equivalence")

#: the words of every verdict (a parenthesis may follow: "indicative (3 seeds)")
VERDICTS = (
    "reproduced",
    "reproduced at the larger scale only",
    "not reproduced at this scale",
    "contradicted",
    "confounded",
    "inconclusive",
    "indicative",
    "not discriminating",
    "not testable at this scale",
)


@dataclasses.dataclass(frozen=True)
class Criterion:
    """What decides a claim, declared before the run."""

    kind: str = "contrast"  #: "contrast" (effect beyond delta) or "equivalence" (abs(d) < delta)
    direction: str = "greater"  #: the effect arm's statistic is greater (less) than the reference
    delta: float = 0.0  #: minimum effect (contrast) or equivalence margin, in the statistic's units
    alpha: float = 0.05  #: one-sided level of the sign test(s)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"test kind must be one of {KINDS}; got {self.kind!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}; got {self.direction!r}")
        if not (0 < self.alpha < 0.5) or not math.isfinite(self.delta) or self.delta < 0:
            raise ValueError(f"need 0 < alpha < 0.5 and delta >= 0; got {self.alpha}, {self.delta}")
        if self.kind == "equivalence" and self.delta <= 0:
            raise ValueError("an equivalence test needs a margin delta > 0")

    def min_seeds(self) -> int:
        """Seeds the exact sign test needs to reach ``alpha`` when every seed agrees."""
        return math.ceil(math.log(self.alpha) / math.log(0.5))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One arm against its reference at one scale."""

    outcome: str  #: "passes", "reversed", "absent", "indicative" or "inconclusive"
    n: int  #: seeds with a finite difference
    mean: float  #: mean per-seed difference (signed so that the claimed direction is > 0)
    low: float  #: 95% bootstrap interval of the mean difference
    high: float
    k: int  #: seeds beyond delta in the claimed direction (equivalence: inside the margin)
    p: float  #: exact one-sided sign-test p-value (equivalence: the larger of the two)


def differences(effect, reference, direction: str) -> np.ndarray:
    """Per-seed ``effect - reference`` (``reference`` a matched array or a constant), signed
    so that the claimed direction is positive."""
    e = np.asarray(effect, dtype=float).reshape(-1)
    r = np.broadcast_to(np.asarray(reference, dtype=float), e.shape)
    d = e - r
    return d if direction == "greater" else -d


def bootstrap_interval(d: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` (seeded; a point for n < 2)."""
    from scipy import stats

    if len(d) < 2 or np.ptp(d) == 0:
        return float(d.mean()), float(d.mean())
    res = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=4999,
                          method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sign_p(k: int, n: int) -> float:
    """Exact one-sided sign test: P(at least k of n seeds by chance), p = 1/2 per seed."""
    from scipy import stats

    return float(stats.binomtest(k, n, 0.5, alternative="greater").pvalue) if n else 1.0


def decide(effect, reference, test: Criterion) -> Outcome:
    """The outcome of one arm against its reference (see the module docstring)."""
    d = differences(effect, reference, test.direction)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return Outcome("inconclusive", 0, math.nan, math.nan, math.nan, 0, 1.0)
    low, high = bootstrap_interval(d)
    reachable = 0.5**n <= test.alpha
    if test.kind == "equivalence":
        k_in = int(np.sum(np.abs(d) < test.delta))
        p = max(sign_p(int(np.sum(d < test.delta)), n), sign_p(int(np.sum(d > -test.delta)), n))
        if p <= test.alpha:
            outcome = "passes"
        elif sign_p(int(np.sum(np.abs(d) >= test.delta)), n) <= test.alpha:
            outcome = "absent"  # significantly outside the margin: a real difference
        elif not reachable and k_in == n:
            outcome = "indicative"
        else:
            outcome = "inconclusive"
        return Outcome(outcome, n, float(d.mean()), low, high, k_in, p)
    k = int(np.sum(d > test.delta))
    p = sign_p(k, n)
    if p <= test.alpha:
        outcome = "passes"
    elif sign_p(int(np.sum(d < 0)), n) <= test.alpha:
        outcome = "reversed"  # a significant effect the other way
    elif not reachable and k == n:
        outcome = "indicative"
    elif reachable and high < test.delta:
        outcome = "absent"  # the interval excludes the stated minimum effect
    else:
        outcome = "inconclusive"
    return Outcome(outcome, n, float(d.mean()), low, high, k, p)


# ---------------------------------------------------------------- verdicts


def verdict_of(
    effect: Outcome,
    nulls: Mapping[str, Outcome] | None = None,
    extra: Mapping[str, Outcome] | None = None,
) -> str:
    """The verdict at one scale: the effect arm's outcome, turned into "not discriminating"
    when a null passes the same test and "confounded (<arm>)" when the effect does not also
    hold in a further arm it must hold in (e.g. a head with one output per task)."""
    o = effect.outcome
    if o in ("passes", "indicative"):
        # an indicative effect (too few seeds) is held to the same standard as it would be
        # with enough seeds: a null or arm that is itself only indicative counts as passing
        ok = ("passes",) if o == "passes" else ("passes", "indicative")
        if any(n.outcome in ok for n in (nulls or {}).values()):
            return "not discriminating"
        failed = [name for name, x in (extra or {}).items() if x.outcome not in ok]
        if failed:
            return f"confounded ({', '.join(failed)})"
        if o == "passes":
            return "reproduced"
    return {
        "reversed": "contradicted",
        "absent": "not reproduced at this scale",
        "indicative": f"indicative ({effect.n} seed{'s' if effect.n != 1 else ''})",
        "inconclusive": "inconclusive",
    }[o]


def combine_scales(verdicts: Sequence[str]) -> str:
    """One verdict from the verdicts at each scale, smallest first: the largest scale
    decides; "reproduced" there but not at a smaller scale is "reproduced at the larger
    scale only"."""
    if not verdicts:
        return "not testable at this scale (no values)"
    top = verdicts[-1]
    if top == "reproduced" and any(v != "reproduced" for v in verdicts[:-1]):
        return "reproduced at the larger scale only"
    return top


def verdict_word(verdict: str) -> str:
    """The verdict without its parenthesis ("indicative (3 seeds)" -> "indicative")."""
    word = verdict.split(" (")[0]
    if word not in VERDICTS:
        raise ValueError(f"not a verdict: {verdict!r}")
    return word
