"""cldyn_lib: the library behind the cldyn book on the dynamics of learning and forgetting.

One import gives a reader what the chapters use::

    import cldyn_lib as cl
    losses = cl.toy.simulate(n_tasks=25, dim=100, epochs=6, lr=0.01, target="reflect")
    cl.recovery_score(losses, epoch=1)

Modules (one concern each): ``config`` (configs, scales, devices, seeds), ``metrics`` (the
loss-matrix convention, recovery score, forgetting/BWT), ``fetch`` and ``datasets`` (data
resolution and loaders), ``results`` (load-or-compute with provenance), ``toy`` (paper B's
toy model), ``plots``, ``widgets`` and ``book`` (notebook support). The language-model
modules of paper B (``cyclic``: the cyclic training engine; ``lm``: GPT-NeoX models;
``documents``; ``standin``: the offline pre-trained stand-in; ``sweeps``;
``cyclic_plots``) import torch and transformers, so they are imported on their own:
``from cldyn_lib import cyclic``. Paper A's modules (``convnet``, ``omniglot``, ``zapping``,
``pretrain``, ``transfer``, ``divergence``, ``shock``, ``shockfigs``) likewise.
"""

from . import config, metrics, results, toy
from .config import ConfigError, check_notebook_parameters, resolve_device, resolve_scale
from .metrics import (
    backward_transfer,
    forgetting,
    recovery_parts,
    recovery_score,
    recovery_scores,
    shift_averaged_loss,
)

__version__ = "0.1.0"


__all__ = [
    "config",
    "metrics",
    "results",
    "toy",
    "ConfigError",
    "check_notebook_parameters",
    "resolve_device",
    "resolve_scale",
    "recovery_score",
    "recovery_parts",
    "recovery_scores",
    "shift_averaged_loss",
    "forgetting",
    "backward_transfer",
]
