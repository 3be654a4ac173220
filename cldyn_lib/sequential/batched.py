"""Frati et al.'s transfer loop for K runs at once: one batched ConvNet (or linear probe).

:func:`run_transfer_batched` takes K :class:`~cldyn_lib.TransferConfig` that differ in
``seed``, ``lr`` and ``protocol``, one shared pre-trained ConvNet or one per run, and returns
K results equal to the separate runs of :func:`cldyn_lib.run_transfer` to float tolerance.
The shared machinery is in :mod:`cldyn_lib.batching`. Taught in the appendix *Many runs at
once*.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from ..batching import StackedOptimizer, VmapOptions, maybe_compile, same_except
from ..config import ConfigError, check_choice
from ..models.convnet import ConvNet
from . import transfer as tr
from . import transfer_engine as tre


def run_transfer_batched(
    configs: Sequence,
    model,
    data=None,
    *,
    options: VmapOptions | None = None,
    method: str = "grouped",
) -> list:
    """K transfer runs (:func:`cldyn_lib.run_transfer`) as one batched model.

    ``configs`` may differ in ``seed``, ``lr`` and ``protocol``; ``model`` is one pre-trained
    ConvNet shared by all runs or a list of K (left unchanged). Returns K
    :class:`~cldyn_lib.TransferResult` equal to the separate runs to float
    tolerance (``model`` of each result is ``None``).

    ``method="vmap"``: ``torch.func`` (``vmap(grad_and_value(...))`` over ``functional_call``
    of the ConvNet); ``"grouped"`` (default, faster on a CPU): the same stacked parameters in
    a hand-batched forward (:func:`grouped_forward`: K convs as one grouped convolution) and
    ordinary autograd.
    """
    configs = list(configs)
    same_except(configs, ("seed", "lr", "protocol"))
    _batched_transfer_supports(configs[0])
    options = options or VmapOptions()
    applied = options.check_device("cpu")
    cfg0, K = configs[0], len(configs)
    data = tr.load_transfer_data(cfg0) if data is None else data
    if data.n_classes != cfg0.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={cfg0.n_classes}")
    models = list(model) if isinstance(model, (list, tuple)) else [model] * K
    if len(models) != K:
        raise ConfigError(f"got {len(models)} models for {K} configs")
    t0 = time.perf_counter()
    states = [tre.initial_state(c, m, data) for c, m in zip(configs, models)]
    x, y = data.flat("train")
    test_x = data.test_x
    head_only = cfg0.train == "head"
    if head_only:  # frozen features, once per distinct pre-trained model
        with torch.no_grad():
            feats, tests = {}, {}
            for k, s in enumerate(states):
                key = id(models[k])
                if key not in feats:
                    feats[key] = s.model.features(x)
                    tests[key] = s.model.features(test_x.flatten(0, 1))
            xs = torch.stack([feats[id(m)] for m in models])  # (K, N, F)
            txs = torch.stack([tests[id(m)] for m in models])  # (K, C*5, F)
        modules = [s.model.head for s in states]
    else:
        xs, txs = x, test_x.flatten(0, 1)  # shared images
        modules = [s.model for s in states]
    params, buffers = stack_module_state(modules)
    params = {n: t.detach() for n, t in params.items()}  # updated in place
    method = _check_method(method, modules[0])
    x_dim = 0 if head_only else None
    if method == "vmap":
        base = copy.deepcopy(modules[0]).to("meta")

        def forward(p, b, xb):
            return functional_call(base, (p, b), (xb,))

        def loss_fn(p, b, xb, yb):
            return F.cross_entropy(forward(p, b, xb), yb)

        step_grad = maybe_compile(vmap(grad_and_value(loss_fn)), applied)
        eval_fwd = vmap(forward, in_dims=(0, 0, x_dim))
    else:
        conv = None if head_only else modules[0]

        def eval_fwd(p, b, xb):
            return grouped_forward(p, xb, conv, shared=x_dim is None)

        def step_grad(p, b, xb, yb):
            leaves = {n: t.requires_grad_() for n, t in p.items()}
            logits = grouped_forward(leaves, xb, conv)
            per_run = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
            per_run = per_run.view(yb.shape).mean(1)
            grads = torch.autograd.grad(per_run.sum(), list(leaves.values()))
            for t in leaves.values():
                t.requires_grad_(False)
            return dict(zip(leaves, grads)), per_run.detach()

    lr = torch.tensor([c.lr for c in configs])
    opt = StackedOptimizer(cfg0.optimizer, lr, momentum=cfg0.momentum, foreach=options.foreach)
    seen, trained_at = tr.eval_schedule(cfg0)
    Kimg = data.train_x.shape[1]
    steps_at = tr.eval_steps(cfg0, Kimg)  # (rows,) steps before each evaluation
    eval_at = {int(s): row for row, s in enumerate(steps_at)}
    n_steps = len(states[0].order)
    active = torch.ones(K, dtype=torch.bool)
    C = data.n_classes
    y_test = torch.arange(C).repeat_interleave(test_x.shape[1])
    train_loss = np.full((K, n_steps), np.nan)
    acc = np.full((K, len(seen), C), np.nan)
    loss = np.full((K, len(seen), C), np.nan)
    for step in range(n_steps + 1):
        row = eval_at.get(step)
        if row is not None:
            with torch.no_grad():
                logits = eval_fwd(params, buffers, txs)  # (K, C*5, outputs)
                ce = F.cross_entropy(logits.flatten(0, 1), y_test.repeat(K), reduction="none")
                ce = ce.view(K, C, -1).mean(2)
                hit = (logits.argmax(2) == y_test).float().view(K, C, -1).mean(2)
            for k in range(K):
                if active[k]:
                    acc[k, row], loss[k, row] = hit[k].numpy(), ce[k].numpy()
        if step == n_steps:
            break
        idx = torch.as_tensor(np.stack([s.order[step] for s in states]).astype(np.int64))  # (K, B)
        xb = xs[torch.arange(K)[:, None], idx] if head_only else xs[idx]
        grads, values = step_grad(params, buffers, xb, y[idx])
        vals = values.detach().numpy()
        train_loss[active.numpy(), step] = vals[active.numpy()]
        finite = torch.from_numpy(np.isfinite(vals))
        active &= finite
        if not bool(active.any()):
            break
        opt.step(params, grads, active)
    seconds = time.perf_counter() - t0
    out = []
    for k, c in enumerate(configs):
        bad = np.flatnonzero(~np.isfinite(train_loss[k]))
        res = tr.TransferResult(
            c, acc[k], loss[k], train_loss[k], steps_at, seen, trained_at, data.classes,
            diverged=bool(np.isnan(acc[k, -1]).any()), model=None,
            after_training=tr.training_rows(c), diverged_at=int(bad[0]) if bad.size else -1,
        )  # fmt: skip
        res.vmap = {"K": K, "index": k, "seconds": seconds, "options": applied}
        out.append(res)
    return out


def _batched_transfer_supports(cfg) -> None:
    """The batched transfer loop has Adam/SGD at their default hyperparameters, held-out
    evaluation and unrotated tasks; other options of :class:`~cldyn_lib.TransferConfig`
    (the optimizer chapters' variants) run with :func:`cldyn_lib.run_transfer`."""
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "adam_power": 0.5,
                "eval_split": "test", "task_rotation": 0.0}  # fmt: skip
    check_choice("optimizer (batched transfer)", cfg.optimizer, ("adam", "sgd"))
    for name, value in defaults.items():
        if getattr(cfg, name) != value:
            raise ConfigError(
                f"{name}={getattr(cfg, name)!r} is not supported by the batched transfer loop "
                f"(allowed: {value!r}); run these configs one at a time with run_transfer"
            )


def _check_method(method: str, module) -> str:
    check_choice("method", method, ("vmap", "grouped"))
    if method == "grouped" and not isinstance(module, (ConvNet, torch.nn.Linear)):
        raise ConfigError("method='grouped' needs a ConvNet or its linear head; use 'vmap'")
    return method


def grouped_forward(p: dict, x: torch.Tensor, conv=None, shared: bool = False) -> torch.Tensor:
    """K stacked ConvNets (or heads, ``conv=None``) on a batch per run: logits (K, B, out).

    ``x`` is (K, B, ...) or, with ``shared=True``, one batch (B, ...) for all runs. The K
    convolutions of a layer are one grouped convolution over K x C channels; InstanceNorm
    normalises each (image, channel) on its own, so it applies to the K x C channels as is;
    the head is a batched matmul. Same numbers as K separate forwards up to float round-off.
    """
    K = p["head.weight" if conv is not None else "weight"].shape[0]
    if conv is None:
        w, b = p["weight"], p["bias"]
        if shared:
            x = x.expand(K, *x.shape)
        return torch.baddbmm(b[:, None], x, w.transpose(1, 2))
    B = x.shape[0] if shared else x.shape[1]
    if shared:
        h = x.repeat(1, K, 1, 1)  # (B, K*Cin, H, W)
    else:
        h = x.transpose(0, 1).reshape(B, -1, *x.shape[-2:])
    for blk in range(1, conv.blocks + 1):
        block = getattr(conv, f"conv{blk}")
        w = p[f"conv{blk}.0.weight"]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), padding=block[0].padding, groups=K)
        h = F.instance_norm(
            h, weight=p[f"conv{blk}.1.weight"].reshape(-1), bias=p[f"conv{blk}.1.bias"].reshape(-1),
            eps=block[1].eps,
        )  # fmt: skip
        h = F.relu(h)
        if blk < conv.blocks:
            h = F.max_pool2d(h, 2)
    h = h.reshape(B, K, -1).transpose(0, 1)  # (K, B, features)
    return torch.baddbmm(p["head.bias"][:, None], h, p["head.weight"].transpose(1, 2))
