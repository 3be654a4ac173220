"""The report of an analysis: four figures as PNG, the loss matrices, one ``report.html``.

:func:`write_report` writes, into the analysis folder:

- ``document1.png``: the loss of document 1 after every episode, fixed order against the
  reshuffled control (Yang et al., Fig. 1a);
- ``shift_averaged.png``: the loss of every document aligned at its first training and
  averaged (Yang et al.'s Fig. 1b);
- ``recovery_score.png``: the recovery score per epoch of both arms (Eq. 1);
- ``forgotten.png``: how much each arm forgot per epoch (Eq. 1's denominator);
- ``losses.npz``: every loss matrix and schedule with provenance (the runs themselves are
  in ``runs/``);
- ``report.html``: one page with the verdict (worded as the book's status page words it),
  the predicate, delta and seeds behind it, the figures and the tables.

:func:`report_figure` draws the same four panels into one figure (for a notebook), and
:func:`analysis_dashboard` the figure of a variant (for a slider panel).

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import plots
from ..files import write_atomic
from ..results import save_result
from .analyse import ARMS, PREDICATE, Analysis, analyse
from .figures import plot_shift_averaged_runs

COLORS = {"cyclic": "C0", "shuffled": "0.45"}
#: the report's figures: file name (without .png) -> title
PANELS = {
    "document1": "Loss of document 1",
    "shift_averaged": "Shift-averaged loss",
    "recovery_score": "Recovery score per epoch",
    "forgotten": "Amount forgotten per epoch",
}


def _runs(analysis: Analysis, arm: str):
    return analysis.fixed if arm == "cyclic" else analysis.control


def draw_panel(ax, analysis: Analysis, name: str) -> None:
    """Draw report panel ``name`` (a key of :data:`PANELS`) on ``ax``."""
    n = len(analysis.seeds)
    for arm, label in ARMS.items():
        runs, color = _runs(analysis, arm), COLORS[arm]
        text = f"{label} ({n} seed{'s' if n > 1 else ''})"
        if name == "document1":
            stack = np.stack([r.losses for r in runs])
            plots.plot_loss_curve(ax, stack, 0, runs[0].schedule, label=text, color=color,
                                  mark_before=arm == "cyclic")  # fmt: skip
        elif name == "shift_averaged":
            plot_shift_averaged_runs(ax, runs, label=text, color=color)
        elif name == "recovery_score":
            plots.plot_recovery_scores(ax, analysis.scores(arm), label=text, color=color,
                                       marker="o" if arm == "cyclic" else "s")  # fmt: skip
        else:
            lost = analysis.forgotten(arm)
            plots.band(ax, np.arange(1, lost.shape[1] + 1), lost, label=text, color=color)
            ax.set_xlabel("epoch n")
            ax.set_ylabel("forgotten, l_max - l_after (nats/token)")
            ax.set_xticks(np.arange(1, lost.shape[1] + 1))
    if name == "document1":
        ax.set_ylabel("loss of document 1 (nats/token)")
    ax.set_title(PANELS[name])
    ax.legend(fontsize=8)


def report_figure(analysis: Analysis) -> Figure:
    """The report's four panels in one pyplot figure (2 x 2), for a notebook to show."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 6.6), layout="constrained")
    for ax, name in zip(fig.subplots(2, 2).ravel(), PANELS):
        draw_panel(ax, analysis, name)
    verdict = analysis.verdict
    fig.suptitle(f"Verdict: {verdict}", fontsize=10)
    return fig


def analysis_dashboard(config, *, lr: float, frozen_blocks: int = 0, mask_prob: float = 0.0,
                       seeds: int = 1) -> Figure:  # fmt: skip
    """The report's figure for ``config`` with another learning rate, frozen blocks, token
    masking or number of seeds (nothing saved): the slider panel of *Your own model*."""
    changed = config.replace(lr=lr, frozen_blocks=frozen_blocks, mask_prob=mask_prob)
    return report_figure(analyse(changed, None, seeds=seeds, progress=False, log=None))


def _save_png(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return write_atomic(path, lambda f: f.write(buf.getvalue()))


def _table_html(df) -> str:
    return df.to_html(index=False, border=0, classes="t", escape=True)


def _describe(analysis: Analysis) -> list[tuple[str, str]]:
    c, prov = analysis.config, analysis.fixed[0].provenance
    run = prov.get("run", {})
    lm = run.get("causal_lm", {})
    model = c.causal_lm or f"{c.model} ({c.weights})"
    if lm:
        model += f" ({lm.get('class')}, {c.weights} weights, {lm.get('depth')} blocks)"
    if c.lora_rank:
        model += f", LoRA rank {c.lora_rank} (alpha {c.lora_alpha:g})"
    data = (prov.get("data") or [{}])[0]
    docs = c.docs or f"CNN/DailyMail pool {c.pool!r}"
    return [
        ("model", model),
        ("parameters", f"{run.get('n_params', 0):,} ({run.get('n_trainable', 0):,} trained)"),
        ("documents", f"{docs} (sha256 {str(data.get('sha256'))[:12]}), field {c.docs_field!r}"
                      if c.docs.endswith(".jsonl") else f"{docs} (sha256 {str(data.get('sha256'))[:12]})"),
        ("protocol", f"T={c.n_docs} documents, C={c.context} tokens, M={c.steps} steps each, "
                     f"E={c.epochs} epochs, batch 1; {c.window} window, shift {c.shift}, "
                     f"mask p={c.mask_prob:g}, {c.frozen_blocks} frozen blocks"),
        ("optimiser", f"{c.optimizer}, lr {c.learning_rate:g}"
                      + (", reset per document" if c.optimizer == "adam" and c.reset_optimizer else "")),
        ("vocabulary", f"{c.vocab} ({run.get('vocab_size')} ids)"),
        ("device", f"{run.get('device')} ({(prov.get('device') or {}).get('name', '?')})"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())),
        ("commit", str((prov.get("git") or {}).get("commit"))[:12]),
    ]  # fmt: skip


def report_html(analysis: Analysis, images: dict[str, str]) -> str:
    """The text of ``report.html`` (images given as file names relative to it)."""
    s = analysis.summary()
    n = s["n_seeds"]
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _describe(analysis))
    figs = "".join(
        f'<figure><img src="{esc(src)}" alt="{esc(PANELS[k])}"><figcaption>{esc(PANELS[k])}'
        "</figcaption></figure>"
        for k, src in images.items()
    )
    need = analysis.criterion.min_seeds()
    note = (f"With {n} seed(s) the sign test cannot reach alpha = {s['alpha']:g} "
            f"(it needs {need}): at best the verdict is indicative.") if n < need else ""  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Anticipatory recovery: report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
.verdict{{font-size:1.3em;padding:.6em 1em;border-left:6px solid #3572a5;background:#eef4fa}}
table{{border-collapse:collapse;margin:.5em 0}}th,td{{padding:2px 10px;text-align:left;
vertical-align:top}}table.t td,table.t th{{border-bottom:1px solid #ddd}}
figure{{display:inline-block;width:48%;margin:0 1% 1em 0}}img{{width:100%}}
figcaption{{font-size:.85em;color:#555}}</style></head><body>
<h1>Anticipatory recovery on your model and documents</h1>
<p>Yang et al.'s protocol (Yang, Jones, Mozer and Ren 2024): T documents trained in a fixed
cyclic order, M steps each, for E epochs, against a reshuffled control (a new order every
epoch, the same documents, initial weights and seed).</p>
<p class="verdict">Verdict: <b>{esc(s["verdict"])}</b></p>
<p>Predicate: {esc(PREDICATE)}, with delta = {s["delta"]:g}, alpha = {s["alpha"]:g}, at epoch
E-1 = {s["epoch"]}, over {n} seed(s) {esc(str(analysis.seeds))}. Mean RS: fixed order
{s["rs_fixed"]:.3f}, control {s["rs_control"]:.3f}; difference {s["difference"]:.3f}
(95% bootstrap interval {s["low"]:.3f} to {s["high"]:.3f}); {s["seeds_beyond_delta"]} of {n}
seeds beyond delta; sign-test p = {s["p"]:.3g}. The fixed order forgot
{s["forgotten"]:.3f} nats/token in epoch E-1. {esc(note)}</p>
<table>{rows}</table>
<h2>Figures</h2>{figs}
<h2>Per epoch (mean ± std over seeds)</h2>{_table_html(analysis.table())}
<h2>Per seed (epoch E-1)</h2>{_table_html(analysis.seed_table())}
<h2>Files</h2><p><code>losses.npz</code>: every loss matrix (E*T+1, T; row 0 before
training, row k after episode k), schedule and per-step training loss, stacked over seeds,
with provenance; <code>runs/</code>: one result file per run. Read them with
<code>cldyn_lib.load_result</code>.</p>
<p>Made in {analysis.seconds:.1f} s ({analysis.loaded} run(s) loaded from earlier calls).</p>
</body></html>
"""


def write_report(analysis: Analysis, out: str | Path | None = None) -> Path:
    """Write the figures, ``losses.npz`` and ``report.html`` into ``out`` (default: the
    analysis folder); returns the path of ``report.html``."""
    out = Path(out if out is not None else analysis.out or ".")
    images = {}
    for name in PANELS:
        fig = Figure(figsize=(5.4, 3.6), layout="constrained")
        draw_panel(fig.subplots(), analysis, name)
        _save_png(fig, out / f"{name}.png")
        images[name] = f"{name}.png"
    prov = {**analysis.fixed[0].provenance, "analysis": {
        **analysis.summary(), "seeds": analysis.seeds, "predicate": PREDICATE,
        "arms": list(ARMS.values()),
    }}  # fmt: skip
    save_result(out / "losses.npz", analysis.arrays(), prov)
    page = report_html(analysis, images)
    return write_atomic(out / "report.html", lambda f: f.write(page.encode("utf-8")))
