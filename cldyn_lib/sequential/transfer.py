"""Transfer to novel Omniglot characters: resample the head, learn classes one at a time.

A pre-trained ConvNet gets a fresh head (every row per-row Kaiming, zero bias, as in the
reference) and then learns ``n_classes`` characters of the evaluation set from their 15
training drawings:

- ``protocol="sequential"``: one image per step, class by class, one pass (Frati et al.'s
  continual-learning transfer); ``"iid"``: the same images and number of steps, shuffled.
- ``optimizer``: ``"sgd"`` (with ``momentum``) or ``"adam"``; ``train``: ``"head"`` (a
  linear probe: the conv features are computed once and frozen) or ``"all"`` (full
  fine-tuning, through which the shock of the new head reaches the conv layers).

Every ``eval_every`` classes (and at the end) the loop evaluates accuracy and loss on the 5
held-out drawings of *every* class, giving (evaluation, class) matrices with row 0 before
training. ``trained_at[c]`` is the first row after class c was trained, so
``cl.forgetting(acc, trained_at, kind="accuracy")`` applies. Classes not trained yet are
evaluated too (their accuracy is near zero); the "accuracy so far" of Frati et al. average over
the classes seen so far only (:meth:`TransferResult.seen_mean`).

**Several epochs** (``epochs``): the sequence of classes is learned again, in the same
order, every epoch (IID: a new shuffle per epoch); the matrices then have
``epochs * n_evals + 1`` rows, ``after_training[e, c]`` is the row just after class c was
trained in epoch e, and ``trained_at`` is the row after its *last* training (the one
``cl.forgetting`` needs; the same as the first for one epoch). With ``eval_every=1`` the
loss matrix follows the book's (time, task) convention, ``(E*T + 1, T)``.

**Optimizers** come from :func:`cldyn_lib.sequential.optimizers.build_optimizer`: SGD with momentum,
Adam with its ``beta1``/``beta2``/``eps`` and a power on the second moment
(``adam_power=1``: no square root), or a diagonal-Fisher natural-gradient step.
``eval_split="train"`` evaluates on each class's training drawings instead of the held-out
ones; ``task_rotation`` rotates class c's images by ``c * task_rotation`` degrees (a
distribution shift between consecutive tasks, :func:`cldyn_lib.data.omniglot.rotate_tasks`).

This module holds the config, the result and the evaluation schedule; the loop
(:func:`cldyn_lib.sequential.transfer_engine.train_transfer`) keeps its whole state in a :class:`~cldyn_lib.sequential.transfer_engine.TransferState` and
takes one step at a time, so later chapters can swap optimizers, vmap it or checkpoint it;
an ``on_step`` callback sees the state after every step (how *Why Adam remembers* watches
the optimizer's moments). Taught in the chapter *Zapping and transfer shock*; the epochs,
optimizers and options above in *Optimizers and sequential learning*.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..config import Config, ConfigError, check_choice, check_float, check_int
from ..data.omniglot import N_CLASSES, OmniglotTensors, load_omniglot_tensors
from ..models.convnet import ConvNet
from .zapping import INITS

PROTOCOLS = ("sequential", "iid")
OPTIMIZERS = ("sgd", "adam", "fisher")
TRAIN = ("head", "all")
SPLITS = ("test", "train")


@dataclasses.dataclass(frozen=True)
class TransferConfig(Config):
    """One transfer run. Defaults follow the reference (600 classes, Adam, head only)."""

    protocol: str = "sequential"  #: "sequential" (class by class) or "iid" (shuffled)
    optimizer: str = "adam"  #: "adam", "sgd" or "fisher" (cldyn_lib.sequential.optimizers)
    lr: float = 1e-3  #: learning rate (the reference picks the best of a grid)
    momentum: float = 0.9  #: SGD only (Frati et al. use SGD with momentum; value inferred)
    train: str = "head"  #: "head" (linear probe) or "all" (full fine-tuning)
    n_classes: int = 600  #: novel characters from the evaluation set (659 exist)
    eval_every: int = 50  #: classes between evaluations
    batch_size: int = 1  #: images per step (1 in Frati et al.'s sequential transfer)
    head_init: str = "kaiming"  #: how the fresh head is drawn (see cldyn_lib.sequential.zapping)
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
                           for n in epoch_seen(config)])  # fmt: skip
    return seen, training_rows(config)[-1]


def epoch_seen(config: TransferConfig) -> list[int]:
    """Classes trained within an epoch before each of its evaluations."""
    C, k = config.n_classes, config.eval_every
    return list(range(k, C, k)) + [C]


def training_rows(config: TransferConfig) -> np.ndarray:
    """``rows[e, c]``: the matrix row just after class c was trained in epoch e."""
    per_epoch = epoch_seen(config)
    first = np.searchsorted(per_epoch, np.arange(config.n_classes) + 1) + 1
    return np.stack([e * len(per_epoch) + first for e in range(config.epochs)])


def steps_per_epoch(config: TransferConfig, images_per_class: int) -> int:
    """Optimizer steps in one pass over the sequence of classes."""
    return math.ceil(config.n_classes * images_per_class / config.batch_size)


def eval_steps(config: TransferConfig, images_per_class: int) -> np.ndarray:
    """Steps taken before each evaluation row (batches never straddle epochs)."""
    n = steps_per_epoch(config, images_per_class)
    per = [math.ceil(s * images_per_class / config.batch_size) for s in epoch_seen(config)]
    return np.array([0] + [e * n + p for e in range(config.epochs) for p in per])


def load_transfer_data(config: TransferConfig) -> OmniglotTensors:
    """The novel characters of ``config`` (not yet rotated: :func:`run_transfer` does that)."""
    return load_omniglot_tensors("evaluation", config.n_classes, config.data_seed)
