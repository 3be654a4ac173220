"""Transfer to novel Omniglot characters: resample the head, learn classes one at a time.

A pre-trained ConvNet gets a fresh head (every row per-row Kaiming, zero bias, as in the
reference) and then learns ``n_classes`` characters of the evaluation set from their 15
training drawings:

- ``protocol="sequential"``: one image per step, class by class, one pass (paper A's
  continual-learning transfer); ``"iid"``: the same images and number of steps, shuffled.
- ``optimizer``: ``"sgd"`` (with ``momentum``) or ``"adam"``; ``train``: ``"head"`` (a
  linear probe: the conv features are computed once and frozen) or ``"all"`` (full
  fine-tuning, through which the shock of the new head reaches the conv layers).

Every ``eval_every`` classes (and at the end) the loop evaluates accuracy and loss on the 5
held-out drawings of *every* class, giving (evaluation, class) matrices with row 0 before
training. ``trained_at[c]`` is the first row after class c was trained, so
``cl.forgetting(acc, trained_at, kind="accuracy")`` applies. Classes not trained yet are
evaluated too (their accuracy is near zero); the "accuracy so far" of paper A averages over
the classes seen so far only (:meth:`TransferResult.seen_mean`).

**Several epochs** (``epochs``): the sequence of classes is learned again, in the same
order, every epoch (IID: a new shuffle per epoch); the matrices then have
``epochs * n_evals + 1`` rows, ``after_training[e, c]`` is the row just after class c was
trained in epoch e, and ``trained_at`` is the row after its *last* training (the one
``cl.forgetting`` needs; the same as the first for one epoch). With ``eval_every=1`` the
loss matrix follows the book's (time, task) convention, ``(E*T + 1, T)``.

**Optimizers** come from :func:`cldyn_lib.optimizers.build_optimizer`: SGD with momentum,
Adam with its ``beta1``/``beta2``/``eps`` and a power on the second moment
(``adam_power=1``: no square root), or a diagonal-Fisher natural-gradient step.
``eval_split="train"`` evaluates on each class's training drawings instead of the held-out
ones; ``task_rotation`` rotates class c's images by ``c * task_rotation`` degrees (a
distribution shift between consecutive tasks, :func:`cldyn_lib.omniglot.rotate_tasks`).

The loop (:func:`train_transfer`) keeps its whole state in a :class:`TransferState` and
takes one step at a time, so later chapters can swap optimizers, vmap it or checkpoint it;
an ``on_step`` callback sees the state after every step (how *Why Adam remembers* watches
the optimizer's moments). Taught in the chapter *Zapping and transfer shock*; the epochs,
optimizers and options above in *Optimizers and sequential learning*.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config, ConfigError, check_choice, check_float, check_int
from .convnet import ConvNet
from .omniglot import N_CLASSES, OmniglotTensors
from .optimizers import build_optimizer
from .zapping import INITS, zap

PROTOCOLS = ("sequential", "iid")
OPTIMIZERS = ("sgd", "adam", "fisher")
TRAIN = ("head", "all")
SPLITS = ("test", "train")


@dataclasses.dataclass(frozen=True)
class TransferConfig(Config):
    """One transfer run. Defaults follow the reference (600 classes, Adam, head only)."""

    protocol: str = "sequential"  #: "sequential" (class by class) or "iid" (shuffled)
    optimizer: str = "adam"  #: "adam", "sgd" or "fisher" (cldyn_lib.optimizers)
    lr: float = 1e-3  #: learning rate (the reference picks the best of a grid)
    momentum: float = 0.9  #: SGD only (paper A uses SGD with momentum; value inferred)
    train: str = "head"  #: "head" (linear probe) or "all" (full fine-tuning)
    n_classes: int = 600  #: novel characters from the evaluation set (659 exist)
    eval_every: int = 50  #: classes between evaluations
    batch_size: int = 1  #: images per step (1 in paper A's sequential transfer)
    head_init: str = "kaiming"  #: how the fresh head is drawn (see cldyn_lib.zapping)
    data_seed: int = 0  #: which characters and which 15 drawings
    seed: int = 0  #: the fresh head, the IID order
    # added for *Optimizers and sequential learning*; the defaults keep one-pass transfer
    epochs: int = 1  #: passes over the sequence of classes (same order every epoch)
    eval_split: str = "test"  #: evaluate on held-out ("test") or training ("train") drawings
    beta1: float = 0.9  #: adam: first-moment decay (0 = no momentum)
    beta2: float = 0.999  #: adam: second-moment decay (0 = no memory of past gradients)
    eps: float = 1e-8  #: adam: added to the denominator; fisher: the damping
    adam_power: float = 0.5  #: adam: power of the second moment (0.5 = Adam, 1 = no sqrt)
    task_rotation: float = 0.0  #: degrees class c is rotated by, per class index c
    head_outputs: int = 0  #: rows of the fresh head; 0 = as many as the pre-trained head

    PRESETS = {
        "ci": dict(n_classes=10, eval_every=1),
        "laptop": dict(n_classes=200, eval_every=10),
        "gpu": dict(n_classes=600, eval_every=25),
        "paper": dict(),
    }

    def validate(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_float("lr", self.lr, 0, None, lo_open=True)
        check_float("momentum", self.momentum, 0, 1, hi_open=True)
        check_choice("train", self.train, TRAIN)
        n_max = N_CLASSES["evaluation"]
        if isinstance(self.n_classes, int) and self.n_classes > n_max:
            raise ConfigError(
                f"n_classes must be an integer in [1, {n_max}] (the evaluation set has "
                f"{n_max} characters); got {self.n_classes}"
            )
        check_int("n_classes", self.n_classes, 1, n_max)
        check_int("eval_every", self.eval_every, 1, self.n_classes)
        check_int("batch_size", self.batch_size, 1, 100_000)
        check_choice("head_init", self.head_init, INITS)
        check_int("data_seed", self.data_seed, 0, 2**32 - 1)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_int("epochs", self.epochs, 1, 10_000)
        check_choice("eval_split", self.eval_split, SPLITS)
        check_float("beta1", self.beta1, 0, 1, hi_open=True)
        check_float("beta2", self.beta2, 0, 1, hi_open=True)
        check_float("eps", self.eps, 0, 1, lo_open=True)
        check_float("adam_power", self.adam_power, 0, 1, lo_open=True)
        check_float("task_rotation", self.task_rotation, -180, 180)
        ok = isinstance(self.head_outputs, int) and not isinstance(self.head_outputs, bool)
        if not ok or not (self.head_outputs == 0 or self.n_classes <= self.head_outputs <= 100_000):
            raise ConfigError(
                f"head_outputs must be 0 (keep the pre-trained head's rows) or an integer in "
                f"[n_classes={self.n_classes}, 100000]; got {self.head_outputs!r}"
            )


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


@dataclasses.dataclass
class TransferResult:
    config: TransferConfig
    acc: np.ndarray  #: (epochs * n_evals + 1, C): row 0 before training, column c = class c
    loss: np.ndarray  #: same shape, mean cross-entropy (nats)
    train_loss: np.ndarray  #: (steps,) loss of the step's own batch, before the update
    eval_steps: np.ndarray  #: (rows,) steps taken before each evaluation row
    seen: np.ndarray  #: (rows,) class trainings before each row, over all epochs
    trained_at: np.ndarray  #: (C,) row just after class c's last training
    classes: np.ndarray  #: (C,) evaluation-set characters, in training order
    diverged: bool  #: a non-finite loss stopped the run (later rows stay NaN)
    model: ConvNet | None = None  #: the transferred copy (the input model is left unchanged)
    after_training: np.ndarray | None = None  #: (epochs, C) row just after each training
    diverged_at: int = -1  #: the step whose loss was non-finite, -1 if none

    def seen_mean(self, which: str = "acc") -> np.ndarray:
        """Per row: the mean over the classes seen so far (all classes for IID), NaN at row 0."""
        m = self.acc if which == "acc" else self.loss
        C = m.shape[1]
        out = np.full(len(m), np.nan)
        for k, n in enumerate(self.seen):
            if n > 0:
                sequential = self.config.protocol == "sequential"
                out[k] = np.mean(m[k, : min(n, C)] if sequential else m[k])
        return out

    def epoch_end_rows(self) -> np.ndarray:
        """Row of the matrices at the end of each epoch, shape (epochs,)."""
        per_epoch = (len(self.seen) - 1) // self.config.epochs
        return per_epoch * np.arange(1, self.config.epochs + 1)

    @property
    def final_acc(self) -> float:
        """Mean held-out accuracy over all classes after the whole run (NaN if diverged)."""
        return float(np.mean(self.acc[-1]))


def eval_schedule(config: TransferConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(seen, trained_at)``: class trainings before each evaluation row (counting every
    epoch), and the row just after each class's *last* training (IID: the same steps)."""
    seen = np.array([0] + [e * config.n_classes + n for e in range(config.epochs)
                           for n in _epoch_seen(config)])  # fmt: skip
    return seen, training_rows(config)[-1]


def _epoch_seen(config: TransferConfig) -> list[int]:
    C, k = config.n_classes, config.eval_every
    return list(range(k, C, k)) + [C]


def training_rows(config: TransferConfig) -> np.ndarray:
    """``rows[e, c]``: the matrix row just after class c was trained in epoch e."""
    per_epoch = _epoch_seen(config)
    first = np.searchsorted(per_epoch, np.arange(config.n_classes) + 1) + 1
    return np.stack([e * len(per_epoch) + first for e in range(config.epochs)])


def steps_per_epoch(config: TransferConfig, images_per_class: int) -> int:
    return math.ceil(config.n_classes * images_per_class / config.batch_size)


def eval_steps(config: TransferConfig, images_per_class: int) -> np.ndarray:
    """Steps taken before each evaluation row (batches never straddle epochs)."""
    n = steps_per_epoch(config, images_per_class)
    per = [math.ceil(s * images_per_class / config.batch_size) for s in _epoch_seen(config)]
    return np.array([0] + [e * n + p for e in range(config.epochs) for p in per])


def load_data(config: TransferConfig) -> OmniglotTensors:
    """The novel characters of ``config`` (not yet rotated: :func:`run_transfer` does that)."""
    from . import omniglot

    return omniglot.load("evaluation", config.n_classes, config.data_seed)


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
def evaluate(forward, test_x: torch.Tensor, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
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
    from . import checkpoint as ck

    check_choice("on_diverge", on_diverge, ("stop", "raise"))
    saver = ck.checkpointer(checkpoint_dir, "transfer", config, checkpoint_every)
    data = load_data(config) if data is None else data
    if data.n_classes != config.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={config.n_classes}")
    if config.task_rotation:
        from .omniglot import rotate_tasks

        data = rotate_tasks(data, config.task_rotation)
    state = initial_state(config, model, data)
    on_eval = None
    if saver is not None:
        blob = saver.load()
        if blob is not None:
            ck.restore_transfer(state, blob)

        def on_eval(s):
            if s.evals % saver.every == 0 and s.step < len(s.order):
                saver.save(ck.transfer_payload(s))

    on_step = None if on_start is None else on_start(state)
    with ck.deterministic(deterministic):
        train_transfer(config, state, data, on_step=on_step, on_eval=on_eval)
    seen, trained_at = eval_schedule(config)
    K = data.train_x.shape[1]
    diverged_at = state.step if state.step < len(state.order) else -1
    if saver is not None:
        saver.save(ck.transfer_payload(state), "diverged" if diverged_at >= 0 else "finished")
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
            state.acc[row], state.loss[row] = evaluate(forward, test_x)
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
