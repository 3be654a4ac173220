"""Runs that survive: checkpoints, resume, divergence, determinism, estimates.

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
and carries the partial result), :func:`deterministic` (CUDA's deterministic algorithms) and
:func:`estimate_cyclic` (time and memory before a long run). The engines
(:func:`cldyn_lib.cyclic.run_cyclic`, :func:`cldyn_lib.transfer.run_transfer`,
:func:`cldyn_lib.pretrain.pretrain`) own their state; this module only packs and unpacks it.
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


def _np_generator_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)  # 128-bit integers survive JSON, not tensors


def _set_np_generator_state(rng: np.random.Generator, text: str) -> None:
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
    from .fetch import write_atomic

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


# ---------------------------------------------------------------- estimates

#: sustained fp32 training throughput assumed for estimates (FLOP/s); deliberately modest
THROUGHPUT = {"cpu": 2e10, "cuda": 2e13}


def estimate_cyclic(state) -> dict[str, float]:
    """Rough time and memory of a cyclic run, from its flops and its tensors.

    Memory: weights, gradients and two Adam moments in fp32 (4 x 4 bytes per parameter),
    the largest evaluation logits (documents per forward x C x vocabulary x 4 bytes, twice
    for the log-softmax) and the loss buffers. Time: training and evaluation flops over
    :data:`THROUGHPUT`. Both are estimates, good to a factor of a few.
    """
    from . import lm
    from .cyclic import eval_chunk

    cfg, a = state.config, state.model.config
    arch = lm.Arch(
        a.hidden_size,
        a.num_hidden_layers,
        a.num_attention_heads,
        a.intermediate_size,
        state.vocab.size,
    )
    seq = arch.flops_per_token(cfg.context) * cfg.context
    E, T, M = cfg.epochs, cfg.n_docs, cfg.steps
    flops = 3 * seq * E * T * M + seq * (E * T + 1) * T
    n_params = sum(p.numel() for p in state.model.parameters())
    logits = 2 * eval_chunk(state) * cfg.context * state.vocab.size * 4
    memory = 16 * n_params + logits + 4 * (E * T + 1) * T + 4 * E * T * M
    seconds = flops / THROUGHPUT["cuda" if state.device == "cuda" else "cpu"]
    return {"flops": float(flops), "seconds": float(seconds), "memory_bytes": float(memory)}


def describe_estimate(est: dict[str, float]) -> str:
    minutes = est["seconds"] / 60
    when = f"{minutes:.0f} min" if minutes >= 1 else f"{est['seconds']:.0f} s"
    return (
        f"estimated: {est['flops']:.2g} FLOP, about {when} and "
        f"{est['memory_bytes'] / 2**30:.2f} GiB (rough; see cldyn_lib.checkpoint)"
    )


# ---------------------------------------------------------------- paper B's cyclic engine


def cyclic_payload(state) -> dict[str, Any]:
    """Everything :func:`cldyn_lib.cyclic.run_cyclic` needs to continue ``state``."""
    return {
        "episode": int(state.episode),
        "model": state.model.state_dict(),
        "optimizer": None if state.optimizer is None else state.optimizer.state_dict(),
        "shift_rng": _np_generator_state(state.shift_rng),
        "mask_gen": state.mask_gen.get_state(),
        "schedule": torch.from_numpy(np.asarray(state.schedule, dtype=np.int64)),
        "doc_ids": [str(d) for d in state.docs.ids],
        "losses": state.losses.detach().cpu(),
        "train_losses": state.train_losses.detach().cpu(),
        "host_losses": torch.from_numpy(state.host_losses.copy()),
    }


def restore_cyclic(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``setup(config)`` state (same config)."""
    from .cyclic import make_optimizer

    if not np.array_equal(blob["schedule"].numpy(), state.schedule):
        raise CheckpointError("the checkpoint's document order differs from this config's")
    if list(blob["doc_ids"]) != [str(d) for d in state.docs.ids]:
        raise CheckpointError("the checkpoint's documents differ from this config's")
    state.model.load_state_dict(blob["model"])
    if blob["optimizer"] is not None:
        state.optimizer = make_optimizer(state)
        state.optimizer.load_state_dict(blob["optimizer"])
    _set_np_generator_state(state.shift_rng, blob["shift_rng"])
    state.mask_gen.set_state(blob["mask_gen"])
    state.losses.copy_(blob["losses"])
    state.train_losses.copy_(blob["train_losses"])
    state.host_losses[...] = blob["host_losses"].numpy()
    state.episode = int(blob["episode"])
    set_global_rng_states(blob["rng"])


def cyclic_divergence(state, epoch: int) -> dict[str, int] | None:
    """The first non-finite training or evaluation loss of ``epoch`` (None if all finite).

    Called once per epoch, after the host copy, so it costs one device sync per epoch.
    """
    T, M = state.config.n_docs, state.config.steps
    train = state.train_losses[epoch * T : (epoch + 1) * T]
    evals = state.host_losses[epoch * T + 1 : (epoch + 1) * T + 1]
    if bool(torch.isfinite(train).all()) and np.isfinite(evals).all():
        return None
    bad_train = (~torch.isfinite(train)).flatten().nonzero()
    first_train = int(bad_train[0]) if len(bad_train) else T * M
    bad_eval = np.flatnonzero(~np.isfinite(evals).all(axis=1))
    first_eval = int(bad_eval[0]) if len(bad_eval) else T
    if first_train // M <= first_eval:  # the training loss broke first (or in that episode)
        k, m = divmod(first_train, M)
        where = "training loss"
    else:
        k, m = first_eval, -1
        where = "evaluation loss"
    episode = epoch * T + k
    doc = int(state.schedule[epoch, k])
    return {"episode": episode, "epoch": epoch, "document": doc, "step": m, "what": where}


def cyclic_diverged(state, bad: dict, ckpt: Checkpointer | None, result) -> DivergedError:
    """Save the partial state (if checkpointing) and build the error for ``bad``."""
    cfg = state.config
    e = bad["episode"]
    result.losses[e + 1 :] = np.nan  # rows after the broken episode are not results
    result.provenance.setdefault("run", {})["diverged_at"] = bad
    saved = ""
    if ckpt is not None:
        ckpt.save({**cyclic_payload(state), "diverged": bad}, status="diverged")
        saved = f"; the partial state is saved in {ckpt.path}"
    step = f", step {bad['step'] + 1} of {cfg.steps}" if bad["step"] >= 0 else ""
    msg = (
        f"cyclic run diverged: non-finite {bad['what']} at episode {e + 1} of "
        f"{cfg.epochs * cfg.n_docs} (epoch {bad['epoch'] + 1}, document {bad['document'] + 1}"
        f"{step}) with lr={cfg.learning_rate:g}; "
        f"the partial result (rows 0..{e} of the loss matrix) is in err.result{saved}"
    )
    return DivergedError(msg, result, bad, ckpt.path if ckpt is not None else None)


# ---------------------------------------------------------------- paper A's transfer engine


def _flat_order(order) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [np.asarray(b, dtype=np.int64).reshape(-1) for b in order]
    sizes = torch.tensor([len(p) for p in parts], dtype=torch.int64)
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int64)), sizes


def transfer_payload(state) -> dict[str, Any]:
    """Everything :func:`cldyn_lib.transfer.run_transfer` needs to continue ``state``."""
    order, sizes = _flat_order(state.order)
    return {
        "step": int(state.step),
        "evals": int(state.evals),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "order_rng": _np_generator_state(state.rng),
        "order": order,
        "order_sizes": sizes,
        "acc": torch.from_numpy(state.acc.copy()),
        "loss": torch.from_numpy(state.loss.copy()),
        "train_loss": torch.from_numpy(state.train_loss.copy()),
    }


def restore_transfer(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``initial_state(config, ...)`` (same config)."""
    order, sizes = _flat_order(state.order)
    if not (torch.equal(order, blob["order"]) and torch.equal(sizes, blob["order_sizes"])):
        raise CheckpointError("the checkpoint's data order differs from this config's")
    if tuple(blob["acc"].shape) != state.acc.shape:
        raise CheckpointError(
            f"the checkpoint's matrices have shape {tuple(blob['acc'].shape)}, "
            f"this config's {state.acc.shape}"
        )
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.generator.set_state(blob["generator"])
    _set_np_generator_state(state.rng, blob["order_rng"])
    state.acc[...] = blob["acc"].numpy()
    state.loss[...] = blob["loss"].numpy()
    state.train_loss[...] = blob["train_loss"].numpy()
    state.step, state.evals = int(blob["step"]), int(blob["evals"])
    set_global_rng_states(blob["rng"])


# ---------------------------------------------------------------- paper A's pre-training


def pretrain_payload(state) -> dict[str, Any]:
    """Everything :func:`cldyn_lib.pretrain.pretrain` needs to continue ``state``."""
    return {
        "step": int(state.step),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "order_rng": _np_generator_state(state.rng),
        "losses": torch.tensor(state.losses, dtype=torch.float64),
    }


def restore_pretrain(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``initial_state(config)`` (same config)."""
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.generator.set_state(blob["generator"])
    _set_np_generator_state(state.rng, blob["order_rng"])
    state.losses = blob["losses"].tolist()
    state.step = int(blob["step"])
    set_global_rng_states(blob["rng"])
