"""Null trajectories for the structure probes: what the probes give with no learned similarity.

Yang et al.'s stripes, helix and activation blocks (*Inside the dynamics*) are claims that a
cyclic run's recorded vectors have a structure, and a structure measure is only evidence if a
trajectory without the mechanism does not show it too. Two nulls:

* :func:`uncorrelated_updates` -- every episode adds its document's own fixed update, the
  documents' updates drawn independently (mutually uncorrelated: no similarity learned
  between neighbours in the cycle), plus a little noise. It repeats once per epoch by
  construction, which is exactly what a stripe period of one epoch measures.
* :func:`random_walk` -- independent steps, no cycle at all (for drift measures).
* :func:`random_map_null` -- heat maps of independent noise: where a map "peaks" by chance.

:func:`structure_measures` applies the chapter's measures to any trajectory, so real probes
and nulls go through the same code. Taught in the chapter *Inside the dynamics*.
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError
from .structure import (
    block_contrast,
    cosine_matrix,
    diagonal_peak,
    helix_measures,
    stripe_period,
    weight_residuals,
)


def _check(n_docs: int, epochs: int, dim: int) -> None:
    if n_docs < 2 or epochs < 2 or dim < 2:
        raise ConfigError(
            f"need n_docs >= 2, epochs >= 2 and dim >= 2; got {n_docs}, {epochs}, {dim}"
        )


def uncorrelated_updates(n_docs: int, epochs: int, dim: int = 64, seed: int = 0,
                         noise: float = 0.1) -> np.ndarray:  # fmt: skip
    """(epochs * n_docs + 1, dim) trajectory: episode t adds document ``t % n_docs``'s fixed
    update (independent standard normal vectors) plus ``noise`` times fresh noise."""
    _check(n_docs, epochs, dim)
    rng = np.random.default_rng(seed)
    updates = rng.standard_normal((n_docs, dim))
    steps = updates[np.arange(epochs * n_docs) % n_docs] + noise * rng.standard_normal(
        (epochs * n_docs, dim)
    )
    return np.concatenate([np.zeros((1, dim)), np.cumsum(steps, axis=0)])


def random_walk(n_steps: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """(n_steps + 1, dim) Gaussian random walk from the origin."""
    if n_steps < 2 or dim < 2:
        raise ConfigError(f"need n_steps >= 2 and dim >= 2; got {n_steps}, {dim}")
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [np.zeros((1, dim)), np.cumsum(rng.standard_normal((n_steps, dim)), axis=0)]
    )


def structure_measures(traj: np.ndarray, n_docs: int) -> dict[str, float]:
    """The chapter's structure measures of a trajectory with one row per checkpoint:
    ``stripe_epochs`` (stripe period of the weight-residual cosines, in epochs),
    ``helix_revs`` (revolutions per epoch after the first epoch), ``step_ratio`` (the
    helix's last epoch-to-epoch step over its second) and ``block`` (the block
    contrast of the trajectory's cosine matrix, the activation measure)."""
    traj = np.asarray(traj, dtype=np.float64)
    res = weight_residuals(traj, n_docs, "shift")
    sim = cosine_matrix(res)[n_docs:, n_docs:]
    helix = helix_measures(traj, n_docs, skip_epochs=1)
    return {
        "stripe_epochs": stripe_period(sim) / n_docs,
        "helix_revs": helix["revs_per_epoch"],
        "step_ratio": helix["step_ratio"],
        "block": block_contrast(cosine_matrix(traj), n_docs),
    }


def null_structure(
    n_docs: int, epochs: int, seeds: int = 10, dim: int = 64
) -> dict[str, np.ndarray]:
    """:func:`structure_measures` of both nulls over ``seeds`` seeds: ``{"uncorrelated": {...},
    "random_walk": {...}}``, each measure an array over seeds."""
    out = {}
    for name, make in (("uncorrelated", lambda s: uncorrelated_updates(n_docs, epochs, dim, s)),
                       ("random_walk", lambda s: random_walk(n_docs * epochs, dim, s))):  # fmt: skip
        per = [structure_measures(make(s), n_docs) for s in range(seeds)]
        out[name] = {k: np.array([p[k] for p in per]) for k in per[0]}
    return out


def random_map_null(n_docs: int, seeds: int = 200) -> dict[str, np.ndarray]:
    """:func:`~cldyn_lib.diagonal_peak` of ``seeds`` maps of independent standard normal
    entries, (n_docs, n_docs): the ``lag`` and ``symmetry`` a heat map has by chance, the
    null of the gradient and pairwise-recovery claims (Yang et al.'s Figs. 8a, 8b)."""
    if n_docs < 3 or seeds < 1:
        raise ConfigError(f"need n_docs >= 3 and seeds >= 1; got {n_docs}, {seeds}")
    rng = np.random.default_rng(0)
    peaks = [diagonal_peak(rng.standard_normal((n_docs, n_docs))) for _ in range(seeds)]
    return {
        "lag": np.array([p["lag"] for p in peaks]),
        "symmetry": np.array([p["symmetry"] for p in peaks]),
    }
