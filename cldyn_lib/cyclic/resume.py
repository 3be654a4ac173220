"""Checkpoints of a cyclic run: what :func:`cldyn_lib.run_cyclic` saves, restores and checks.

The generic store (:mod:`cldyn_lib.checkpoint`) writes and reads a payload; this module packs
a :class:`~cldyn_lib.cyclic.state.CyclicState` into one (model, optimiser, generators,
schedule, partial loss matrix), puts it back into a fresh state, and finds the first
non-finite loss of an epoch. Taught in the book's introduction (*Runs that survive*).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import checkpoint as ck
from .state import make_optimizer


def cyclic_payload(state) -> dict[str, Any]:
    """Everything :func:`cldyn_lib.run_cyclic` needs to continue ``state``."""
    return {
        "episode": int(state.episode),
        "model": state.model.state_dict(),
        "optimizer": None if state.optimizer is None else state.optimizer.state_dict(),
        "shift_rng": ck.np_generator_state(state.shift_rng),
        "mask_gen": state.mask_gen.get_state(),
        "schedule": torch.from_numpy(np.asarray(state.schedule, dtype=np.int64)),
        "doc_ids": [str(d) for d in state.docs.ids],
        "losses": state.losses.detach().cpu(),
        "train_losses": state.train_losses.detach().cpu(),
        "host_losses": torch.from_numpy(state.host_losses.copy()),
    }


def restore_cyclic(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``setup(config)`` state (same config)."""
    if not np.array_equal(blob["schedule"].numpy(), state.schedule):
        raise ck.CheckpointError("the checkpoint's document order differs from this config's")
    if list(blob["doc_ids"]) != [str(d) for d in state.docs.ids]:
        raise ck.CheckpointError("the checkpoint's documents differ from this config's")
    state.model.load_state_dict(blob["model"])
    if blob["optimizer"] is not None:
        state.optimizer = make_optimizer(state)
        state.optimizer.load_state_dict(blob["optimizer"])
    ck.set_np_generator_state(state.shift_rng, blob["shift_rng"])
    state.mask_gen.set_state(blob["mask_gen"])
    state.losses.copy_(blob["losses"])
    state.train_losses.copy_(blob["train_losses"])
    state.host_losses[...] = blob["host_losses"].numpy()
    state.episode = int(blob["episode"])
    ck.set_global_rng_states(blob["rng"])


def cyclic_divergence(state, epoch: int) -> dict[str, int] | None:
    """The first non-finite training or evaluation loss of ``epoch`` (None if all finite).

    Called once per epoch, after the host copy, so it costs one device sync per epoch.
    """
    T, M = state.config.n_docs, state.config.steps
    train = state.train_losses[epoch * T : (epoch + 1) * T]
    evals = state.host_losses[epoch * T + 1 : (epoch + 1) * T + 1]
    if bool(torch.isfinite(train).all()) and np.isfinite(evals).all():
        return None
    bad_train = (~torch.isfinite(train)).flatten().nonzero()
    first_train = int(bad_train[0]) if len(bad_train) else T * M
    bad_eval = np.flatnonzero(~np.isfinite(evals).all(axis=1))
    first_eval = int(bad_eval[0]) if len(bad_eval) else T
    if first_train // M <= first_eval:  # the training loss broke first (or in that episode)
        k, m = divmod(first_train, M)
        where = "training loss"
    else:
        k, m = first_eval, -1
        where = "evaluation loss"
    episode = epoch * T + k
    doc = int(state.schedule[epoch, k])
    return {"episode": episode, "epoch": epoch, "document": doc, "step": m, "what": where}


def cyclic_diverged(state, bad: dict, ckpt: ck.Checkpointer | None, result) -> ck.DivergedError:
    """Save the partial state (if checkpointing) and build the error for ``bad``."""
    cfg = state.config
    e = bad["episode"]
    result.losses[e + 1 :] = np.nan  # rows after the broken episode are not results
    result.provenance.setdefault("run", {})["diverged_at"] = bad
    saved = ""
    if ckpt is not None:
        ckpt.save({**cyclic_payload(state), "diverged": bad}, status="diverged")
        saved = f"; the partial state is saved in {ckpt.path}"
    step = f", step {bad['step'] + 1} of {cfg.steps}" if bad["step"] >= 0 else ""
    msg = (
        f"cyclic run diverged: non-finite {bad['what']} at episode {e + 1} of "
        f"{cfg.epochs * cfg.n_docs} (epoch {bad['epoch'] + 1}, document {bad['document'] + 1}"
        f"{step}) with lr={cfg.learning_rate:g}; "
        f"the partial result (rows 0..{e} of the loss matrix) is in err.result{saved}"
    )
    return ck.DivergedError(msg, result, bad, ckpt.path if ckpt is not None else None)
