"""Figures shared by the chapters: loss curves, recovery scores, shift-averaged loss, circles.

Every function draws on a given matplotlib ``Axes`` and labels its axes with units, so the
chapters compose them into small multiples; the figures of each paper's chapters
(:mod:`cldyn_lib.cyclic.figures`, :mod:`cldyn_lib.sequential.transfer_figures`,
:mod:`cldyn_lib.sequential.optimizer_figures`) are built on these. Only matplotlib is
imported (seaborn, for the book's theme, when :func:`plot_style` is called). Introduced in
*The toy model*.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .metrics import after_training_rows, check_loss_matrix, shift_averaged_loss

PALETTE = "viridis"


def plot_style() -> None:
    """The book's plotting style (call once per chapter)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": "medium"})


def band(ax, x, curves, *, label=None, color=None, ls="-", lw=1.5, alpha=0.18):
    """Mean over the first axis of ``curves`` (runs or seeds) with a +-1 std band; NaNs
    (a diverged run, a missing value) are left out of both."""
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        std = np.nanstd(curves, axis=0) if len(curves) > 1 else None
    (line,) = ax.plot(x, mean, label=label, color=color, ls=ls, lw=lw)
    if std is not None:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=alpha, lw=0)
    return line


def _mean_std(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    return curves.mean(axis=0), curves.std(axis=0)


def plot_loss_curve(
    ax,
    losses,
    doc: int = 0,
    schedule=None,
    *,
    label: str | None = None,
    color=None,
    ylabel: str = "loss (nats/token)",
    mark_before: bool = True,
):
    """Loss of document ``doc`` after every episode (Yang et al. Fig. 1a).

    ``losses`` is one loss matrix, or a stack ``(seeds, E*T+1, T)`` drawn as mean +- std.
    Small black circles mark the points just before each training on ``doc``; faint
    vertical lines separate epochs.
    """
    stack = np.asarray(losses, dtype=float)
    stack = stack[None] if stack.ndim == 2 else stack
    _, S = check_loss_matrix(stack[0], schedule)
    E, T = S.shape
    mean, std = _mean_std(stack[:, :, doc])
    x = np.arange(len(mean))
    (line,) = ax.plot(x, mean, color=color, label=label, lw=1.5)
    if len(stack) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    if mark_before:
        before = after_training_rows(S)[:, doc] - 1
        ax.plot(before, mean[before], "o", ms=4, color="black", zorder=3)
    for e in range(1, E):
        ax.axvline(e * T, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("training episode")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, E * T)
    return line


def plot_shift_averaged(
    ax, losses, schedule=None, *, label=None, color=None, ylabel="loss (nats/token)"
):
    """Shift-averaged loss (Yang et al. Fig. 1b); a stack of matrices gives mean +- std over seeds."""
    stack = np.asarray(losses, dtype=float)
    stack = stack[None] if stack.ndim == 2 else stack
    curves = np.stack([shift_averaged_loss(m, schedule) for m in stack])
    mean, std = _mean_std(curves)
    x = np.arange(len(mean))
    (line,) = ax.plot(x, mean, color=color, label=label, lw=1.5)
    if len(stack) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    T = stack.shape[2]
    for k in range(1, (len(mean) - 2) // T + 1):
        ax.axvline(k * T, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("episodes since just before the first training")
    ax.set_ylabel(ylabel)
    return line


def plot_recovery_scores(ax, scores, *, label=None, color=None, marker="o"):
    """Recovery score per epoch; ``scores`` is (epochs,) or (seeds, epochs) -> mean +- std."""
    mean, std = _mean_std(scores)
    epochs = np.arange(1, len(mean) + 1)
    container = ax.errorbar(
        epochs, mean, yerr=std if np.ndim(scores) > 1 else None, label=label, color=color,
        marker=marker, ms=4, capsize=2, lw=1.2,
    )  # fmt: skip
    ax.set_xlabel("epoch n")
    ax.set_ylabel("recovery score RS(n)")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=min(len(epochs), 10)))
    ax.axhline(0, color="0.6", lw=0.8)
    return container


def plot_circle(
    ax, coords, *, title: str | None = None, cmap: str = "twilight", annotate: bool = True
):
    """Points ``coords[t]`` (T, 2) joined in task order and coloured by task index (Yang et al.'s Fig. 11)."""
    T = len(coords)
    closed = np.vstack([coords, coords[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color="0.7", lw=0.8, zorder=1)
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=np.arange(T), cmap=cmap, s=22, zorder=2,
                    vmin=0, vmax=T)  # fmt: skip
    if annotate:
        for t in (0, T // 4, T // 2, 3 * T // 4):
            ax.annotate(
                str(t + 1), coords[t], fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    if title:
        ax.set_title(title)
    return sc
