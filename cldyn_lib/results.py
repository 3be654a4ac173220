"""Small result arrays with provenance: "load if present, else compute", written atomically.

A result is a single ``.npz`` file: the named arrays plus a JSON provenance record under the
key ``__provenance__`` (config, scale, package versions, device, data sources, git commit,
time). It is written under a temporary name and renamed into place, so a file with the
final name is always complete.

Results computed at a larger scale than ``ci`` (laptop, GPU) may be committed under
``data/results/`` so that the rendered book shows the phenomenon at a scale the ci build
cannot reach; the chapters label them with their scale and provenance, and still execute
the ci run live beside them. No model checkpoints go into git.

Introduced in the chapter *The toy model*; used by every chapter with committed results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .files import display_path, repo_root, write_atomic

PROVENANCE_KEY = "__provenance__"


def results_dir() -> Path:
    """``CLDYN_RESULTS``, else ``data/results`` in the repository, else ``~/.cache/cldyn/results``."""
    if os.environ.get("CLDYN_RESULTS"):
        return Path(os.environ["CLDYN_RESULTS"]).expanduser()
    root = repo_root()
    return root / "data" / "results" if root else Path.home() / ".cache" / "cldyn" / "results"


@dataclasses.dataclass
class Result:
    """Named arrays plus their provenance."""

    arrays: dict[str, np.ndarray]
    provenance: dict[str, Any]
    path: Path | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    @property
    def scale(self) -> str | None:
        return self.provenance.get("scale")

    def label(self) -> str:
        """A one-line description for figure captions: scale, device, date, commit."""
        p = self.provenance
        commit = (p.get("git") or {}).get("commit") or "unknown commit"
        device = (p.get("device") or {}).get("name", "?")
        return f"scale {p.get('scale')}, {device}, {p.get('created', '?')[:10]}, {commit[:8]}"


# ---------------------------------------------------------------- provenance


def library_sha256(package: str | os.PathLike | None = None) -> str:
    """SHA-256 of the library's source (every ``cldyn_lib/**/*.py``, by relative path): two
    results with the same hash were made by the same library code. ``make results`` skips a
    result whose file already has the current hash. ``package``: another copy's folder."""
    import hashlib

    pkg = Path(package) if package else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _git(root, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          timeout=10).stdout  # fmt: skip


def git_commit() -> dict[str, Any]:
    """The commit, whether the tree was dirty (tracked files), whether the library's own files
    were, and the library's source hash. Without a repository (a copy on a GPU machine) the
    commit and cleanliness come from ``CLDYN_COMMIT`` and ``CLDYN_CLEAN=1``, set by whoever
    copied a clean commit there."""
    out: dict[str, Any] = {"commit": None, "dirty": None, "library_dirty": None}
    root = repo_root()
    try:
        if root is not None:
            commit = _git(root, "rev-parse", "HEAD").strip()
            # committed results themselves are not code: rewriting them leaves the tree clean
            status = _git(root, "status", "--porcelain", "-uno", "--", ".", ":!data/results")
            library = _git(root, "status", "--porcelain", "--", "cldyn_lib")
            out = {"commit": commit or None, "dirty": bool(status.strip()),
                   "library_dirty": bool(library.strip())}  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pass
    if out["commit"] is None and os.environ.get("CLDYN_COMMIT"):
        clean = os.environ.get("CLDYN_CLEAN", "") == "1"
        out = {"commit": os.environ["CLDYN_COMMIT"], "dirty": not clean,
               "library_dirty": not clean, "from": "environment"}  # fmt: skip
    out["library_sha256"] = library_sha256()
    return out


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("cldyn", "numpy", "torch", "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def cpu_signature() -> str:
    """The CPU's model and the vector instructions torch uses on it ("AMD EPYC/AVX2"): CPU
    results are bitwise reproducible on the same signature, and differ by float round-off
    (which training amplifies) across them."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    try:
        import torch

        isa = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):  # pragma: no cover
        isa = "?"
    return f"{model}/{isa}"


def reproduction_tolerance(prov: Mapping[str, Any]) -> float:
    """How far (nats, or the arrays' units) a re-run here may differ from the result
    recorded by ``prov``: 0 on the same CPU signature and package versions (CPU runs are
    bitwise reproducible), else 0.05 (float round-off of other kernels, amplified by
    training). Taught in the appendix *Many runs at once*."""
    same_cpu = (prov.get("device") or {}).get("cpu") == cpu_signature()
    return 0.0 if same_cpu and prov.get("versions") == package_versions() else 0.05


def reproduces(stored, again, tol: float) -> bool:
    """Whether a re-run's array ``again`` reproduces the committed ``stored`` within ``tol``
    (:func:`reproduction_tolerance`): bitwise when ``tol`` is 0 (NaN equal to NaN); else the
    first quarter of axis 0 (time: steps or evaluations) within ``tol`` everywhere and the
    whole array within ``tol`` on average, since round-off grows over training on another
    CPU while a wrong run misses both by far. Taught in the appendix *Many runs at once*."""
    stored, again = np.atleast_1d(np.asarray(stored)), np.atleast_1d(np.asarray(again))
    if stored.shape != again.shape:
        return False
    if tol == 0:
        return bool(np.array_equal(stored, again, equal_nan=True))
    head = max(1, len(stored) // 4)
    start = np.allclose(stored[:head], again[:head], atol=tol, rtol=0, equal_nan=True)
    return bool(start and abs(np.nanmean(stored) - np.nanmean(again)) < tol)


def device_info(device: str = "cpu") -> dict[str, Any]:
    """The device a result was computed on (name, CPU signature, threads; TF32 on CUDA)."""
    info: dict[str, Any] = {"type": device, "name": platform.processor() or platform.machine()}
    info["cpu"] = cpu_signature()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            info["name"] = torch.cuda.get_device_name(0)
            info["tf32"] = torch.backends.cuda.matmul.allow_tf32
    except ImportError:  # pragma: no cover
        pass
    return info


def provenance(
    config=None,
    *,
    scale: str | None = None,
    device: str = "cpu",
    sources: tuple | list = (),  # DataSource records (cldyn_lib.data.fetch)
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to tell where a result came from."""
    cfg = None
    if config is not None:
        fields = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        cfg = {"type": type(config).__name__, **fields}
    return {
        "config": cfg,
        "scale": scale,
        "versions": package_versions(),
        "device": device_info(device),
        "data": [s.to_dict() for s in sources],
        "git": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **dict(extra or {}),
    }


# ---------------------------------------------------------------- files


def save_result(
    path: str | os.PathLike, arrays: Mapping[str, Any], prov: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` and ``prov`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    if PROVENANCE_KEY in arrays:
        raise ValueError(f"array name {PROVENANCE_KEY!r} is reserved")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[PROVENANCE_KEY] = np.array(json.dumps(prov, sort_keys=True, default=str))
    write_atomic(path, lambda f: np.savez_compressed(f, **payload))
    return path


def load_result(path: str | os.PathLike) -> Result:
    """Read a result written by :func:`save_result` (no pickles: ``allow_pickle=False``)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != PROVENANCE_KEY}
        prov = json.loads(str(data[PROVENANCE_KEY])) if PROVENANCE_KEY in data.files else {}
    return Result(arrays, prov, path)


def result_path(name: str, config, scale: str | None = None) -> Path:
    """``<results_dir>/<name>-<scale>-<config hash>.npz``."""
    tag = f"-{scale}" if scale else ""
    return results_dir() / f"{name}{tag}-{config.key()}.npz"


def load_or_compute(
    name: str,
    config,
    compute: Callable[[Any], Mapping[str, Any]],
    *,
    scale: str | None = None,
    allow_compute: bool = True,
    recompute: bool = False,
    device: str = "cpu",
    sources=(),
) -> Result:
    """Load the result for ``(name, config)`` if present, else compute and save it.

    ``compute(config)`` returns a mapping of arrays. With ``allow_compute=False`` a missing
    result is an error that says how to make it (the ci build uses this so it never starts a
    laptop-scale computation by accident).
    """
    path = result_path(name, config, scale)
    if path.exists() and not recompute:
        return load_result(path)
    if not allow_compute:
        raise FileNotFoundError(
            f"result {path.name} is missing and computing it is not allowed here "
            f"(scale {scale!r} is larger than this run's). Compute it with "
            f"load_or_compute({name!r}, config, ..., allow_compute=True) at that scale, then "
            f"commit {display_path(path)}."
        )
    t0 = time.perf_counter()
    arrays = dict(compute(config))
    prov = provenance(config, scale=scale, device=device, sources=sources)
    prov["compute_seconds"] = round(time.perf_counter() - t0, 1)  # what `make results` costs
    save_result(path, arrays, prov)
    return Result(arrays, prov, path)


# ---------------------------------------------------------------- in the chapters


def may_compute(scale: str, at: str = "laptop") -> bool:
    """Whether a chapter run at ``scale`` may compute a result committed at scale ``at``:
    only a run at that scale itself, or any run larger than ci for a result committed at ci
    (one too slow for the ci build's time budget). The ci build never computes one.

    Used by every chapter that shows committed larger-scale results; introduced in
    *Anticipatory recovery in a language model*.
    """
    return scale != "ci" and (at == "ci" or scale == at)


def live_result(
    name: str, config, compute: Callable[[Any], Mapping[str, Any]], scale: str
) -> dict[str, Any]:
    """The arrays of the chapter's live run of ``config`` (at the chapter's ``scale``).

    At ci, ``compute(config)`` runs on every execution and nothing is saved; at larger
    scales the result ``name`` is loaded, or computed and saved
    (:func:`~cldyn_lib.load_or_compute` with ``scale=scale``).
    Used by *Zapping and transfer shock*, *How far a shock travels*, *Optimizers and
    sequential learning* and *Why Adam remembers*.
    """
    if scale == "ci":
        return compute(config)
    return load_or_compute(name, config, compute, scale=scale, allow_compute=True).arrays


def committed_result(
    name: str,
    config,
    compute: Callable[[Any], Mapping[str, Any]],
    scale: str,
    *,
    at: str = "laptop",
) -> Result:
    """The result ``name`` of ``config`` committed at scale ``at``, for a chapter run at ``scale``.

    A missing result is an error, except that a chapter run at scale ``at`` computes and
    saves it, and so does any run larger than ci for a result committed at ci scale (one
    too slow for the ci build's time budget). So the ci build never starts a computation.
    Used by *Zapping and transfer shock*, *How far a shock travels*, *Optimizers and
    sequential learning* and *Why Adam remembers*.
    """
    return load_or_compute(name, config, compute, scale=at, allow_compute=may_compute(scale, at))
