"""Runs that survive: a generic checkpoint store, random states, divergence, determinism.

A long run (a sweep in Colab, which disconnects; an hour of pre-training on a laptop) saves
its whole state every ``every`` epochs to ``checkpoint_dir``; run it again with the same
config and directory and it continues from the last complete checkpoint, giving *bitwise*
the same loss matrix as a run that was never interrupted (on a CPU)::

    res = cl.run_cyclic(cfg, checkpoint_dir="runs/")          # dies at epoch 4 of 5 ...
    res = cl.run_cyclic(cfg, checkpoint_dir="runs/")          # ... resumes at epoch 4

In Colab, mount Google Drive first (``from google.colab import drive; drive.mount(...)``
with Colab's usual mount point) and give a folder on it, e.g. ``MyDrive/cldyn-runs`` under
that mount point, as ``checkpoint_dir``, so that the checkpoints outlive the virtual machine.

A checkpoint holds the model, the optimizer, every random generator the run uses (its own
NumPy and torch generators, and the global Python, NumPy, torch and CUDA states), the data
order and the partial loss matrix. It is written with ``torch.save`` to a temporary file
beside the target, flushed to disk, then renamed over it (``os.replace``), so a crash,
even in the middle of a write, leaves the previous checkpoint intact and never a partial file
under the final name. Everything in it is a tensor, a number, a string or a list/dict of
those (random states are JSON strings), so it loads with ``torch.load(weights_only=True)``:
no pickled objects. A checkpoint records the config's key and whether the run was finished,
diverged or still in progress, so a partial state is never mistaken for a result.

Also here: :class:`DivergedError` (a NaN/inf loss stops a run; the exception names the step
and carries the partial result) and :func:`deterministic` (CUDA's deterministic algorithms).
This module knows no engine: each engine (:mod:`cldyn_lib.cyclic.resume`,
:mod:`cldyn_lib.sequential.transfer_engine`, :mod:`cldyn_lib.sequential.pretrain`) packs its
own state into a payload of tensors and primitives and restores it; the store here writes,
reads and checks it, and captures the global random states.
Taught in the book's introduction (*Runs that survive*).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError, check_int
from .files import write_atomic

FORMAT = 1  #: bumped when the layout of a checkpoint changes
STATUSES = ("running", "finished", "diverged")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, another format, or another config."""


class DivergedError(FloatingPointError):
    """A non-finite loss stopped a run. ``result`` is the partial result (rows after the
    divergence are NaN), ``step`` names where it happened, ``path`` the saved checkpoint."""

    def __init__(self, message: str, result: Any = None, step: dict | None = None, path=None):
        super().__init__(message)
        self.result = result
        self.step = step or {}
        self.path = path


# ---------------------------------------------------------------- random states


def np_generator_state(rng: np.random.Generator) -> str:
    """A NumPy generator's state as JSON text (for a checkpoint payload)."""
    return json.dumps(rng.bit_generator.state)  # 128-bit integers survive JSON, not tensors


def set_np_generator_state(rng: np.random.Generator, text: str) -> None:
    """Restore a generator from :func:`np_generator_state`'s text."""
    rng.bit_generator.state = json.loads(text)


def global_rng_states() -> dict[str, Any]:
    """The global random states: Python, NumPy, torch (CPU) and every CUDA device."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": json.dumps([version, list(mt), gauss]),
        "numpy": json.dumps([kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_global_rng_states(states: dict[str, Any]) -> None:
    version, mt, gauss = json.loads(states["python"])
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = json.loads(states["numpy"])
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------- files


def _write_file(f, data: bytes) -> None:
    """Write ``data`` and push it to the disk (a test replaces this to die mid-write)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def save(path: str | os.PathLike, payload: dict[str, Any]) -> int:
    """Write ``payload`` (tensors and primitives) atomically to ``path``; returns its bytes."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    data = buf.getvalue()
    write_atomic(Path(path), lambda f: _write_file(f, data))
    return len(data)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` (``weights_only=True``: no pickled objects)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: say which, never resume from it silently
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    fmt = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}, need {FORMAT}")
    if blob.get("status") not in STATUSES:
        raise CheckpointError(f"{path}: status {blob.get('status')!r} not one of {STATUSES}")
    return blob


def path_for(checkpoint_dir: str | os.PathLike, kind: str, config) -> Path:
    """``<dir>/<kind>-<config key>.ckpt``: one file per config, so sweeps share a folder."""
    return Path(checkpoint_dir).expanduser() / f"{kind}-{config.key()}.ckpt"


def checkpointer(checkpoint_dir, kind: str, config, every: int = 1) -> Checkpointer | None:
    """The engines' ``checkpoint_dir=`` option: None (no checkpoints) or a
    :class:`Checkpointer`, whose arguments are checked before any compute."""
    return None if checkpoint_dir is None else Checkpointer(checkpoint_dir, kind, config, every)


class Checkpointer:
    """Where and how often one run saves itself. ``every``: epochs (cyclic) or evaluations
    (transfer) between checkpoints; the final state is always saved."""

    def __init__(self, checkpoint_dir, kind: str, config, every: int = 1):
        if not isinstance(checkpoint_dir, (str, os.PathLike)) or not str(checkpoint_dir):
            raise ConfigError(f"checkpoint_dir must be a folder path; got {checkpoint_dir!r}")
        self.every = check_int("checkpoint_every", every, 1, 10**9)
        self.kind, self.config = kind, config
        self.path = path_for(checkpoint_dir, kind, config)
        self.sizes: list[int] = []  #: bytes of each checkpoint written by this process
        self.seconds: list[float] = []  #: time each of them took (packing and writing)

    def load(self) -> dict[str, Any] | None:
        """The last complete checkpoint of this config, or None when there is none."""
        for stale in self.path.parent.glob(self.path.name + ".*.part"):
            stale.unlink(missing_ok=True)  # a write that was killed: never read, only removed
        if not self.path.exists():
            return None
        blob = load(self.path)
        key = self.config.key()
        if blob.get("kind") != self.kind or blob.get("config_key") != key:
            raise CheckpointError(
                f"{self.path}: a checkpoint of {blob.get('kind')} {blob.get('config_key')}, "
                f"not of this {self.kind} config {key}"
            )
        return blob

    def save(self, payload: dict[str, Any], status: str = "running") -> int:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}; got {status!r}")
        t0 = time.perf_counter()
        head = {
            "kind": self.kind,
            "config_key": self.config.key(),
            "config": json.dumps(self.config.to_dict(), sort_keys=True, default=str),
            "status": status,
            "rng": global_rng_states(),
        }
        size = save(self.path, {**head, **payload})
        self.sizes.append(size)
        self.seconds.append(time.perf_counter() - t0)
        return size


# ---------------------------------------------------------------- determinism


@contextlib.contextmanager
def deterministic(enabled: bool = True):
    """CUDA's deterministic mode for the duration of a run (a no-op when ``enabled`` is False).

    Sets ``torch.use_deterministic_algorithms(True)``, cuDNN's deterministic flag (and turns
    its autotuner off) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which cuBLAS reads when it
    first starts: call it before anything else touches CUDA in the process. The cost: the
    deterministic kernels are slower (reductions in a fixed order, no atomics; commonly
    quoted as 10-30% on GPU training, more for scatter-heavy ops) and an op without a
    deterministic kernel raises instead of running. On a CPU the engines here are already
    deterministic, so the mode changes nothing there.
    """
    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:3]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
