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

The loop (:func:`train_transfer`) keeps its whole state in a :class:`TransferState` and
takes one step at a time, so later chapters can swap optimizers, vmap it or checkpoint it.
Taught in the chapter *Zapping and transfer shock*.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config, ConfigError, check_choice, check_float, check_int
from .convnet import ConvNet
from .omniglot import N_CLASSES, OmniglotTensors
from .zapping import INITS, zap

PROTOCOLS = ("sequential", "iid")
OPTIMIZERS = ("sgd", "adam")
TRAIN = ("head", "all")


@dataclasses.dataclass(frozen=True)
class TransferConfig(Config):
    """One transfer run. Defaults follow the reference (600 classes, Adam, head only)."""

    protocol: str = "sequential"  #: "sequential" (class by class) or "iid" (shuffled)
    optimizer: str = "adam"  #: "adam" or "sgd"
    lr: float = 1e-3  #: learning rate (the reference picks the best of a grid)
    momentum: float = 0.9  #: SGD only (paper A uses SGD with momentum; value inferred)
    train: str = "head"  #: "head" (linear probe) or "all" (full fine-tuning)
    n_classes: int = 600  #: novel characters from the evaluation set (659 exist)
    eval_every: int = 50  #: classes between evaluations
    batch_size: int = 1  #: images per step (1 in paper A's sequential transfer)
    head_init: str = "kaiming"  #: how the fresh head is drawn (see cldyn_lib.zapping)
    data_seed: int = 0  #: which characters and which 15 drawings
    seed: int = 0  #: the fresh head, the IID order

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


@dataclasses.dataclass
class TransferState:
    """Everything the transfer loop changes: weights, optimizer, RNGs, position, matrices."""

    model: ConvNet  #: a copy of the pre-trained model with a fresh head
    optimizer: torch.optim.Optimizer  #: over the head ("head") or all parameters ("all")
    generator: torch.Generator  #: the fresh head
    rng: np.random.Generator  #: the IID order
    order: np.ndarray  #: (steps, batch) indices into the flat training set, fixed up front
    step: int  #: steps taken
    acc: np.ndarray  #: (n_evals + 1, C) accuracy on held-out drawings, NaN = not yet
    loss: np.ndarray  #: (n_evals + 1, C) cross-entropy on held-out drawings
    train_loss: np.ndarray  #: (steps,) loss of each training step, NaN = not yet
    evals: int = 0  #: rows of acc/loss filled


@dataclasses.dataclass
class TransferResult:
    config: TransferConfig
    acc: np.ndarray  #: (n_evals + 1, C): row 0 before training, column c = class c
    loss: np.ndarray  #: same shape, mean cross-entropy (nats)
    train_loss: np.ndarray  #: (steps,) loss of the step's own batch, before the update
    eval_steps: np.ndarray  #: (n_evals + 1,) steps taken before each evaluation row
    seen: np.ndarray  #: (n_evals + 1,) classes trained before each row (sequential)
    trained_at: np.ndarray  #: (C,) first row after class c was trained
    classes: np.ndarray  #: (C,) evaluation-set characters, in training order
    diverged: bool  #: a non-finite loss stopped the run (later rows stay NaN)
    model: ConvNet | None = None  #: the transferred copy (the input model is left unchanged)
    diverged_at: int = -1  #: the step whose loss was non-finite, -1 if none

    def seen_mean(self, which: str = "acc") -> np.ndarray:
        """Per row: the mean over the classes seen so far (all classes for IID), NaN at row 0."""
        m = self.acc if which == "acc" else self.loss
        out = np.full(len(m), np.nan)
        for k, n in enumerate(self.seen):
            if n > 0:
                out[k] = np.mean(m[k, :n] if self.config.protocol == "sequential" else m[k])
        return out

    @property
    def final_acc(self) -> float:
        """Mean held-out accuracy over all classes after the whole run (NaN if diverged)."""
        return float(np.mean(self.acc[-1]))


def eval_schedule(config: TransferConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(seen, trained_at)``: classes trained before each evaluation row, and the first row
    after each class's training (the same step counts are used for IID)."""
    C, k = config.n_classes, config.eval_every
    seen = np.array([0] + list(range(k, C, k)) + [C])
    trained_at = np.searchsorted(seen, np.arange(C) + 1)
    return seen, trained_at


def load_data(config: TransferConfig) -> OmniglotTensors:
    from . import omniglot

    return omniglot.load("evaluation", config.n_classes, config.data_seed)


def initial_state(config: TransferConfig, model: ConvNet, data: OmniglotTensors) -> TransferState:
    """Copy ``model``, give it a fresh head, build the optimizer, fix the order of the steps."""
    if model.head.out_features < config.n_classes:
        raise ConfigError(
            f"n_classes={config.n_classes} is more than the head's {model.head.out_features} "
            "outputs"
        )
    generator = torch.Generator().manual_seed(config.seed + 7)
    model = copy.deepcopy(model)
    zap(model.head, "all", init=config.head_init, generator=generator, reset_bias=True)
    trainable = model.head if config.train == "head" else model
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable.parameters():
        p.requires_grad_(True)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(trainable.parameters(), lr=config.lr)
    else:
        opt = torch.optim.SGD(trainable.parameters(), lr=config.lr, momentum=config.momentum)
    rng = np.random.default_rng([config.seed, 5])
    n_images = data.train_x.shape[0] * data.train_x.shape[1]
    flat = np.arange(n_images) if config.protocol == "sequential" else rng.permutation(n_images)
    n_steps = math.ceil(n_images / config.batch_size)
    order = [flat[i * config.batch_size : (i + 1) * config.batch_size] for i in range(n_steps)]
    seen, _ = eval_schedule(config)
    C = config.n_classes
    return TransferState(
        model=model,
        optimizer=opt,
        generator=generator,
        rng=rng,
        order=np.array(order, dtype=object),
        step=0,
        acc=np.full((len(seen), C), np.nan),
        loss=np.full((len(seen), C), np.nan),
        train_loss=np.full(n_steps, np.nan),
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
    *,
    checkpoint_dir=None,
    checkpoint_every: int = 1,
    on_diverge: str = "stop",
    deterministic: bool = False,
) -> TransferResult:
    """Transfer ``model`` (left unchanged) to ``config.n_classes`` novel characters.

    ``checkpoint_dir``: save the state there every ``checkpoint_every`` evaluations and
    resume from it when it exists (bitwise the same result on a CPU; see
    :mod:`cldyn_lib.checkpoint`). A non-finite loss stops the run; ``on_diverge="raise"``
    then raises :class:`cldyn_lib.checkpoint.DivergedError` carrying the partial result,
    ``"stop"`` returns it with ``diverged=True``. ``deterministic``: CUDA's deterministic mode.
    """
    from . import checkpoint as ck

    check_choice("on_diverge", on_diverge, ("stop", "raise"))
    saver = None
    if checkpoint_dir is not None:
        saver = ck.Checkpointer(checkpoint_dir, "transfer", config, checkpoint_every)
    data = load_data(config) if data is None else data
    if data.n_classes != config.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={config.n_classes}")
    state = initial_state(config, model, data)
    on_eval = None
    if saver is not None:
        blob = saver.load()
        if blob is not None:
            ck.restore_transfer(state, blob)

        def on_eval(s):
            if s.evals % saver.every == 0 and s.step < len(s.order):
                saver.save(ck.transfer_payload(s))

    with ck.deterministic(deterministic):
        train_transfer(config, state, data, on_eval=on_eval)
    seen, trained_at = eval_schedule(config)
    K = data.train_x.shape[1]
    eval_steps = np.ceil(seen * K / config.batch_size).astype(int)
    diverged_at = state.step if state.step < len(state.order) else -1
    if saver is not None:
        saver.save(ck.transfer_payload(state), "diverged" if diverged_at >= 0 else "finished")
    res = TransferResult(
        config, state.acc, state.loss, state.train_loss, eval_steps, seen, trained_at,
        data.classes, diverged=bool(np.isnan(state.acc[-1]).any()), model=state.model,
        diverged_at=diverged_at,
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
    config: TransferConfig, state: TransferState, data: OmniglotTensors, on_eval=None
):
    """The transfer loop: a step per batch of ``state.order``, an evaluation after every
    ``eval_every`` classes' worth of images. Stops (leaving NaN rows) on a non-finite loss.

    For a linear probe (``train="head"``) the frozen conv features of all images are computed
    once and the loop trains the head on them: the same numbers, far fewer flops.
    """
    model = state.model
    x, y = data.flat("train")
    test_x = data.test_x
    forward = model
    if config.train == "head":
        with torch.no_grad():
            x = model.features(x)
            test_x = model.features(test_x.flatten(0, 1)).view(*test_x.shape[:2], -1)
        forward = model.head
    seen, _ = eval_schedule(config)
    K = data.train_x.shape[1]
    eval_at = {int(np.ceil(n * K / config.batch_size)): row for row, n in enumerate(seen)}
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
