"""Figures of the language-model chapters: runs, sweeps, and the slider dashboard.

Built on :mod:`cldyn_lib.plots` (the shared axes conventions). A *sweep* here is a
:class:`~cldyn_lib.CyclicSweepData` or anything with ``labels`` and ``get(i, key)``.
Used in *Anticipatory recovery in a language model*, *Emergence with scale* and *What drives
recovery*; :func:`vision_dashboard` in *Beyond language*, :func:`seed_band_dashboard` in *Many
runs at once*.
"""

from __future__ import annotations

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from .. import metrics, plots
from ..plots import band
from .batched import run_cyclic_batched
from .config import CyclicConfig
from .engine import run_cyclic
from .vision import run_vision, vision_preset

MIN_FORGOTTEN = 0.05  #: nats/token; below this a recovery score is not drawn


def plot_shift_averaged_runs(ax, results, *, label=None, color=None, ls="-"):
    """Shift-averaged loss (Yang et al.'s Fig. 1b) of several runs, each with its own schedule."""
    curves = np.stack([metrics.shift_averaged_loss(r.losses, r.schedule) for r in results])
    T = results[0].schedule.shape[1]
    line = band(ax, np.arange(curves.shape[1]), curves, label=label, color=color, ls=ls)
    for k in range(1, (curves.shape[1] - 2) // T + 1):
        ax.axvline(k * T, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("episodes since just before the first training")
    ax.set_ylabel("shift-averaged loss (nats/token)")
    return line


def recovery_scores_of(results) -> np.ndarray:
    """Recovery scores (runs, E-1), NaN where nothing was forgotten."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([r.recovery_scores() for r in results])


def recovery_parts_of(results, name: str) -> np.ndarray:
    """One part of Eq. 1 (e.g. ``"forgotten"``) per run and epoch: (runs, E-1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack(
            [
                [getattr(metrics.recovery_parts(r.losses, n, r.schedule), name) for n in
                 range(1, r.schedule.shape[0])]
                for r in results
            ]
        )  # fmt: skip


# ---------------------------------------------------------------- sweeps


def sweep_curves(ax, data, *, per_epoch: bool = False, cmap: str = "viridis", title=None):
    """Shift-averaged loss of every variant (mean +- std over seeds).

    ``per_epoch=True`` puts the x axis in epochs, so that sweeps over T line up (Yang et al.'s Fig. 5a).
    """
    labels = data.labels
    colors = plt.get_cmap(cmap)(np.linspace(0.05, 0.9, len(labels)))
    for i, label in enumerate(labels):
        curves = data.get(i, "shift_avg")
        x = np.arange(curves.shape[1], dtype=float)
        if per_epoch:
            T = (curves.shape[1] - 2) / max(1, round(data.get(i, "score").shape[1]))
            x = x / T
        band(ax, x, curves, label=label, color=colors[i], lw=1.2)
    ax.set_xlabel(
        "epochs since the first training" if per_epoch else "episodes since first training"
    )
    ax.set_ylabel("shift-averaged loss (nats/token)")
    if title:
        ax.set_title(title)
    return colors


def sweep_scores(
    ax, data, *, key: str = "score", colors=None, ylabel=None, epoch: int = -1,
    marker: str = "o", offset: float = 0.0, label: str | None = None,
):  # fmt: skip
    """``key`` (default the recovery score) of every variant in one epoch, mean +- std.

    Recovery scores of runs that forgot less than :data:`MIN_FORGOTTEN` nats/token are
    left out (Eq. 1 divides by the amount forgotten) and the variant is marked "undefined".
    """
    labels = data.labels
    values = np.stack([data.get(i, key)[:, epoch] for i in range(len(labels))])
    if key == "score":
        forgot = np.stack([data.get(i, "forgotten")[:, epoch] for i in range(len(labels))])
        values = np.where(forgot < MIN_FORGOTTEN, np.nan, values)
    x = np.arange(len(labels))
    for i in x:
        c = None if colors is None else colors[i]
        if np.isnan(values[i]).all():
            ax.annotate("undefined", (i, 0), rotation=90, fontsize=7, ha="center", va="bottom")
            continue
        ax.errorbar(i + offset, np.nanmean(values[i]), yerr=np.nanstd(values[i]), fmt=marker,
                    color=c, ms=5, capsize=3, label=label if i == 0 else None)  # fmt: skip
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    n = data.get(0, key).shape[1]
    ep = n + epoch + 1 if epoch < 0 else epoch + 1
    ax.set_ylabel(ylabel or f"recovery score RS({ep})")
    ax.axhline(0, color="0.6", lw=0.8)
    return values


def sweep_figure(datas: dict, *, per_epoch=(), ncols: int = 4, height: float = 2.6):
    """Small multiples: for each sweep, its curves above its recovery scores. No legend over
    the curves: each curve has the colour of its variant's point below, which is labelled."""
    names = list(datas)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        2 * nrows, ncols, figsize=(3.3 * ncols, 2 * height * nrows), layout="constrained",
        gridspec_kw={"height_ratios": [1.3, 1] * nrows}, squeeze=False,
    )  # fmt: skip
    for k, name in enumerate(names):
        r, c = divmod(k, ncols)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        colors = sweep_curves(top, datas[name], per_epoch=name in per_epoch, title=name)
        top.set_xlabel(top.get_xlabel(), fontsize=8)
        top.set_ylabel("loss (nats/token)", fontsize=8)
        sweep_scores(bottom, datas[name], colors=colors)
        bottom.set_ylabel(bottom.get_ylabel(), fontsize=8)
    for k in range(len(names), nrows * ncols):
        r, c = divmod(k, ncols)
        axes[2 * r, c].axis("off")
        axes[2 * r + 1, c].axis("off")
    return fig


# ---------------------------------------------------------------- the slider dashboard


def cyclic_dashboard(scale: str = "ci", result=None, **fields):
    """One cyclic run drawn as three panels: document 1's loss, the shift-averaged loss and
    the recovery score per epoch (labelled with the amount forgotten).

    ``fields`` override :class:`~cldyn_lib.CyclicConfig` fields of the ``scale``
    preset (the slider panels pass theirs); ``result`` draws an existing run instead.
    """
    if result is None:
        if fields.get("shift") and "window" not in fields:
            fields["window"] = "centre"  # shifted windows are taken around the centre
        result = run_cyclic(CyclicConfig.preset(scale, **fields), progress=False)
    cfg = result.config
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), gridspec_kw={"width_ratios": [2, 1.5, 1]})
    plots.plot_loss_curve(
        axes[0], result.losses, 0, result.schedule, ylabel="loss of document 1 (nats/token)"
    )
    axes[0].set_title(
        f"{cfg.optimizer}, lr {cfg.learning_rate:g}, {cfg.order} order, T={cfg.n_docs}, "
        f"M={cfg.steps}, d={cfg.arch().width}, L={cfg.arch().depth}"
    )
    plot_shift_averaged_runs(axes[1], [result])
    axes[1].set_title("all documents, aligned")
    if cfg.epochs >= 2:
        rs = recovery_scores_of([result])[0]
        forgot = recovery_parts_of([result], "forgotten")[0]
        plots.plot_recovery_scores(axes[2], rs)
        for n, (s, f) in enumerate(zip(rs, forgot), start=1):
            if np.isfinite(s):
                axes[2].annotate(f"{f:.2f}", (n, s), fontsize=7, xytext=(3, 3),
                                 textcoords="offset points")  # fmt: skip
        axes[2].set_title("RS (labels: amount forgotten)")
    else:
        axes[2].text(0.5, 0.5, "needs >= 2 epochs", ha="center", transform=axes[2].transAxes)
    fig.tight_layout()
    return fig


def vision_dashboard(model: str = "igpt", n_items: int = 10, steps: int = 5, lr: float = 1e-3,
                     order: str = "cyclic", seed: int = 0, result=None):  # fmt: skip
    """One cyclic run on images at ci scale: item 1's loss and the shift-averaged loss, titled
    with the recovery score per epoch.

    The fields override :func:`~cldyn_lib.vision_preset` ``("ci", model)``; ``result`` draws
    an existing :func:`~cldyn_lib.run_vision` result instead. Taught in the chapter *Beyond
    language*.
    """
    if result is None:
        cfg = vision_preset(
            "ci", model, n_items=n_items, steps=steps, lr=lr, order=order, seed=seed
        )
        result = run_vision(cfg, progress=False)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
    plots.plot_loss_curve(
        axes[0], result.losses, 0, result.schedule, ylabel="loss of item 1 (nats)"
    )
    plot_shift_averaged_runs(axes[1], [result], color="C0")
    rs = result.recovery_scores()
    axes[1].set_title(f"RS per epoch: {np.round(rs, 2)}", fontsize=9)
    fig.tight_layout()
    return fig


def seed_band_dashboard(base: CyclicConfig, k: int = 4, method: str = "batched", lr: float = 1e-3):
    """Seeds 0..k-1 of ``base`` at learning rate ``lr``, trained as one batched model
    (:func:`~cldyn_lib.run_cyclic_batched` with ``method``): their recovery-score band,
    titled with the time it took.

    Taught in the chapter *Many runs at once*.
    """
    cfgs = [base.replace(seed=s, lr=lr) for s in range(k)]
    t0 = time.perf_counter()
    runs = run_cyclic_batched(cfgs, method=method)
    dt = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    scores = np.stack([r.recovery_scores() for r in runs])
    plots.plot_recovery_scores(ax, scores, label=f"{k} seeds, {method}", color="C1")
    ax.set_title(f"{k} seeds in {dt:.1f} s ({dt / k:.2f} s per seed)")
    ax.legend(fontsize=8)
    return fig
