"""The open questions of paper A as experiments: sweeps of the sequence study, and the
optimizer's moment estimates across an epoch boundary.

- :class:`Sweep` / :func:`run_sweep`: one field of :class:`~cldyn_lib.seqlearn.SequenceStudy`
  (sequence length ``n_classes``, distribution shift ``task_rotation``, ``batch_size``,
  ``pretrain_epochs``, ``arch``, ``head_outputs``) over a list of values, keeping only the
  per-run summaries (accuracy per epoch, backward transfer, the loss-since-training curve),
  so results of different sequence lengths stack into one array.
- :class:`BoundaryStudy` / :func:`run_boundary_study`: full fine-tuning over several epochs
  with :class:`~cldyn_lib.optimizers.MomentTracker` watching every layer's gradient,
  update, first and second moments at every step; the arm ``"adam_reset"`` wipes Adam's
  state at each epoch boundary (an intervention: is the interference at the start of an
  epoch, paper A Fig. 5.C, carried by the stale moments?).

Taught in the chapter *Why Adam remembers*.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm.auto import tqdm

from .config import SCALES, Config, ConfigError, check_choice, check_float, check_int
from .optimizers import TRACKED, VARIANTS, MomentTracker
from .pretrain import load_or_pretrain
from .seqlearn import SequenceStudy, loss_since_training, run_metrics, run_sequence_study
from .transfer import TRAIN, run_transfer
from .transfer import load_data as transfer_data

SWEEP_FIELDS = ("n_classes", "task_rotation", "batch_size", "pretrain_epochs", "arch",
                "head_outputs")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Sweep(Config):
    """``SequenceStudy.preset(scale, **overrides)`` with ``field`` set to each of ``values``."""

    scale: str = "ci"
    field: str = "n_classes"  #: one of SWEEP_FIELDS
    values: tuple = (5, 10, 20)
    overrides: tuple = ()  #: ((name, value), ...) applied to every study of the sweep
    horizon: int = 10  #: evaluations after a task's training kept in the "since" curves

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
        for v in self.values:
            self.study(v)  # every study of the sweep must be a valid config

    def study(self, value) -> SequenceStudy:
        return SequenceStudy.preset(self.scale, **dict(self.overrides), **{self.field: value})


def run_sweep(sweep: Sweep, progress: bool = False) -> dict[str, np.ndarray]:
    """Per value of the swept field, the summaries of every run, indexed (value, variant,
    train, lr, seed, ...): ``acc_epoch`` (..., E), ``bwt1``/``bwt1_acc`` (epoch 1),
    ``bwt``/``bwt_acc`` (whole run), ``since`` (..., horizon + 1): the mean over tasks of
    the loss change since each task's epoch-1 training; plus ``lrs`` and ``values``."""
    outs = []
    for value in tqdm(sweep.values, desc=f"sweep {sweep.field}", disable=not progress):
        study = sweep.study(value)
        arrays = run_sequence_study(study)
        m = run_metrics(arrays["loss"], arrays["acc"], arrays["after_training"])
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


# ---------------------------------------------------------------- the epoch boundary

ARMS = ("adam", "adam_reset", "sgd_momentum")


@dataclasses.dataclass(frozen=True)
class BoundaryStudy(Config):
    """Full fine-tuning over several epochs with the optimizer's moments tracked."""

    scale: str = "ci"
    arms: tuple = ARMS  #: "adam_reset" = Adam whose state is wiped at each epoch boundary
    lrs: tuple = (1e-3, 1e-3, 1e-3)  #: one learning rate per arm
    train: str = "all"
    epochs: int = 2
    n_classes: int = 10
    n_seeds: int = 3
    pretrain_mode: str = "zapped_iid"

    PRESETS = {
        "ci": dict(scale="ci", n_classes=6),  # 6 tasks keep the live run to seconds
        # the best full fine-tuning learning rates of the laptop sequence study
        "laptop": dict(scale="laptop", epochs=3, n_classes=20, lrs=(3e-4, 3e-4, 1e-4)),
        "gpu": dict(scale="gpu", epochs=3, n_classes=20, lrs=(3e-4, 3e-4, 1e-4)),
        "paper": dict(scale="paper", epochs=3, n_classes=20, lrs=(3e-4, 3e-4, 1e-4)),
    }

    def validate(self) -> None:
        check_choice("scale", self.scale, SCALES)
        if not isinstance(self.arms, tuple) or not self.arms:
            raise ConfigError(f"arms must be a non-empty tuple; got {self.arms!r}")
        for a in self.arms:
            check_choice("arm", a, tuple(VARIANTS) + ("adam_reset",))
        if not isinstance(self.lrs, tuple) or len(self.lrs) != len(self.arms):
            raise ConfigError(f"lrs must be a tuple of {len(self.arms)} learning rates (one "
                              f"per arm); got {self.lrs!r}")  # fmt: skip
        for lr in self.lrs:
            check_float("lr", lr, 0, None, lo_open=True)
        check_choice("train", self.train, TRAIN)
        check_int("epochs", self.epochs, 2, 100)
        check_int("n_classes", self.n_classes, 2, 659)
        check_int("n_seeds", self.n_seeds, 1, 100)

    def sequence_study(self) -> SequenceStudy:
        return SequenceStudy.preset(self.scale, epochs=self.epochs, n_classes=self.n_classes,
                                    pretrain_mode=self.pretrain_mode)  # fmt: skip


def run_boundary_study(study: BoundaryStudy, progress: bool = False) -> dict[str, np.ndarray]:
    """Arrays indexed (arm, seed, ...): ``stats`` (..., step, stat, layer) with the stats of
    :data:`cldyn_lib.optimizers.TRACKED`, ``loss``/``acc`` (..., E*T+1, T), ``train_loss``
    (..., step); ``layers`` and ``stat_names`` name the last axes; ``steps_per_epoch``."""
    seq = study.sequence_study()
    base = seq.transfer_config()
    data = transfer_data(base)
    out = {}
    bar = tqdm(total=len(study.arms) * study.n_seeds, desc="boundary", disable=not progress)
    for s in range(study.n_seeds):
        model = load_or_pretrain(seq.pretrain_config(s)).model
        for a, (arm, lr) in enumerate(zip(study.arms, study.lrs)):
            variant = "adam" if arm == "adam_reset" else arm
            cfg = seq.transfer_config(variant, lr=float(lr), train=study.train, seed=s)
            n_steps = cfg.epochs * -(-cfg.n_classes * data.train_x.shape[1] // cfg.batch_size)
            per_epoch = n_steps // cfg.epochs
            resets = [e * per_epoch for e in range(1, cfg.epochs)] if arm == "adam_reset" else []
            trackers = []

            def start(state, resets=resets, n_steps=n_steps):
                trackers.append(MomentTracker(state.model, n_steps, reset_at=resets))
                return trackers[-1]

            res = run_transfer(cfg, model, data, on_start=start)
            for key, value in (("stats", trackers[0].stats), ("loss", res.loss),
                               ("acc", res.acc), ("train_loss", res.train_loss)):  # fmt: skip
                if key not in out:
                    out[key] = np.full((len(study.arms), study.n_seeds, *value.shape), np.nan,
                                       np.float32)  # fmt: skip
                out[key][a, s] = value
            out["layers"] = np.array(trackers[0].layers)
            out["steps_per_epoch"] = np.array(per_epoch)
            bar.update()
    bar.close()
    out["stat_names"] = np.array(TRACKED)
    out["after_training"] = res.after_training
    return out


def boundary_curve(loss, epoch: int, first: int | None = None) -> np.ndarray:
    """Interference at the start of ``epoch`` (2, 3, ...). While tasks ``0..first-1`` are
    retrained, how does the loss of the tasks ``first..T-1`` (not yet retrained; default:
    the second half) change? ``out[k]``, k = 0..first, is their mean loss after the first k
    tasks of the epoch minus their mean loss when the epoch began. Positive: retraining
    interferes with the others (paper A Fig. 5.C); a curve that rises and falls back would
    be interference that "reverts" before they are retrained. A fixed set of tasks keeps
    the mean comparable across k. ``loss``: (..., E*T + 1, T)."""
    loss = np.asarray(loss, float)
    T = loss.shape[-1]
    E = (loss.shape[-2] - 1) // T
    first = T // 2 if first is None else first
    if not 2 <= epoch <= E:
        raise ValueError(f"epoch must be in [2, {E}]; got {epoch}")
    if not 1 <= first < T:
        raise ValueError(f"first must be in [1, {T - 1}]; got {first}")
    start = (epoch - 1) * T
    later = loss[..., first:]
    out = [(later[..., start + k, :] - later[..., start, :]).mean(-1) for k in range(first + 1)]
    return np.stack(out, axis=-1)


# ---------------------------------------------------------------- the chapter's studies


def _grids(variants, scale: str, per_variant_ci: dict | None = None) -> tuple:
    from .seqlearn import GRIDS

    if scale == "ci" and per_variant_ci:
        return tuple(per_variant_ci[v] for v in variants)
    return tuple(GRIDS[v] for v in variants)


CI_LRS = {"sgd": (3e-3,), "sgd_momentum": (1e-3,), "adam": (1e-3,), "adam_nosqrt": (1e-4,),
          "adam_beta2_0": (1e-4,), "adam_beta1_0": (1e-3,), "fisher": (1e-4,)}  # fmt: skip
"""One learning rate per variant for the live ci runs (the best of a small ci grid)."""

PAIR = ("sgd_momentum", "adam")


def result_name(key: str) -> str:
    """The name a study of :func:`open_question_studies` is saved under in data/results."""
    return "boundary-study" if key == "boundary" else f"{key}-sweep"


def study_function(key: str):
    """The function that computes the study called ``key``."""
    return run_boundary_study if key == "boundary" else run_sweep


def open_question_studies(scale: str) -> dict[str, Config]:
    """The configs of *Why Adam remembers*, by name; ``results.load_or_compute(name,
    config, run_sweep or run_boundary_study, scale=scale)`` computes or loads each.
    The ci versions are cut to one learning rate per variant so that they run in seconds;
    the ci ResNet study is committed (pre-training three ResNets would take the chapter
    over its time budget)."""
    ci = scale == "ci"
    T = 10 if ci else 20
    every = tuple(VARIANTS)
    pair = (("variants", PAIR), ("lrs", _grids(PAIR, scale, CI_LRS)))
    probe1 = pair + (("trains", ("head",)), ("epochs", 1))
    return {
        "variants": Sweep(scale=scale, field="head_outputs", values=(0, T), overrides=(
            ("variants", every), ("lrs", _grids(every, scale, CI_LRS)),
            ("trains", ("head",) if ci else TRAIN), ("epochs", 1 if ci else 3))),
        "length": Sweep(scale=scale, field="n_classes",
                        values=(5, 10, 20) if ci else (5, 10, 20, 50, 100, 200),
                        overrides=probe1),
        "shift": Sweep(scale=scale, field="task_rotation",
                       values=(0.0, 45.0) if ci else (0.0, 5.0, 15.0, 45.0, 90.0),
                       overrides=probe1),
        "batch": Sweep(scale=scale, field="batch_size", values=(1, 5) if ci else (1, 3, 5, 15),
                       overrides=pair + ((("trains", ("head",)),) if ci else ())),
        "pretrain": Sweep(scale=scale, field="pretrain_epochs", values=(2, 8) if ci else (1, 3, 10),
                          overrides=pair + ((("trains", ("head",)),) if ci else ())),
        "arch": Sweep(scale=scale, field="arch", values=("convnet", "resnet"), overrides=pair),
        "boundary": BoundaryStudy.preset(scale),
    }  # fmt: skip
