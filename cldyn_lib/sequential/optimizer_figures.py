"""Figures, Frati et al.'s Table 3 and slider dashboards of *Optimizers and sequential learning* and *Why
Adam remembers*.

Every function draws on given matplotlib axes with labelled axes and units. Matrices follow
the book's (time, task) convention: row 0 before training, row k after the k-th task.
Used in *Optimizers and sequential learning* and *Why Adam remembers*.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from ..plots import band
from .optimizers import VARIANT_LABELS
from .pretrain import load_or_pretrain
from .sequence import SequenceStudy, best_lr_index
from .transfer_engine import run_transfer

OPTIMIZER_COLORS = {"sgd": "C7", "sgd_momentum": "C0", "adam": "C3", "adam_nosqrt": "C1",
          "adam_beta2_0": "C5", "adam_beta1_0": "C4", "fisher": "C2", "adam_reset": "C9"}  # fmt: skip
TRAIN_LABELS = {"head": "linear probe", "all": "full fine-tuning"}
LOSS_NORM = dict(vmin=0.05, vmax=15.0)


def variant_label(variant: str) -> str:
    """The book's name of an optimizer variant (or an arm of the boundary study)."""
    return {**VARIANT_LABELS, "adam_reset": "Adam, state reset each epoch"}.get(variant, variant)


def epoch_lines(ax, n_tasks: int, epochs: int, axis: str = "x") -> None:
    for e in range(1, epochs):
        (ax.axvline if axis == "x" else ax.axhline)(e * n_tasks + 0.5, color="w", lw=1.2)


def loss_heatmap(ax, loss, *, title=None, colorbar=True):
    """The (time, task) loss matrix as an image: x = evaluation after the k-th task (row k),
    y = task; a log colour scale from 0.05 to 15 nats; white lines at epoch boundaries."""
    loss = np.asarray(loss, float)
    R, T = loss.shape
    im = ax.imshow(np.clip(loss.T, *LOSS_NORM.values()), aspect="auto", origin="lower",
                   cmap="magma_r", norm=LogNorm(**LOSS_NORM), interpolation="none",
                   extent=(-0.5, R - 0.5, 0.5, T + 0.5))  # fmt: skip
    ax.grid(False)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    epoch_lines(ax, T, (R - 1) // T)
    ax.set_xlabel("evaluation after task k (k = 0: before training)")
    ax.set_ylabel("task (novel class, in training order)")
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        plt.colorbar(im, ax=ax, label="held-out loss (nats, log scale)", pad=0.01)
    return im


def task_curves(ax, loss, *, tasks=None, title=None, ymax=None):
    """Per-task loss curves (Frati et al. Figs. 4-6), one colour per task; a dot marks each
    evaluation right after that task was trained. ``tasks``: a subset (0-based) to draw,
    labelled in a legend (task numbers from 1)."""
    loss = np.asarray(loss, float)
    R, T = loss.shape
    subset = tasks is not None
    tasks = range(T) if tasks is None else tasks
    colors = plt.cm.viridis(np.linspace(0, 0.95, T))
    x = np.arange(R)
    for t in tasks:
        ax.plot(x, loss[:, t], color=colors[t], lw=1.2 if subset else 1.0,
                label=f"task {t + 1}" if subset else None)  # fmt: skip
        trained = np.arange(t + 1, R, T)
        ax.plot(trained, loss[trained, t], "o", ms=3.5 if subset else 2.5, color=colors[t])
    if subset:
        ax.legend(fontsize=7, ncol=len(tasks))
    for e in range(1, (R - 1) // T):
        ax.axvline(e * T, color="0.6", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_ylim(0.01, ymax)
    ax.set_xlabel("evaluation after task k")
    ax.set_ylabel("held-out loss of each task (nats, log)")
    if title:
        ax.set_title(title, fontsize=9)


def since_curves(ax, curves: dict, *, title=None, xlabel="tasks trained since"):
    """Mean change of a task's loss since its own training ended (negative: it kept
    improving), ``curves[variant]`` of shape (seeds, horizon + 1)."""
    for variant, c in curves.items():
        band(
            ax,
            np.arange(np.shape(c)[-1]),
            c,
            label=variant_label(variant),
            color=OPTIMIZER_COLORS.get(variant),
        )
    ax.axhline(0, color="0.3", lw=0.8)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss change since training (nats)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def lr_curves(ax, lrs, values, *, variant, ls="-", marker="o", suffix=""):
    """A metric against the learning rate (log x): mean over seeds (last axis) +- std."""
    lrs, values = np.asarray(lrs, float), np.asarray(values, float)
    ok = np.isfinite(lrs)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mean, std = np.nanmean(values[ok], -1), np.nanstd(values[ok], -1)
    ax.errorbar(lrs[ok], mean, yerr=std, ls=ls, marker=marker, ms=4, capsize=2,
                color=OPTIMIZER_COLORS.get(variant), label=variant_label(variant) + suffix)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")


TRAIN_SHORT = {"head": "probe", "all": "full"}


def table3(summary, variants, trains, epochs=(1, 3), paper=None):
    """Our version of Frati et al.'s Table 3, a DataFrame, one row per variant: per (train, epoch) the mean held-out
    accuracy (%) over all tasks +- std over seeds, at the learning rate best after the last
    epoch, and that learning rate. ``paper`` ({variant: text}) adds Frati et al.'s values as a
    last column. Taught in the chapter *Optimizers and sequential learning*."""
    import pandas as pd

    acc = summary["best"]["acc_epoch"]  # (V, Tr, S, E)
    columns = ["optimizer"]
    for train in trains:
        short = TRAIN_SHORT[train]
        columns += [f"{short}, epoch {e}" for e in epochs] + [f"{short} lr"]
    rows = []
    for v, variant in enumerate(variants):
        cells = [variant_label(variant)]
        for t, _ in enumerate(trains):
            for e in epochs:
                a = 100 * acc[v, t, :, e - 1]
                cells.append(f"{np.mean(a):.1f} ± {np.std(a):.1f}")
            cells.append(f"{summary['best_lr'][v, t]:g}")
        rows.append(cells)
    table = pd.DataFrame(rows, columns=columns)
    if paper is not None:
        table[f"Frati et al., epoch {epochs[-1]}"] = [paper[v] for v in variants]
    return table


# ---------------------------------------------------------------- Why Adam remembers


def sweep_lines(ax, arrays, metric, variants, *, train=0, best_by="acc", xlog=False,
                xlabel=None, ylabel=None, scale_label=""):  # fmt: skip
    """``metric`` of each variant (at its best learning rate for each swept value) against
    the swept value; mean over seeds +- std."""
    values = arrays["values"]
    x = np.arange(len(values)) if values.dtype.kind in "US" else values.astype(float)
    for v, variant in enumerate(variants):
        acc = arrays["acc_epoch"][:, v, train, :, :, -1]  # (value, lr, seed)
        k = best_lr_index(acc)
        y = np.stack([arrays[metric][i, v, train, k[i]] for i in range(len(values))])
        band(
            ax,
            x,
            y.T,
            label=variant_label(variant) + scale_label,
            color=OPTIMIZER_COLORS.get(variant),
        )
        ax.plot(x, np.nanmean(y, -1), "o", ms=3, color=OPTIMIZER_COLORS.get(variant))
    if values.dtype.kind in "US":
        ax.set_xticks(x, values)
    if xlog:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or str(arrays.get("field", "")))
    if ylabel:
        ax.set_ylabel(ylabel)


def variant_bars(ax, arrays, variants, *, metric="bwt1", train=0, ylabel=None, groups=None):
    """Bars of ``metric`` per variant at its best learning rate, one group per swept value
    (e.g. head with spare outputs / exact outputs); dots are seeds."""
    n = len(arrays["values"])
    width = 0.8 / n
    x = np.arange(len(variants))
    for i in range(n):
        k = best_lr_index(arrays["acc_epoch"][i, :, train, :, :, -1])
        vals = np.stack([arrays[metric][i, v, train, k[v]] for v in range(len(variants))])
        off = (i - (n - 1) / 2) * width
        ax.bar(x + off, np.nanmean(vals, -1), width, alpha=0.85 if i == 0 else 0.5,
               color=[OPTIMIZER_COLORS[v] for v in variants], hatch=None if i == 0 else "//",
               edgecolor="k", lw=0.5, label=None if groups is None else groups[i])  # fmt: skip
        for j in range(vals.shape[1]):
            ax.plot(x + off, vals[:, j], "k.", ms=3)
    ax.set_xticks(x, [variant_label(v) for v in variants], rotation=25, ha="right", fontsize=8)
    ax.axhline(0, color="0.3", lw=0.8)
    if ylabel:
        ax.set_ylabel(ylabel)
    if groups:
        ax.legend(fontsize=7)


def boundary_traces(axes, arrays, arms, *, layer="head", window=None, title=""):
    """Per step around the first epoch boundary, mean over seeds: gradient norm, Adam's
    second-moment scale (RMS of v-hat), update norm and cos(first moment, gradient) of one
    layer, one line per arm; a dotted line marks the boundary."""
    per = int(arrays["steps_per_epoch"])
    lo, hi = window or (per - 3 * 15, per + 5 * 15)
    j = list(arrays["layers"]).index(layer)
    names = list(arrays["stat_names"])
    steps = np.arange(lo, hi)
    panels = (
        ("grad", "gradient norm", True),
        ("v_rms", "RMS of v-hat (Adam's scale)", True),
        ("update", "update norm", True),
        ("cos_mg", "cos(first moment, gradient)", False),
    )
    for ax, (key, ylabel, log) in zip(axes, panels):  # fmt: skip
        for a, arm in enumerate(arms):
            y = arrays["stats"][a, :, lo:hi, names.index(key), j]
            if np.isfinite(y).any():
                band(ax, steps + 1, y, label=variant_label(arm), color=OPTIMIZER_COLORS.get(arm))
        ax.axvline(per + 0.5, color="k", ls=":", lw=1)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step (the dotted line: start of epoch 2)")
        ax.set_ylabel(f"{layer}: {ylabel}")
    axes[0].legend(fontsize=7)
    if title:
        axes[0].set_title(title, fontsize=9)


# ---------------------------------------------------------------- dashboards


def sequence_dashboard(optimizer="adam", lr=1e-3, train="head", epochs=3, seed=0, scale="ci",
                       beta1=0.9, beta2=0.999, adam_power=0.5, head_outputs=0):  # fmt: skip
    """One sequential run with the reader's settings: its (time, task) loss heat map, the
    per-task loss curves and the accuracy over all tasks after every task."""
    study = SequenceStudy.preset(scale, epochs=epochs)
    eps = 1e-3 if (optimizer == "fisher" or adam_power != 0.5) else 1e-8
    cfg = study.transfer_config(
        None, optimizer=optimizer, lr=lr, train=train, seed=seed, beta1=beta1, beta2=beta2,
        adam_power=adam_power, eps=eps, head_outputs=head_outputs,
    )  # fmt: skip
    res = run_transfer(cfg, load_or_pretrain(study.pretrain_config(seed)).model)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [1.2, 1, 0.8]})
    loss_heatmap(axes[0], res.loss, title="(time, task) loss matrix")
    task_curves(axes[1], res.loss, title="per-task loss")
    axes[2].plot(np.arange(len(res.acc)), 100 * res.acc.mean(1), color="k")
    axes[2].set_xlabel("evaluation after task k")
    axes[2].set_ylabel("held-out accuracy, all tasks (%)")
    axes[2].set_ylim(0, 100)
    fig.suptitle(f"{optimizer}, lr {lr:g}, {TRAIN_LABELS[train]}, {epochs} epochs, seed {seed}, "
                 f"scale {scale}" + (" - diverged" if res.diverged else ""), fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig
