"""Sequential learning over several epochs, across optimizers and learning rates.

Frati et al. section 3.3 (Table 3, Figs. 4-6 and 11a): a pre-trained ConvNet gets a fresh head
and learns novel Omniglot characters one class (one *task*) at a time, one image per step,
and then the whole sequence again, for several epochs. After every task the loss and
accuracy of *every* task are evaluated on held-out drawings, giving the book's (time,
task) matrices of shape ``(E*T + 1, T)``.

:class:`SequenceStudy` runs that for several optimizer *variants* (names of
:data:`cldyn_lib.sequential.optimizers.VARIANTS`), each over its own learning-rate grid, for a linear
probe and full fine-tuning, over seeds; :func:`run_sequence_study` returns the matrices
(no weights), so ``load_or_compute("sequence-study", study, run_sequence_study)``
is the whole recipe of a committed result. :func:`sequence_summary` turns the matrices into
accuracy after each epoch, backward transfer and forgetting (the foundation's
:func:`cldyn_lib.metrics.backward_transfer`, Avalanche/GEM signs: positive = earlier
tasks got better after their training) and picks the best learning rate.

Taught in the chapter *Optimizers and sequential learning*; *Why Adam remembers* runs the
same study with more variants and settings.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ..config import SCALES, Config, ConfigError, check_choice, check_float, check_int
from ..metrics import backward_transfer
from ..progress import tqdm
from .optimizers import VARIANTS
from .pretrain import ARCHS, PRETRAIN_MODES, PretrainConfig, load_or_pretrain
from .transfer import TRAIN, TransferConfig, load_transfer_data
from .transfer_engine import run_transfer

GRIDS = {
    "sgd": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "sgd_momentum": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "adam_nosqrt": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    "adam_beta2_0": (1e-5, 1e-4, 1e-3),
    "adam_beta1_0": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "fisher": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
}
"""Default learning-rate grids per variant (laptop scale); each spans the best value."""
LAPTOP_LRS = (GRIDS["sgd_momentum"], GRIDS["adam"] + (3e-2,))
"""Frati et al.'s Table 3's grids: Adam's ends with Frati et al.'s Fig. 11a "too high" learning rate."""


@dataclasses.dataclass(frozen=True)
class SequenceStudy(Config):
    """Optimizer variants x learning rates x (probe, full) x seeds, several epochs each."""

    scale: str = "ci"  #: presets of the pre-training and transfer configs
    variants: tuple = ("sgd_momentum", "adam")  #: names in cldyn_lib.sequential.optimizers.VARIANTS
    lrs: tuple = (GRIDS["sgd_momentum"], GRIDS["adam"])  #: one grid per variant
    trains: tuple = TRAIN  #: "head" (linear probe) and/or "all" (full fine-tuning)
    epochs: int = 3  #: passes over the sequence (Frati et al.'s Table 3: 1 and 3)
    n_classes: int = 10  #: tasks in the sequence, one novel character each (inferred)
    n_seeds: int = 3  #: seeds 0..n-1 of pre-training and transfer
    pretrain_mode: str = "zapped_iid"  #: which pre-trained model (inferred)
    arch: str = "convnet"  #: "convnet" (Frati et al.) or "resnet"
    pretrain_epochs: int = 0  #: 0 = the scale's preset; else pre-training epochs
    batch_size: int = 1  #: images per step (1 in Frati et al.)
    head_outputs: int = 0  #: rows of the fresh head; 0 = the pre-trained head's (1000)
    task_rotation: float = 0.0  #: degrees of rotation per task (distribution shift)

    PRESETS = {
        "ci": dict(scale="ci", lrs=((1e-3,), (1e-3, 3e-2)), n_classes=10),  # seconds, not a grid
        "laptop": dict(scale="laptop", n_classes=20, lrs=LAPTOP_LRS),
        "gpu": dict(scale="gpu", n_classes=20, lrs=LAPTOP_LRS),
        "paper": dict(scale="paper", n_classes=20, lrs=LAPTOP_LRS),
    }

    def validate(self) -> None:
        check_choice("scale", self.scale, SCALES)
        if not isinstance(self.variants, tuple) or not self.variants:
            raise ConfigError(f"variants must be a non-empty tuple; got {self.variants!r}")
        for v in self.variants:
            check_choice("variant", v, tuple(VARIANTS))
        if not isinstance(self.lrs, tuple) or len(self.lrs) != len(self.variants):
            raise ConfigError(
                f"lrs must be a tuple of {len(self.variants)} learning-rate grids (one per "
                f"variant); got {self.lrs!r}"
            )
        for grid in self.lrs:
            if not isinstance(grid, tuple) or not grid:
                raise ConfigError(f"each grid in lrs must be a non-empty tuple; got {grid!r}")
            for lr in grid:
                check_float("lr", lr, 0, None, lo_open=True)
        if not isinstance(self.trains, tuple) or not self.trains:
            raise ConfigError(f"trains must be a non-empty tuple; got {self.trains!r}")
        for t in self.trains:
            check_choice("train", t, TRAIN)
        check_int("epochs", self.epochs, 1, 1000)
        check_int("n_classes", self.n_classes, 2, 659)
        check_int("n_seeds", self.n_seeds, 1, 100)
        check_choice("pretrain_mode", self.pretrain_mode, PRETRAIN_MODES)
        check_choice("arch", self.arch, ARCHS)
        check_int("pretrain_epochs", self.pretrain_epochs, 0, 10_000)
        self.transfer_config()  # batch_size, head_outputs, task_rotation: checked there

    def pretrain_config(self, seed: int = 0) -> PretrainConfig:
        extra = {"epochs": self.pretrain_epochs} if self.pretrain_epochs else {}
        return PretrainConfig.preset(
            self.scale, mode=self.pretrain_mode, arch=self.arch, seed=seed, **extra
        )

    def transfer_config(self, variant: str | None = None, **changes) -> TransferConfig:
        """The transfer config of one run (``variant``'s optimizer settings applied)."""
        cfg = TransferConfig.preset(
            self.scale, n_classes=self.n_classes, eval_every=1, epochs=self.epochs,
            batch_size=self.batch_size, head_outputs=self.head_outputs,
            task_rotation=self.task_rotation,
        )  # fmt: skip
        return cfg.replace(**(VARIANTS[variant] if variant else {}), **changes)


def lr_table(study: SequenceStudy) -> np.ndarray:
    """``(variants, max grid length)`` learning rates, NaN-padded."""
    L = max(len(g) for g in study.lrs)
    out = np.full((len(study.variants), L), np.nan)
    for i, grid in enumerate(study.lrs):
        out[i, : len(grid)] = grid
    return out


def run_sequence_study(
    study: SequenceStudy, progress: bool = False, on_start=None
) -> dict[str, np.ndarray]:
    """Every run of ``study``. Arrays indexed (variant, train, lr, seed, ...):

    ``loss``/``acc`` (..., E*T+1, T) float32 held-out matrices (NaN rows after a divergence
    or for a grid shorter than the longest), ``train_loss`` (..., steps) the loss of each
    step's own image, ``diverged`` (...) bool; ``lrs`` (variant, lr);
    ``after_training`` (E, T): the row just after each task's training in each epoch.
    ``on_start`` is passed to :func:`cldyn_lib.run_transfer`.
    """
    V, Tr, S = len(study.variants), len(study.trains), study.n_seeds
    lrs = lr_table(study)
    L = lrs.shape[1]
    base = study.transfer_config()
    data = load_transfer_data(base)
    K = data.train_x.shape[1]
    R, C = study.epochs * study.n_classes + 1, study.n_classes
    steps = study.epochs * -(-C * K // study.batch_size)
    out = {
        "lrs": lrs,
        "loss": np.full((V, Tr, L, S, R, C), np.nan, np.float32),
        "acc": np.full((V, Tr, L, S, R, C), np.nan, np.float32),
        "train_loss": np.full((V, Tr, L, S, steps), np.nan, np.float32),
        "diverged": np.zeros((V, Tr, L, S), bool),
    }
    bar = tqdm(total=S * V * Tr * L, desc="sequence study", disable=not progress)
    for s in range(S):
        model = load_or_pretrain(study.pretrain_config(s)).model
        for i, variant in enumerate(study.variants):
            for j, train in enumerate(study.trains):
                for k, lr in enumerate(study.lrs[i]):
                    cfg = study.transfer_config(variant, lr=float(lr), train=train, seed=s)
                    res = run_transfer(cfg, model, data, on_start=on_start)
                    idx = (i, j, k, s)
                    out["loss"][idx], out["acc"][idx] = res.loss, res.acc
                    out["train_loss"][idx] = res.train_loss
                    out["diverged"][idx] = res.diverged
                    out["after_training"] = res.after_training
                    bar.update()
    bar.close()
    return out


# ---------------------------------------------------------------- summaries


def epoch_rows(n_tasks: int, epochs: int) -> np.ndarray:
    """The matrix row at the end of each epoch (eval after every task)."""
    return n_tasks * np.arange(1, epochs + 1)


def sequence_metrics(loss, acc, after_training) -> dict[str, np.ndarray]:
    """Per run (any leading axes over runs): accuracy at the end of each epoch (mean over
    all tasks), and backward transfer of the loss (nats) and accuracy within epoch 1 and
    over the whole run (Avalanche/GEM signs; NaN for a diverged run)."""
    loss, acc = np.asarray(loss, float), np.asarray(acc, float)
    lead, (R, C) = loss.shape[:-2], loss.shape[-2:]
    E = (R - 1) // C
    flat_l, flat_a = loss.reshape(-1, R, C), acc.reshape(-1, R, C)
    n = len(flat_l)
    out = {
        "acc_epoch": np.full((n, E), np.nan),
        "bwt1": np.full(n, np.nan),
        "bwt1_acc": np.full(n, np.nan),
        "bwt": np.full(n, np.nan),
        "bwt_acc": np.full(n, np.nan),
    }
    first = np.asarray(after_training)[0]
    last = np.asarray(after_training)[-1]
    for r in range(n):
        Lr, Ar = flat_l[r], flat_a[r]
        out["acc_epoch"][r] = Ar[epoch_rows(C, E)].mean(-1)
        if not np.isfinite(Lr).all():
            continue
        out["bwt1"][r] = backward_transfer(Lr[: C + 1], first)
        out["bwt1_acc"][r] = backward_transfer(Ar[: C + 1], first, kind="accuracy")
        out["bwt"][r] = backward_transfer(Lr, last)
        out["bwt_acc"][r] = backward_transfer(Ar, last, kind="accuracy")
    return {k: v.reshape(lead + v.shape[1:]) for k, v in out.items()}


def best_lr_index(final_acc) -> np.ndarray:
    """Index of the learning rate with the best mean over seeds (the last axis). A NaN
    (a diverged seed, or grid padding) counts as -1, so it never wins against a finished
    run. ``final_acc``: (..., lr, seed) -> (...)."""
    final_acc = np.asarray(final_acc, float)
    return np.where(np.isfinite(final_acc), final_acc, -1.0).mean(-1).argmax(-1)


def sequence_summary(arrays, epoch: int | None = None) -> dict[str, np.ndarray]:
    """Metrics of every run plus the best learning rate per (variant, train), chosen by
    the accuracy at the end of ``epoch`` (default: the last); ``best[k]`` holds metric k at
    that learning rate, shape (variant, train, seed, ...)."""
    m = sequence_metrics(arrays["loss"], arrays["acc"], arrays["after_training"])
    E = m["acc_epoch"].shape[-1]
    e = E - 1 if epoch is None else epoch - 1
    best = best_lr_index(m["acc_epoch"][..., e])  # (V, Tr)
    V, Tr = best.shape

    def pick(a):
        return np.stack([np.stack([a[v, t, best[v, t]] for t in range(Tr)]) for v in range(V)])

    out = {"metrics": m, "best_index": best, "best_lr": np.take_along_axis(
        arrays["lrs"], best, axis=1)}  # fmt: skip
    out["best"] = {k: pick(v) for k, v in m.items()}
    out["best"]["loss"] = pick(arrays["loss"])
    out["best"]["acc"] = pick(arrays["acc"])
    return out


def loss_since_training(loss, rows, horizon: int | None = None) -> np.ndarray:
    """``out[t, h] = loss[rows[t] + h, t] - loss[rows[t], t]``: how task t's loss changed
    ``h`` evaluations after its training ended (NaN past the end). Negative = it kept
    improving (Frati et al.'s "backward transfer" as a curve). ``loss``: (R, T)."""
    loss = np.asarray(loss, float)
    R, T = loss.shape
    H = R if horizon is None else horizon + 1
    out = np.full((T, H), np.nan)
    for t in range(T):
        seg = loss[rows[t] : rows[t] + H, t]
        out[t, : len(seg)] = seg - loss[rows[t], t]
    return out


def _steps(loss, n_tasks: int):
    """Per evaluation i (row i + 1 of ``loss``): the change of every task's loss over that
    step, and the task trained in it (tasks in order, every epoch)."""
    loss = np.asarray(loss, float)
    change = loss[..., 1:, :] - loss[..., :-1, :]  # (..., R - 1, T)
    trained = np.arange(change.shape[-2]) % n_tasks
    return change, trained


def untrained_interference(loss, n_tasks: int) -> np.ndarray:
    """Mean rise of the loss of tasks not trained yet, per task trained in epoch 1 (nats;
    positive = training a task hurts the tasks still to come: Frati et al.'s "initial
    interference on untrained tasks", their Mechanism 3). ``loss``: (..., E*T + 1, T) ->
    (...). Taught in the chapter *Optimizers and sequential learning*."""
    change, _ = _steps(loss, n_tasks)
    i, j = np.indices((n_tasks - 1, n_tasks))
    later = j > i  # after the step of task i, tasks i+1.. are untrained
    return change[..., : n_tasks - 1, :][..., later].mean(-1)


def loss_spikes(loss, n_tasks: int, epochs) -> np.ndarray:
    """Largest one-step rise of any task's loss while another task is trained, within the
    given epochs (1-based): the "catastrophic forgetting spikes" of SGD in later epochs of
    Frati et al.'s Fig. 6. ``loss``: (..., E*T + 1, T) -> (...). Taught in the chapter
    *Optimizers and sequential learning*."""
    change, trained = _steps(loss, n_tasks)
    E = change.shape[-2] // n_tasks
    bad = [e for e in epochs if not 1 <= e <= E]
    if bad:
        raise ValueError(f"epochs must lie in 1..{E}; got {bad}")
    rows = np.concatenate([np.arange((e - 1) * n_tasks, e * n_tasks) for e in epochs])
    other = np.arange(n_tasks)[None, :] != trained[rows][:, None]  # (rows, T)
    return change[..., rows, :][..., other].max(-1)


def epoch1_since_training(summary, v: int, t: int, n_tasks: int) -> np.ndarray:
    """Per seed, the mean over tasks of :func:`loss_since_training` in epoch 1, for variant
    ``v`` and train ``t`` of a :func:`sequence_summary` at its best learning rate: shape
    (seeds, n_tasks), entry h = how task losses changed h tasks after their training (the
    last task, never followed by another, is left out). Taught in the chapter *Optimizers
    and sequential learning*."""
    L = summary["best"]["loss"][v, t][:, : n_tasks + 1]  # (seed, T + 1, T): epoch 1 only
    rows = np.arange(1, n_tasks + 1)
    with warnings.catch_warnings():  # the last horizons have fewer tasks, the very last none
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([np.nanmean(loss_since_training(m, rows)[:-1], 0)[:n_tasks] for m in L])
