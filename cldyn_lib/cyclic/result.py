"""The result of a cyclic run: the loss matrix, the schedule, the per-step training losses.

``losses`` is (E*T + 1, T): row 0 before training, row k after episode k; the metrics of
:mod:`cldyn_lib.metrics` read it. :func:`load_reference_npz` reads Yang et al.'s own result files
into the same form.

Taught in the chapter *Anticipatory recovery in a language model*.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import metrics
from ..data.documents import tokenize_pool
from ..models import causal_lm as clm
from ..results import provenance
from .config import CyclicConfig
from .state import CyclicState, eval_chunk


@dataclasses.dataclass
class CyclicResult:
    """Output of :func:`run_cyclic` (or of :func:`load_reference_npz`)."""

    losses: np.ndarray  #: (E*T+1, T), nats per token
    schedule: np.ndarray  #: (E, T)
    train_losses: np.ndarray  #: (E*T, M): the loss at each step, before its update
    doc_ids: list[str]
    provenance: dict[str, Any]
    config: CyclicConfig | None = None

    def recovery_scores(self) -> np.ndarray:
        return metrics.recovery_scores(self.losses, self.schedule)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for :func:`cldyn_lib.results.save_result`."""
        return {
            "losses": self.losses,
            "schedule": self.schedule,
            "train_losses": self.train_losses,
            "doc_ids": np.array(self.doc_ids, dtype=str),
        }


def load_reference_npz(path, schedule=None) -> CyclicResult:
    """A result file of Yang et al.'s own code (``eval_losses_ckpt``, shape (E*T+1, T)).

    Its scripts train in the same order every epoch; pass ``schedule`` for the partial-shuffle
    variants. Loaded without pickles.
    """
    with np.load(path, allow_pickle=False) as data:
        if "eval_losses_ckpt" not in data.files:
            raise ValueError(f"{path}: no 'eval_losses_ckpt' array (found {data.files})")
        losses = np.asarray(data["eval_losses_ckpt"], dtype=float)
    losses, schedule = metrics.check_loss_matrix(losses, schedule)
    E, T = schedule.shape
    prov = {"source": "Yang et al. reference code", "file": str(path)}
    ids = [f"doc{t}" for t in range(T)]
    return CyclicResult(losses, schedule, np.zeros((E * T, 0)), ids, prov)


def result_of(state: CyclicState, clock: dict) -> CyclicResult:
    """The :class:`CyclicResult` of ``state`` so far, with provenance and the run's timings."""
    cfg = state.config
    arch = clm.arch_of(clm.base_model(state.model).config, state.vocab.size)
    seq_flops = arch.flops_per_token(cfg.context) * cfg.context
    extra = {
        "run": {
            **state.info, **clock,
            "device": state.device, "tf32": cfg.tf32, "bf16": cfg.bf16,
            "learning_rate": cfg.learning_rate, "vocab": state.vocab.name,
            "eval_docs_per_forward": eval_chunk(state),
            "train_flops": 3 * seq_flops * cfg.epochs * cfg.n_docs * cfg.steps,
            "eval_flops": seq_flops * (cfg.epochs * cfg.n_docs + 1) * cfg.n_docs,
        },
        "doc_ids": state.docs.ids,
    }  # fmt: skip
    sources = state.sources or tokenize_pool(cfg.pool).sources
    prov = provenance(cfg, device=state.device, sources=sources, extra=extra)
    return CyclicResult(
        losses=state.host_losses.copy(),
        schedule=state.schedule.copy(),
        train_losses=state.train_losses.cpu().numpy(),
        doc_ids=list(state.docs.ids),
        provenance=prov,
        config=cfg,
    )
