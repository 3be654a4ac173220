"""Zapping: resampling chosen rows of the last layer ("lobotomize" in the reference code).

Row ``c`` of the head holds the weights of output (class) ``c``. Zapping it re-draws those
weights from a normal distribution and leaves everything else alone: the bias, the other
rows, and the optimizer's moment estimates (as in the reference).

Two initialisations, named in every figure that uses one:

- ``"kaiming"`` (per-row Kaiming): each row gets std ``sqrt(2 / d)`` with ``d`` the number of
  features (0.0295 for d = 2304), whatever the number of rows zapped. This is also what a
  fresh head gets at transfer.
- ``"reference"``: the std the reference code ends up with, ``sqrt(2 / (k * d))`` for ``k``
  rows zapped at once. Its Kaiming call sees the ``k`` selected rows as one ``(1, k, d)``
  tensor whose fan-in is ``k * d``. One row (the ASB episodes) gets 0.0295, the same as
  per-row Kaiming; all 1000 rows (zapped IID) get 0.00093, so that head restarts near zero.

Taught in the chapter *Zapping and transfer shock*; the chapter *How far a shock travels*
zaps the head of a pre-trained model and follows the consequences layer by layer.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, check_choice

INITS = ("reference", "kaiming")


def zap_rows(rows, n_outputs: int) -> torch.Tensor:
    """Validate ``rows`` (``"all"``, an int, or a sequence of ints) -> a sorted index tensor.

    Raises :class:`~cldyn_lib.ConfigError` for an empty selection, a repeated row or a
    row outside ``[0, n_outputs - 1]``.
    """
    if isinstance(rows, str):
        check_choice("zap rows", rows, ("all",))
        return torch.arange(n_outputs)
    if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        rows = [int(rows)]
    if isinstance(rows, torch.Tensor):
        rows = rows.tolist()
    if not isinstance(rows, (Sequence, np.ndarray)) or len(rows) == 0:
        raise ConfigError(
            f"zap rows must be 'all' or a non-empty list of row indices; got {rows!r}"
        )
    idx = []
    for r in rows:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
            raise ConfigError(f"zap rows must be integers; got {r!r}")
        if not 0 <= r < n_outputs:
            raise ConfigError(
                f"zap rows must be in [0, {n_outputs - 1}] (the head has {n_outputs} outputs); "
                f"got {int(r)}"
            )
        idx.append(int(r))
    if len(set(idx)) != len(idx):
        raise ConfigError(f"zap rows must not repeat; got {rows!r}")
    return torch.tensor(sorted(idx))


def zap_std(n_rows: int, n_features: int, init: str = "kaiming") -> float:
    """The std a zapped row's weights are drawn with (see the module docstring)."""
    check_choice("zap init", init, INITS)
    fan_in = n_features * (n_rows if init == "reference" else 1)
    return math.sqrt(2.0 / fan_in)


@torch.no_grad()
def zap(
    head: nn.Linear,
    rows="all",
    *,
    init: str = "kaiming",
    generator: torch.Generator | None = None,
    reset_bias: bool = False,
) -> torch.Tensor:
    """Resample ``rows`` of ``head.weight`` in place; return the row indices zapped.

    ``init`` is ``"kaiming"`` or ``"reference"``; ``reset_bias=True`` also sets those rows'
    biases to 0 (a fresh head at transfer does this; zaps during pre-training do not).
    Bad rows raise :class:`~cldyn_lib.ConfigError` before anything changes.
    """
    check_choice("zap init", init, INITS)
    idx = zap_rows(rows, head.out_features)
    std = zap_std(len(idx), head.in_features, init)
    new = torch.randn((len(idx), head.in_features), generator=generator, dtype=head.weight.dtype)
    head.weight[idx] = (new * std).to(head.weight.device)
    if reset_bias and head.bias is not None:
        head.bias[idx] = 0.0
    return idx
