"""The state of one cyclic run: documents, model, optimiser, generators, loss buffers.

:func:`setup_cyclic` draws the documents, builds the model and the loss buffers (episode 0 of
a run); everything the engine (:func:`cldyn_lib.run_cyclic`) changes lives in the one
:class:`CyclicState` it returns, so a run can be inspected, checkpointed or probed between
episodes. Seeds: the documents, the order, the initialisation, the window shifts and the
masks each come from their own generator derived from ``config.seed``.

Taught in the chapters *Anticipatory recovery in a language model* and *Inside the dynamics*.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data.documents import Documents, Vocab
from .config import CyclicConfig
from .inputs import run_inputs, subseed


@dataclasses.dataclass
class CyclicState:
    """Everything :func:`run_cyclic` changes: one object to inspect, checkpoint or probe."""

    config: CyclicConfig
    device: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    docs: Documents
    vocab: Vocab
    tokens: torch.Tensor  #: (T, W) model ids on the device, padded
    lengths: torch.Tensor  #: (T,) real tokens per document
    schedule: np.ndarray  #: (E, T)
    shift_rng: np.random.Generator  #: window shifts
    mask_gen: torch.Generator  #: token masks (on the device)
    losses: torch.Tensor  #: (E*T+1, T) on the device; rows filled so far are valid
    train_losses: torch.Tensor  #: (E*T, M) on the device
    host_losses: np.ndarray  #: copy of ``losses`` made once per epoch
    episode: int = 0  #: episodes done
    info: dict = dataclasses.field(default_factory=dict)
    sources: tuple = ()  #: where the documents came from (DataSource records)


def make_schedule(config: CyclicConfig) -> np.ndarray:
    """The (E, T) order of documents for ``config.order`` (document 0 is "document 1")."""
    T, E = config.n_docs, config.epochs
    rng = np.random.default_rng([config.seed, 1])
    base = np.arange(T)
    if config.order == "cyclic":
        return np.tile(base, (E, 1))
    if config.order == "shuffled":
        return np.stack([rng.permutation(T) for _ in range(E)])
    if config.order == "partial":  # x_1 first, x_2..x_N reshuffled, the rest in place
        N = config.shuffle_n
        return np.stack([np.r_[0, 1 + rng.permutation(N - 1), base[N:]] for _ in range(E)])
    rows = np.tile(base, (E, 1))  # "reversed": the last epoch runs x_T, ..., x_1
    rows[-1] = base[::-1]
    return rows


def setup_cyclic(config: CyclicConfig, device: str | None = None) -> CyclicState:
    """Draw the documents, build the model and the loss buffers: episode 0 of a run.

    The documents, vocabulary and model come from :func:`cldyn_lib.cyclic.inputs.run_inputs`
    (the book's Pythia and CNN/DailyMail, or your ``causal_lm`` and ``docs``).
    """
    device = device or config.check_resources()
    inputs = run_inputs(config)
    docs, vocab, model = inputs.docs, inputs.vocab, inputs.model
    model.to(device).train()  # evaluation switches to eval() and back (dropout, e.g. GPT-2)
    if config.causal_lm:  # dropout draws from torch's global generator: seed it per run
        torch.manual_seed(subseed(config.seed, 5))
    E, T, M = config.epochs, config.n_docs, config.steps
    tokens = torch.as_tensor(vocab.encode(docs.tokens), device=device)
    mask_gen = torch.Generator(device=device).manual_seed(subseed(config.seed, 4))
    return CyclicState(
        config=config, device=device, model=model, optimizer=None, docs=docs, vocab=vocab,
        tokens=tokens, lengths=torch.as_tensor(docs.lengths, device=device),
        schedule=make_schedule(config), shift_rng=np.random.default_rng([config.seed, 3]),
        mask_gen=mask_gen, losses=torch.zeros(E * T + 1, T, device=device),
        train_losses=torch.zeros(E * T, M, device=device),
        host_losses=np.full((E * T + 1, T), np.nan), info=inputs.info, sources=inputs.sources,
    )  # fmt: skip


def make_optimizer(state: CyclicState) -> torch.optim.Optimizer:
    """A fresh optimiser for the trainable weights: plain SGD or (fused) Adam."""
    cfg = state.config
    params = [p for p in state.model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)  # no momentum, no weight decay
    try:
        return torch.optim.Adam(params, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # an old torch without fused Adam on this device
        return torch.optim.Adam(params, lr=cfg.learning_rate)


def eval_chunk(state: CyclicState) -> int:
    """Documents per evaluation forward: all of them unless the logits would be too big."""
    if state.config.eval_batch:
        return state.config.eval_batch
    budget = (2**30 if state.device == "cuda" else 2**28) // 4  # floats of logits per forward
    return max(1, min(state.config.n_docs, budget // (state.config.context * state.vocab.size)))
