"""The optimizer's moment estimates across an epoch boundary (Frati et al., Fig. 5.C).

:class:`BoundaryStudy` / :func:`run_boundary_study`: full fine-tuning over several epochs with
:class:`~cldyn_lib.sequential.optimizers.MomentTracker` watching every layer's gradient,
update, first and second moments at every step; the arm ``"adam_reset"`` wipes Adam's state
at each epoch boundary (an intervention: is the interference at the start of an epoch
carried by the stale moments?). :func:`boundary_curve` measures that interference.

Taught in the chapter *Why Adam remembers*.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import SCALES, Config, ConfigError, check_choice, check_float, check_int
from ..progress import tqdm
from .optimizers import TRACKED, VARIANTS, MomentTracker
from .pretrain import load_or_pretrain
from .sequence import SequenceStudy
from .transfer import TRAIN, load_transfer_data
from .transfer_engine import run_transfer

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
    :data:`cldyn_lib.sequential.optimizers.TRACKED`, ``loss``/``acc`` (..., E*T+1, T), ``train_loss``
    (..., step); ``layers`` and ``stat_names`` name the last axes; ``steps_per_epoch``."""
    seq = study.sequence_study()
    base = seq.transfer_config()
    data = load_transfer_data(base)
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
    interferes with the others (Frati et al. Fig. 5.C); a curve that rises and falls back would
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


def boundary_interference(arrays, study: BoundaryStudy, epoch: int) -> np.ndarray:
    """Per arm and seed: :func:`boundary_curve` at the start of ``epoch`` once the first
    half of the tasks is retrained (its last value). Taught in the chapter *Why Adam
    remembers*."""
    return np.array(
        [boundary_curve(arrays["loss"][a], epoch)[:, -1] for a in range(len(study.arms))]
    )


def boundary_reversion(arrays, study: BoundaryStudy, epoch: int) -> np.ndarray:
    """Per arm and seed: the peak of :func:`boundary_curve` minus its last value (> 0:
    interference that reverted before the tasks were retrained). Taught in the chapter
    *Why Adam remembers*."""
    out = []
    for a in range(len(study.arms)):
        c = boundary_curve(arrays["loss"][a], epoch)
        out.append(c.max(-1) - c[:, -1])
    return np.array(out)
