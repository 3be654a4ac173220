"""The transfer loop of Frati et al.: a fresh head, then one step at a time, class by class.

:func:`run_transfer` copies a pre-trained model (the input is left unchanged), gives it a
fresh head, and trains it on the sequence (or the shuffled set) of novel characters of a
:class:`~cldyn_lib.TransferConfig`, evaluating on the held-out drawings on the schedule of
:mod:`cldyn_lib.sequential.transfer`. Its whole state is one :class:`TransferState`, so it
checkpoints (:func:`transfer_payload`, through :mod:`cldyn_lib.checkpoint`), resumes bitwise
on a CPU, and an ``on_step`` callback can watch it after every step.

Taught in the chapter *Zapping and transfer shock*; the epochs and optimizer options in
*Optimizers and sequential learning*.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint as ck
from ..config import ConfigError, check_choice
from ..data.omniglot import OmniglotTensors, rotate_tasks
from ..models.convnet import ConvNet
from .optimizers import build_optimizer
from .transfer import (
    TransferConfig,
    TransferResult,
    eval_schedule,
    eval_steps,
    load_transfer_data,
    steps_per_epoch,
    training_rows,
)
from .zapping import zap


@dataclasses.dataclass
class TransferState:
    """Everything the transfer loop changes: weights, optimizer, RNGs, position, matrices."""

    model: ConvNet  #: a copy of the pre-trained model with a fresh head
    optimizer: torch.optim.Optimizer  #: over the head ("head") or all parameters ("all")
    generator: torch.Generator  #: the fresh head
    rng: np.random.Generator  #: the IID order
    order: np.ndarray  #: (steps,) index arrays into the flat training set, fixed up front
    step: int  #: steps taken
    acc: np.ndarray  #: (epochs * n_evals + 1, C) accuracy on held-out drawings, NaN = not yet
    loss: np.ndarray  #: (epochs * n_evals + 1, C) cross-entropy on held-out drawings
    train_loss: np.ndarray  #: (steps,) loss of each training step, NaN = not yet
    evals: int = 0  #: rows of acc/loss filled


def initial_state(config: TransferConfig, model: ConvNet, data: OmniglotTensors) -> TransferState:
    """Copy ``model``, give it a fresh head, build the optimizer, fix the order of the steps."""
    if not config.head_outputs and model.head.out_features < config.n_classes:
        raise ConfigError(
            f"n_classes={config.n_classes} is more than the head's {model.head.out_features} "
            "outputs"
        )
    generator = torch.Generator().manual_seed(config.seed + 7)
    model = copy.deepcopy(model)
    if config.head_outputs:
        model.head = torch.nn.Linear(model.head.in_features, config.head_outputs)
    zap(model.head, "all", init=config.head_init, generator=generator, reset_bias=True)
    trainable = model.head if config.train == "head" else model
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable.parameters():
        p.requires_grad_(True)
    opt = build_optimizer(config, trainable.parameters())
    rng = np.random.default_rng([config.seed, 5])
    n_images = data.train_x.shape[0] * data.train_x.shape[1]
    n_steps = steps_per_epoch(config, data.train_x.shape[1])
    order = []
    for _ in range(config.epochs):
        flat = np.arange(n_images) if config.protocol == "sequential" else rng.permutation(n_images)
        order += [flat[i * config.batch_size : (i + 1) * config.batch_size] for i in range(n_steps)]
    seen, _ = eval_schedule(config)
    C = config.n_classes
    order_array = np.empty(len(order), dtype=object)
    order_array[:] = order
    return TransferState(
        model=model,
        optimizer=opt,
        generator=generator,
        rng=rng,
        order=order_array,
        step=0,
        acc=np.full((len(seen), C), np.nan),
        loss=np.full((len(seen), C), np.nan),
        train_loss=np.full(len(order), np.nan),
    )


@torch.no_grad()
def evaluate_heldout(
    forward, test_x: torch.Tensor, chunk: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class accuracy and loss on held-out images ``test_x`` (C, K, ...) -> two (C,) arrays."""
    C, K = test_x.shape[:2]
    flat = test_x.reshape(C * K, *test_x.shape[2:])
    logits = torch.cat([forward(flat[i : i + chunk]) for i in range(0, len(flat), chunk)])
    y = torch.arange(C).repeat_interleave(K)
    loss = F.cross_entropy(logits, y, reduction="none").view(C, K).mean(1)
    acc = (logits.argmax(1) == y).float().view(C, K).mean(1)
    return acc.numpy().astype(float), loss.numpy().astype(float)


def run_transfer(
    config: TransferConfig,
    model: ConvNet,
    data: OmniglotTensors | None = None,
    on_start: Callable | None = None,
    *,
    checkpoint_dir=None,
    checkpoint_every: int = 1,
    on_diverge: str = "stop",
    deterministic: bool = False,
) -> TransferResult:
    """Transfer ``model`` (left unchanged) to ``config.n_classes`` novel characters.

    ``on_start(state)`` (optional) is called with the initial state and may return an
    ``on_step(state, loss)`` callback for :func:`train_transfer`.

    ``checkpoint_dir``: save the state there every ``checkpoint_every`` evaluations and
    resume from it when it exists (bitwise the same result on a CPU; see
    :mod:`cldyn_lib.checkpoint`). A non-finite loss stops the run; ``on_diverge="raise"``
    then raises :class:`cldyn_lib.checkpoint.DivergedError` carrying the partial result,
    ``"stop"`` returns it with ``diverged=True``. ``deterministic``: CUDA's deterministic mode.
    """
    check_choice("on_diverge", on_diverge, ("stop", "raise"))
    saver = ck.checkpointer(checkpoint_dir, "transfer", config, checkpoint_every)
    data = load_transfer_data(config) if data is None else data
    if data.n_classes != config.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={config.n_classes}")
    if config.task_rotation:
        data = rotate_tasks(data, config.task_rotation)
    state = initial_state(config, model, data)
    on_eval = None
    if saver is not None:
        blob = saver.load()
        if blob is not None:
            restore_transfer(state, blob)

        def on_eval(s):
            if s.evals % saver.every == 0 and s.step < len(s.order):
                saver.save(transfer_payload(s))

    on_step = None if on_start is None else on_start(state)
    with ck.deterministic(deterministic):
        train_transfer(config, state, data, on_step=on_step, on_eval=on_eval)
    seen, trained_at = eval_schedule(config)
    K = data.train_x.shape[1]
    diverged_at = state.step if state.step < len(state.order) else -1
    if saver is not None:
        saver.save(transfer_payload(state), "diverged" if diverged_at >= 0 else "finished")
    res = TransferResult(
        config, state.acc, state.loss, state.train_loss, eval_steps(config, K), seen, trained_at,
        data.classes, diverged=bool(np.isnan(state.acc[-1]).any()), model=state.model,
        after_training=training_rows(config), diverged_at=diverged_at,
    )  # fmt: skip
    if diverged_at >= 0 and on_diverge == "raise":
        where = f"step {diverged_at + 1} of {len(state.order)}"
        if config.protocol == "sequential":
            where += f" (class {diverged_at * config.batch_size // K + 1} of {config.n_classes})"
        msg = (
            f"transfer diverged: non-finite training loss at {where} with lr={config.lr:g}; "
            f"the partial result (rows 0..{state.evals - 1}) is in err.result"
            + (f"; the partial state is saved in {saver.path}" if saver is not None else "")
        )
        raise ck.DivergedError(msg, res, {"step": diverged_at}, saver.path if saver else None)
    return res


def train_transfer(
    config: TransferConfig,
    state: TransferState,
    data: OmniglotTensors,
    on_step=None,
    on_eval=None,
):
    """The transfer loop: a step per batch of ``state.order``, an evaluation after every
    ``eval_every`` classes' worth of images. Stops (leaving NaN rows) on a non-finite loss.

    For a linear probe (``train="head"``) the frozen conv features of all images are computed
    once and the loop trains the head on them: the same numbers, far fewer flops.
    ``on_step(state, loss)`` is called after every step.
    """
    model = state.model
    x, y = data.flat("train")
    test_x = data.test_x if config.eval_split == "test" else data.train_x
    forward = model
    if config.train == "head":
        with torch.no_grad():
            x = torch.cat([model.features(x[i : i + 1000]) for i in range(0, len(x), 1000)])
            if config.eval_split == "test":
                test_x = model.features(test_x.flatten(0, 1)).view(*test_x.shape[:2], -1)
            else:
                test_x = x.view(*data.train_x.shape[:2], -1)
        forward = model.head
    K = data.train_x.shape[1]
    eval_at = {int(s): row for row, s in enumerate(eval_steps(config, K))}
    while True:
        row = eval_at.get(state.step)
        if row is not None and row == state.evals:
            state.acc[row], state.loss[row] = evaluate_heldout(forward, test_x)
            state.evals += 1
            if on_eval is not None:  # e.g. a checkpoint (see run_transfer)
                on_eval(state)
        if state.step == len(state.order):
            return state
        idx = torch.as_tensor(state.order[state.step].astype(np.int64))
        loss = F.cross_entropy(forward(x[idx]), y[idx])
        state.train_loss[state.step] = loss.item()
        if not math.isfinite(loss.item()):
            return state
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.step += 1
        if on_step is not None:
            on_step(state, state.train_loss[state.step - 1])


# ---------------------------------------------------------------- checkpoints


def _flat_order(order) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [np.asarray(b, dtype=np.int64).reshape(-1) for b in order]
    sizes = torch.tensor([len(p) for p in parts], dtype=torch.int64)
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int64)), sizes


def transfer_payload(state) -> dict[str, Any]:
    """Everything :func:`run_transfer` needs to continue ``state``."""
    order, sizes = _flat_order(state.order)
    return {
        "step": int(state.step),
        "evals": int(state.evals),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "order_rng": ck.np_generator_state(state.rng),
        "order": order,
        "order_sizes": sizes,
        "acc": torch.from_numpy(state.acc.copy()),
        "loss": torch.from_numpy(state.loss.copy()),
        "train_loss": torch.from_numpy(state.train_loss.copy()),
    }


def restore_transfer(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``initial_state(config, ...)`` (same config)."""
    order, sizes = _flat_order(state.order)
    if not (torch.equal(order, blob["order"]) and torch.equal(sizes, blob["order_sizes"])):
        raise ck.CheckpointError("the checkpoint's data order differs from this config's")
    if tuple(blob["acc"].shape) != state.acc.shape:
        raise ck.CheckpointError(
            f"the checkpoint's matrices have shape {tuple(blob['acc'].shape)}, "
            f"this config's {state.acc.shape}"
        )
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.generator.set_state(blob["generator"])
    ck.set_np_generator_state(state.rng, blob["order_rng"])
    state.acc[...] = blob["acc"].numpy()
    state.loss[...] = blob["loss"].numpy()
    state.train_loss[...] = blob["train_loss"].numpy()
    state.step, state.evals = int(blob["step"]), int(blob["evals"])
    ck.set_global_rng_states(blob["rng"])
