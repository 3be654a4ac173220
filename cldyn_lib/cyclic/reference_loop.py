"""Yang et al.'s own evaluation loop, for speed comparisons with the engine.

Yang et al.'s code evaluates every document separately after each episode, at batch size 1,
and copies each loss to the host (``.item()``): T forwards and T host syncs per evaluation.
:func:`reference_style_run` is :func:`cldyn_lib.run_cyclic` with that evaluation and
everything else the same (the same state from :func:`cldyn_lib.setup_cyclic`, the same
training steps, ``no_grad`` evaluation at the same points), so the two loss matrices agree to
float tolerance and only the time differs. Used by ``benchmarks/cyclic_eval.py`` and the GPU
speed table; taught in the appendix *Many runs at once*.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .config import CyclicConfig
from .engine import autocast, train_episode
from .state import setup_cyclic


def reference_style_run(config: CyclicConfig, epochs: int | None = None) -> tuple[np.ndarray, dict]:
    """Train ``config`` (its first ``epochs`` epochs) and evaluate one document at a time;
    returns the loss matrix and ``{setup_s, train_s, eval_s, total_s}``."""
    t0 = time.perf_counter()
    state = setup_cyclic(config, device=config.check_resources())
    E = config.epochs if epochs is None else epochs
    T, C = config.n_docs, config.context
    s = state.docs.eval_start
    losses = np.zeros((E * T + 1, T))

    @torch.no_grad()
    def evaluate_one_by_one() -> list[float]:
        row = []
        for t in range(T):
            n = int(min(max(int(state.lengths[t]) - s, 0), C))  # truncated, no padding
            ids = state.tokens[t : t + 1, s : s + n]
            with autocast(state):
                logits = state.model(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
            row.append(loss.item())  # a host sync per document
        return row

    def sync():
        if state.device == "cuda":
            torch.cuda.synchronize()

    clock = {"setup_s": time.perf_counter() - t0, "train_s": 0.0, "eval_s": 0.0}
    losses[0] = evaluate_one_by_one()
    for episode in range(E * T):
        epoch, k = divmod(episode, T)
        t1 = time.perf_counter()
        train_episode(state, int(state.schedule[epoch, k]))
        state.episode += 1
        sync()
        t2 = time.perf_counter()
        losses[episode + 1] = evaluate_one_by_one()
        clock["train_s"] += t2 - t1
        clock["eval_s"] += time.perf_counter() - t2
    clock["total_s"] = time.perf_counter() - t0
    return losses, clock
