"""Transfer shock across pre-training modes (Frati et al., Fig. 1 and Table 1), as a
load-or-compute result.

:class:`ShockStudy` / :func:`run_shock_study`: pre-train every mode with several seeds
(:func:`cldyn_lib.load_or_pretrain`), then transfer each model to novel characters: a linear
probe with Adam over a grid of learning rates (the best one per mode and protocol is
reported, as in the reference), and full fine-tuning with Adam at one learning rate, both
sequentially and IID. :func:`run_feature_stats` measures the pre-trained features' health
(dead ReLUs). The study is a function of a config whose ``scale`` picks the presets of the
underlying experiments, so ``load_or_compute("shock-study", ShockStudy(scale="laptop"),
run_shock_study)`` is the whole recipe of a committed result. Arrays hold no weights.

Taught in the chapter *Zapping and transfer shock*.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import SCALES, Config, check_choice, check_float, check_int, check_tuple
from ..metrics import forgetting
from ..progress import tqdm
from .pretrain import PRETRAIN_MODES, PretrainConfig, load_or_pretrain, load_pretrain_data
from .transfer import TransferConfig, eval_schedule, load_transfer_data
from .transfer_engine import run_transfer

PROTOCOLS = ("sequential", "iid")


@dataclasses.dataclass(frozen=True)
class ShockStudy(Config):
    """Frati et al.'s Table 1 and Frati et al.'s Fig. 1: every pre-training mode x seeds, transferred four ways."""

    scale: str = "ci"  #: presets of PretrainConfig and TransferConfig to use
    modes: tuple = PRETRAIN_MODES  #: pre-training modes (rows of Frati et al.'s Table 1)
    n_seeds: int = 3  #: seeds 0..n-1 of pre-training and transfer
    probe_lrs: tuple = (1e-4, 3e-4, 1e-3, 3e-3)  #: Adam grid of the linear probe
    full_lr: float = 1e-4  #: Adam learning rate of full fine-tuning
    full_protocols: tuple = PROTOCOLS  #: protocols of full fine-tuning (ci: sequential only)

    PRESETS = {
        "ci": dict(
            scale="ci", probe_lrs=(2e-3, 1e-2), full_lr=1e-3, full_protocols=("sequential",)
        ),
        "laptop": dict(
            scale="laptop", probe_lrs=(1e-4, 2e-4, 4e-4, 1e-3, 2e-3, 4e-3, 1e-2), full_lr=1e-4
        ),
        "gpu": dict(scale="gpu"),
        "paper": dict(scale="paper"),
    }

    def validate(self) -> None:
        check_choice("scale", self.scale, SCALES)
        check_tuple("modes", self.modes, lambda m: check_choice("mode", m, PRETRAIN_MODES))
        check_int("n_seeds", self.n_seeds, 1, 100)
        check_tuple("probe_lrs", self.probe_lrs, lambda v: check_float("lr", v, 0, lo_open=True))
        check_float("full_lr", self.full_lr, 0, None, lo_open=True)
        check_tuple(
            "full_protocols", self.full_protocols, lambda p: check_choice("protocol", p, PROTOCOLS)
        )


def run_shock_study(study: ShockStudy, progress: bool = False) -> dict[str, np.ndarray]:
    """All arrays of Frati et al.'s Table 1 and Frati et al.'s Fig. 1 (indices: mode, protocol, lr, seed, evaluation row).

    ``probe_final[m, p, l, s]``: final held-out accuracy of the linear probe; ``best_lr[m, p]``
    is the grid value with the best mean over seeds, and ``probe_acc[m, p, s, k]`` /
    ``probe_loss`` / ``probe_forgetting`` are that learning rate's curves (mean over the
    classes seen so far, Frati et al.'s "accuracy so far"). ``full_*`` are the same for full
    fine-tuning at ``full_lr``; ``full_train_loss[m, s, step]`` is the sequential run's loss
    on each new image (the transfer shock). ``pretrain_loss_<mode>[s, step]``: pre-training.
    """
    M, P, L, S = len(study.modes), len(PROTOCOLS), len(study.probe_lrs), study.n_seeds
    tcfg = TransferConfig.preset(study.scale)
    tdata = load_transfer_data(tcfg)
    seen, trained_at = eval_schedule(tcfg)
    R = len(seen)
    out = {
        "seen": seen,
        "full_lr": np.array(study.full_lr),
        "probe_lrs": np.array(study.probe_lrs),
        "probe_final": np.full((M, P, L, S), np.nan),
        "probe_curves": np.full((M, P, L, S, 2, R), np.nan),
        "probe_forgetting_all": np.full((M, P, L, S), np.nan),
        "full_acc": np.full((M, P, S, R), np.nan),
        "full_loss": np.full((M, P, S, R), np.nan),
        "full_final": np.full((M, P, S), np.nan),
        "full_forgetting": np.full((M, P, S), np.nan),
        "full_train_loss": np.full((M, S, tdata.n_classes * tdata.train_x.shape[1]), np.nan),
        "pretrain_seconds": np.zeros((M, S)),
    }
    bar = tqdm(total=M * S, desc="shock study", disable=not progress)
    for i, mode in enumerate(study.modes):
        pcfg = PretrainConfig.preset(study.scale, mode=mode)
        pdata = load_pretrain_data(pcfg)
        pre_losses = []
        for s in range(S):
            pre = load_or_pretrain(pcfg.replace(seed=s), data=pdata)
            out["pretrain_seconds"][i, s] = pre.provenance.get("seconds", pre.seconds)
            pre_losses.append(pre.losses)
            for j, protocol in enumerate(PROTOCOLS):
                for k, lr in enumerate(study.probe_lrs):
                    cfg = tcfg.replace(protocol=protocol, lr=lr, train="head", seed=s)
                    res = run_transfer(cfg, pre.model, tdata)
                    out["probe_final"][i, j, k, s] = res.final_acc
                    out["probe_curves"][i, j, k, s] = [res.seen_mean("acc"), res.seen_mean("loss")]
                    out["probe_forgetting_all"][i, j, k, s] = _forgetting(res, trained_at)
                if protocol not in study.full_protocols:
                    continue
                cfg = tcfg.replace(protocol=protocol, lr=study.full_lr, train="all", seed=s)
                res = run_transfer(cfg, pre.model, tdata)
                out["full_acc"][i, j, s] = res.seen_mean("acc")
                out["full_loss"][i, j, s] = res.seen_mean("loss")
                out["full_final"][i, j, s] = res.final_acc
                out["full_forgetting"][i, j, s] = _forgetting(res, trained_at)
                if protocol == "sequential":
                    out["full_train_loss"][i, s] = res.train_loss
            bar.update()
        out[f"pretrain_loss_{mode}"] = np.stack(pre_losses)
    bar.close()
    return out


def _forgetting(res, trained_at) -> float:
    """Accuracy forgetting (Avalanche sign: positive = forgotten) of a sequential run; NaN
    for IID (every class is trained throughout) or a diverged run."""
    if res.config.protocol != "sequential" or res.diverged:
        return float("nan")
    return forgetting(res.acc, trained_at, kind="accuracy")


def best_probe(arrays) -> dict[str, np.ndarray]:
    """Pick, per mode and protocol, the probe learning rate with the best mean final accuracy.

    Returns ``best_lr[m, p]``, ``final[m, p, s]``, ``acc[m, p, s, k]``, ``loss[m, p, s, k]``,
    ``forgetting[m, p, s]`` at that learning rate.
    """
    final = arrays["probe_final"]
    score = np.nan_to_num(final.mean(axis=-1), nan=-1.0)  # (M, P, L)
    best = score.argmax(axis=-1)
    M, P = best.shape
    pick = lambda a: np.stack([np.stack([a[m, p, best[m, p]] for p in range(P)]) for m in range(M)])  # noqa: E731
    curves = pick(arrays["probe_curves"])  # (M, P, S, 2, R)
    return {
        "best_lr": arrays["probe_lrs"][best],
        "final": pick(final),
        "acc": curves[:, :, :, 0],
        "loss": curves[:, :, :, 1],
        "forgetting": pick(arrays["probe_forgetting_all"]),
    }


def run_feature_stats(study: ShockStudy) -> dict[str, np.ndarray]:
    """Health of each pre-trained model's features on the transfer images: the fraction of
    conv features that are exactly zero (dead ReLUs) and their mean norm, ``[mode, seed]``."""
    tdata = load_transfer_data(TransferConfig.preset(study.scale))
    x = tdata.flat("train")[0]
    M, S = len(study.modes), study.n_seeds
    out = {"dead": np.zeros((M, S)), "norm": np.zeros((M, S))}
    for i, mode in enumerate(study.modes):
        pcfg = PretrainConfig.preset(study.scale, mode=mode)
        for s in range(S):
            model = load_or_pretrain(pcfg.replace(seed=s)).model
            with torch.no_grad():
                f = torch.cat([model.features(x[k : k + 500]) for k in range(0, len(x), 500)])
            out["dead"][i, s] = (f == 0).float().mean().item()
            out["norm"][i, s] = f.norm(dim=1).mean().item()
    return out


def zap_gains(best, modes) -> tuple[np.ndarray, np.ndarray]:
    """Zapped IID minus IID pre-training, per transfer protocol (sequential, IID), from
    :func:`best_probe`'s picks: the difference of the mean final accuracy over seeds, and
    the number of seeds in which zapped IID is ahead (paired by seed). ``modes`` names the
    first axis of ``best["final"]``. Taught in the chapter *Zapping and transfer shock*."""
    modes = list(modes)
    z, b = best["final"][modes.index("zapped_iid")], best["final"][modes.index("iid")]
    return z.mean(-1) - b.mean(-1), (z > b).sum(-1)
