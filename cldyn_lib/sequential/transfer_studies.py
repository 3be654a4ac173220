"""Transfer shock across pre-training modes (Frati et al., Fig. 1 and Table 1), as a
load-or-compute result.

:class:`ShockStudy` / :func:`run_shock_study`: pre-train every mode with several seeds
(:func:`cldyn_lib.load_or_pretrain`), then transfer each model to novel characters: a linear
probe with Adam over a grid of learning rates (the best one per mode and protocol is
reported, as in the reference), and full fine-tuning with Adam over its own grid, both
sequentially and IID. :func:`run_feature_stats` measures the pre-trained features' health
(dead ReLUs). The study is a function of a config whose ``scale`` picks the presets of the
underlying experiments, so ``load_or_compute("shock-study", ShockStudy(scale="laptop"),
run_shock_study)`` is the whole recipe of a committed result. Arrays hold no weights.

Taught in the chapter *Zapping and transfer shock*.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from ..config import SCALES, Config, check_choice, check_float, check_int, check_tuple
from ..metrics import forgetting
from ..progress import tqdm
from .pretrain import PRETRAIN_MODES, PretrainConfig, load_or_pretrain, load_pretrain_data
from .transfer import TransferConfig, eval_schedule, load_transfer_data
from .transfer_engine import run_transfer

PROTOCOLS = ("sequential", "iid")
#: rows of Frati et al.'s Table 1: the four pre-training modes, and zapped IID whose zaps
#: resample the head at per-row Kaiming scale (the reference restarts it at about std 0.001)
SHOCK_ARMS = PRETRAIN_MODES + ("zapped_iid_kaiming",)


def arm_config(scale: str, arm: str, seed: int = 0) -> PretrainConfig:
    """The pre-training run of one row of :class:`ShockStudy` (a mode, or zapped IID with
    Kaiming-init zaps for ``"zapped_iid_kaiming"``)."""
    check_choice("arm", arm, SHOCK_ARMS)
    if arm == "zapped_iid_kaiming":
        return PretrainConfig.preset(scale, mode="zapped_iid", zap_init="kaiming", seed=seed)
    return PretrainConfig.preset(scale, mode=arm, seed=seed)


@dataclasses.dataclass(frozen=True)
class ShockStudy(Config):
    """Frati et al.'s Table 1 and Frati et al.'s Fig. 1: every pre-training mode x seeds, transferred four ways."""

    scale: str = "ci"  #: presets of PretrainConfig and TransferConfig to use
    modes: tuple = SHOCK_ARMS  #: pre-training arms (rows of Frati et al.'s Table 1)
    n_seeds: int = 3  #: seeds 0..n-1 of pre-training and transfer
    probe_lrs: tuple = (1e-4, 3e-4, 1e-3, 3e-3)  #: Adam grid of the linear probe
    full_lrs: tuple = (1e-4,)  #: Adam grid of full fine-tuning (best per arm and protocol)
    full_protocols: tuple = PROTOCOLS  #: protocols of full fine-tuning (ci: sequential only)

    PRESETS = {
        "ci": dict(
            scale="ci", probe_lrs=(2e-3, 1e-2), full_lrs=(1e-3,), full_protocols=("sequential",)
        ),
        "laptop": dict(
            scale="laptop",
            probe_lrs=(1e-4, 2e-4, 4e-4, 1e-3, 2e-3, 4e-3, 1e-2),
            full_lrs=(1e-4, 4e-4, 1e-3),
        ),
        "gpu": dict(scale="gpu"),
        "paper": dict(scale="paper"),
    }

    def validate(self) -> None:
        check_choice("scale", self.scale, SCALES)
        check_tuple("modes", self.modes, lambda m: check_choice("mode", m, SHOCK_ARMS))
        check_int("n_seeds", self.n_seeds, 1, 100)
        check_tuple("probe_lrs", self.probe_lrs, lambda v: check_float("lr", v, 0, lo_open=True))
        check_tuple("full_lrs", self.full_lrs, lambda v: check_float("lr", v, 0, lo_open=True))
        check_tuple(
            "full_protocols", self.full_protocols, lambda p: check_choice("protocol", p, PROTOCOLS)
        )


def run_shock_study(
    study: ShockStudy, progress: bool = False, workers: int | None = None
) -> dict[str, np.ndarray]:
    """All arrays of Frati et al.'s Table 1 and Frati et al.'s Fig. 1 (indices: arm, protocol, lr, seed, evaluation row).

    ``probe_final[m, p, l, s]``: final held-out accuracy of the linear probe; ``best_lr[m, p]``
    is the grid value with the best mean over seeds, and ``probe_acc[m, p, s, k]`` /
    ``probe_loss`` / ``probe_forgetting`` are that learning rate's curves (mean over the
    classes seen so far, Frati et al.'s "accuracy so far"). Full fine-tuning runs over its
    own grid ``full_lrs``: ``full_final_all[m, p, l, s]``, and ``full_acc`` / ``full_loss`` /
    ``full_final`` / ``full_forgetting`` / ``full_train_loss[m, s, step]`` (the sequential run's
    loss on each new image: the transfer shock) are at ``full_best_lr[m, p]``, chosen as for
    the probe. ``pretrain_loss_<arm>[s, step]``: pre-training. The ``(arm, seed)`` jobs run in
    ``workers`` processes (default: the environment's ``CLDYN_WORKERS``, else 1); each job
    seeds itself, so the numbers do not depend on it.
    """
    workers = workers if workers is not None else int(os.environ.get("CLDYN_WORKERS", "1"))
    check_int("workers", workers, 1, 64)
    M, S = len(study.modes), study.n_seeds
    seen, _ = eval_schedule(TransferConfig.preset(study.scale))
    jobs = [(i, s) for i in range(M) for s in range(S)]
    # the slowest pre-training first, so that the workers finish together
    jobs.sort(key=lambda j: -("asb" in study.modes[j[0]]))
    done = {}
    bar = tqdm(total=len(jobs), desc="shock study", disable=not progress)
    for (i, s), job in zip(
        jobs, _map(_shock_job, [(study, i, s, workers > 1) for i, s in jobs], workers)
    ):
        done[i, s] = job
        bar.update()
    bar.close()

    def stack(key):  # (arm, ..., seed right after the lr axis, ...)
        axis = _LR_AXIS.get(key, 1) + 1
        return np.stack([np.stack([np.asarray(done[i, s]["grid"][key], dtype=float)
                                   for s in range(S)], axis=axis) for i in range(M)])  # fmt: skip

    grid = {key: stack(key) for key in done[jobs[0]]["grid"]}
    seconds = np.array([[done[i, s]["seconds"] for s in range(S)] for i in range(M)], dtype=float)
    out = {
        "seen": seen,
        "probe_lrs": np.array(study.probe_lrs),
        "full_lrs": np.array(study.full_lrs),
    }
    out |= {k: v for k, v in grid.items() if not k.startswith("full_")}
    out["full_final_all"] = grid["full_final_all"]
    best = _best_index(grid["full_final_all"])  # (M, P)
    out["full_best_lr"] = np.array(study.full_lrs)[best]
    for key in ("acc", "loss", "final", "forgetting"):
        out[f"full_{key}"] = _pick(grid[f"full_{key}_all"], best)
    seq = PROTOCOLS.index("sequential")
    out["full_train_loss"] = np.stack(
        [grid["full_train_loss_all"][m, best[m, seq]] for m in range(M)]
    )
    out["pretrain_seconds"] = seconds
    for i, arm in enumerate(study.modes):
        out[f"pretrain_loss_{arm}"] = np.stack([done[i, s]["pretrain_loss"] for s in range(S)])
    return out


def _map(fn, args, workers: int):
    """``fn(*a) for a in args``, in order; in ``workers`` spawned processes when > 1 (each
    job seeds itself, so the numbers are the same either way)."""
    if workers == 1:
        yield from (fn(*a) for a in args)
        return
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        yield from pool.map(fn, *zip(*args))


#: the lr axis of each array of a :func:`_shock_job` grid (1: after the protocol axis); the
#: study's arrays put the seed axis right after it
_LR_AXIS = {"full_train_loss_all": 0}  # sequential full fine-tuning only: (lr, step)


def _shock_job(study: ShockStudy, i: int, s: int, spawned: bool = False) -> dict:
    """Pre-train arm ``i`` with seed ``s`` (or load it) and run every transfer of it."""
    if spawned:  # one thread per worker process, as the parent has
        torch.set_num_threads(1)
    tcfg = TransferConfig.preset(study.scale)
    tdata = load_transfer_data(tcfg)
    seen, trained_at = eval_schedule(tcfg)
    pcfg = arm_config(study.scale, study.modes[i], s)
    pre = load_or_pretrain(pcfg, data=load_pretrain_data(pcfg))
    P, L, F = len(PROTOCOLS), len(study.probe_lrs), len(study.full_lrs)
    R = len(seen)
    g = {
        "probe_final": np.full((P, L), np.nan),
        "probe_curves": np.full((P, L, 2, R), np.nan),
        "probe_forgetting_all": np.full((P, L), np.nan),
        "full_acc_all": np.full((P, F, R), np.nan),
        "full_loss_all": np.full((P, F, R), np.nan),
        "full_final_all": np.full((P, F), np.nan),
        "full_forgetting_all": np.full((P, F), np.nan),
        "full_train_loss_all": None,
    }
    train_loss = []
    for j, protocol in enumerate(PROTOCOLS):
        for k, lr in enumerate(study.probe_lrs):
            res = run_transfer(tcfg.replace(protocol=protocol, lr=lr, train="head", seed=s),
                               pre.model, tdata)  # fmt: skip
            g["probe_final"][j, k] = res.final_acc
            g["probe_curves"][j, k] = [res.seen_mean("acc"), res.seen_mean("loss")]
            g["probe_forgetting_all"][j, k] = _forgetting(res, trained_at)
        if protocol not in study.full_protocols:
            continue
        for k, lr in enumerate(study.full_lrs):
            res = run_transfer(tcfg.replace(protocol=protocol, lr=lr, train="all", seed=s),
                               pre.model, tdata)  # fmt: skip
            g["full_acc_all"][j, k] = res.seen_mean("acc")
            g["full_loss_all"][j, k] = res.seen_mean("loss")
            g["full_final_all"][j, k] = res.final_acc
            g["full_forgetting_all"][j, k] = _forgetting(res, trained_at)
            if protocol == "sequential":
                train_loss.append(res.train_loss)
    n_steps = tcfg.n_classes * tdata.train_x.shape[1]
    g["full_train_loss_all"] = np.stack(train_loss) if train_loss else np.full((F, n_steps), np.nan)
    seconds = pre.provenance.get("seconds", pre.seconds)
    return {"grid": g, "seconds": seconds, "pretrain_loss": pre.losses}


def _pick(a: np.ndarray, best: np.ndarray) -> np.ndarray:
    """``a[m, p, best[m, p]]`` for every arm ``m`` and protocol ``p`` (the lr axis is axis 2)."""
    m, p = np.indices(best.shape)
    return a[m, p, best]


def _best_index(final: np.ndarray) -> np.ndarray:
    """Index of the grid value with the best mean over seeds, per arm and protocol
    (``final[m, p, l, s]``; a grid point with a NaN seed never wins)."""
    return np.nan_to_num(final.mean(axis=-1), nan=-1.0).argmax(axis=-1)


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
    best = _best_index(final)
    curves = _pick(arrays["probe_curves"], best)  # (M, P, S, 2, R)
    return {
        "best_lr": arrays["probe_lrs"][best],
        "final": _pick(final, best),
        "acc": curves[:, :, :, 0],
        "loss": curves[:, :, :, 1],
        "forgetting": _pick(arrays["probe_forgetting_all"], best),
    }


def probe_at_full_lr(arrays) -> dict[str, np.ndarray]:
    """The sequential linear probe at full fine-tuning's best sequential lr (the probe grid's
    value nearest to it in log lr), per mode: ``lr[m]`` and ``final[m, s]``. The matched-lr
    column of Frati et al.'s Table 1; taught in the chapter *Zapping and transfer shock*."""
    seq = PROTOCOLS.index("sequential")
    probe_lrs = np.asarray(arrays["probe_lrs"], dtype=float)
    full_lr = np.asarray(arrays["full_best_lr"], dtype=float)[:, seq]
    k = np.abs(np.log(probe_lrs[None, :] / full_lr[:, None])).argmin(axis=1)
    final = arrays["probe_final"][np.arange(len(k)), seq, k]
    return {"lr": probe_lrs[k], "final": final}


def run_feature_stats(study: ShockStudy) -> dict[str, np.ndarray]:
    """Health of each pre-trained model's features on the transfer images: the fraction of
    conv features that are exactly zero (dead ReLUs) and their mean norm, ``[mode, seed]``."""
    tdata = load_transfer_data(TransferConfig.preset(study.scale))
    x = tdata.flat("train")[0]
    M, S = len(study.modes), study.n_seeds
    out = {"dead": np.zeros((M, S)), "norm": np.zeros((M, S))}
    for i, arm in enumerate(study.modes):
        for s in range(S):
            model = load_or_pretrain(arm_config(study.scale, arm, s)).model
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
