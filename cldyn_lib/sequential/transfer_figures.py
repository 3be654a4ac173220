"""Figures, Frati et al.'s Table 1 and slider dashboards of the two chapters on Frati et al.

Every function draws on given matplotlib axes with labelled axes and units; the dashboards
run one small experiment with the reader's values (the slider panels call them).
Used by *Zapping and transfer shock* and *How far a shock travels*.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..plots import band
from .divergence import DivergenceConfig, run_divergence
from .pretrain import MODE_LABELS, PretrainConfig, load_or_pretrain, load_pretrain_data
from .transfer import TransferConfig, load_transfer_data
from .transfer_engine import run_transfer
from .transfer_studies import best_probe, probe_at_full_lr

ARM_LABELS = {"zapped_iid_kaiming": "zapped IID (Kaiming zaps)"}

MODE_COLORS = {"iid": "C0", "zapped_iid": "C1", "asb": "C2", "meta_asb": "C3",
               "zapped_iid_kaiming": "C5"}  # fmt: skip
LAYER_COLORS = {"conv1": "#1b9e77", "conv2": "#7570b3", "conv3": "#e7298a", "head": "#d95f02"}


def mode_label(mode: str) -> str:
    """The book's name of a pre-training mode or arm (\"zapped_iid\" -> \"zapped IID\")."""
    return MODE_LABELS.get(mode) or ARM_LABELS[mode]


# ---------------------------------------------------------------- transfer


def plot_seen(ax, seen, curves, modes, *, which="acc", title=None):
    """Frati et al.'s "so far" curves: held-out accuracy (or loss) on the classes seen so far,
    against the number of novel classes learned; ``curves`` is (modes, seeds, rows)."""
    for i, mode in enumerate(modes):
        band(ax, seen[1:], curves[i][:, 1:], label=mode_label(mode), color=MODE_COLORS[mode])
    ax.set_xlabel("novel classes learned (sequential transfer)")
    if which == "acc":
        ax.set_ylabel("held-out accuracy, classes so far")
        ax.set_ylim(0, None)
    else:
        ax.set_ylabel("held-out loss, classes so far (nats)")
    if title:
        ax.set_title(title)


def table1(arrays, modes, full_protocols=("sequential", "iid")):
    """Frati et al.'s Table 1 as a DataFrame, one row per pre-training arm: the final held-out
    accuracy (%, mean +- std over seeds) of the sequential and IID linear probe and of
    sequential / IID full fine-tuning, each at its own best lr of its grid, and the sequential
    probe at full fine-tuning's best sequential lr (a comparison at a matched lr). "-" for
    protocols not in ``full_protocols``; "diverged" where every seed diverged, and a count
    where some did. Taught in the chapter *Zapping and transfer shock*."""
    import pandas as pd

    best, matched = best_probe(arrays), probe_at_full_lr(arrays)
    full, full_lr = arrays["full_final"], arrays["full_best_lr"]

    def cell(v, ran=True):
        v = np.asarray(v, dtype=float)
        if not ran:
            return "-"
        if not np.isfinite(v).any():
            return "diverged"
        bad = int((~np.isfinite(v)).sum())
        note = f" ({bad} diverged)" if bad else ""
        return f"{100 * np.nanmean(v):.1f} ± {100 * np.nanstd(v):.1f}{note}"

    def with_lr(v, lr, ran=True):
        return f"{cell(v, ran)} (lr {lr:g})" if ran else "-"

    rows = []
    for i, mode in enumerate(modes):
        lr = best["best_lr"][i]
        rows.append((
            mode_label(mode),
            with_lr(best["final"][i, 0], lr[0]),
            with_lr(best["final"][i, 1], lr[1]),
            with_lr(full[i, 0], full_lr[i, 0], "sequential" in full_protocols),
            with_lr(full[i, 1], full_lr[i, 1], "iid" in full_protocols),
            with_lr(matched["final"][i], matched["lr"][i], "sequential" in full_protocols),
        ))  # fmt: skip
    columns = ["pre-training", "sequential, probe", "IID, probe", "sequential, full", "IID, full",
               "sequential, probe at full's lr"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def moving_average(x, k: int) -> np.ndarray:
    """The mean of each window of ``k`` consecutive values of ``x`` (``len(x) - k + 1``
    values). Taught in the chapter *Zapping and transfer shock* (pre-training curves)."""
    return np.convolve(x, np.ones(k) / k, mode="valid")


def transfer_dashboard(
    mode="zapped_iid", zap_every=1, lr=2e-3, optimizer="adam", train="head",
    protocol="sequential", seed=0, scale="ci",
):  # fmt: skip
    """Pre-train (or load) one model, transfer it and an IID-pre-trained baseline with the
    same settings; draw the "so far" curves and the (evaluation, class) accuracy matrix."""

    pcfg = PretrainConfig.preset(scale, mode=mode, zap_every=zap_every, seed=seed)
    tcfg = TransferConfig.preset(
        scale, lr=lr, optimizer=optimizer, train=train, protocol=protocol, seed=seed
    )
    data = load_pretrain_data(pcfg)
    runs = {"iid": load_or_pretrain(pcfg.replace(mode="iid", zap_every=1), data=data).model}
    runs[mode] = load_or_pretrain(pcfg, data=data).model
    tdata = load_transfer_data(tcfg)
    res = {m: run_transfer(tcfg, model, tdata) for m, model in runs.items()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    for m, r in res.items():
        label = mode_label(m) + (f" (zap every {zap_every})" if m == "zapped_iid" else "")
        label += " - diverged" if r.diverged else ""
        axes[0].plot(r.seen[1:], r.seen_mean("acc")[1:], "o-", ms=3, color=MODE_COLORS[m],
                     label=label)  # fmt: skip
    axes[0].set_xlabel("novel classes learned" if protocol == "sequential" else
                       "images seen / 15 (IID order: all classes all along)")  # fmt: skip
    axes[0].set_ylabel("held-out accuracy, classes so far")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"{optimizer}, lr {lr:g}, train {train}, seed {seed}, scale {scale}")
    acc = res[mode].acc
    im = axes[1].imshow(acc, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="none")
    axes[1].grid(False)
    axes[1].set_xlabel("novel class (in training order)")
    axes[1].set_ylabel("evaluation (row 0 = before transfer)")
    axes[1].set_title(f"{mode_label(mode)}: accuracy matrix (evaluation, class)")
    fig.colorbar(im, ax=axes[1], label="held-out accuracy")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- zap divergence


def plot_layers(ax, x, curves, layers, *, ls="-", label_suffix="", which=None):
    """One line per layer; ``curves`` is (seeds, steps, layers)."""
    for j, name in enumerate(layers):
        if which is not None and name not in which:
            continue
        band(ax, x, curves[:, :, j], color=LAYER_COLORS[name], ls=ls,
             label=f"{name}{label_suffix}")  # fmt: skip


def mark_diverged(ax, diverged_at, *, label="diverged"):
    """A vertical line and a note at the first diverged step of any seed (NaN/inf)."""
    steps = [int(s) for s in np.atleast_1d(diverged_at) if s >= 0]
    if steps:
        s = min(steps)
        ax.axvline(s, color="k", lw=1, ls=":")
        ax.text(s, 0.5, f" {label} at step {s}", transform=ax.get_xaxis_transform(),
                fontsize=8, rotation=90, va="center")  # fmt: skip


def divergence_dashboard(
    mode="zapped_iid", lr=1e-2, optimizer="adam", layer="head", zap_init="kaiming",
    seed=0, scale="ci",
):  # fmt: skip
    """Run the zap-divergence protocol once and draw its three measures for ``layer``,
    the gradient norms of every layer, and the two runs' losses."""

    pcfg = PretrainConfig.preset(scale, mode=mode, seed=seed)
    data = load_pretrain_data(pcfg)
    model = load_or_pretrain(pcfg, data=data).model
    cfg = DivergenceConfig.preset(scale, lr=lr, optimizer=optimizer, zap_init=zap_init, seed=seed)
    res = run_divergence(cfg, model, data)
    j = res.layers.index(layer)
    steps = np.arange(cfg.steps + 1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(steps, res.weight_cos[:, j], color=LAYER_COLORS[layer], label="weights")
    axes[0].plot(steps, res.disp_cos[:, j], color=LAYER_COLORS[layer], ls="--",
                 label="displacements since the fork")  # fmt: skip
    axes[0].set_ylim(-1.05, 1.05)
    axes[0].set_xlabel("steps after the zap")
    axes[0].set_ylabel(f"cosine, perturbed vs control ({layer})")
    axes[0].legend(fontsize=8)
    for k, name in enumerate(res.layers):
        axes[1].plot(steps[:-1], res.grad_norm[0, :, k], color=LAYER_COLORS[name], label=name)
        axes[1].plot(steps[:-1], res.grad_norm[1, :, k], color=LAYER_COLORS[name], ls=":")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("gradient norm")
    axes[1].set_title("solid: zapped run, dotted: control", fontsize=9)
    axes[1].legend(fontsize=8, ncol=2)
    axes[2].plot(steps[:-1], res.loss[0], label="zapped run", color="C3")
    axes[2].plot(steps[:-1], res.loss[1], label="control", color="0.3")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("training loss (nats)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        mark_diverged(ax, res.diverged_at)
    fig.suptitle(f"pre-trained {mode_label(mode)}, {optimizer} lr {lr:g}, head zapped with "
                 f"{zap_init} init, seed {seed}, scale {scale}", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def cosine_grid(arrays, modes, *, title_prefix="", lr_cols=None):
    """Frati et al.'s Fig. 2: per-layer cosines across learning rates (columns). Rows: the head's weight
    cosine; 1 - weight cosine of the conv layers (log scale: they stay near 1); the cosine
    of the displacements since the fork. Solid: pre-trained with zapping; dashed: without."""
    lrs = arrays["lrs"]
    cols = range(len(lrs)) if lr_cols is None else lr_cols
    fig, axes = plt.subplots(3, len(cols), figsize=(3.4 * len(cols) + 0.6, 8.2), squeeze=False,
                             sharex=True)  # fmt: skip
    layers = ("conv1", "conv2", "conv3", "head")
    styles = {"zapped_iid": "-", "iid": "--", "asb": "-.", "meta_asb": ":"}
    for c, j in enumerate(cols):
        for i, mode in enumerate(modes):
            wc, dc = arrays["weight_cos"][i, j], arrays["disp_cos"][i, j]
            x = np.arange(wc.shape[1])
            suffix = f", {mode_label(mode)}"
            plot_layers(axes[0, c], x, wc, layers, ls=styles[mode], which=("head",),
                        label_suffix=suffix)  # fmt: skip
            plot_layers(axes[1, c], x[1:], 1 - wc[:, 1:], layers, ls=styles[mode],
                        which=layers[:3], label_suffix=suffix)  # fmt: skip
            plot_layers(axes[2, c], x, dc, layers, ls=styles[mode], label_suffix=suffix)
            for ax in axes[:, c]:
                mark_diverged(ax, arrays["diverged_at"][i, j])
        axes[0, c].set_title(f"{title_prefix}lr {lrs[j]:g}")
        axes[0, c].set_ylim(-0.1, 1.02)
        axes[1, c].set_yscale("log")
        axes[2, c].set_ylim(-0.3, 1.02)
        axes[2, c].set_xlabel("steps after the zap")
    axes[0, 0].set_ylabel("head: cos(weights)")
    axes[1, 0].set_ylabel("convs: 1 - cos(weights), log")
    axes[2, 0].set_ylabel("cos(displacements since fork)")
    axes[0, -1].legend(fontsize=7)
    axes[1, -1].legend(fontsize=7, ncol=1)
    fig.tight_layout()
    return fig


def shock_bars(ax, arrays, modes, *, step: int = 0, title=None):
    """Gradient norm each layer receives at ``step`` after the zap, in the zapped run
    (solid bars) and the control (hatched), per pre-training mode (mean over seeds; all
    learning rates share step 0)."""
    layers = ("conv1", "conv2", "conv3", "head")
    g = arrays["grad_norm"][:, 0, :, :, step]  # (modes, seeds, run, layers) at the first lr
    width = 0.8 / (2 * len(modes))
    x = np.arange(len(layers))
    for i, mode in enumerate(modes):
        for r, hatch in ((0, None), (1, "///")):
            off = (2 * i + r - len(modes) + 0.5) * width
            ax.bar(x + off, g[i, :, r].mean(0), width, color=MODE_COLORS[mode], hatch=hatch,
                   alpha=0.9 if r == 0 else 0.45, edgecolor="white",
                   label=f"{mode_label(mode)}, {'zapped run' if r == 0 else 'control'}")  # fmt: skip
    ax.set_xticks(x, layers)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(plt.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("layer")
    ax.set_ylabel(f"gradient norm at step {step} after the zap")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)


#: learning rates mapped onto the colour scale of :func:`realign_curves`
LR_COLOUR_RANGE = (1e-5, 1e-1)


def realign_curves(ax, arrays, mode_index: int, *, title=None):
    """The head's weight cosine for every learning rate (one pre-training mode): a good
    learning rate climbs and stays; one too high climbs fast, then falls (Frati et al.'s
    Fig. 3b). The colour is a function of the learning rate itself (log scale over
    :data:`LR_COLOUR_RANGE`), so a rate has the same colour in every panel of a chapter."""
    lrs = arrays["lrs"]
    lo, hi = np.log10(LR_COLOUR_RANGE)
    for j, lr in enumerate(lrs):
        wc = arrays["weight_cos"][mode_index, j, :, :, 3]
        colour = plt.cm.viridis(0.9 * np.clip((np.log10(lr) - lo) / (hi - lo), 0, 1))
        band(ax, np.arange(wc.shape[1]), wc, color=colour, label=f"lr {lr:g}")
        mark_diverged(ax, arrays["diverged_at"][mode_index, j])
    ax.set_xlabel("steps after the zap")
    ax.set_ylabel("head: cos(zapped, control)")
    ax.set_ylim(-0.1, 1.02)
    ax.legend(fontsize=7, title="Adam", title_fontsize=7)
    if title:
        ax.set_title(title)
