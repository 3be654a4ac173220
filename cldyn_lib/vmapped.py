"""Many runs as one batched model: K seeds or learning rates trained with ``torch.func.vmap``.

The experiments of both papers are sweeps (seeds x learning rates x sizes) of small models,
and a small model run alone wastes the hardware: on a CPU each batch-1 step is mostly Python
and framework overhead, on a GPU mostly kernel launches. Here K runs of *one architecture*
become one batched model: their weights are stacked along a new leading axis
(``torch.func.stack_module_state``), one forward/backward over all of them is
``vmap(grad_and_value(loss))`` around ``functional_call``, and the optimizer is a small
functional Adam/SGD on the stacked tensors with a state (and a learning rate) per run.

Everything that makes run k *run k* is built by the single-run engines themselves and then
stacked, so the K results equal K separate runs to float tolerance (tests check it):

- :func:`run_transfer_vmapped`: paper A's transfer loop (:mod:`cldyn_lib.transfer`), K
  configs that differ in ``seed`` (the fresh head, the IID order), ``lr`` and ``protocol``;
  one shared pre-trained ConvNet or one per run (a pre-training seed band).
- :func:`run_cyclic_vmapped`: paper B's cyclic engine (:mod:`cldyn_lib.cyclic`), K configs
  that differ in ``seed`` (documents, order, initialisation, shifts, masks) and ``lr``. With
  ``vocab="docs"`` every seed draws other documents and so has its own vocabulary size; the
  runs are padded to the largest one and the padded logits are set to ``-inf`` (their
  softmax weight is exactly 0, their gradient exactly 0, their Adam update exactly 0).

**GPT-NeoX under vmap** (transformers' own model, not a re-implementation): both attention
implementations, ``"eager"`` and ``"sdpa"``, run under ``vmap`` and ``grad`` when the model
is called with ``input_ids`` only. The spike and what it found are in
``benchmarks/README.md``.

**Options** (:class:`VmapOptions`, recorded in each result's provenance): ``foreach`` (the
optimizer updates all tensors with ``torch._foreach_*`` kernels), ``compile`` (wrap the
step in ``torch.compile``; CUDA only, on a CPU it is skipped and the provenance says so),
``tf32`` and ``bf16`` (CUDA only, off by default because they change the numbers).

Measured speed-ups are in ``benchmarks/README.md`` (``benchmarks/vmap.py``). Taught in the
appendix *Running many runs and sweeps*.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from .config import Config, ConfigError, check_choice, resolve_device

# ---------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class VmapOptions(Config):
    """Execution options of a vmapped run; all off by default where they change numerics."""

    foreach: bool = True  #: optimizer updates with torch._foreach_* kernels (same numbers)
    compile: bool = False  #: torch.compile the training step (CUDA only; skipped on a CPU)
    tf32: bool = False  #: CUDA only: TF32 matmuls (changes the numbers)
    bf16: bool = False  #: CUDA only: bfloat16 autocast in forward passes (changes the numbers)

    def validate(self) -> None:
        for name in ("foreach", "compile", "tf32", "bf16"):
            check_choice(name, getattr(self, name), (True, False))

    def check_device(self, device: str) -> dict:
        """Raise for tf32/bf16 without CUDA; return what will actually be applied."""
        if device != "cuda" and (self.tf32 or self.bf16):
            raise ConfigError("tf32 and bf16 need CUDA; this run is on the CPU (float32)")
        applied = {**self.to_dict(), "device": device}
        if self.compile and device != "cuda":
            applied["compile"] = "skipped: torch.compile is used on CUDA only"
        return applied


def _autocast(device: str, bf16: bool):
    if bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _tf32(device: str, on: bool):
    if device != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _maybe_compile(fn, applied: dict):
    if applied.get("compile") is True:
        return torch.compile(fn, dynamic=False)
    return fn


# ---------------------------------------------------------------- the optimizer


class StackedOptimizer:
    """Adam or SGD(momentum) on stacked parameters ``{name: (K, ...)}``, one state per run.

    The update is torch's own formula (``torch.optim.Adam``/``SGD``, no weight decay), with a
    learning rate per run (``lr`` of shape (K,)). ``active`` (K,) bool freezes runs that have
    stopped (a diverged transfer run keeps its last weights, as a separate run would).
    """

    def __init__(self, kind: str, lr: torch.Tensor, *, momentum: float = 0.0, foreach=True):
        check_choice("optimizer", kind, ("adam", "sgd"))
        self.kind, self.lr, self.momentum, self.foreach = kind, lr, momentum, foreach
        self.betas, self.eps = (0.9, 0.999), 1e-8
        self.reset()

    def reset(self) -> None:
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0

    def _lr(self, p: torch.Tensor) -> torch.Tensor:
        return self.lr.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, params: dict, grads: dict, active: torch.Tensor | None = None) -> None:
        names = list(grads)
        ps, gs = [params[n] for n in names], [grads[n] for n in names]
        if active is not None and not bool(active.all()):
            keep = [active.view(-1, *([1] * (g.dim() - 1))) for g in gs]
            gs = [torch.where(k, g, torch.zeros_like(g)) for k, g in zip(keep, gs)]
        else:
            keep = None
        self.steps += 1
        if self.kind == "sgd":
            if self.momentum:
                if not self.state:
                    self.state = {n: [g.clone()] for n, g in zip(names, gs)}
                else:
                    bufs = [self.state[n][0] for n in names]
                    self._mul_add(bufs, self.momentum, gs)
                gs = [self.state[n][0] for n in names]
            updates = [g * self._lr(g) for g in gs]
        else:
            b1, b2 = self.betas
            if not self.state:
                self.state = {
                    n: [torch.zeros_like(g), torch.zeros_like(g)] for n, g in zip(names, gs)
                }
            ms = [self.state[n][0] for n in names]
            vs = [self.state[n][1] for n in names]
            if self.foreach:
                torch._foreach_lerp_(ms, gs, 1 - b1)
                torch._foreach_mul_(vs, b2)
                torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
            else:
                for m, v, g in zip(ms, vs, gs):
                    m.lerp_(g, 1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
            bc1, bc2 = 1 - b1**self.steps, math.sqrt(1 - b2**self.steps)
            updates = []
            for m, v in zip(ms, vs):
                denom = (v.sqrt() / bc2).add_(self.eps)
                updates.append(m / denom * (self._lr(m) / bc1))
        if keep is not None:
            updates = [torch.where(k, u, torch.zeros_like(u)) for k, u in zip(keep, updates)]
        if self.foreach:
            torch._foreach_sub_(ps, updates)
        else:
            for p, u in zip(ps, updates):
                p.sub_(u)

    def _mul_add(self, bufs, momentum, gs):
        if self.foreach:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, gs)
        else:
            for b, g in zip(bufs, gs):
                b.mul_(momentum).add_(g)


def _same_except(configs: Sequence[Config], free: tuple[str, ...]) -> None:
    if not configs:
        raise ConfigError("configs must not be empty")
    first = configs[0]
    for c in configs[1:]:
        if type(c) is not type(first):
            raise ConfigError("all configs of a vmapped run must have the same type")
        for f in dataclasses.fields(first):
            if f.name not in free and getattr(c, f.name) != getattr(first, f.name):
                raise ConfigError(
                    f"vmapped runs may differ only in {', '.join(free)}; field {f.name} "
                    f"differs ({getattr(first, f.name)!r} vs {getattr(c, f.name)!r})"
                )


# ---------------------------------------------------------------- paper A: transfer


def run_transfer_vmapped(
    configs: Sequence,
    model,
    data=None,
    *,
    options: VmapOptions | None = None,
    method: str = "grouped",
) -> list:
    """K transfer runs (:func:`cldyn_lib.transfer.run_transfer`) as one batched model.

    ``configs`` may differ in ``seed``, ``lr`` and ``protocol``; ``model`` is one pre-trained
    ConvNet shared by all runs or a list of K (left unchanged). Returns K
    :class:`~cldyn_lib.transfer.TransferResult` equal to the separate runs to float
    tolerance (``model`` of each result is ``None``).

    ``method="vmap"``: ``torch.func`` (``vmap(grad_and_value(...))`` over ``functional_call``
    of the ConvNet); ``"grouped"`` (default, faster on a CPU): the same stacked parameters in
    a hand-batched forward (:func:`grouped_forward`: K convs as one grouped convolution) and
    ordinary autograd.
    """
    from . import transfer as tr

    configs = list(configs)
    _same_except(configs, ("seed", "lr", "protocol"))
    _batched_transfer_supports(configs[0])
    options = options or VmapOptions()
    applied = options.check_device("cpu")
    cfg0, K = configs[0], len(configs)
    data = tr.load_data(cfg0) if data is None else data
    if data.n_classes != cfg0.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={cfg0.n_classes}")
    models = list(model) if isinstance(model, (list, tuple)) else [model] * K
    if len(models) != K:
        raise ConfigError(f"got {len(models)} models for {K} configs")
    t0 = time.perf_counter()
    states = [tr.initial_state(c, m, data) for c, m in zip(configs, models)]
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

        step_grad = _maybe_compile(vmap(grad_and_value(loss_fn)), applied)
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
    evaluation and unrotated tasks; other options of :class:`~cldyn_lib.transfer.TransferConfig`
    (the optimizer chapters' variants) run with :func:`cldyn_lib.transfer.run_transfer`."""
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
    from .convnet import ConvNet

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


# ---------------------------------------------------------------- paper B: cyclic LM


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    pad = torch.zeros(rows - t.shape[0], *t.shape[1:], dtype=t.dtype, device=t.device)
    return torch.cat([t, pad])


def run_cyclic_vmapped(
    configs: Sequence,
    *,
    options: VmapOptions | None = None,
    progress: bool = False,
    method: str = "batched",
) -> list:
    """K cyclic runs (:func:`cldyn_lib.cyclic.run_cyclic`) as one batched GPT-NeoX.

    ``configs`` may differ in ``seed`` and ``lr``; each run keeps its own documents,
    vocabulary, order, initialisation, window shifts, token masks and Adam state. Returns K
    :class:`~cldyn_lib.cyclic.CyclicResult` equal to the separate runs to float tolerance.

    ``method="vmap"``: ``torch.func.vmap(grad_and_value(...))`` over ``functional_call`` of
    transformers' GPT-NeoX (eager attention on a CPU); ``"batched"`` (default, faster on a
    CPU): the same stacked weights in :func:`cldyn_lib.neox_batched.logits` (one batched
    matmul per layer for all K runs) and ordinary autograd.
    """
    from tqdm.auto import tqdm

    from . import cyclic, lm, neox_batched

    check_choice("method", method, ("vmap", "batched"))

    configs = list(configs)
    _same_except(configs, ("seed", "lr"))
    options = options or VmapOptions(tf32=configs[0].tf32, bf16=configs[0].bf16)
    t0 = time.perf_counter()
    device = configs[0].check_resources()
    applied = options.check_device(device)
    states = [cyclic.setup(c, device=device) for c in configs]
    cfg0, K = configs[0], len(configs)
    E, T, M, C = cfg0.epochs, cfg0.n_docs, cfg0.steps, cfg0.context
    sizes = [s.vocab.size for s in states]
    V = max(sizes)
    vocab_params = {"gpt_neox.embed_in.weight"}
    head_name = [
        n
        for n, p in states[0].model.named_parameters()
        if p is lm.output_head(states[0].model).weight
    ][0]
    vocab_params.add(head_name)
    trainable = {n for n, p in states[0].model.named_parameters() if p.requires_grad}
    stacked = {}
    for name, _ in states[0].model.named_parameters():
        ts = [dict(s.model.named_parameters())[name].detach() for s in states]
        if name in vocab_params:
            ts = [_pad_rows(t, V) for t in ts]
        stacked[name] = torch.stack(ts)
    buffers = {
        n: torch.stack([dict(s.model.named_buffers())[n] for s in states])
        for n, _ in states[0].model.named_buffers()
    }
    params = {n: t for n, t in stacked.items() if n in trainable}
    frozen = {n: t for n, t in stacked.items() if n not in trainable}
    base_cfg = copy.deepcopy(states[0].model.config)
    base_cfg.vocab_size = V
    # sdpa has no vmap batching rule on the CPU (a slow per-run loop); eager is batched
    base_cfg._attn_implementation = "eager" if device == "cpu" else base_cfg._attn_implementation
    base = type(states[0].model)(base_cfg).to("meta")
    logit_mask = torch.zeros(K, V, device=device)
    for k, n in enumerate(sizes):
        logit_mask[k, n:] = float("-inf")
    tokens = torch.stack([s.tokens for s in states])  # (K, T, W)
    lengths = torch.stack([s.lengths for s in states])  # (K, T)
    s_eval = states[0].docs.eval_start

    def doc_losses(p, f, b, mask, inputs, ids, n):
        with _autocast(device, options.bf16):
            logits = functional_call(base, ({**p, **f}, b), (), {"input_ids": inputs}).logits
        return lm.document_losses(logits + mask, ids, n)

    def train_loss(p, f, b, mask, inputs, ids, n):
        return doc_losses(p, f, b, mask, inputs, ids, n)[0]

    step_grad = _maybe_compile(vmap(grad_and_value(train_loss)), applied)
    eval_fn = vmap(doc_losses)
    if method == "batched":
        ref = states[0].model  # config and rotary embedding only

        def eval_fn(p, f, b, mask, inputs, ids, n):
            with _autocast(device, options.bf16):
                lg = neox_batched.logits({**p, **f}, inputs, ref)  # (K, B, C, V)
            lg = lg + mask[:, None, None, :]
            per = lm.document_losses(lg.flatten(0, 1), ids.flatten(0, 1), n.flatten())
            return per.view(ids.shape[:2])

        def batched_step(p, f, b, mask, inputs, ids, n):
            leaves = {k: t.requires_grad_() for k, t in p.items()}
            per_run = eval_fn(leaves, f, b, mask, inputs, ids, n)[:, 0]
            grads = torch.autograd.grad(per_run.sum(), list(leaves.values()))
            for t in leaves.values():
                t.requires_grad_(False)
            return dict(zip(leaves, grads)), per_run.detach()

        step_grad = _maybe_compile(batched_step, applied)
    chunk = cyclic.eval_chunk(states[0])

    @torch.no_grad()
    def evaluate() -> torch.Tensor:
        ids = tokens[:, :, s_eval : s_eval + C]
        n = (lengths - s_eval).clamp(0, C)
        out = [
            eval_fn(
                params,
                frozen,
                buffers,
                logit_mask,
                ids[:, a : a + chunk],
                ids[:, a : a + chunk],
                n[:, a : a + chunk],
            )  # fmt: skip
            for a in range(0, T, chunk)
        ]
        return torch.cat(out, dim=1)  # (K, T)

    lr = torch.tensor([c.learning_rate for c in configs], device=device)
    opt = StackedOptimizer(cfg0.optimizer, lr, foreach=options.foreach)
    losses = torch.zeros(K, E * T + 1, T, device=device)
    train_losses = torch.zeros(K, E * T, M, device=device)
    clock = {"setup_s": time.perf_counter() - t0, "train_s": 0.0, "eval_s": 0.0}
    ar = torch.arange(K, device=device)
    with _tf32(device, options.tf32):
        losses[:, 0] = evaluate()
        for episode in tqdm(range(E * T), desc="episodes", disable=not progress):
            epoch, t = divmod(episode, T)
            t1 = time.perf_counter()
            docs = torch.as_tensor([int(s.schedule[epoch, t]) for s in states], device=device)
            if cfg0.optimizer == "sgd" or cfg0.reset_optimizer or episode == 0:
                opt.reset()  # sgd has no state; adam: a fresh state per document (as run_cyclic)
            for m in range(M):
                starts = [cyclic.window_start(s) for s in states]  # each run's own shifts
                ids = torch.stack([tokens[k, docs[k], a : a + C] for k, a in enumerate(starts)])
                st = torch.as_tensor(starts, device=device)
                n = (lengths[ar, docs] - st).clamp(0, C)
                inputs = torch.stack(
                    [
                        cyclic.mask_tokens(ids[k], s.config.mask_prob, s.mask_gen)
                        for k, s in enumerate(states)
                    ]  # fmt: skip
                )
                grads, values = step_grad(
                    params, frozen, buffers, logit_mask, inputs[:, None], ids[:, None], n[:, None]
                )
                opt.step(params, grads)
                train_losses[:, episode, m] = values.detach()
            t2 = time.perf_counter()
            losses[:, episode + 1] = evaluate()
            clock["train_s"] += t2 - t1
            clock["eval_s"] += time.perf_counter() - t2
    clock["total_s"] = time.perf_counter() - t0
    host, host_train = losses.cpu().numpy(), train_losses.cpu().numpy()
    out = []
    for k, s in enumerate(states):
        s.host_losses[:] = host[k]
        s.train_losses = torch.from_numpy(host_train[k])
        s.episode = E * T
        with torch.no_grad():  # the run's final weights back into its own model
            for name, p in s.model.named_parameters():
                p.copy_(
                    stacked[name][k][: p.shape[0]] if name in vocab_params else stacked[name][k]
                )
        res = cyclic._result(s, dict(clock))
        res.provenance["vmap"] = {
            "K": K, "index": k, "vocab_padded_to": V, "options": applied, "method": method,
        }  # fmt: skip
        out.append(res)
    return out


def run_cyclic_seeds(config, seeds, *, options: VmapOptions | None = None) -> list:
    """:func:`cldyn_lib.cyclic.run_seeds` as one vmapped run (same results to float tolerance)."""
    return run_cyclic_vmapped([config.replace(seed=int(s)) for s in seeds], options=options)


def default_device() -> str:
    return resolve_device("auto")
