"""Experiment configs, named scales, devices and seeds.

Every experiment in the book is a frozen dataclass (a subclass of :class:`Config`) whose
fields are the papermill parameters and the widget controls, plus a pure function
``run(config) -> result``. A config checks itself when it is built, so a bad value fails
with a message that names the field, the value and the allowed range *before* any compute.

Scales share one code path and differ only in numbers:

- ``ci``: seconds on a 2-core CPU (what the book build and the tests execute);
- ``laptop``: minutes on a laptop CPU;
- ``gpu``: a Colab-class GPU (T4/L4/A100), minutes;
- ``paper``: the paper's own settings (a large GPU, hours).

``"auto"`` picks ``gpu`` when CUDA is present and has the memory the preset needs, else
``ci``. Introduced in the chapter *The toy model*; used by every chapter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
from typing import Any, Callable, ClassVar, Iterable, TypeVar

import numpy as np

SCALES = ("ci", "laptop", "gpu", "paper")
DEVICES = ("auto", "cpu", "cuda")

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A parameter outside its allowed range; the message names the parameter."""


# ---------------------------------------------------------------- checks


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[lo, hi]``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer{_range(lo, hi)}; got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be an integer{_range(lo, hi)}; got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise :class:`ConfigError`.

    ``lo_open``/``hi_open`` make an end exclusive: ``check_float("lr", x, 0, lo_open=True)``
    allows ``lr > 0``.
    """
    interval = _interval(lo, hi, lo_open, hi_open)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number in {interval}; got {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    bad |= lo is not None and (v <= lo if lo_open else v < lo)
    bad |= hi is not None and (v >= hi if hi_open else v > hi)
    if bad:
        raise ConfigError(f"{name} must be a number in {interval}; got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise :class:`ConfigError`
    (papermill passes ``-p FLAG yes`` as the string ``'yes'``, which is not a bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_tuple(name: str, values: Any, check: Callable[[Any], Any]) -> tuple:
    """Return ``values`` if it is a non-empty tuple whose items all pass ``check``."""
    if not isinstance(values, tuple) or not values:
        raise ConfigError(f"{name} must be a non-empty tuple; got {values!r}")
    for v in values:
        check(v)
    return values


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _interval(lo, hi, lo_open, hi_open) -> str:
    left = ("(" if lo_open else "[") + ("-inf" if lo is None else f"{lo:g}")
    right = ("inf" if hi is None else f"{hi:g}") + (")" if hi_open else "]")
    return f"{left}, {right}"


# ---------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of every experiment config: validated, immutable, hashable.

    Subclasses define fields, a ``validate()`` method that raises :class:`ConfigError`, and
    ``PRESETS``: a mapping from scale name to field overrides.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: fields added after results were cached under the old keys: ``key()`` leaves them
    #: out while they hold their default value, so those results keep their names
    KEY_OMIT_DEFAULTS: ClassVar[tuple[str, ...]] = ()
    #: the type name hashed into ``key()``; set when a class is renamed, so that results
    #: cached or committed under its old name keep their file names
    KEY_TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise :class:`ConfigError` for any field outside its allowed range."""

    @classmethod
    def preset(cls: type[C], scale: str, **overrides: Any) -> C:
        """The config for a named scale, with ``overrides`` applied (unknown keys are errors)."""
        check_choice("SCALE", scale, SCALES)
        if scale not in cls.PRESETS:
            raise ConfigError(
                f"SCALE={scale!r} has no preset for {cls.__name__}; "
                f"available: {', '.join(cls.PRESETS)}"
            )
        fields = {**cls.PRESETS[scale], **overrides}
        _reject_unknown(cls, fields)
        return cls(**fields)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied and validated again."""
        _reject_unknown(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A short, stable hash of the fields (used to name cached results)."""
        fields = self.to_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in self.KEY_OMIT_DEFAULTS:
            if fields[name] == defaults[name]:
                del fields[name]
        blob = json.dumps({"type": self.KEY_TYPE or type(self).__name__, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _reject_unknown(cls: type, fields: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(known))}"
        )


# ---------------------------------------------------------------- scale, device, seed


def cuda_memory_gb() -> float:
    """Total memory of CUDA device 0 in GiB, or 0.0 without CUDA."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30
    except Exception:  # pragma: no cover - torch missing or broken driver
        pass
    return 0.0


def resolve_scale(scale: str, gpu_memory_needed_gb: float = 12.0) -> str:
    """Turn ``"auto"`` into a concrete scale: ``gpu`` if CUDA has the memory, else ``ci``."""
    check_choice("SCALE", scale, ("auto",) + SCALES)
    if scale != "auto":
        return scale
    return "gpu" if cuda_memory_gb() >= gpu_memory_needed_gb else "ci"


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without CUDA is an error."""
    check_choice("DEVICE", device, DEVICES)
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("DEVICE='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA). Returns the seed.

    Library functions also take explicit generators; this is for notebook-level code.
    """
    seed = check_int("SEED", seed, 0, 2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return seed


def check_notebook_parameters(SCALE: str, SEED: int, DEVICE: str) -> tuple[str, int, str]:
    """Validate a chapter's papermill ``parameters`` cell; return resolved (scale, seed, device)."""
    check_choice("SCALE", SCALE, ("auto",) + SCALES)
    check_int("SEED", SEED, 0, 2**32 - 1)
    check_choice("DEVICE", DEVICE, DEVICES)
    return resolve_scale(SCALE), seed_everything(SEED), resolve_device(DEVICE)


def set_torch_threads(scale: str) -> None:
    """At ci, one torch thread; at other scales, torch's default is left as it is.

    Used by *Zapping and transfer shock*, *How far a shock travels*, *Optimizers and
    sequential learning* and *Why Adam remembers*.
    """
    if scale == "ci":
        import torch

        torch.set_num_threads(1)  # small models: one thread is fastest on a busy 2-core CPU
