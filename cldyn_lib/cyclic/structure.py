"""Structure in a cyclic run's recorded vectors (Yang et al., section 4): the arrays behind
Figs. 8, 9 and 17, computed from what :class:`cldyn_lib.Probes` records.

Weight residuals (Eq. 2) and their cosine-similarity heat map (stripes, Yang et al.'s Fig. 8c), lag
profiles, the helix of the output layer (PCA, revolutions per epoch, Fig. 9), where a (T, T)
map peaks relative to its diagonal (Yang et al.'s Figs. 8a, 8b, 18), update sizes (Yang et al.'s Fig. 17) and the block
contrast of activation similarities (Yang et al.'s Fig. 8d). All are plain NumPy on small arrays.

Taught in the chapter *Inside the dynamics*.
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError, check_choice

RESIDUAL_EDGES = ("shift", "truncate")


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """(N, N) cosine similarity between the rows of ``x`` (rows of zeros give 0)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    y = x / np.where(norm > 0, norm, 1.0)
    return y @ y.T


def weight_residuals(traj: np.ndarray, window: int, edge: str = "shift") -> np.ndarray:
    """Eq. 2: each row minus the mean of the ``window`` rows centred on it.

    The window of row t covers rows ``t - window//2 .. t - window//2 + window - 1`` (window T
    even: T/2 before and T/2 - 1 after; the paper's sum from t-T/2 to t+T/2 has T+1 terms and
    divides by T, we keep T terms). At the edges of the run, ``edge="shift"`` slides the
    window inside the run (always ``window`` rows, no longer centred: the first and last
    T/2 residuals measure distance from a mean of the first or last T checkpoints);
    ``edge="truncate"`` keeps it centred and averages only the rows that exist. A window
    longer than the run is an error.
    """
    traj = np.asarray(traj, dtype=np.float64)
    N = len(traj)
    check_choice("edge", edge, RESIDUAL_EDGES)
    if not 1 <= window <= N:
        raise ConfigError(f"window must be in 1..{N} (the run has {N} checkpoints); got {window}")
    csum = np.concatenate([np.zeros((1, traj.shape[1])), np.cumsum(traj, axis=0)])
    lo = np.arange(N) - window // 2
    if edge == "shift":
        lo = np.clip(lo, 0, N - window)
        hi = lo + window
    else:
        hi = np.minimum(lo + window, N)
        lo = np.maximum(lo, 0)
    mean = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return traj - mean


def lag_profile(sim: np.ndarray) -> np.ndarray:
    """Mean of ``sim[t, t+k]`` over t, for k = 0..N-1."""
    N = len(sim)
    return np.array([np.mean(np.diagonal(sim, k)) for k in range(N)])


def stripe_period(sim: np.ndarray, min_pairs: int = 4) -> int:
    """Lag (in rows) of the first stripe off the diagonal of a similarity matrix.

    The mean similarity at lag k falls from the diagonal; the period is the lag of the highest
    value after its first local minimum (lags with fewer than ``min_pairs`` pairs are left out).
    Returns 0 if the profile never rises again.
    """
    prof = lag_profile(sim)[: max(2, len(sim) - min_pairs + 1)]
    rises = np.nonzero(np.diff(prof) > 0)[0]
    if len(rises) == 0:
        return 0
    k0 = rises[0]  # first local minimum
    return int(k0 + np.argmax(prof[k0:]))


def pca(traj: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal-component scores (N, k) of the rows, and explained variance ratios."""
    x = np.asarray(traj, dtype=np.float64)
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)  # N x N work: N is small
    var = s**2 / max((s**2).sum(), 1e-300)
    return u[:, :k] * s[:k], var[:k]


def helix_measures(traj: np.ndarray, n_docs: int, skip_epochs: int = 0) -> dict:
    """Revolutions per epoch and convergence of a weight trajectory (Yang et al.'s Fig. 9).

    The trajectory's drift is removed with the residuals of a one-epoch window (Eq. 2,
    edges shifted); ``skip_epochs`` leaves out the first epochs (the initial transient);
    the winding angle of the residuals' top-2 principal components, unwrapped,
    gives revolutions; the per-epoch radius (mean residual norm) and step (distance between
    the ends of consecutive epochs) say whether the helix converges.
    """
    x = np.asarray(traj, dtype=np.float64)[skip_epochs * n_docs :]
    E = (len(x) - 1) // n_docs
    res = weight_residuals(x, n_docs, "shift")
    scores, _ = pca(res, 2)
    z = scores[:, 0] + 1j * scores[:, 1]
    angle = np.unwrap(np.angle(z[1:]))  # rows 1..N-1: E*T - 1 episodes apart
    turns = abs(angle[-1] - angle[0]) / (2 * np.pi)
    per_epoch = turns / ((len(angle) - 1) / n_docs)
    radius = np.array([np.linalg.norm(res[1 + e * n_docs : 1 + (e + 1) * n_docs], axis=1).mean()
                       for e in range(E)])  # fmt: skip
    ends = x[[e * n_docs for e in range(E + 1)]]
    step = np.linalg.norm(np.diff(ends, axis=0), axis=1)
    return {
        "revs_per_epoch": float(per_epoch),
        "turns": float(turns),
        "radius": radius,
        "step": step,
        "radius_ratio": float(radius[-1] / radius[min(1, E - 1)]),
        "step_ratio": float(step[-1] / step[min(1, E - 1)]),
    }


def diagonal_peak(mat: np.ndarray, last: int | None = None) -> dict:
    """Where a (T, T) heat map (Yang et al.'s Figs. 8a, 8b) peaks, relative to its diagonal.

    ``offset``: the circular offset k = 1..T-1 with the highest mean of ``mat[i, i+k]``;
    ``position``: the document j where the near-diagonal band (mean of ``mat[j-1, j]`` and
    ``mat[j, j-1]``, both off the diagonal) is highest; ``lag``: the circular distance in
    documents from the checkpoint's place in the cycle (just after document ``last``, default
    the last one) to ``position`` (Yang et al.: 10 to 15 documents for T = 25);
    ``symmetry``: correlation of the off-diagonal entries with their transposes.
    """
    m = np.asarray(mat, dtype=np.float64)
    T = len(m)
    last = T - 1 if last is None else last
    offs = np.array([np.mean([m[i, (i + k) % T] for i in range(T)]) for k in range(1, T)])
    band = np.array([(m[(j - 1) % T, j] + m[j, (j - 1) % T]) / 2 for j in range(T)])
    pos = int(np.argmax(band))
    d = (pos - last) % T
    off = ~np.eye(T, dtype=bool)
    sym = float(np.corrcoef(m[off], m.T[off])[0, 1]) if T > 2 else float("nan")
    return {
        "offset": int(1 + np.argmax(offs)),
        "offsets": offs,
        "band": band,
        "position": pos,
        "lag": int(min(d, T - d)),
        "symmetry": sym,
    }


def update_sizes(traj: np.ndarray) -> np.ndarray:
    """(N-1,) Euclidean size of each episode's change of a recorded vector (Yang et al.'s Fig. 17)."""
    return np.linalg.norm(np.diff(np.asarray(traj, dtype=np.float64), axis=0), axis=1)


def stepwise_ratio(sizes: np.ndarray, schedule: np.ndarray, doc: int) -> float:
    """Mean update size in episodes that train ``doc``, over the mean in the other episodes."""
    mask = np.asarray(schedule).reshape(-1) == doc
    return float(sizes[mask].mean() / sizes[~mask].mean())


def block_contrast(sim: np.ndarray, n_docs: int) -> float:
    """Yang et al.'s Fig. 8d's blocks: mean similarity within an epoch minus across epochs (rows 1..N-1)."""
    s = np.asarray(sim)[1:, 1:]
    ep = np.arange(len(s)) // n_docs
    same = ep[:, None] == ep[None, :]
    off = ~np.eye(len(s), dtype=bool)
    return float(s[same & off].mean() - s[~same].mean())


# ---------------------------------------------------------------- a probed run, summarised


def probe_summary(out, schedule: np.ndarray) -> dict[str, np.ndarray]:
    """Small arrays of a probed run (a :class:`~cldyn_lib.cyclic.probes.ProbeResult`) (heat maps, PCA scores, update sizes): what a chapter plots
    and a committed result stores (never the raw trajectories)."""
    T = schedule.shape[1]
    res = weight_residuals(out.weights, T, "shift")
    arrays = {
        "weight_res_cos": cosine_matrix(res).astype(np.float32),
        "head_pca": pca(out.head, 3)[0].astype(np.float32),
        "head_pca_var": pca(out.head, 3)[1],
        "act_cos": cosine_matrix(out.acts).astype(np.float32),
        "act_sizes": update_sizes(out.acts),
        "weight_sizes": update_sizes(out.weights),
        "helix_revs": np.array(helix_measures(out.head, T, skip_epochs=1)["revs_per_epoch"]),
    }
    h = helix_measures(out.head, T, skip_epochs=1)
    arrays["helix_radius"], arrays["helix_step"] = h["radius"], h["step"]
    arrays.update({k: v for k, v in out.to_arrays().items() if k in ("grad_cos", "pairwise")})
    return arrays
