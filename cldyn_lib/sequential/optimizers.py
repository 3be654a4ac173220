"""Optimizers written out by hand, so their differences can be switched on one at a time.

:class:`AdamP` is Adam with a free power ``p`` on the second moment. For every parameter,
with gradient ``g`` at step ``t`` (starting at 1)::

    m = b1 * m + (1 - b1) * g            v = b2 * v + (1 - b2) * g**2
    m_hat = m / (1 - b1**t)              v_hat = v / (1 - b2**t)
    w = w - lr * m_hat / (v_hat**p + eps)

- ``p = 1/2`` is Adam (Kingma & Ba 2015; ``torch.optim.Adam`` computes the same numbers up
  to round-off, which the tests check);
- ``p = 1`` is "Adam without the square root": ``v`` is a running estimate of the diagonal
  of the *empirical Fisher* (the mean squared gradient), and dividing by it, not by its
  square root, is a diagonal natural-gradient step with momentum;
- ``b2 = 0`` keeps no second-moment memory (``v_hat = g**2``: with ``p = 1/2`` the step is
  ``m_hat / |g|``); ``b1 = 0`` keeps no momentum (RMSprop with bias correction).

:class:`DiagonalFisher` is the natural-gradient-like optimizer without Adam's other parts:
no momentum, and a Fisher estimate that weighs every step so far equally::

    F = F + (g**2 - F) / t               (the running mean of g**2 over all t steps)
    w = w - lr * g / (F + eps)           (eps: the damping)

At batch size 1 (Frati et al.'s sequential learning) ``g**2`` is the per-example empirical
Fisher; with larger batches it is the square of the batch-mean gradient (documented, not
corrected).

State keys follow ``torch.optim.Adam`` (``step``, ``exp_avg``, ``exp_avg_sq``), so
:class:`MomentTracker` reads the moment estimates of either. Taught in the chapter *Why
Adam remembers*; :func:`build_optimizer` is used by the transfer loop of
:mod:`cldyn_lib.sequential.transfer` (chapter *Optimizers and sequential learning*).
"""

from __future__ import annotations

import math

import numpy as np
import torch

VARIANTS = {
    "sgd": dict(optimizer="sgd", momentum=0.0),
    "sgd_momentum": dict(optimizer="sgd", momentum=0.9),
    "adam": dict(optimizer="adam"),
    "adam_nosqrt": dict(optimizer="adam", adam_power=1.0, eps=1e-3),
    "adam_beta2_0": dict(optimizer="adam", beta2=0.0),
    "adam_beta1_0": dict(optimizer="adam", beta1=0.0),
    "fisher": dict(optimizer="fisher", eps=1e-3),
}
"""Named optimizer settings (``TransferConfig`` overrides) compared in *Why Adam remembers*.
The damping ``eps = 1e-3`` of the two Fisher-like variants is our choice (see the chapter)."""

VARIANT_LABELS = {
    "sgd": "SGD", "sgd_momentum": "SGD + momentum 0.9", "adam": "Adam",
    "adam_nosqrt": "Adam, no square root", "adam_beta2_0": "Adam, beta2 = 0",
    "adam_beta1_0": "Adam, beta1 = 0", "fisher": "diagonal Fisher (NGD-like)",
}  # fmt: skip


class AdamP(torch.optim.Optimizer):
    """Adam with ``v_hat**power`` in the denominator (see the module docstring)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, power=0.5):
        if not lr > 0 or not eps > 0 or not 0 < power <= 1:
            raise ValueError(f"need lr > 0, eps > 0, 0 < power <= 1; got {lr}, {eps}, {power}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must lie in [0, 1); got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, power=power))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group, w, g, state in _with_grads(self, "exp_avg", "exp_avg_sq"):
            b1, b2 = group["betas"]
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            w.sub_(group["lr"] * m_hat / (v_hat.pow(group["power"]) + group["eps"]))
        return loss


class DiagonalFisher(torch.optim.Optimizer):
    """``w -= lr * g / (F + eps)`` with ``F`` the running mean of ``g**2`` over all steps."""

    def __init__(self, params, lr=1e-3, eps=1e-3):
        if not lr > 0 or not eps > 0:
            raise ValueError(f"need lr > 0 and eps > 0; got {lr}, {eps}")
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group, w, g, state in _with_grads(self, "exp_avg_sq"):  # F, named as in Adam
            fisher = state["exp_avg_sq"]
            fisher.add_((g * g - fisher) / state["step"])
            w.sub_(group["lr"] * g / (fisher + group["eps"]))
        return loss


def _with_grads(optimizer: torch.optim.Optimizer, *slots: str):
    """``(group, weight, grad, state)`` for every parameter that has a gradient, with
    ``state["step"]`` already counting this step and a zero tensor per name in ``slots``
    created on the first one (torch's own state names, so ``state_dict`` reads alike)."""
    for group in optimizer.param_groups:
        for w in group["params"]:
            if w.grad is None:
                continue
            state = optimizer.state[w]
            if not state:
                state["step"] = 0
                state.update({name: torch.zeros_like(w) for name in slots})
            state["step"] += 1
            yield group, w, w.grad, state


def build_optimizer(config, params) -> torch.optim.Optimizer:
    """The optimizer a :class:`~cldyn_lib.TransferConfig` asks for.

    ``"sgd"``: ``torch.optim.SGD`` with ``momentum``; ``"adam"``: ``torch.optim.Adam`` when
    ``adam_power`` is 1/2 (the standard optimizer), else :class:`AdamP`; ``"fisher"``:
    :class:`DiagonalFisher` with damping ``eps``.
    """
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    betas = (config.beta1, config.beta2)
    if config.optimizer == "adam" and config.adam_power == 0.5:
        return torch.optim.Adam(params, lr=config.lr, betas=betas, eps=config.eps)
    if config.optimizer == "adam":
        return AdamP(params, lr=config.lr, betas=betas, eps=config.eps, power=config.adam_power)
    return DiagonalFisher(params, lr=config.lr, eps=config.eps)


# ---------------------------------------------------------------- watching the moments

TRACKED = ("grad", "update", "m", "v_rms", "cos_mg")
"""Per step and layer: gradient norm, norm of the weight change, norm of the bias-corrected
first moment, root-mean-square of the bias-corrected second moment (the scale Adam divides
by, squared-rooted), and the cosine between the first moment and the current gradient."""


class MomentTracker:
    """An ``on_step`` callback for :func:`cldyn_lib.sequential.transfer_engine.train_transfer` that records
    :data:`TRACKED` for every layer after every step (NaN where the optimizer keeps no such
    moment; SGD's momentum buffer counts as its first moment). Build it from the state's
    model *before* training. ``reset_at``: step counts after which the optimizer state is
    wiped (an intervention: Adam starting afresh at an epoch boundary)."""

    def __init__(self, model, n_steps: int, layers=None, reset_at=()):
        self.layers = tuple(layers or model.layer_names)
        self.params = {name: list(getattr(model, name).parameters()) for name in self.layers}
        self.stats = np.full((n_steps, len(TRACKED), len(self.layers)), np.nan)
        self.reset_at = set(int(s) for s in reset_at)
        self._last = self._snapshot()

    def _snapshot(self):
        return {k: torch.cat([p.detach().flatten() for p in ps]) for k, ps in self.params.items()}

    @torch.no_grad()
    def __call__(self, state, loss: float) -> None:
        t = state.step - 1  # the step just taken
        opt = state.optimizer
        now = self._snapshot()
        for j, name in enumerate(self.layers):
            ps = self.params[name]
            if not any(p.grad is not None for p in ps):
                continue
            g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                           for p in ps])  # fmt: skip
            row = [g.norm().item(), (now[name] - self._last[name]).norm().item()]
            row += [math.nan] * 3
            st = [opt.state.get(p, {}) for p in ps]
            b1, b2 = opt.param_groups[0].get("betas", (0.0, 0.0))
            m = None
            if all("exp_avg" in s for s in st):
                m = torch.cat([s["exp_avg"].flatten() for s in st])
                m = m / (1 - b1 ** float(st[0]["step"]))
            elif all("momentum_buffer" in s and s["momentum_buffer"] is not None for s in st):
                m = torch.cat([s["momentum_buffer"].flatten() for s in st])
            if m is not None:
                row[2] = m.norm().item()
                den = (m.norm() * g.norm()).item()
                row[4] = (m @ g).item() / den if den > 0 else math.nan
            if all("exp_avg_sq" in s for s in st):
                v = torch.cat([s["exp_avg_sq"].flatten() for s in st])
                row[3] = (v / (1 - b2 ** float(st[0]["step"]))).mean().sqrt().item()
            self.stats[t, :, j] = row
        self._last = now
        if state.step in self.reset_at:
            opt.state.clear()
