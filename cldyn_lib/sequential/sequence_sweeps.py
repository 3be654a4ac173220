"""The open questions of Frati et al. as experiments: sweeps of the sequence study, and the
configs of every study the chapter runs.

- :class:`SequenceSweep` / :func:`run_sequence_sweep`: one field of
  :class:`~cldyn_lib.SequenceStudy`
  (sequence length ``n_classes``, distribution shift ``task_rotation``, ``batch_size``,
  ``pretrain_epochs``, ``arch``, ``head_outputs``) over a list of values, keeping only the
  per-run summaries (accuracy per epoch, backward transfer, the loss-since-training curve),
  so results of different sequence lengths stack into one array.
- :func:`open_question_studies`: the configs of the chapter's studies by name, with the
  epoch-boundary study of :mod:`cldyn_lib.sequential.boundary`.

Taught in the chapter *Why Adam remembers*.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import SCALES, Config, ConfigError, check_choice, check_int
from ..progress import tqdm
from .boundary import BoundaryStudy, run_boundary_study
from .optimizers import VARIANTS
from .sequence import (
    GRIDS,
    SequenceStudy,
    best_lr_index,
    loss_since_training,
    run_sequence_study,
    sequence_metrics,
)
from .transfer import TRAIN

SWEEP_FIELDS = ("n_classes", "task_rotation", "batch_size", "pretrain_epochs", "arch",
                "head_outputs")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SequenceSweep(Config):
    """``SequenceStudy.preset(scale, **overrides)`` with ``field`` set to each of ``values``."""

    KEY_TYPE = "Sweep"  #: the class's name when its results were committed
    KEY_OMIT_DEFAULTS = ("one_output_per_task",)  #: added later: old results keep their names

    scale: str = "ci"
    field: str = "n_classes"  #: one of SWEEP_FIELDS
    values: tuple = (5, 10, 20)
    overrides: tuple = ()  #: ((name, value), ...) applied to every study of the sweep
    horizon: int = 10  #: evaluations after a task's training kept in the "since" curves
    one_output_per_task: bool = False  #: a fresh head of n_classes rows in every study

    PRESETS = {s: dict(scale=s) for s in SCALES}

    def validate(self) -> None:
        check_choice("scale", self.scale, SCALES)
        check_choice("field", self.field, SWEEP_FIELDS)
        if not isinstance(self.values, tuple) or not self.values:
            raise ConfigError(f"values must be a non-empty tuple; got {self.values!r}")
        if not isinstance(self.overrides, tuple):
            raise ConfigError(f"overrides must be a tuple of (name, value) pairs; got "
                              f"{self.overrides!r}")  # fmt: skip
        check_int("horizon", self.horizon, 1, 10_000)
        if not isinstance(self.one_output_per_task, bool):
            raise ConfigError(
                f"one_output_per_task must be True or False; got {self.one_output_per_task!r}"
            )
        for v in self.values:
            self.study(v)  # every study of the sweep must be a valid config

    def study(self, value) -> SequenceStudy:
        study = SequenceStudy.preset(self.scale, **dict(self.overrides), **{self.field: value})
        return study.replace(head_outputs=study.n_classes) if self.one_output_per_task else study


def run_sequence_sweep(sweep: SequenceSweep, progress: bool = False) -> dict[str, np.ndarray]:
    """Per value of the swept field, the summaries of every run, indexed (value, variant,
    train, lr, seed, ...): ``acc_epoch`` (..., E), ``bwt1``/``bwt1_acc`` (epoch 1),
    ``bwt``/``bwt_acc`` (whole run), ``since`` (..., horizon + 1): the mean over tasks of
    the loss change since each task's epoch-1 training; plus ``lrs`` and ``values``."""
    outs = []
    for value in tqdm(sweep.values, desc=f"sweep {sweep.field}", disable=not progress):
        study = sweep.study(value)
        arrays = run_sequence_study(study)
        m = sequence_metrics(arrays["loss"], arrays["acc"], arrays["after_training"])
        lead = arrays["loss"].shape[:4]
        rows = arrays["after_training"][0]
        since = np.full((*lead, sweep.horizon + 1), np.nan)
        for idx in np.ndindex(*lead):
            curve = loss_since_training(arrays["loss"][idx], rows, sweep.horizon)
            if np.isfinite(arrays["loss"][idx]).all():
                since[idx] = np.nanmean(curve[:-1], axis=0)  # the last task has no "after"
        outs.append({**m, "since": since, "lrs": arrays["lrs"]})
    out = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
    values = np.array(sweep.values)
    out["values"] = values.astype(str) if values.dtype.kind in "US" else values.astype(float)
    return out


def variant_at_best_lr(arrays, metric: str, value: int, v: int, train: int = 0) -> np.ndarray:
    """``metric`` of variant ``v`` at its best learning rate (by the accuracy after the last
    epoch), for swept value index ``value`` of a :func:`run_sequence_sweep` result: shape
    (seeds, ...). Taught in the chapter *Why Adam remembers*."""
    k = best_lr_index(arrays["acc_epoch"][value, v, train, :, :, -1])
    return arrays[metric][value, v, train, k]


def pair_at_best_lr(arrays, metric: str, train: int = 0) -> np.ndarray:
    """``metric`` of each variant of :data:`OPTIMIZER_PAIR` at its best learning rate for
    each swept value: shape (value, variant, seed, ...). Taught in the chapter *Why Adam
    remembers*."""
    out = []
    for i in range(len(arrays["values"])):
        k = best_lr_index(arrays["acc_epoch"][i, :, train, :, :, -1])
        out.append([arrays[metric][i, v, train, k[v]] for v in range(len(OPTIMIZER_PAIR))])
    return np.array(out)


# ---------------------------------------------------------------- the chapter's studies


def _grids(variants, scale: str, per_variant_ci: dict | None = None) -> tuple:
    if scale == "ci" and per_variant_ci:
        return tuple(per_variant_ci[v] for v in variants)
    return tuple(GRIDS[v] for v in variants)


CI_LRS = {"sgd": (3e-3,), "sgd_momentum": (1e-3,), "adam": (1e-3,), "adam_nosqrt": (1e-4,),
          "adam_beta2_0": (1e-4,), "adam_beta1_0": (1e-3,), "fisher": (1e-4,)}  # fmt: skip
"""One learning rate per variant for the live ci runs (the best of a small ci grid)."""

#: the two optimizers that Frati et al.'s Table 3 compares
OPTIMIZER_PAIR = ("sgd_momentum", "adam")


def result_name(key: str) -> str:
    """The name a study of :func:`open_question_studies` is saved under in data/results."""
    return "boundary-study" if key == "boundary" else f"{key}-sweep"


def study_function(key: str):
    """The function that computes the study called ``key``."""
    return run_boundary_study if key == "boundary" else run_sequence_sweep


def open_question_studies(scale: str) -> dict[str, Config]:
    """The configs of *Why Adam remembers*, by name; ``results.load_or_compute(name,
    config, run_sequence_sweep or run_boundary_study, scale=scale)`` computes or loads each.
    The ci versions are cut to one learning rate per variant so that they run in seconds;
    the ci ResNet study is committed (pre-training three ResNets would take the chapter
    over its time budget)."""
    ci = scale == "ci"
    T = 10 if ci else 20
    every = tuple(VARIANTS)
    pair = (("variants", OPTIMIZER_PAIR), ("lrs", _grids(OPTIMIZER_PAIR, scale, CI_LRS)))
    probe1 = pair + (("trains", ("head",)), ("epochs", 1))
    return {
        "variants": SequenceSweep(scale=scale, field="head_outputs", values=(0, T), overrides=(
            ("variants", every), ("lrs", _grids(every, scale, CI_LRS)),
            ("trains", ("head",) if ci else TRAIN), ("epochs", 1 if ci else 3))),
        "length": SequenceSweep(scale=scale, field="n_classes",
                        values=(5, 10, 20) if ci else (5, 10, 20, 50, 100, 200),
                        overrides=probe1),
        "shift": SequenceSweep(scale=scale, field="task_rotation",
                       values=(0.0, 45.0) if ci else (0.0, 5.0, 15.0, 45.0, 90.0),
                       overrides=probe1),
        # the same two sweeps without the spare outputs (one output per task, laptop only)
        "length_exact": SequenceSweep(scale=scale, field="n_classes",
                              values=(5, 10, 20) if ci else (5, 10, 20, 50, 100, 200),
                              overrides=probe1, one_output_per_task=True),
        "shift_exact": SequenceSweep(scale=scale, field="task_rotation",
                             values=(0.0, 45.0) if ci else (0.0, 5.0, 15.0, 45.0, 90.0),
                             overrides=probe1, one_output_per_task=True),
        "batch": SequenceSweep(scale=scale, field="batch_size", values=(1, 5) if ci else (1, 3, 5, 15),
                       overrides=pair + ((("trains", ("head",)),) if ci else ())),
        "pretrain": SequenceSweep(scale=scale, field="pretrain_epochs", values=(2, 8) if ci else (1, 3, 10),
                          overrides=pair + ((("trains", ("head",)),) if ci else ())),
        "arch": SequenceSweep(scale=scale, field="arch", values=("convnet", "resnet"), overrides=pair),
        "boundary": BoundaryStudy.preset(scale),
    }  # fmt: skip
