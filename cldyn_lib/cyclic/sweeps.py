"""Sweeps of cyclic runs over one factor, with seeds, kept as small summary arrays.

A :class:`CyclicSweep` is a base :class:`~cldyn_lib.CyclicConfig`, a list of labelled
variants (field overrides) and seeds. :func:`run_cyclic_sweep` runs all of them and keeps, per
variant and seed, what the chapters plot: the recovery score and its parts per epoch, the
loss of document 1, the shift-averaged loss, the priming of the next document, and the full
loss matrix when it is small. :func:`load_cyclic_sweep` gives a book sweep at a scale through
:func:`cldyn_lib.load_or_compute`, so the ``ci`` build reads committed laptop-scale
results instead of computing them.

:data:`BOOK_SWEEPS` lists the sweeps taught in the chapters *Emergence with scale* and *What
drives recovery*; ``python tools/compute_results.py --scale laptop`` computes the missing ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from typing import Any, Callable

import numpy as np

from .. import metrics
from ..checkpoint import DivergedError
from ..config import Config, ConfigError, check_int
from ..progress import tqdm
from ..results import load_or_compute
from .config import CyclicConfig
from .engine import run_cyclic

FULL_MATRIX_MAX = 60_000  #: keep whole loss matrices up to this many entries per run


@dataclasses.dataclass(frozen=True)
class CyclicSweep(Config):
    """Variants of ``base``: ``variants[i] = (label, ((field, value), ...))``."""

    name: str
    base: CyclicConfig
    variants: tuple
    seeds: tuple = (0, 1, 2)

    def validate(self) -> None:
        if not self.variants:
            raise ConfigError("variants must not be empty")
        for s in self.seeds:
            check_int("seed", s, 0, 2**32 - 1)
        for i in range(len(self.variants)):
            self.config(i)  # every variant must be a valid config

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.variants]

    def config(self, i: int, seed: int | None = None) -> CyclicConfig:
        changes = dict(self.variants[i][1])
        if seed is not None:
            changes["seed"] = seed
        return self.base.replace(**changes)

    def key(self) -> str:
        """A hash of what the sweep runs: fields of ``base`` left at their defaults are not
        part of it, so adding a config field later does not orphan committed results."""
        defaults = CyclicConfig()
        base = {
            f.name: getattr(self.base, f.name)
            for f in dataclasses.fields(CyclicConfig)
            if getattr(self.base, f.name) != getattr(defaults, f.name)
        }
        blob = {"name": self.name, "base": base, "variants": self.variants, "seeds": self.seeds}
        text = json.dumps(blob, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def summarize_run(losses: np.ndarray, schedule: np.ndarray) -> dict[str, np.ndarray]:
    """What the chapters need from one run's loss matrix."""
    E, T = schedule.shape
    out: dict[str, np.ndarray] = {"doc0": losses[:, 0], "initial": np.array(losses[0].mean())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # RS is NaN when nothing is forgotten
        parts = [metrics.recovery_parts(losses, n, schedule) for n in range(1, E)]
    for name in ("score", "forgotten", "recovered", "l_max", "l_before", "l_after"):
        out[name] = np.array([getattr(p, name) for p in parts], dtype=float)
    out["shift_avg"] = metrics.shift_averaged_loss(losses, schedule)
    out["priming"] = np.array([metrics.priming(losses, schedule, e) for e in range(1, E + 1)])
    out["final"] = np.array(losses[-1].mean())
    if losses.size <= FULL_MATRIX_MAX:
        out["losses"] = losses
        out["schedule"] = schedule
    return out


def rerun_sweep_run(sweep: CyclicSweep, i: int, j: int) -> dict[str, np.ndarray]:
    """Variant ``i`` and seed ``j`` of ``sweep`` run again, summarised and typed as
    :func:`run_cyclic_sweep` stores them (``v{i}_{key}[j]``): to check a committed sweep
    against a fresh run. Taught in the appendix *Many runs at once*."""
    try:
        res = run_cyclic(sweep.config(i, sweep.seeds[j]), progress=False)
    except DivergedError as err:
        res = err.result
    out = summarize_run(res.losses, res.schedule)
    return {
        k: np.asarray(v).astype(np.int16 if k == "schedule" else np.float32) for k, v in out.items()
    }


def run_cyclic_sweep(sweep: CyclicSweep, progress: bool = True) -> dict[str, np.ndarray]:
    """Run every variant and seed; arrays named ``v{i}_{summary}`` of shape (seeds, ...)."""
    arrays: dict[str, Any] = {"labels": np.array(sweep.labels, dtype=str)}
    seconds = np.zeros((len(sweep.variants), len(sweep.seeds)))
    jobs = [(i, j) for i in range(len(sweep.variants)) for j in range(len(sweep.seeds))]
    per_variant: dict[int, list[dict]] = {}
    for i, j in tqdm(jobs, desc=f"sweep {sweep.name}", disable=not progress):
        t0 = time.perf_counter()
        try:
            res = run_cyclic(sweep.config(i, sweep.seeds[j]), progress=False)
        except DivergedError as err:  # a learning rate too high: keep it, NaN after the step
            res = err.result
        seconds[i, j] = time.perf_counter() - t0
        per_variant.setdefault(i, []).append(summarize_run(res.losses, res.schedule))
    for i, runs in per_variant.items():
        for key in runs[0]:
            arrays[f"v{i}_{key}"] = np.stack([r[key] for r in runs]).astype(
                np.float32 if key not in ("schedule",) else np.int16
            )
    arrays["seconds"] = seconds
    return arrays


@dataclasses.dataclass
class CyclicSweepData:
    """A computed sweep: ``data.get(i, "score")`` is (seeds, E-1) for variant ``i``."""

    sweep: CyclicSweep
    arrays: dict[str, np.ndarray]
    provenance: dict

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.arrays["labels"]]

    def get(self, i: int, key: str) -> np.ndarray:
        return np.asarray(self.arrays[f"v{i}_{key}"], dtype=float)

    def last(self, key: str) -> np.ndarray:
        """``key`` in the last scored epoch: (variants, seeds)."""
        return np.stack([self.get(i, key)[:, -1] for i in range(len(self.labels))])

    def label(self) -> str:
        p = self.provenance
        when = str(p.get("created", "?"))[:10]
        n = len(self.sweep.seeds)
        return f"{p.get('scale', '?')} scale, {n} seed{'s' if n > 1 else ''}, computed {when}"


# ---------------------------------------------------------------- the book's sweeps


def variant(label, **changes) -> tuple:
    """One labelled variant of a sweep: ``(label, sorted field overrides)``."""
    return (label, tuple(sorted(changes.items())))


def _values(field: str, values, fmt: str = "{}") -> tuple:
    return tuple(variant(fmt.format(v), **{field: v}) for v in values)


#: the book's sweeps: name -> variants of a scale's base config
BOOK_SWEEPS: dict[str, Callable[[CyclicConfig], tuple]] = {
    # What drives recovery (Yang et al., Figs. 4, 5, 6, 12-16)
    "docs": lambda b: _values("n_docs", (10, 25, 50), "T={}"),
    "docs_long": lambda b: _values("n_docs", (100, 200), "T={}"),
    "steps": lambda b: _values("steps", (1, 5, 10, 20), "M={}"),
    "inverse_lr": lambda b: tuple(
        variant(f"M={m}", steps=m, lr_scaling="inverse_steps") for m in (1, 5, 10, 20)
    ),
    "one_step_lr": lambda b: tuple(
        variant(f"lr={lr:g}", steps=1, lr=lr) for lr in (b.learning_rate, 3 * b.learning_rate, 10 * b.learning_rate)
    ),
    "context": lambda b: _values("context", (32, 64, 128, 256), "C={}"),
    "long_context_steps": lambda b: tuple(
        variant(f"C={2 * b.context}, M={m}", context=2 * b.context, steps=m) for m in (10, 20)
    ),
    "frozen": lambda b: _values("frozen_blocks", tuple(range(b.arch().depth)), "B={}"),
    "optimizer": lambda b: (
        variant("Adam, reset per document", optimizer="adam", reset_optimizer=True),
        variant("Adam, state kept", optimizer="adam", reset_optimizer=False),
        variant("GD, lr 1e-3 (paper)", optimizer="sgd", lr=1e-3),
        variant("GD, lr 3e-2", optimizer="sgd", lr=3e-2),
        variant("GD, lr 0.3", optimizer="sgd", lr=0.3),
    ),
    "mask": lambda b: _values("mask_prob", (0.0, 0.1, 0.2, 0.3), "p={}"),
    "shift": lambda b: tuple(
        variant(f"w={w}", window="centre", shift=w) for w in (0, b.context // 8, b.context // 4, b.context // 2)
    ),
    "order": lambda b: (
        variant("fixed order", order="cyclic"),
        *(variant(f"x2..x{n} shuffled", order="partial", shuffle_n=n) for n in (8, 16, 24) if n <= b.n_docs),
        variant("reshuffled every epoch", order="shuffled"),
        variant("last epoch reversed", order="reversed"),
    ),
    "heads": lambda b: _values("heads", (1, 2, 4, 8), "h={}"),
    "init": lambda b: (
        variant("Pythia init, real d and L", init="pythia", init_dims="model"),
        variant("Pythia init, d=2048, L=16", init="pythia", init_dims="reference"),
        variant("Gaussian 0.02", init="gaussian"),
    ),
    # Emergence with scale (Yang et al., Figs. 2, 3)
    "width": lambda b: _values("width", (32, 64, 128, 256, 512), "d={}"),
    "depth": lambda b: _values("depth", (1, 2, 4, 8), "L={}"),
    "pretrained": lambda b: (
        variant("random init", weights="random", vocab="common"),
        variant("pre-trained stand-in", weights="standin", vocab="common"),
    ),
    # Five-seed contrasts of the headline claims: the status page's exact sign test needs five
    # seeds to reach p = 0.031 (the sweeps above have three)
    "recovery5": lambda b: (
        variant("fixed order", order="cyclic"),
        variant("reshuffled every epoch", order="shuffled"),
    ),
    "depth5": lambda b: (variant("L=1", depth=1), variant("L=8", depth=8)),
    "adam_gd5": lambda b: (
        variant("Adam, reset per document", optimizer="adam", reset_optimizer=True),
        variant("GD, lr 0.3", optimizer="sgd", lr=0.3),
    ),
    # one arm per factor claim, five seeds; the base config (M=10, p=0, B=0, C=64, 4 heads,
    # Pythia init, fixed order) and its reshuffled control are recovery5's two variants
    "factors5": lambda b: (
        variant("M=1", steps=1),
        variant("p=0.3", mask_prob=0.3),
        variant("w=0 (centre window)", window="centre", shift=0),
        variant(f"w={b.context // 2} (centre window)", window="centre", shift=b.context // 2),
        variant("C=32", context=32),
        variant("C=256", context=256),
        variant(f"B={b.arch().depth - 1}", frozen_blocks=b.arch().depth - 1),
        variant("h=1", heads=1),
        variant("h=8", heads=8),
        variant("Gaussian 0.02", init="gaussian"),
        variant(f"x2..x{b.n_docs - 1} shuffled", order="partial", shuffle_n=b.n_docs - 1),
    ),
    # Yang et al.'s Fig. 13 with plain gradient descent: one step per document, GD's lr from
    # a tenth of its best M=10 lr (0.3) up to it, each lr's reshuffled control beside it
    "one_step_gd5": lambda b: (
        variant("GD, M=1, lr 0.03", optimizer="sgd", steps=1, lr=0.03),
        variant("GD, M=1, lr 0.1", optimizer="sgd", steps=1, lr=0.1),
        variant("GD, M=1, lr 0.3", optimizer="sgd", steps=1, lr=0.3),
        variant("GD, M=1, lr 0.03, reshuffled", optimizer="sgd", steps=1, lr=0.03, order="shuffled"),
        variant("GD, M=1, lr 0.3, reshuffled", optimizer="sgd", steps=1, lr=0.3, order="shuffled"),
    ),
    # Yang et al.'s Fig. 5a with a reshuffled control at every T (same T, E = 3 and steps)
    "docs5": lambda b: tuple(
        variant(f"T={t}{tag}", n_docs=t, order=order)
        for t in (10, 25, 50) for tag, order in (("", "cyclic"), (", reshuffled", "shuffled"))
    ),
    "docs_long_control": lambda b: _values("n_docs", (100, 200), "T={}, reshuffled"),
}  # fmt: skip

#: per-sweep changes to the scale's base config (e.g. fewer epochs for the long T sweep)
BASE_CHANGES = {
    "docs": {"epochs": 3},
    "docs_long": {"epochs": 3},
    "docs5": {"epochs": 3},
    "docs_long_control": {"epochs": 3, "order": "shuffled"},
    "pretrained": {"pretrain_steps": 1500},  # 1.5M tokens, about one pass over its corpus
}
#: sweeps with fewer seeds (T = 200 costs about 12 CPU-minutes per seed at laptop scale)
SEEDS = {"docs_long": (0,), "docs_long_control": (0,),
         **{n: tuple(range(5)) for n in ("recovery5", "depth5", "adam_gd5", "factors5",
                                         "one_step_gd5", "docs5")}}  # fmt: skip


def book_sweep(name: str, scale: str, seeds=None, **base_changes) -> CyclicSweep:
    """The sweep ``name`` of :data:`BOOK_SWEEPS` on the base config of ``scale``."""
    if name not in BOOK_SWEEPS:
        raise ConfigError(f"sweep must be one of {', '.join(BOOK_SWEEPS)}; got {name!r}")
    base = CyclicConfig.preset(scale, **{**BASE_CHANGES.get(name, {}), **base_changes})
    seeds = SEEDS.get(name, (0, 1, 2)) if seeds is None else seeds
    return CyclicSweep(name=name, base=base, variants=BOOK_SWEEPS[name](base), seeds=tuple(seeds))


def load_cyclic_sweep(
    name: str, scale: str = "laptop", *, allow_compute: bool = False, **kw
) -> CyclicSweepData:
    """The book sweep ``name`` at ``scale``: the committed file, or compute it if allowed."""
    sweep = book_sweep(name, scale, **kw)
    res = load_or_compute(
        f"sweep-{name}", sweep, run_cyclic_sweep, scale=scale, allow_compute=allow_compute
    )
    return CyclicSweepData(sweep, res.arrays, res.provenance)


# ---------------------------------------------------------------- reading a computed sweep


def sweep_trend(data, key: str = "score") -> tuple[np.ndarray, float]:
    """Seed means of ``key`` in the last epoch along a sweep, and their rank correlation
    with the variants' order (:func:`~cldyn_lib.spearman`): does ``key`` rise with the factor?

    ``data`` is a :class:`CyclicSweepData` (or anything with ``labels`` and ``get(i, key)``).
    Taught in the chapter *What drives recovery*.
    """
    means = np.array([np.nanmean(data.get(i, key)[:, -1]) for i in range(len(data.labels))])
    return means, metrics.spearman(np.arange(len(means)), means)


def doc_recovery_scores(data: CyclicSweepData, i: int, doc: int = 0) -> np.ndarray:
    """Recovery score of document ``doc`` alone (Yang et al.'s Fig. 12), per seed and epoch
    (seeds, E-1), for variant ``i`` of a sweep that kept its full loss matrices.

    Taught in the chapter *What drives recovery*.
    """
    L, S = data.arrays[f"v{i}_losses"], data.arrays[f"v{i}_schedule"]
    with np.errstate(all="ignore"):
        return np.array([[metrics.recovery_parts(L[k], n, S[k], docs=[doc]).score
                          for n in range(1, S.shape[1])] for k in range(len(L))])  # fmt: skip
