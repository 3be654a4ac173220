"""Yang et al.'s protocol on your model and your documents: runs, control, seeds and verdict.

``python -m cldyn_lib analyse --model ./my-model --docs notes.jsonl ...`` and
:func:`analyse` run one config (any :class:`~cldyn_lib.CyclicConfig`, usually from
:func:`analysis_config`) twice per seed: in the **fixed order** (the same order every
epoch, Yang et al.'s protocol) and in the **reshuffled control** (a new order every epoch, with
the same documents, initial weights and seed). Anticipatory recovery is a property of the
fixed order, so the verdict contrasts the two per seed:

- statistic: the recovery score RS(E-1) of the last epoch that has one (Yang et al.'s Eq. 1);
- claim: the fixed order's score exceeds the control's by more than
  :data:`RECOVERY_CRITERION`'s ``delta`` (0.1, as the book's claim ``B-lm-recovery``), in
  the exact one-sided sign test over seeds at ``alpha`` 0.05 (:func:`cldyn_lib.decide`);
- words: :func:`cldyn_lib.verdict_of`, as on the book's status page. The sign test cannot
  reach 0.05 with fewer than 5 seeds, so fewer seeds give at best "indicative (n seeds)";
  a fixed order that forgets less than :data:`~cldyn_lib.MIN_FORGOTTEN` nats/token is
  "not testable at this scale" (Eq. 1 divides by the amount forgotten).

Every run writes its loss matrix with provenance to ``out/runs/`` as soon as it ends and
checkpoints itself every epoch to ``out/checkpoints/`` while it runs, so the same call (the
same command) after an interruption loads the finished runs and resumes the unfinished one.
:func:`cldyn_lib.write_report` then writes the figures and ``report.html``.

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import checkpoint as ck
from ..config import ConfigError, check_int
from ..models.gpt_neox import MODELS
from ..results import load_result, save_result
from ..stats import Criterion, Outcome, decide, verdict_of
from .config import CyclicConfig
from .engine import run_cyclic
from .estimate import estimate_cyclic
from .figures import MIN_FORGOTTEN, recovery_parts_of, recovery_scores_of
from .result import CyclicResult
from .state import setup_cyclic

#: the contrast behind the verdict, declared before any run
RECOVERY_CRITERION = Criterion(kind="contrast", direction="greater", delta=0.1, alpha=0.05)
ARMS = {"cyclic": "fixed order", "shuffled": "reshuffled control"}
PREDICATE = (
    "per seed, RS(E-1) of the fixed order > RS(E-1) of the reshuffled control + delta; "
    "exact one-sided sign test over the seeds"
)


def analysis_config(
    model: str = "",
    docs: str = "",
    *,
    docs_field: str = "text",
    n_docs: int = 10,
    context: int = 128,
    steps: int = 5,
    epochs: int = 4,
    full_windows: bool = False,
    **fields,
) -> CyclicConfig:
    """The config ``python -m cldyn_lib analyse`` runs, from its arguments.

    ``model``: a folder or hub id of any causal LM (a Pythia name such as ``"pythia-160m"``
    means the book's Pythia); ``docs``: your documents (``""``: the CNN/DailyMail pool).
    Everything else is Yang et al.'s default (pre-trained weights, plain SGD at lr 1e-3, the
    model's full vocabulary) unless ``fields`` says otherwise. Short documents are padded and
    left out of the loss; ``full_windows=True`` refuses them instead.
    """
    check_int("epochs", epochs, 2, 10_000)  # one epoch has no recovery score
    if model in MODELS:
        fields = {"model": model, **fields}
        model = ""
    return CyclicConfig(
        causal_lm=model, docs=docs, docs_field=docs_field, n_docs=n_docs, context=context,
        steps=steps, epochs=epochs, require_full=full_windows, **fields,
    )  # fmt: skip


def recovery_verdict(
    fixed, control, forgotten, criterion: Criterion = RECOVERY_CRITERION
) -> tuple[str, Outcome]:
    """The verdict from per-seed RS(E-1) of both arms and the fixed order's forgetting."""
    outcome = decide(np.asarray(fixed, float), np.asarray(control, float), criterion)
    lost = float(np.nanmean(forgotten)) if np.isfinite(forgotten).any() else 0.0
    if lost < MIN_FORGOTTEN:
        why = f"the fixed order forgets {lost:.3f} nats/token, under {MIN_FORGOTTEN}"
        return f"not testable at this scale ({why})", outcome
    return verdict_of(outcome), outcome


@dataclasses.dataclass
class Analysis:
    """Both arms of every seed, and what they show. ``fixed[i]`` and ``control[i]`` are
    the runs of ``seeds[i]``."""

    config: CyclicConfig
    seeds: list[int]
    fixed: list[CyclicResult]
    control: list[CyclicResult]
    out: Path | None = None
    estimate: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0  #: wall time of the call that made this (loading included)
    loaded: int = 0  #: runs read back from ``out`` instead of computed
    criterion: Criterion = RECOVERY_CRITERION

    def scores(self, arm: str = "cyclic") -> np.ndarray:
        """Recovery scores (seeds, E-1) of one arm (NaN where nothing was forgotten)."""
        return recovery_scores_of(self.fixed if arm == "cyclic" else self.control)

    def forgotten(self, arm: str = "cyclic") -> np.ndarray:
        """Amount forgotten per epoch (seeds, E-1): Eq. 1's denominator, nats/token."""
        return recovery_parts_of(self.fixed if arm == "cyclic" else self.control, "forgotten")

    def verdict_and_outcome(self) -> tuple[str, Outcome]:
        f, c = self.scores("cyclic")[:, -1], self.scores("shuffled")[:, -1]
        return recovery_verdict(f, c, self.forgotten("cyclic")[:, -1], self.criterion)

    @property
    def verdict(self) -> str:
        """The verdict in the words of the book's status page."""
        return self.verdict_and_outcome()[0]

    def summary(self) -> dict:
        """The numbers of the verdict: scores, difference, seeds, sign test."""
        verdict, o = self.verdict_and_outcome()
        f, c = self.scores("cyclic")[:, -1], self.scores("shuffled")[:, -1]
        return {
            "verdict": verdict, "rs_fixed": float(np.nanmean(f)), "rs_control": float(np.nanmean(c)),
            "difference": o.mean, "low": o.low, "high": o.high, "seeds_beyond_delta": o.k,
            "n_seeds": o.n, "p": o.p, "delta": self.criterion.delta, "alpha": self.criterion.alpha,
            "forgotten": float(np.nanmean(self.forgotten("cyclic")[:, -1])),
            "epoch": self.config.epochs - 1, "outcome": o.outcome,
        }  # fmt: skip

    def table(self):
        """Per epoch: recovery score and amount forgotten of both arms (mean and std)."""
        import pandas as pd

        rows = []
        for n in range(1, self.config.epochs):
            row = {"epoch n": n}
            for arm, label in ARMS.items():
                rs, lost = self.scores(arm)[:, n - 1], self.forgotten(arm)[:, n - 1]
                row[f"RS(n), {label}"] = _mean_std(rs)
                row[f"forgotten, {label}"] = _mean_std(lost)
            rows.append(row)
        return pd.DataFrame(rows)

    def seed_table(self):
        """Per seed: RS(E-1) of both arms and their difference (the sign test's data)."""
        import pandas as pd

        f, c = self.scores("cyclic")[:, -1], self.scores("shuffled")[:, -1]
        d = self.criterion.delta
        return pd.DataFrame({
            "seed": self.seeds, "RS fixed": np.round(f, 3), "RS control": np.round(c, 3),
            "difference": np.round(f - c, 3), f"> delta = {d:g}": (f - c) > d,
        })  # fmt: skip

    def arrays(self) -> dict[str, np.ndarray]:
        """Every loss matrix and schedule, stacked over seeds, for one ``.npz``."""
        out = {"seeds": np.array(self.seeds)}
        for arm, runs in (("fixed", self.fixed), ("control", self.control)):
            out[f"{arm}_losses"] = np.stack([r.losses for r in runs])
            out[f"{arm}_schedules"] = np.stack([r.schedule for r in runs])
            out[f"{arm}_train_losses"] = np.stack([r.train_losses for r in runs])
        out["fixed_scores"], out["control_scores"] = self.scores("cyclic"), self.scores("shuffled")
        out["doc_ids"] = np.array(self.fixed[0].doc_ids, dtype=str)
        return out


def _mean_std(x: np.ndarray) -> str:
    if not np.isfinite(x).any():
        return "undefined"
    return f"{np.nanmean(x):.3f} ± {np.nanstd(x):.3f}" if len(x) > 1 else f"{x[0]:.3f}"


def run_file(out: Path, config: CyclicConfig) -> Path:
    """Where the result of one run of an analysis is written: ``out/runs/<order>-seed<s>-<key>.npz``."""
    return out / "runs" / f"{config.order}-seed{config.seed}-{config.key()}.npz"


def load_run(path: Path, config: CyclicConfig) -> CyclicResult:
    """A run written by :func:`analyse` back as a :class:`~cldyn_lib.CyclicResult`."""
    r = load_result(path)
    return CyclicResult(r["losses"], r["schedule"], r["train_losses"],
                        [str(d) for d in r["doc_ids"]], r.provenance, config)  # fmt: skip


def describe_analysis_estimate(est: dict, n_runs: int, config: CyclicConfig, device: str) -> str:
    """The two lines printed before an analysis: its runs, their time and memory."""
    secs = est["seconds"] * n_runs
    when = f"{secs / 60:.0f} min" if secs >= 60 else f"{secs:.0f} s"
    mem = est["memory_bytes"]
    size = f"{mem / 2**30:.1f} GiB" if mem >= 2**30 else f"{mem / 2**20:.0f} MiB"
    c = config
    return (
        f"{n_runs} runs to do (fixed order and control per seed): "
        f"T={c.n_docs} C={c.context} M={c.steps} E={c.epochs} on {device}\n"
        f"estimated: about {when} in all, {size} per run ({est['flops'] * n_runs:.2g} FLOP; rough)"
    )


def analyse(
    config: CyclicConfig,
    out: str | Path | None = None,
    *,
    seeds: int = 1,
    first_seed: int = 0,
    progress: bool = True,
    checkpoint_every: int = 1,
    log: Callable[[str], None] | None = print,
) -> Analysis:
    """Run the fixed order and the reshuffled control of ``config`` for ``seeds`` seeds.

    Seeds ``first_seed .. first_seed + seeds - 1`` (``config.seed`` and ``config.order`` are
    replaced). With ``out``, every finished run is saved to ``out/runs`` and loaded back by
    a later call with the same config, and a running one checkpoints to
    ``out/checkpoints`` every ``checkpoint_every`` epochs and resumes from there. Every
    check (model, tokenizer, documents, ranges) runs before any training, and the estimate
    is passed to ``log`` first. A diverged run raises :class:`cldyn_lib.DivergedError`
    after its partial result is saved (``out/runs/...-diverged.npz``).
    """
    t0 = time.perf_counter()
    check_int("seeds", seeds, 1, 10_000)
    check_int("first_seed", first_seed, 0, 2**32 - 1 - seeds)
    if not isinstance(config, CyclicConfig):
        raise ConfigError(f"config must be a CyclicConfig; got {type(config).__name__}")
    out = Path(out).expanduser() if out is not None else None
    plan = [(s, config.replace(seed=s, order=arm)) for s in range(first_seed, first_seed + seeds)
            for arm in ARMS]  # fmt: skip
    todo = [c for _, c in plan if out is None or not run_file(out, c).exists()]
    state, est = None, {}
    if todo:  # every check, and the model and documents of the first run: before compute
        device = todo[0].check_resources()
        state = setup_cyclic(todo[0], device=device)
        est = estimate_cyclic(state)
        if log is not None:
            log(describe_analysis_estimate(est, len(todo), config, device))
    results: dict[tuple[int, str], CyclicResult] = {}
    loaded = 0
    for seed, cfg in plan:
        path = run_file(out, cfg) if out is not None else None
        if path is not None and path.exists():
            results[seed, cfg.order] = load_run(path, cfg)
            loaded += 1
            continue
        first, state = state, None
        ckpt = out / "checkpoints" if out is not None else None
        try:
            res = run_cyclic(cfg, state=first if first is not None and first.config == cfg else None,
                             checkpoint_dir=ckpt, checkpoint_every=checkpoint_every,
                             progress=progress, desc=f"seed {seed}, {ARMS[cfg.order]}")  # fmt: skip
        except ck.DivergedError as err:
            if path is not None and err.result is not None:
                bad = path.with_name(path.stem + "-diverged.npz")
                save_result(bad, err.result.to_arrays(), err.result.provenance)
                head = str(err).split("; the partial result")[0]
                err.args = (f"{head}; partial result saved to {bad}",)
            raise
        if path is not None:
            save_result(path, res.to_arrays(), res.provenance)
            ck.path_for(ckpt, "cyclic", cfg).unlink(missing_ok=True)  # the result replaces it
        results[seed, cfg.order] = res
    seed_list = list(range(first_seed, first_seed + seeds))
    return Analysis(
        config=config, seeds=seed_list, fixed=[results[s, "cyclic"] for s in seed_list],
        control=[results[s, "shuffled"] for s in seed_list], out=out, estimate=est,
        seconds=time.perf_counter() - t0, loaded=loaded,
    )  # fmt: skip
