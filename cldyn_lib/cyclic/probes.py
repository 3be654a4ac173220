"""Probes of cyclic training: gradients, weights and activations (Yang et al., section 4).

A :class:`Probes` object is handed to the engine and records, at every evaluation point,
small fixed-size vectors; at the end of the run it takes the measurements that need the
final checkpoint::

    probes = Probes(ProbeConfig(layer="gpt_neox.layers.1.attention"))
    res = cl.run_cyclic(config, probe=probes)
    out = probes.result()         # a ProbeResult: arrays and structure measures

What it records (N = E*T + 1 checkpoints, row 0 before training, as the loss matrix):

- ``weights`` (N, P): the trainable parameters, flattened; longer than ``max_dims``, a fixed
  random *coordinate subset* of P of them (seeded, the same at every checkpoint) -> weight
  residuals (Eq. 2), their cosine-similarity heat map (Yang et al.'s Fig. 8c) and update sizes (Yang et al.'s Fig. 17b);
- ``head`` (N, P_h): the output layer's weights (subset likewise) -> PCA helix (Yang et al.'s Fig. 9);
- ``acts`` (N, P_a): the input of the output layer on document ``act_doc`` (all its
  positions, flattened) -> similarity matrix (Yang et al.'s Fig. 8d) and update sizes (Yang et al.'s Fig. 17a);
- at the end: the gradient of every document at module ``layer`` (Yang et al.'s Fig. 8a) and the pairwise
  recovery matrix (Yang et al.'s Figs. 8b, 18): from the final weights, kept in memory, M steps on document
  i with a fresh optimiser, then the loss of every document in the engine's batched forward.

The memory they hold is ``N*(P + P_h + P_a)`` floats plus, at the end, one copy of the
trainable parameters and ``T*P_g`` gradient floats; :func:`estimate_memory` gives the number
for any model without building it.

Taught in the chapter *Inside the dynamics*.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import Config, ConfigError, check_int
from ..models import gpt_neox as lm
from .engine import autocast, evaluate_documents, run_cyclic, train_episode
from .structure import cosine_matrix, probe_summary


@dataclasses.dataclass(frozen=True)
class ProbeConfig(Config):
    """What the probes record. Sizes are in floats; the subsets are seeded by ``seed``."""

    layer: str = ""  #: gradients' module (Yang et al.'s Fig. 8a); "": the middle attention
    max_dims: int = 65_536  #: longer vectors are replaced by a fixed random coordinate subset
    act_doc: int = 0  #: document whose activations are followed (0 = "document 1")
    gradients: bool = True
    pairwise: bool = True
    seed: int = 0

    def validate(self) -> None:
        check_int("max_dims", self.max_dims, 16, 10**9)
        check_int("act_doc", self.act_doc, 0, 100_000)
        check_int("seed", self.seed, 0, 2**32 - 1)


@dataclasses.dataclass
class ProbeResult:
    """Arrays recorded by :class:`Probes` (numpy, float32/float64)."""

    weights: np.ndarray  #: (N, P)
    head: np.ndarray  #: (N, P_h)
    acts: np.ndarray  #: (N, P_a)
    grads: np.ndarray | None  #: (T, P_g), at the end of training
    pairwise: np.ndarray | None  #: (T, T): loss decrease on j after M steps on i
    layer: str
    n_docs: int
    act_doc: int
    memory_bytes: dict

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"weights": self.weights, "head": self.head, "acts": self.acts}
        if self.grads is not None:
            out["grad_cos"] = cosine_matrix(self.grads)
        if self.pairwise is not None:
            out["pairwise"] = self.pairwise
        return out


# ---------------------------------------------------------------- the recorder


def named_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """``model``'s submodule ``name``; an unknown name is a ConfigError listing some names."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        with_params = [
            n
            for n, m in modules.items()
            if n and next(m.parameters(recurse=False), None) is not None
        ]
        raise ConfigError(
            f"layer {name!r} is not a module of this model; modules with parameters: "
            f"{', '.join(with_params[:12])}{', ...' if len(with_params) > 12 else ''}"
        )
    return modules[name]


def default_layer(model: torch.nn.Module) -> str:
    """The attention module of the middle transformer block (Yang et al.: block 12 of 24)."""
    names = [n for n, _ in model.named_modules() if n.endswith("attention") and ".layers." in n]
    if not names:
        raise ConfigError("no '<...>.layers.<k>.attention' module: pass ProbeConfig(layer=...)")
    return names[len(names) // 2]


class CoordinateSubset:
    """A fixed, seeded random coordinate subset of the concatenation of ``params``."""

    def __init__(self, params, max_dims: int, seed: int):
        self.params = list(params)
        self.total = sum(p.numel() for p in self.params)
        self.index = None
        if self.total > max_dims:
            g = torch.Generator().manual_seed(seed)
            self.index = torch.randperm(self.total, generator=g)[:max_dims].sort().values
        self.dims = min(self.total, max_dims)
        self._split = None

    def take(self, tensors) -> torch.Tensor:
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        if self.index is None:
            return flat.float().cpu()
        return flat[self.index.to(flat.device)].float().cpu()

    def __call__(self) -> torch.Tensor:
        return self.take(self.params)


class Probes:
    """Records the probes at every evaluation point of :func:`cldyn_lib.run_cyclic`."""

    def __init__(self, config: ProbeConfig | None = None):
        self.config = config or ProbeConfig()
        self._ready = False

    def _start(self, state) -> None:
        cfg, model = self.config, state.model
        if cfg.act_doc >= state.config.n_docs:
            raise ConfigError(f"act_doc must be in 0..{state.config.n_docs - 1}; got {cfg.act_doc}")
        self.layer = cfg.layer or default_layer(model)
        layer_params = [p for p in named_module(model, self.layer).parameters()]
        trainable = [p for p in model.parameters() if p.requires_grad]
        head = list(model.get_output_embeddings().parameters())
        self._w = CoordinateSubset(trainable, cfg.max_dims, cfg.seed)
        self._h = CoordinateSubset(head, cfg.max_dims, cfg.seed + 1)
        self._g = CoordinateSubset(layer_params, cfg.max_dims, cfg.seed + 2)
        N = state.config.epochs * state.config.n_docs + 1
        self.weights = np.full((N, self._w.dims), np.nan, np.float32)
        self.head = np.full((N, self._h.dims), np.nan, np.float32)
        self.acts = None
        self.grads = self.pairwise = None
        self._ready = True

    @torch.no_grad()
    def _activations(self, state) -> torch.Tensor:
        C, s, d = state.config.context, state.docs.eval_start, self.config.act_doc
        seen = {}
        hook = state.model.get_output_embeddings().register_forward_hook(
            lambda mod, inp, out: seen.setdefault("x", inp[0])
        )
        try:
            state.model(input_ids=state.tokens[d : d + 1, s : s + C])
        finally:
            hook.remove()
        x = seen["x"][0]  # (C, d): every position of the document, flattened below
        n = int((state.lengths[d] - s).clamp(0, C))
        return x[:n].reshape(-1).float().cpu()

    def __call__(self, state) -> None:
        if not self._ready:
            self._start(state)
        k = state.episode
        self.weights[k] = self._w().numpy()
        self.head[k] = self._h().numpy()
        a = self._activations(state)
        if self.acts is None:
            self._a = CoordinateSubset([a], self.config.max_dims, self.config.seed + 3)
            self.acts = np.full((len(self.weights), self._a.dims), np.nan, np.float32)
        self.acts[k] = self._a.take([a]).numpy()
        if k == len(self.weights) - 1:  # the end of training
            if self.config.gradients:
                self.grads = document_gradients(state, self.layer, self._g).numpy()
            if self.config.pairwise:
                self.pairwise = pairwise_recovery(state)

    def memory_bytes(self) -> dict:
        """Bytes the probes hold: recorded arrays, and the transient end-of-run buffers."""
        rec = sum(a.nbytes for a in (self.weights, self.head, self.acts) if a is not None)
        grads = 4 * self._g.dims * (self.grads.shape[0] if self.grads is not None else 0)
        ckpt = 4 * self._w.total if self.config.pairwise else 0
        return {
            "recorded": rec,
            "gradients": grads,
            "checkpoint": ckpt,
            "total": rec + grads + ckpt,
        }

    def result(self) -> ProbeResult:
        if not self._ready or np.isnan(self.weights[-1]).any():
            raise RuntimeError("the probes have not seen a whole run (pass probe= to run_cyclic)")
        return ProbeResult(
            self.weights, self.head, self.acts, self.grads, self.pairwise, self.layer,
            self.pairwise.shape[0] if self.pairwise is not None else len(self.weights),
            self.config.act_doc, self.memory_bytes(),
        )  # fmt: skip


def estimate_memory(
    n_params: int, head_params: int, layer_params: int, width: int, context: int,
    n_docs: int, epochs: int, max_dims: int = 65_536,
) -> dict:  # fmt: skip
    """Bytes :class:`Probes` needs for a model of this size (float32), without building it."""
    N = epochs * n_docs + 1
    rec = 4 * N * (min(n_params, max_dims) + min(head_params, max_dims))
    rec += 4 * N * min(width * context, max_dims)
    index = 8 * sum(min(x, max_dims) for x in (n_params, head_params, layer_params) if x > max_dims)
    grads = 4 * n_docs * min(layer_params, max_dims)
    ckpt = 4 * n_params
    # the gradient probe's backward needs the model's own gradient buffers (as training does)
    return {"recorded": rec + index, "gradients": grads, "checkpoint": ckpt,
            "total": rec + index + grads + ckpt}  # fmt: skip


# ---------------------------------------------------------------- end-of-run probes


def document_gradients(state, layer: str, subset=None) -> torch.Tensor:
    """(T, P) gradient of each document's evaluation loss w.r.t. module ``layer`` (Yang et al.'s Fig. 8a).

    Leaves the weights and the optimiser untouched (the gradient buffers are cleared).
    """
    params = list(named_module(state.model, layer).parameters())
    subset = subset or CoordinateSubset(params, 10**12, 0)
    C, s = state.config.context, state.docs.eval_start
    rows = []
    for d in range(state.config.n_docs):
        for p in params:
            p.grad = None
        ids = state.tokens[d : d + 1, s : s + C]
        n = (state.lengths[d : d + 1] - s).clamp(0, C)
        with autocast(state):
            logits = state.model(input_ids=ids).logits
        loss = lm.document_losses(logits, ids, n)[0]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        rows.append(subset.take(grads))
    return torch.stack(rows)


def pairwise_recovery(state, docs=None) -> np.ndarray:
    """(T, T) loss decrease of document j after M steps on document i, all from one checkpoint.

    The checkpoint is the current weights, copied once in memory and restored before each i;
    each i gets a fresh optimiser (as the engine's reset Adam and plain SGD have); window
    shifts and masks draw from copies of the run's generators, so the run is not disturbed.
    ``docs``: the rows i to compute (default all). Positive = the loss fell (recovery).
    """
    T, M = state.config.n_docs, state.config.steps
    docs = range(T) if docs is None else docs
    params = [p for p in state.model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    before = evaluate_documents(state)
    out = np.zeros((len(docs), T))
    try:
        for row, i in enumerate(docs):
            tmp = dataclasses.replace(
                state, optimizer=None, episode=0, train_losses=torch.zeros(1, M, device=state.device),
                shift_rng=np.random.default_rng([state.config.seed, 99, i]),
                mask_gen=torch.Generator(device=state.device).manual_seed(10_007 * i + 1),
            )  # fmt: skip
            train_episode(tmp, int(i))
            out[row] = (before - evaluate_documents(state)).cpu().numpy()
            with torch.no_grad():
                for p, w in zip(params, saved):
                    p.copy_(w)
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
    return out


def run_probed(config, probe_config: ProbeConfig | None = None, progress: bool = False):
    """One :func:`cldyn_lib.run_cyclic` with :class:`Probes`: (CyclicResult, ProbeResult)."""
    p = Probes(probe_config)
    res = run_cyclic(config, progress=progress, probe=p)
    return res, p.result()


def probe_study(config) -> dict[str, np.ndarray]:
    """The arrays of :func:`~cldyn_lib.cyclic.structure.probe_summary` plus the loss matrix,
    for :func:`cldyn_lib.load_or_compute`."""
    res, out = run_probed(config, ProbeConfig(seed=config.seed))
    return {"losses": res.losses, "schedule": res.schedule, **probe_summary(out, res.schedule),
            **{f"mem_{k}": np.array(v) for k, v in out.memory_bytes.items()}}  # fmt: skip
