"""Many runs as one batched model: the shared parts of the batched engines.

The experiments of both papers are sweeps (seeds x learning rates x sizes) of small models,
and a small model run alone wastes the hardware: on a CPU each batch-1 step is mostly Python
and framework overhead, on a GPU mostly kernel launches. The batched engines
(:func:`cldyn_lib.run_cyclic_batched` for Yang et al., :func:`cldyn_lib.run_transfer_batched` for
Frati et al.) stack the weights of K runs of one architecture along a new leading axis
(``torch.func.stack_module_state``) and train them in one forward/backward. Everything that
makes run k *run k* is built by the single-run engines themselves and then stacked, so the K
results equal K separate runs to float tolerance (tests check it).

Here: :class:`StackedOptimizer` (a functional Adam/SGD with a state and a learning rate per
run), :class:`VmapOptions` (``foreach``; ``compile``, CUDA only; ``tf32`` and ``bf16``, CUDA
only and off by default because they change the numbers), and the checks and contexts both
engines share. Measured speed-ups are in ``benchmarks/README.md`` (``benchmarks/vmap.py``).
Taught in the appendix *Many runs at once*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import torch

from .config import Config, ConfigError, check_choice

# ---------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class VmapOptions(Config):
    """Execution options of a vmapped run; all off by default where they change numerics."""

    foreach: bool = True  #: optimizer updates with torch._foreach_* kernels (same numbers)
    compile: bool = False  #: torch.compile the training step (CUDA only; skipped on a CPU)
    tf32: bool = False  #: CUDA only: TF32 matmuls (changes the numbers)
    bf16: bool = False  #: CUDA only: bfloat16 autocast in forward passes (changes the numbers)

    def validate(self) -> None:
        for name in ("foreach", "compile", "tf32", "bf16"):
            check_choice(name, getattr(self, name), (True, False))

    def check_device(self, device: str) -> dict:
        """Raise for tf32/bf16 without CUDA; return what will actually be applied."""
        if device != "cuda" and (self.tf32 or self.bf16):
            raise ConfigError("tf32 and bf16 need CUDA; this run is on the CPU (float32)")
        applied = {**self.to_dict(), "device": device}
        if self.compile and device != "cuda":
            applied["compile"] = "skipped: torch.compile is used on CUDA only"
        return applied


def autocast(device: str, bf16: bool):
    """bf16 autocast on CUDA when asked, else a no-op context."""
    if bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32(device: str, on: bool):
    """TF32 matmuls on CUDA for the duration of the block (a no-op on a CPU)."""
    if device != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def maybe_compile(fn, applied: dict):
    """``torch.compile(fn)`` when the applied options say so (CUDA only), else ``fn``."""
    if applied.get("compile") is True:
        return torch.compile(fn, dynamic=False)
    return fn


# ---------------------------------------------------------------- the optimizer


class StackedOptimizer:
    """Adam or SGD(momentum) on stacked parameters ``{name: (K, ...)}``, one state per run.

    The update is torch's own formula (``torch.optim.Adam``/``SGD``, no weight decay), with a
    learning rate per run (``lr`` of shape (K,)). ``active`` (K,) bool freezes runs that have
    stopped (a diverged transfer run keeps its last weights, as a separate run would).
    """

    def __init__(self, kind: str, lr: torch.Tensor, *, momentum: float = 0.0, foreach=True):
        check_choice("optimizer", kind, ("adam", "sgd"))
        self.kind, self.lr, self.momentum, self.foreach = kind, lr, momentum, foreach
        self.betas, self.eps = (0.9, 0.999), 1e-8
        self.reset()

    def reset(self) -> None:
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0

    def _lr(self, p: torch.Tensor) -> torch.Tensor:
        return self.lr.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, params: dict, grads: dict, active: torch.Tensor | None = None) -> None:
        names = list(grads)
        ps, gs = [params[n] for n in names], [grads[n] for n in names]
        if active is not None and not bool(active.all()):
            keep = [active.view(-1, *([1] * (g.dim() - 1))) for g in gs]
            gs = [torch.where(k, g, torch.zeros_like(g)) for k, g in zip(keep, gs)]
        else:
            keep = None
        self.steps += 1
        if self.kind == "sgd":
            if self.momentum:
                if not self.state:
                    self.state = {n: [g.clone()] for n, g in zip(names, gs)}
                else:
                    bufs = [self.state[n][0] for n in names]
                    self._mul_add(bufs, self.momentum, gs)
                gs = [self.state[n][0] for n in names]
            updates = [g * self._lr(g) for g in gs]
        else:
            b1, b2 = self.betas
            if not self.state:
                self.state = {
                    n: [torch.zeros_like(g), torch.zeros_like(g)] for n, g in zip(names, gs)
                }
            ms = [self.state[n][0] for n in names]
            vs = [self.state[n][1] for n in names]
            if self.foreach:
                torch._foreach_lerp_(ms, gs, 1 - b1)
                torch._foreach_mul_(vs, b2)
                torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
            else:
                for m, v, g in zip(ms, vs, gs):
                    m.lerp_(g, 1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
            bc1, bc2 = 1 - b1**self.steps, math.sqrt(1 - b2**self.steps)
            updates = []
            for m, v in zip(ms, vs):
                denom = (v.sqrt() / bc2).add_(self.eps)
                updates.append(m / denom * (self._lr(m) / bc1))
        if keep is not None:
            updates = [torch.where(k, u, torch.zeros_like(u)) for k, u in zip(keep, updates)]
        if self.foreach:
            torch._foreach_sub_(ps, updates)
        else:
            for p, u in zip(ps, updates):
                p.sub_(u)

    def _mul_add(self, bufs, momentum, gs):
        if self.foreach:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, gs)
        else:
            for b, g in zip(bufs, gs):
                b.mul_(momentum).add_(g)


def same_except(configs: Sequence[Config], free: tuple[str, ...]) -> None:
    """Raise unless ``configs`` are all of one type and differ only in the fields ``free``."""
    if not configs:
        raise ConfigError("configs must not be empty")
    first = configs[0]
    for c in configs[1:]:
        if type(c) is not type(first):
            raise ConfigError("all configs of a vmapped run must have the same type")
        for f in dataclasses.fields(first):
            if f.name not in free and getattr(c, f.name) != getattr(first, f.name):
                raise ConfigError(
                    f"vmapped runs may differ only in {', '.join(free)}; field {f.name} "
                    f"differs ({getattr(first, f.name)!r} vs {getattr(c, f.name)!r})"
                )
