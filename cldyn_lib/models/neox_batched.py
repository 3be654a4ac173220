"""K GPT-NeoX models of one shape in one forward pass: stacked weights, batched matmuls.

``torch.func.vmap`` over transformers' own GPT-NeoX works (see :mod:`cldyn_lib.cyclic.batched`),
but on a CPU its per-operator overhead eats most of the gain for the book's small models.
:func:`logits` is the same computation written for stacked weights: each ``nn.Linear``
becomes one ``baddbmm`` over the K runs, layer norms normalise then apply each run's scale
and shift, attention folds the K runs into the batch. Rotary embeddings and the activation
come from the transformers model itself, so only the wiring is re-written here; a test
checks the logits against the transformers model for every run. Parallel residual
(Pythia's) and sequential residual are both supported; no dropout, no cache, no padding
mask (the cyclic engine masks padding in the loss, as transformers does without a mask).

Used by :func:`cldyn_lib.run_cyclic_batched` (``method="batched"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (K, N, in), w (K, out, in), b (K, out) -> (K, N, out)."""
    if b is None:
        return torch.bmm(x, w.transpose(1, 2))
    return torch.baddbmm(b[:, None], x, w.transpose(1, 2))


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=eps) * w[:, None] + b[:, None]


def logits(params: dict[str, torch.Tensor], ids: torch.Tensor, model) -> torch.Tensor:
    """Logits (K, B, C, V) of K stacked GPT-NeoX models (``params`` as named in ``model``,
    each with a leading K axis) on ``ids`` (K, B, C). ``model`` supplies the config and the
    rotary embedding (its own weights are not used)."""
    from transformers.activations import ACT2FN
    from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb

    cfg = model.config
    K, B, C = ids.shape
    d, H = cfg.hidden_size, cfg.num_attention_heads
    hd, eps = d // H, cfg.layer_norm_eps
    act = ACT2FN[cfg.hidden_act]
    emb = params["gpt_neox.embed_in.weight"]  # (K, V, d)
    h = emb[torch.arange(K, device=ids.device)[:, None, None], ids]  # (K, B, C, d)
    pos = torch.arange(C, device=ids.device)[None]
    cos, sin = model.gpt_neox.rotary_emb(h, pos)  # (1, C, rotary dims)
    h = h.reshape(K, B * C, d)
    causal = torch.ones(C, C, dtype=torch.bool, device=ids.device).triu(1)
    for i in range(cfg.num_hidden_layers):
        p = lambda name: params[f"gpt_neox.layers.{i}.{name}"]  # noqa: E731
        x = _layer_norm(h, p("input_layernorm.weight"), p("input_layernorm.bias"), eps)
        qkv = _linear(x, p("attention.query_key_value.weight"), p("attention.query_key_value.bias"))
        qkv = qkv.view(K * B, C, H, 3 * hd).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        scores = torch.matmul(q, k.transpose(2, 3)) * hd**-0.5
        scores = scores.masked_fill(causal, torch.finfo(scores.dtype).min)
        attn = torch.matmul(F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
        attn = attn.transpose(1, 2).reshape(K, B * C, d)
        attn = _linear(attn, p("attention.dense.weight"), p("attention.dense.bias"))
        ln2 = ("post_attention_layernorm.weight", "post_attention_layernorm.bias")
        if cfg.use_parallel_residual:
            y = _layer_norm(h, p(ln2[0]), p(ln2[1]), eps)
            h = _mlp(y, p, act) + attn + h
        else:
            a = attn + h
            h = _mlp(_layer_norm(a, p(ln2[0]), p(ln2[1]), eps), p, act) + a
    h = _layer_norm(
        h, params["gpt_neox.final_layer_norm.weight"], params["gpt_neox.final_layer_norm.bias"], eps
    )
    head = [n for n in params if n not in _body_names(params)][0]
    out = _linear(h, params[head], None)
    return out.view(K, B, C, -1)


def _mlp(x, p, act):
    x = _linear(x, p("mlp.dense_h_to_4h.weight"), p("mlp.dense_h_to_4h.bias"))
    return _linear(act(x), p("mlp.dense_4h_to_h.weight"), p("mlp.dense_4h_to_h.bias"))


def _body_names(params) -> set[str]:
    return {n for n in params if n.startswith("gpt_neox.")}
