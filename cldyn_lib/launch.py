"""Sweeps beyond one process: a list of configs, any executor with ``submit()``, one result file.

An *experiment* is a name in :func:`experiments` (``cyclic``, ``transfer``, ``shock``,
``divergence``, ``toy``): a config class (a :class:`~cldyn_lib.config.Config`) and a function
``config -> {name: array}``. :func:`run_sweep` sends one job per config to an executor:

- ``None`` (default): ``concurrent.futures.ProcessPoolExecutor`` on this machine;
- ``make_executor("submitit-local")``: submitit's local executor (jobs as separate processes,
  logs under a folder), the same API as a SLURM cluster;
- ``make_executor("slurm", partition=..., gpus_per_node=1, timeout_min=60)``: a cluster;
- ``make_executor("ray")``: Ray tasks (an optional extra: ``pip install ray``).

Any object with ``submit(fn, *args)`` returning something with ``.result()`` works. Each job
writes its own ``.npz`` (atomically, with provenance) and returns its path; the sweep then
packs all jobs into one result file (arrays ``r{i}_{name}``, the configs in the
provenance) that the chapters read with :func:`load_sweep`. ``python -m cldyn_lib sweep``
is the command-line front end. Taught in the appendix *Many runs at once*.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import SCALES, Config, ConfigError, check_choice, check_int
from .sequential.pretrain import PRETRAIN_MODES
from .sequential.transfer import TransferConfig

EXECUTORS = ("local", "submitit-local", "slurm", "ray", "inline")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment: its config class and how to run one config into arrays."""

    name: str
    config_class: type
    run: Callable[[Any], dict]
    doc: str


def _cyclic(cfg) -> dict:
    from .cyclic.engine import run_cyclic
    from .cyclic.sweeps import summarize_run

    res = run_cyclic(cfg, progress=False)
    out = {
        **res.to_arrays(),
        **{f"summary_{k}": v for k, v in summarize_run(res.losses, res.schedule).items()},
    }
    out["seconds"] = np.array(res.provenance["run"]["total_s"])
    return out


def _transfer(cfg) -> dict:
    from .sequential.pretrain import PretrainConfig, load_or_pretrain
    from .sequential.transfer_engine import run_transfer

    pcfg = PretrainConfig.preset(cfg.pretrain_scale, mode=cfg.pretrain_mode, seed=cfg.pretrain_seed)
    model = load_or_pretrain(pcfg).model
    res = run_transfer(cfg.transfer(), model)
    return {
        "acc": res.acc, "loss": res.loss, "train_loss": res.train_loss,
        "seen": res.seen, "seen_mean_acc": res.seen_mean("acc"),
        "final_acc": np.array(res.final_acc), "diverged": np.array(res.diverged),
    }  # fmt: skip


def _shock(cfg) -> dict:
    from .sequential.transfer_studies import run_shock_study

    return run_shock_study(cfg)


def _divergence(cfg) -> dict:
    from .sequential.divergence import run_divergence_study

    return run_divergence_study(cfg)


def _toy(cfg) -> dict:
    from .cyclic.toy import run_toy

    return run_toy(cfg).to_arrays()


@dataclasses.dataclass(frozen=True)
class TransferJob(TransferConfig):
    """A transfer run (Frati et al.) from a cached pre-trained ConvNet."""

    pretrain_mode: str = "iid"  #: pre-training mode: "iid", "zapped_iid", "asb" or "meta_asb"
    pretrain_scale: str = "ci"  #: the PretrainConfig preset the ConvNet is trained at
    pretrain_seed: int = 0  #: seed of the pre-training run

    PRESETS = TransferConfig.PRESETS

    def validate(self) -> None:
        super().validate()
        check_choice("pretrain_mode", self.pretrain_mode, PRETRAIN_MODES)
        check_choice("pretrain_scale", self.pretrain_scale, SCALES)
        check_int("pretrain_seed", self.pretrain_seed, 0, 2**32 - 1)

    def transfer(self) -> TransferConfig:
        """The plain :class:`~cldyn_lib.TransferConfig` of this job."""
        names = {f.name for f in dataclasses.fields(TransferConfig)}
        return TransferConfig(**{k: v for k, v in self.to_dict().items() if k in names})


def experiments() -> dict[str, Experiment]:
    """Every experiment the command line and :func:`run_sweep` know, by name."""
    from .cyclic.config import CyclicConfig
    from .cyclic.toy import ToyConfig
    from .sequential.divergence import DivergenceStudy
    from .sequential.transfer_studies import ShockStudy

    return {
        "cyclic": Experiment("cyclic", CyclicConfig, _cyclic, "Yang et al.: one cyclic LM run"),
        "transfer": Experiment(
            "transfer", TransferJob, _transfer, "Frati et al.: one transfer run"
        ),
        "shock": Experiment("shock", ShockStudy, _shock, "Frati et al.: Table 1 / Fig. 1 study"),
        "divergence": Experiment(
            "divergence",
            DivergenceStudy,
            _divergence,
            "Frati et al.: Figs. 2-3 zap divergence study",
        ),
        "toy": Experiment("toy", ToyConfig, _toy, "Yang et al.: the toy model"),
    }


def get(name: str) -> Experiment:
    exps = experiments()
    check_choice("experiment", name, tuple(exps))
    return exps[name]


# ---------------------------------------------------------------- one job


def run_job(experiment: str, fields: dict, path: str, scale: str | None = None) -> str:
    """Run one config (given as its fields) and write ``path``; returns ``path``.

    A module-level function with plain arguments, so every executor can pickle it.
    """
    from .results import provenance, save_result

    exp = get(experiment)
    cfg = exp.config_class(**_from_json(exp.config_class, fields))
    arrays = exp.run(cfg)
    prov = provenance(cfg, scale=scale, device=getattr(cfg, "device", "cpu") or "cpu")
    prov["experiment"] = experiment
    save_result(path, arrays, prov)
    return path


def _from_json(cls, fields: dict) -> dict:
    """JSON turns tuples into lists; give tuple fields their tuples back."""
    out = dict(fields)
    for f in dataclasses.fields(cls):
        if isinstance(out.get(f.name), list):
            out[f.name] = tuple(out[f.name])
    return out


# ---------------------------------------------------------------- executors


class InlineExecutor:
    """Runs each job at ``submit`` time in this process (for debugging and notebooks)."""

    def submit(self, fn, *args, **kwargs):
        f: concurrent.futures.Future = concurrent.futures.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller via result()
            f.set_exception(e)
        return f


class RayExecutor:
    """``submit()`` over Ray tasks (``pip install ray``); ``num_gpus`` per task."""

    def __init__(self, num_gpus: float = 0.0, **init_kwargs):
        import ray

        if not ray.is_initialized():
            ray.init(**init_kwargs)
        self._ray, self._num_gpus = ray, num_gpus

    def submit(self, fn, *args, **kwargs):
        ray = self._ray
        ref = ray.remote(num_gpus=self._num_gpus)(fn).remote(*args, **kwargs)

        class _Future:
            def result(self, timeout=None):
                return ray.get(ref, timeout=timeout)

        return _Future()


def make_executor(kind: str = "local", folder: str | os.PathLike = "", **kwargs):
    """An executor by name (see the module docstring); ``kwargs`` go to its constructor
    (``max_workers`` for ``local``; submitit's ``update_parameters`` for the submitit ones,
    e.g. ``timeout_min``, ``slurm_partition``, ``gpus_per_node``, ``cpus_per_task``)."""
    check_choice("executor", kind, EXECUTORS)
    if kind == "inline":
        return InlineExecutor()
    if kind == "local":
        import multiprocessing

        workers = kwargs.pop("max_workers", None) or os.cpu_count() or 2
        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
    if kind == "ray":
        return RayExecutor(**kwargs)
    try:
        import submitit
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("executor 'submitit-local'/'slurm' needs `pip install submitit`") from e
    folder = Path(folder or "submitit_logs")
    if kind == "submitit-local":
        ex = submitit.LocalExecutor(folder=str(folder))
    else:
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": 60, **kwargs}
    ex.update_parameters(**params)
    return ex


# ---------------------------------------------------------------- the sweep


def run_sweep(
    experiment: str,
    configs: Sequence[Config],
    path: str | os.PathLike,
    executor=None,
    *,
    scale: str | None = None,
    jobs_dir: str | os.PathLike | None = None,
) -> Path:
    """Run ``configs`` of ``experiment`` as one job each on ``executor``, pack the results
    into ``path`` (one ``.npz``; see :func:`load_sweep`) and return it.

    ``executor=None`` uses local processes (one per core). Each job's own file goes to
    ``jobs_dir`` (default: ``<path without .npz>.jobs/``), which a cluster's jobs must be
    able to write (a shared file system).
    """

    exp = get(experiment)
    configs = list(configs)
    if not configs:
        raise ConfigError("configs must not be empty")
    for c in configs:
        if not isinstance(c, exp.config_class):
            raise ConfigError(f"config {c!r} is not a {exp.config_class.__name__}")
    path = Path(path)
    jobs_dir = Path(jobs_dir) if jobs_dir else path.with_suffix(".jobs")
    jobs_dir.mkdir(parents=True, exist_ok=True)
    own = executor is None
    executor = (
        make_executor("local", max_workers=min(len(configs), os.cpu_count() or 1))
        if own
        else executor
    )
    try:
        futures = [
            executor.submit(
                run_job, experiment, c.to_dict(), str(jobs_dir / f"job{i:04d}-{c.key()}.npz"), scale
            )  # fmt: skip
            for i, c in enumerate(configs)
        ]
        paths = [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()
    return pack(experiment, configs, paths, path, scale=scale, executor=type(executor).__name__)


def pack(experiment, configs, paths, path, *, scale=None, executor="") -> Path:
    """One file from the jobs' files: arrays ``r{i}_{name}``, configs in the provenance."""
    from .results import load_result, provenance, save_result

    arrays: dict[str, np.ndarray] = {}
    for i, p in enumerate(paths):
        for k, v in load_result(p).arrays.items():
            arrays[f"r{i}_{k}"] = v
    prov = provenance(None, scale=scale)
    prov["sweep"] = {
        "experiment": experiment,
        "executor": executor,
        "configs": [c.to_dict() for c in configs],
    }
    return save_result(path, arrays, prov)


@dataclasses.dataclass
class SweepResult:
    """A packed sweep: ``configs[i]`` (field dicts) and ``run(i)`` (its arrays)."""

    experiment: str
    configs: list[dict]
    arrays: dict[str, np.ndarray]
    provenance: dict

    def __len__(self) -> int:
        return len(self.configs)

    def run(self, i: int) -> dict[str, np.ndarray]:
        pre = f"r{i}_"
        return {k[len(pre) :]: v for k, v in self.arrays.items() if k.startswith(pre)}

    def stack(self, name: str, where: Callable[[dict], bool] | None = None) -> np.ndarray:
        """Array ``name`` of every run (or of those whose config passes ``where``), stacked."""
        idx = [i for i, c in enumerate(self.configs) if where is None or where(c)]
        return np.stack([self.arrays[f"r{i}_{name}"] for i in idx])

    def field(self, name: str) -> list:
        return [c[name] for c in self.configs]


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """Read a file written by :func:`run_sweep` (or ``python -m cldyn_lib sweep``)."""
    from .results import load_result

    r = load_result(path)
    meta = r.provenance.get("sweep")
    if not meta:
        raise ValueError(f"{path} is not a packed sweep (no 'sweep' in its provenance)")
    return SweepResult(meta["experiment"], meta["configs"], r.arrays, r.provenance)


def config_json(config: Config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)
