"""Yang et al.'s cyclic engine for K runs at once: one batched GPT-NeoX.

:func:`run_cyclic_batched` takes K :class:`~cldyn_lib.CyclicConfig` that differ in ``seed``
and ``lr``; each run keeps its own documents, vocabulary, order, initialisation, window
shifts, token masks and Adam state, and the K results equal the separate runs of
:func:`cldyn_lib.run_cyclic` to float tolerance. With ``vocab="docs"`` every seed draws other
documents and so has its own vocabulary size; the runs are padded to the largest one and the
padded logits are set to ``-inf`` (their softmax weight, gradient and Adam update are exactly
0). :func:`run_seeds` is the chapters' entry point: the same config for several seeds, one at
a time or batched.

**GPT-NeoX under vmap** (transformers' own model, not a re-implementation): both attention
implementations, ``"eager"`` and ``"sdpa"``, run under ``vmap`` and ``grad`` when the model
is called with ``input_ids`` only; ``method="batched"`` (the default, faster on a CPU) uses
the stacked weights in :func:`cldyn_lib.models.neox_batched.logits` instead. The spike and
what it found are in ``benchmarks/README.md``. Taught in the appendix *Many runs at once*;
:func:`run_seeds` in *Anticipatory recovery in a language model*.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

import torch
from torch.func import functional_call, grad_and_value, vmap

from ..batching import StackedOptimizer, VmapOptions, autocast, maybe_compile, same_except, tf32
from ..config import ConfigError, check_choice
from ..models import gpt_neox as lm
from ..models import neox_batched
from ..progress import tqdm
from .config import CyclicConfig
from .engine import mask_tokens, run_cyclic, window_start
from .result import CyclicResult, result_of
from .state import eval_chunk, setup_cyclic


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    pad = torch.zeros(rows - t.shape[0], *t.shape[1:], dtype=t.dtype, device=t.device)
    return torch.cat([t, pad])


def run_cyclic_batched(
    configs: Sequence,
    *,
    options: VmapOptions | None = None,
    progress: bool = False,
    method: str = "batched",
) -> list:
    """K cyclic runs (:func:`cldyn_lib.run_cyclic`) as one batched GPT-NeoX.

    ``configs`` may differ in ``seed`` and ``lr``; each run keeps its own documents,
    vocabulary, order, initialisation, window shifts, token masks and Adam state. Returns K
    :class:`~cldyn_lib.CyclicResult` equal to the separate runs to float tolerance.

    ``method="vmap"``: ``torch.func.vmap(grad_and_value(...))`` over ``functional_call`` of
    transformers' GPT-NeoX (eager attention on a CPU); ``"batched"`` (default, faster on a
    CPU): the same stacked weights in :func:`cldyn_lib.models.neox_batched.logits` (one batched
    matmul per layer for all K runs) and ordinary autograd.
    """
    check_choice("method", method, ("vmap", "batched"))

    configs = list(configs)
    same_except(configs, ("seed", "lr"))
    if configs[0].causal_lm:  # the stacked forward is GPT-NeoX's own
        raise ConfigError(
            f"causal_lm must be '' for run_cyclic_batched (it stacks the book's GPT-NeoX "
            f"models); got {configs[0].causal_lm!r}: run your model with run_cyclic"
        )
    options = options or VmapOptions(tf32=configs[0].tf32, bf16=configs[0].bf16)
    t0 = time.perf_counter()
    device = configs[0].check_resources()
    applied = options.check_device(device)
    states = [setup_cyclic(c, device=device) for c in configs]
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
        with autocast(device, options.bf16):
            logits = functional_call(base, ({**p, **f}, b), (), {"input_ids": inputs}).logits
        return lm.document_losses(logits + mask, ids, n)

    def train_loss(p, f, b, mask, inputs, ids, n):
        return doc_losses(p, f, b, mask, inputs, ids, n)[0]

    step_grad = maybe_compile(vmap(grad_and_value(train_loss)), applied)
    eval_fn = vmap(doc_losses)
    if method == "batched":
        ref = states[0].model  # config and rotary embedding only

        def eval_fn(p, f, b, mask, inputs, ids, n):
            with autocast(device, options.bf16):
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

        step_grad = maybe_compile(batched_step, applied)
    chunk = eval_chunk(states[0])

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
    with tf32(device, options.tf32):
        losses[:, 0] = evaluate()
        for episode in tqdm(range(E * T), desc="episodes", disable=not progress):
            epoch, t = divmod(episode, T)
            t1 = time.perf_counter()
            docs = torch.as_tensor([int(s.schedule[epoch, t]) for s in states], device=device)
            if cfg0.optimizer == "sgd" or cfg0.reset_optimizer or episode == 0:
                opt.reset()  # sgd has no state; adam: a fresh state per document (as run_cyclic)
            for m in range(M):
                starts = [window_start(s) for s in states]  # each run's own shifts
                ids = torch.stack([tokens[k, docs[k], a : a + C] for k, a in enumerate(starts)])
                st = torch.as_tensor(starts, device=device)
                n = (lengths[ar, docs] - st).clamp(0, C)
                inputs = torch.stack(
                    [
                        mask_tokens(ids[k], s.config.mask_prob, s.mask_gen)
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
        res = result_of(s, dict(clock))
        res.provenance["vmap"] = {
            "K": K, "index": k, "vocab_padded_to": V, "options": applied, "method": method,
        }  # fmt: skip
        out.append(res)
    return out


def run_seeds(
    config: CyclicConfig, seeds, progress: bool = False, batched: bool = False
) -> list[CyclicResult]:
    """The same run for every seed in ``seeds`` (documents, order and init all change).

    ``batched=True`` trains the seeds as one batched model
    (:func:`run_cyclic_batched`, appendix *Many runs at once*): the same
    results to float tolerance, faster for small models.
    """
    configs = [config.replace(seed=int(s)) for s in seeds]
    if batched and len(configs) > 1:
        return run_cyclic_batched(configs, progress=progress)
    return [run_cyclic(c, progress=progress) for c in configs]
