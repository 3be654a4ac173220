"""The loss-matrix convention and the metrics every chapter shares.

**Loss matrix.** ``losses`` has shape ``(E*T + 1, T)``: row 0 is the evaluation before any
training, row ``k`` the evaluation after episode ``k`` (``k = 1..E*T``); column ``j`` is
document (task) ``j``. Rows and columns are 0-based in code; the text of the book numbers
documents from 1.

**Schedule.** An integer array of shape ``(E, T)``: ``schedule[e, k]`` is the document trained
in the ``k``-th episode of epoch ``e``. The default is ``schedule[e, k] = k`` (the same order
every epoch). Partial shuffling and reversed orders are just other schedules; every row must
be a permutation of ``0..T-1``.

Taught in the chapter *The toy model*; used by every chapter on Yang et al.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

__all__ = [
    "default_schedule",
    "check_loss_matrix",
    "after_training_rows",
    "recovery_parts",
    "recovery_score",
    "recovery_scores",
    "aligned_losses",
    "shift_averaged_loss",
    "forgetting_per_task",
    "forgetting",
    "backward_transfer",
    "priming",
    "spearman",
]


def default_schedule(n_tasks: int, epochs: int) -> np.ndarray:
    """The fixed cyclic order: document ``k`` in the ``k``-th episode of every epoch."""
    if n_tasks < 1 or epochs < 1:
        raise ValueError(f"n_tasks and epochs must be >= 1; got {n_tasks}, {epochs}")
    return np.tile(np.arange(n_tasks), (epochs, 1))


def check_loss_matrix(losses, schedule=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a loss matrix and its schedule; return them as float and int arrays.

    Raises ``ValueError`` if the matrix is not 2-D with ``E*T + 1`` rows (``E >= 1``), holds
    non-finite values, or if the schedule is not ``(E, T)`` with each row a permutation.
    """
    L = np.asarray(losses, dtype=float)
    if L.ndim != 2 or L.shape[1] < 1:
        raise ValueError(f"losses must be a 2-D array of shape (E*T+1, T); got shape {L.shape}")
    T = L.shape[1]
    if (L.shape[0] - 1) % T or L.shape[0] < T + 1:
        raise ValueError(
            f"losses must have E*T+1 rows for T={T} columns and some E >= 1; got {L.shape[0]} rows"
        )
    if not np.all(np.isfinite(L)):
        raise ValueError("losses contains NaN or inf (a diverged run?); metrics need finite losses")
    E = (L.shape[0] - 1) // T
    if schedule is None:
        return L, default_schedule(T, E)
    S = np.asarray(schedule)
    if S.shape != (E, T):
        raise ValueError(f"schedule must have shape (E, T) = ({E}, {T}); got {S.shape}")
    if not np.issubdtype(S.dtype, np.integer):
        raise ValueError(f"schedule must hold integer document indices; got dtype {S.dtype}")
    for e, row in enumerate(S):
        if sorted(row.tolist()) != list(range(T)):
            raise ValueError(f"schedule row {e} must be a permutation of 0..{T - 1}; got {row}")
    return L, S


def after_training_rows(schedule) -> np.ndarray:
    """``rows[n, t]``: the loss-matrix row just after the ``(n+1)``-th training of document t."""
    S = np.asarray(schedule)
    E, T = S.shape
    rows = np.empty((E, T), dtype=int)
    for e in range(E):
        rows[e, S[e]] = e * T + np.arange(T) + 1
    return rows


class RecoveryParts(NamedTuple):
    """Eq. 1's ingredients for one epoch (means over documents)."""

    score: float  #: (l_max - l_before) / (l_max - l_after)
    forgotten: float  #: l_max - l_after: how much was forgotten (footnote 1 of Yang et al.)
    recovered: float  #: l_max - l_before: how much came back before the next training
    l_max: float
    l_before: float
    l_after: float


def recovery_parts(losses, epoch: int, schedule=None, docs=None) -> RecoveryParts:
    """Yang et al.'s recovery score (Eq. 1) for ``epoch`` n, with its parts.

    For each document t, ``a`` is the row just after its n-th training and ``b`` the row just
    before its (n+1)-th. With the default schedule and 0-based t, ``a = (n-1)*T + t + 1`` and
    ``b = n*T + t``. Then, with means over t taken *before* the ratio::

        l_max    = mean_t max(losses[a..b, t])      (both ends included)
        l_before = mean_t losses[b, t]
        l_after  = mean_t losses[a, t]
        RS(n)    = (l_max - l_before) / (l_max - l_after)

    ``epoch`` must be in ``1..E-1`` (a run with E=1 has no recovery score). The score is NaN,
    with a warning, when nothing was forgotten (``l_max == l_after``). ``docs`` restricts the
    means to some documents (e.g. ``[0]`` for document 1 alone, Yang et al.'s Fig. 12).
    """
    L, S = check_loss_matrix(losses, schedule)
    E, T = S.shape
    if E < 2:
        raise ValueError("a run with E=1 epoch has no recovery score (it needs a second training)")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 1 <= epoch < E:
        raise ValueError(f"epoch must be an integer in [1, {E - 1}] for E={E}; got {epoch!r}")
    rows = after_training_rows(S)
    a = rows[epoch - 1]
    b = rows[epoch] - 1
    cols = np.arange(T) if docs is None else np.atleast_1d(np.asarray(docs, dtype=int))
    l_max = np.mean([L[a[t] : b[t] + 1, t].max() for t in cols])
    l_before = L[b[cols], cols].mean()
    l_after = L[a[cols], cols].mean()
    forgotten = l_max - l_after
    if forgotten == 0:
        warnings.warn(
            f"recovery score of epoch {epoch} is undefined: nothing was forgotten "
            "(l_max == l_after); returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        score = float("nan")
    else:
        score = (l_max - l_before) / forgotten
    return RecoveryParts(
        float(score), float(forgotten), float(l_max - l_before), l_max, l_before, l_after
    )


def recovery_score(losses, epoch: int, schedule=None) -> float:
    """Yang et al.'s Eq. 1 for ``epoch`` (1..E-1); see :func:`recovery_parts` for the definition."""
    return recovery_parts(losses, epoch, schedule).score


def recovery_scores(losses, schedule=None) -> np.ndarray:
    """Recovery score of every epoch 1..E-1 (an empty array when E=1)."""
    L, S = check_loss_matrix(losses, schedule)
    return np.array([recovery_parts(L, n, S).score for n in range(1, S.shape[0])])


def aligned_losses(losses, schedule=None) -> np.ndarray:
    """Each document's loss curve aligned at its first training, shape ``(T, (E-1)*T + 2)``.

    Column 0 is the row just before the document's first training (row t for document t
    with the default schedule); every curve is cut to the common length ``(E-1)*T + 2``.
    """
    L, S = check_loss_matrix(losses, schedule)
    E, T = S.shape
    start = after_training_rows(S)[0] - 1
    length = (E - 1) * T + 2
    return np.stack([L[start[t] : start[t] + length, t] for t in range(T)])


def shift_averaged_loss(losses, schedule=None) -> np.ndarray:
    """Yang et al.'s shift-averaged loss (Fig. 1b): the mean over documents of :func:`aligned_losses`."""
    return aligned_losses(losses, schedule).mean(axis=0)


# ---------------------------------------------------------------- forgetting and BWT


def _last_training_rows(n_rows: int, n_tasks: int) -> np.ndarray:
    if (n_rows - 1) % n_tasks:
        raise ValueError(
            f"cannot infer when each task was trained for a {n_rows}x{n_tasks} matrix; "
            "pass trained_at"
        )
    E = (n_rows - 1) // n_tasks
    return after_training_rows(default_schedule(n_tasks, E))[-1]


def forgetting_per_task(matrix, trained_at=None, kind: str = "loss") -> np.ndarray:
    """Forgetting of every task, positive when the task got worse after its training ended.

    ``matrix`` has shape ``(rows, tasks)`` (row 0 = before training). ``trained_at[j]`` is the
    row just after the *last* training of task j (default: the last epoch of the default
    schedule). For ``kind="loss"``: ``F_j = matrix[-1, j] - matrix[trained_at[j], j]``; for
    ``kind="accuracy"``: ``F_j = matrix[trained_at[j], j] - matrix[-1, j]``. Tasks trained at
    the last row, or never (``trained_at[j] < 0``), get NaN: as in Avalanche's
    ``StreamForgetting``, the task just trained does not count.
    """
    if kind not in ("loss", "accuracy"):
        raise ValueError(f"kind must be 'loss' or 'accuracy'; got {kind!r}")
    M = np.asarray(matrix, dtype=float)
    if M.ndim != 2 or M.shape[0] < 2:
        raise ValueError(f"matrix must be 2-D with at least 2 rows; got shape {M.shape}")
    n_rows, n_tasks = M.shape
    rows = _last_training_rows(n_rows, n_tasks) if trained_at is None else np.asarray(trained_at)
    if rows.shape != (n_tasks,) or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"trained_at must be {n_tasks} integer row indices; got {rows!r}")
    if np.any(rows >= n_rows):
        raise ValueError(f"trained_at rows must be < {n_rows}; got max {rows.max()}")
    out = np.full(n_tasks, np.nan)
    ok = (rows >= 0) & (rows < n_rows - 1)
    final, then = M[-1, ok], M[rows[ok], np.flatnonzero(ok)]
    out[ok] = final - then if kind == "loss" else then - final
    return out


def forgetting(matrix, trained_at=None, kind: str = "loss") -> float:
    """Mean forgetting over tasks (Avalanche ``StreamForgetting``); positive = forgotten.

    See :func:`forgetting_per_task` for the definition and sign convention.
    """
    per_task = forgetting_per_task(matrix, trained_at, kind)
    if np.all(np.isnan(per_task)):
        return float("nan")
    return float(np.nanmean(per_task))


def backward_transfer(matrix, trained_at=None, kind: str = "loss") -> float:
    """Backward transfer, BWT (Lopez-Paz & Ranzato 2017; Avalanche ``StreamBWT``).

    ``BWT = -forgetting``: positive when training on later tasks *improved* earlier ones
    (lower loss, or higher accuracy, than right after their own training).
    """
    return -forgetting(matrix, trained_at, kind)


def priming(losses, schedule=None, epoch: int = 1) -> float:
    """How much an episode lowers the loss of the document trained *next*, in ``epoch``.

    For consecutive episodes ``i -> j`` of epoch ``epoch`` (1-based), the drop
    ``losses[r-1, j] - losses[r, j]`` where ``r`` is the row just after training ``i``;
    the mean over the T-1 pairs. Positive: training a document primes its successor. In
    the fixed order the successor of ``x_{t-1}`` is ``x_t``; in a reversed epoch it is the
    other way round (Yang et al., section 4's opening). Used in *What drives recovery*.
    """
    L, S = check_loss_matrix(losses, schedule)
    E, T = S.shape
    if not 1 <= epoch <= E or T < 2:
        raise ValueError(f"epoch must be in [1, {E}] and T >= 2; got epoch={epoch}, T={T}")
    e = epoch - 1
    rows = e * T + np.arange(1, T)  # after episodes k = 0..T-2 of the epoch
    nxt = S[e, 1:]
    return float(np.mean(L[rows - 1, nxt] - L[rows, nxt]))


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equal-length sequences (``scipy.stats.spearmanr``;
    ties get their mean rank); NaN when either sequence is constant.

    Used to summarise sweeps (is the recovery score ordered by model size? by fit?).
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2; got {x.shape}, {y.shape}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)
