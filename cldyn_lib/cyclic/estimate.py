"""Time and memory of a cyclic run before it starts, from its flops and its tensors.

:func:`cldyn_lib.run_cyclic` prints :func:`describe_estimate` before any run longer than
:data:`LONG_RUN_S`. Taught in the book's introduction (*Runs that survive*).
"""

from __future__ import annotations

from ..models import causal_lm as clm
from .state import eval_chunk

LONG_RUN_S = 60  #: print the estimated time and memory before runs longer than this

#: sustained fp32 training throughput assumed for estimates (FLOP/s); deliberately modest
THROUGHPUT = {"cpu": 2e10, "cuda": 2e13}
#: fixed cost of one training step and of one evaluation forward (s), whatever the model's
#: size: what dominates small models (a 2-block GPT-2 of width 16 took ~20 ms per step here)
OVERHEAD_S = {"cpu": (1.5e-2, 5e-3), "cuda": (3e-3, 1e-3)}


def estimate_cyclic(state) -> dict[str, float]:
    """Rough time and memory of a cyclic run, from its flops and its tensors.

    Memory: weights in fp32 (4 bytes per parameter), gradients and two Adam moments of the
    trainable ones (12 bytes each; frozen blocks and LoRA train fewer),
    the largest evaluation logits (documents per forward x C x vocabulary x 4 bytes, twice
    for the log-softmax) and the loss buffers. Time: training and evaluation flops over
    :data:`THROUGHPUT`, plus a fixed cost per step and per forward (:data:`OVERHEAD_S`). Both are estimates, good to a factor of a few.
    """
    cfg = state.config
    arch = clm.arch_of(clm.base_model(state.model).config, state.vocab.size)
    seq = arch.flops_per_token(cfg.context) * cfg.context
    E, T, M = cfg.epochs, cfg.n_docs, cfg.steps
    flops = 3 * seq * E * T * M + seq * (E * T + 1) * T
    n_params = sum(p.numel() for p in state.model.parameters())
    n_train = sum(p.numel() for p in state.model.parameters() if p.requires_grad)
    logits = 2 * eval_chunk(state) * cfg.context * state.vocab.size * 4
    memory = 4 * n_params + 12 * n_train + logits + 4 * (E * T + 1) * T + 4 * E * T * M
    kind = "cuda" if state.device == "cuda" else "cpu"
    step_s, eval_s = OVERHEAD_S[kind]
    forwards = (E * T + 1) * -(-T // eval_chunk(state))
    seconds = flops / THROUGHPUT[kind] + E * T * M * step_s + forwards * eval_s
    return {"flops": float(flops), "seconds": float(seconds), "memory_bytes": float(memory)}


def describe_estimate(est: dict[str, float]) -> str:
    """One line for the terminal: the flops, time and memory of :func:`estimate_cyclic`."""
    minutes = est["seconds"] / 60
    when = f"{minutes:.0f} min" if minutes >= 1 else f"{est['seconds']:.0f} s"
    return (
        f"estimated: {est['flops']:.2g} FLOP, about {when} and "
        f"{est['memory_bytes'] / 2**30:.2f} GiB (rough; see cldyn_lib.cyclic.estimate)"
    )
