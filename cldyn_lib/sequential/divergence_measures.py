"""Summaries of a zap-divergence study (:func:`cldyn_lib.run_divergence_study`'s arrays):
what the chapter compares between models pre-trained with and without zapping.

Arrays are indexed (mode, lr, seed, step, layer) with the layers conv1, conv2, conv3 and the
head, as :func:`cldyn_lib.run_divergence_study` returns them.

Taught in the chapter *How far a shock travels*.
"""

from __future__ import annotations

import numpy as np


def divergence_summary(arrays, j: int) -> dict[str, np.ndarray]:
    """At learning rate index ``j``, per mode and seed, at the end of the fork: the head's
    weight cosine (``head``), the conv layers' mean displacement cosine (``disp``) and mean
    drift 1 - cos (``drift``), and the mean gradient norm reaching the conv layers right
    after the zap, in the zapped run (``shock``). Taught in the chapter *How far a shock
    travels*."""
    end = arrays["weight_cos"][:, j, :, -1]
    return {
        "head": end[..., 3],
        "disp": arrays["disp_cos"][:, j, :, -1, :3].mean(-1),
        "drift": 1 - end[..., :3].mean(-1),
        "shock": arrays["grad_norm"][:, j, :, 0, 0, :3].mean(-1),
    }


def peak_then_fall(arrays, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Per mode and seed at learning rate index ``j``: the peak of the head's weight cosine,
    and how far it has fallen from that peak by the end of the fork (Frati et al.'s "rapid
    initial realignment then divergence"). Taught in the chapter *How far a shock
    travels*."""
    wc = arrays["weight_cos"][:, j, :, :, 3]
    return np.nanmax(wc, axis=-1), np.nanmax(wc, axis=-1) - wc[..., -1]


def control_drift(arrays, j: int, window: int = 30) -> np.ndarray:
    """Per mode and seed at learning rate index ``j``: how much the *control* run's training
    loss falls over the fork (mean of its first ``window`` steps minus mean of its last), in
    nats. Near 0 for a model that had converged when it was forked; a control that is still
    learning moves with large updates of its own, which the zapped run shares, and that alone
    raises the cosines. Taught in the chapter *How far a shock travels*."""
    loss = arrays["loss"][:, j, :, 1]  # (mode, seed, step): run 1 is the control
    w = max(1, min(window, loss.shape[-1] // 2))
    return loss[..., :w].mean(-1) - loss[..., -w:].mean(-1)
