"""Figures of what the probes record: the similarity maps of Yang et al.'s Fig. 8, and the demo.

Built on :mod:`cldyn_lib.cyclic.structure` (the measures) and the arrays of
:func:`~cldyn_lib.probe_summary` or :func:`~cldyn_lib.probe_study`. Taught in the chapter
*Inside the dynamics*.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .probes import document_gradients
from .structure import cosine_matrix, weight_residuals


def plot_heatmap(ax, m, title: str, label: tuple[str, str], cmap: str = "viridis", centre=False):
    """Matrix ``m`` as an image with a colour bar; ``label`` is (x label, y label).

    ``centre=True`` puts 0 in the middle of the colour scale (for signed maps such as the
    pairwise loss decrease). Taught in the chapter *Inside the dynamics*.
    """
    lim = np.abs(m).max() if centre else None
    im = ax.imshow(m, cmap=cmap, vmin=-lim if centre else None, vmax=lim)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(label[0])
    ax.set_ylabel(label[1])
    plt.colorbar(im, ax=ax, fraction=0.046)


def plot_probe_maps(axes, arrays, n_docs: int, tag: str) -> None:
    """Yang et al.'s Fig. 8a-d on four axes from the arrays of :func:`~cldyn_lib.probe_summary`:
    gradient cosine, pairwise loss decrease, weight-residual cosine (from the second epoch,
    as in the paper) and the cosine of document 1's activations. ``tag`` starts each title.

    Taught in the chapter *Inside the dynamics*.
    """
    T = n_docs
    plot_heatmap(axes[0], arrays["grad_cos"], f"{tag}: gradient cosine (Yang et al. 8a)",
                 ("document j", "document i"))  # fmt: skip
    plot_heatmap(axes[1], arrays["pairwise"], f"{tag}: loss decrease on j, M steps on i (Yang et al. 8b)",
                 ("evaluated document j", "trained document i"), cmap="RdBu_r", centre=True)  # fmt: skip
    rc = arrays["weight_res_cos"][T:, T:]  # from the second epoch, as the paper's Fig. 8c
    plot_heatmap(
        axes[2],
        rc,
        f"{tag}: weight residual cosine (Yang et al. 8c)",
        ("episode - T", "episode - T"),
    )
    plot_heatmap(axes[3], arrays["act_cos"], f"{tag}: activations of doc 1 (Yang et al. 8d)",
                 ("checkpoint", "checkpoint"))  # fmt: skip


def probe_dashboard(state, probe, layer: str | None = None, epochs=None, doc: int = 0):
    """The slider demo of *Inside the dynamics* for one probed run.

    ``state`` is the run's :class:`~cldyn_lib.CyclicState` after training and ``probe`` its
    :class:`~cldyn_lib.ProbeResult`. Three panels: the cosine of the documents' gradients at
    ``layer`` (default: the probed layer), the weight-residual cosine over the epoch window
    ``epochs = (first, last)`` (default: the second to the last epoch), and the pairwise loss
    decrease from training on ``doc`` and on document ``doc`` (0 = document 1).
    Taught in the chapter *Inside the dynamics*.
    """
    T, E = state.config.n_docs, state.config.epochs
    layer = layer or probe.layer
    epochs = (2, E) if epochs is None else epochs
    g = cosine_matrix(document_gradients(state, layer).numpy())
    lo, hi = epochs[0] - 1, epochs[1]
    rcm = cosine_matrix(weight_residuals(probe.weights, T))[
        lo * T + 1 : hi * T + 1, lo * T + 1 : hi * T + 1
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    plot_heatmap(axes[0], g, f"gradient cosine at {layer}", ("document j", "document i"))
    plot_heatmap(axes[1], rcm, f"residual cosine, epochs {epochs[0]}-{epochs[1]}",
                 ("episode", "episode"))  # fmt: skip
    axes[2].plot(np.arange(1, T + 1), probe.pairwise[doc], "o-",
                 label=f"train on {doc + 1}, loss decrease of j")  # fmt: skip
    axes[2].plot(np.arange(1, T + 1), probe.pairwise[:, doc], "s--",
                 label=f"train on i, loss decrease of {doc + 1}")  # fmt: skip
    axes[2].axhline(0, color="0.5", lw=0.8)
    axes[2].set_xlabel("document")
    axes[2].set_ylabel("loss decrease (nats/token)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig
