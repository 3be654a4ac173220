"""Yang et al.'s Figs. 2b, 3 and 6 at Pythia scale on one GPU: the runs, in priority order.

:func:`pythia_scale_plan` lists the randomly initialised Pythia-shaped runs of Yang et al.'s
protocol (T = 25 CNN/DailyMail articles, C = 256 tokens, M = 10 steps of batch 1 per
document, E = 5 epochs), most important first, as ``(name, group, config)``:

1. ``fig6``: the Pythia-1B shape with gradient descent at lr 1e-3, its reshuffled-order
   control, and Adam rebuilt for every document at lr 1e-4 (Yang et al.'s Fig. 6: average
   recovery score 0.689 for Adam vs 0.211 for GD);
2. ``fig2b``: the 160M, 410M, 1.4B and 2.8B shapes with gradient descent (1B is in 1);
3. ``fig3``: width 256, 512, 1024, 2048 at depth 16, and depth 4, 8, 12, 16 at width 2048;
4. ``seeds``: a second seed of the three runs of Yang et al.'s Fig. 6.

Initialisation: Pythia's recipe (small_init for the embedding, QKV, MLP-in and head; wang_init
for the attention and MLP outputs). Yang et al.'s Fig. 2b's sizes use each model's own d and L (what
Pythia's step-0 checkpoints were drawn with); Fig. 3 follows Yang et al.'s own scratch code,
which hard-codes d = 2048 and L = 16 in the init formulas and keeps the MLP width at 8,192
whatever the width (``init_dims="reference"``, ``mlp_width=8192``). Precision: bfloat16
autocast in the forward passes and TF32 for the rest (``bf16=True, tf32=True``).

:func:`run_time_estimate` turns per-step times measured on the card (the smoke run) into a
run's time; a FLOPs-over-peak estimate alone is 5-10x optimistic at batch size 1, where a
step is mostly kernel launches. ``tools/gpu_pythia_scale.py`` runs the smoke and the main
run. Taught in the chapter *Emergence with scale*.
"""

from __future__ import annotations

import math

from ..models import gpt_neox as lm
from .config import CyclicConfig

#: Yang et al.'s protocol for the Pythia-scale runs (random init, GD by default)
PROTOCOL = dict(
    n_docs=25, context=256, steps=10, epochs=5, weights="random", init="pythia",
    optimizer="sgd", lr=1e-3, vocab="full", device="cuda", bf16=True, tf32=True,
)  # fmt: skip

#: Yang et al.'s numbers for these figures (Fig. 6: average recovery score over epochs)
PYTHIA_SCALE_PAPER = {"fig6": {"adam": 0.689, "gd": 0.211}}


def _cfg(model: str, seed: int = 0, **over) -> CyclicConfig:
    return CyclicConfig(model=model, seed=seed, **{**PROTOCOL, **over})


def pythia_scale_plan(seeds: int = 2) -> list[tuple[str, str, CyclicConfig]]:
    """Every run, most important first, as ``(name, group, config)`` (see the module)."""
    plan = []
    for s in range(seeds):
        tag = "" if s == 0 else f"-s{s}"
        group = "fig6" if s == 0 else "seeds"
        plan += [
            (f"1b-gd{tag}", group, _cfg("pythia-1b", s)),
            (f"1b-gd-shuffled{tag}", group, _cfg("pythia-1b", s, order="shuffled")),
            (
                f"1b-adam-reset{tag}",
                group,
                _cfg("pythia-1b", s, optimizer="adam", lr=1e-4, reset_optimizer=True),
            ),  # fmt: skip
        ]
        if s == 0:
            plan += [(f"{m}-gd", "fig2b", _cfg(f"pythia-{m}")) for m in ("160m", "410m", "1.4b",
                                                                           "2.8b")]  # fmt: skip
            ref = dict(init_dims="reference", mlp_width=8192)
            plan += [(f"w{w}-L16", "fig3", _cfg("pythia-1b", width=w, depth=16, heads=8, **ref))
                     for w in (256, 512, 1024, 2048)]  # fmt: skip
            # depth 16 at width 2048 is w2048-L16 above
            plan += [(f"w2048-L{d}", "fig3", _cfg("pythia-1b", width=2048, depth=d, heads=8, **ref))
                     for d in (4, 8, 12)]  # fmt: skip
    return plan


def pythia_scale_tiny(config: CyclicConfig) -> CyclicConfig:
    """The same run at tiny shapes on the CPU (float32): the dry run of the plan in tests."""
    a = config.arch()
    width = 16 * max(1, a.width // 2048)  # heads of 8 dimensions
    return config.replace(
        n_docs=4, context=16, steps=2, epochs=2, width=width, depth=max(1, a.depth // 8),
        heads=2, mlp_width=4 * width, device="cpu", bf16=False, tf32=False, vocab="docs",
        init_dims="model",
    )  # fmt: skip


def run_counts(config: CyclicConfig, eval_docs_per_forward: int | None = None) -> dict:
    """Training steps and evaluation forwards of one run (the engine batches documents)."""
    T, E, M = config.n_docs, config.epochs, config.steps
    per = eval_docs_per_forward or T
    return {"train_steps": E * T * M, "eval_forwards": (E * T + 1) * math.ceil(T / per)}


def run_time_estimate(config: CyclicConfig, step_s: float, eval_s: float,
                      eval_docs_per_forward: int | None = None) -> float:  # fmt: skip
    """Seconds for ``config`` from a measured training step and evaluation forward."""
    n = run_counts(config, eval_docs_per_forward)
    return n["train_steps"] * step_s + n["eval_forwards"] * eval_s


def flops_estimate(config: CyclicConfig, peak_flops: float, overhead_s: float = 0.0) -> float:
    """The FLOPs-over-peak estimate (plus a per-step overhead): what the smoke run corrects."""
    a = config.arch(vocab_size=lm.FULL_VOCAB_SIZE)
    seq = a.flops_per_token(config.context) * config.context
    n = run_counts(config)
    return (n["train_steps"] * (3 * seq / peak_flops + overhead_s)
            + n["eval_forwards"] * (seq * config.n_docs / peak_flops + overhead_s))  # fmt: skip


def memory_estimate_gb(config: CyclicConfig) -> float:
    """GiB for weights, gradients and two Adam moments in fp32, plus the evaluation logits."""
    a = config.arch(vocab_size=lm.FULL_VOCAB_SIZE)
    weights = 16 * a.n_params()  # fp32 weights, gradients, Adam m and v
    logits = 2 * config.n_docs * config.context * a.vocab_size * 4
    return (weights + logits) / 2**30
