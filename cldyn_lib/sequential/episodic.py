"""The episodic pre-training modes of Frati et al.: ASB and Meta-ASB.

An episode picks one class, zaps its row of the head, takes ``inner_steps`` SGD steps of
batch 1 on it, then one Adam step on those images plus ``remember`` random ones. Meta-ASB's
Adam step differentiates through the inner steps (:func:`meta_gradient`, second order,
written with ``torch.func`` instead of the ``higher`` library). The modes are chosen by
:class:`~cldyn_lib.PretrainConfig` and run by :func:`cldyn_lib.pretrain`.

Taught in the chapter *Zapping and transfer shock*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..progress import tqdm
from .zapping import zap

EPISODES_PER_CHUNK = 100  #: asb / meta_asb: episodes between ``on_chunk`` calls


def train_episodic(config, state, data, progress=False, on_chunk=None):
    """ASB and Meta-ASB: per episode one class, zap its row, ``inner_steps`` batch-1 SGD
    steps, then one Adam step on those images plus ``remember`` random ones.

    Starts at episode ``state.step`` (a resumed state); ``on_chunk(state, k)`` is called after
    every :data:`EPISODES_PER_CHUNK` episodes, k counting the chunks."""
    model, opt = state.model, state.optimizer
    device = next(model.parameters()).device
    meta = config.mode == "meta_asb"
    episodes = config.meta_episodes if meta else config.asb_episodes
    all_x, all_y = data.flat("train")
    n_train = data.train_x.shape[1]
    inner_opt = torch.optim.SGD(model.parameters(), lr=config.inner_lr)
    for _ in tqdm(range(state.step, episodes), desc=config.mode, disable=not progress):
        c = int(state.rng.integers(data.n_classes))
        picks = state.rng.integers(n_train, size=config.inner_steps)
        inner_x = data.train_x[c, picks].to(device)
        inner_y = torch.full((config.inner_steps,), c, device=device)
        others = torch.from_numpy(state.rng.integers(len(all_x), size=config.remember))
        outer_x = torch.cat([inner_x, all_x[others].to(device)])
        outer_y = torch.cat([inner_y, all_y[others].to(device)])
        zap(model.head, c, init=config.zap_init, generator=state.generator)
        if meta:
            grads, loss = meta_gradient(model, inner_x, inner_y, outer_x, outer_y, config.inner_lr)
            for p, g in zip(model.parameters(), grads.values()):
                p.grad = g
        else:
            for i in range(config.inner_steps):
                inner_loss = F.cross_entropy(model(inner_x[i : i + 1]), inner_y[i : i + 1])
                inner_opt.zero_grad(set_to_none=True)
                inner_loss.backward()
                inner_opt.step()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(outer_x), outer_y)
            loss.backward()
        opt.step()
        state.step += 1
        state.losses.append(loss.item())
        chunk, rest = divmod(state.step, EPISODES_PER_CHUNK)
        if on_chunk is not None and rest == 0 and state.step < episodes:
            on_chunk(state, chunk)


def inner_loop(model, params: dict, inner_x, inner_y, inner_lr: float, create_graph=True):
    """``len(inner_x)`` SGD steps of batch 1 on a *functional* copy of the weights.

    Returns the adapted weights as a dict; with ``create_graph=True`` they stay differentiable
    functions of ``params`` (what makes Meta-ASB second order).
    """
    fast = dict(params)
    for i in range(len(inner_x)):
        out = functional_call(model, fast, (inner_x[i : i + 1],))
        loss = F.cross_entropy(out, inner_y[i : i + 1])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = {name: w - inner_lr * g for (name, w), g in zip(fast.items(), grads)}
    return fast


def meta_gradient(model, inner_x, inner_y, outer_x, outer_y, inner_lr: float, second_order=True):
    """Meta-ASB's gradient: d/dW of the batch loss after the inner steps taken from W.

    Returns ``(grads, loss)``: a dict name -> gradient for every parameter of ``model``
    (evaluated at its current weights W) and the outer loss. ``second_order=False`` gives
    the first-order approximation (gradient at the adapted weights), for comparison.
    """
    params = {n: p for n, p in model.named_parameters()}
    fast = inner_loop(model, params, inner_x, inner_y, inner_lr, create_graph=second_order)
    if not second_order:
        fast = {n: w.detach().requires_grad_() for n, w in fast.items()}
    loss = F.cross_entropy(functional_call(model, fast, (outer_x,)), outer_y)
    wrt = list(params.values()) if second_order else list(fast.values())
    grads = torch.autograd.grad(loss, wrt)
    return dict(zip(params, grads)), loss.detach()
