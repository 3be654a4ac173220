"""What the paper-B chapters do differently at each scale, in one place.

The chapters read these as ``cl.X[scale]`` or call the functions with their ``scale``, so a
chapter's code is the same at every scale. ``ci`` and ``laptop`` run on the CPU;
``gpu`` and ``paper`` are the scales of the real Pythia checkpoints. A chapter run at
``ci`` reads the laptop-scale results committed under ``data/results`` and computes
them only when it runs at laptop scale (:func:`cldyn_lib.may_compute`).

Used in the chapters *Anticipatory recovery in a language model*, *Emergence with scale*,
*What drives recovery*, *Inside the dynamics*, *Beyond language*, *Many runs at once* and
*Your own model*.
"""

from __future__ import annotations

import math

from ..config import SCALES, check_choice
from .config import CyclicConfig
from .engine import run_cyclic
from .result import CyclicResult

#: the scales whose live runs train on the CPU (the others have a GPU)
CPU_SCALES = ("ci", "laptop")

#: per scale: seeds of the seed bands in *Anticipatory recovery in a language model*
LM_SEEDS = {"ci": 3, "laptop": 3, "gpu": 3, "paper": 3}

#: per scale: the widths d of the live width sweep in *Emergence with scale*
LIVE_WIDTHS = {
    "ci": (32, 64, 128),
    "laptop": (64, 128, 256),
    "gpu": (64, 128, 256),
    "paper": (64, 128, 256),
}

#: per scale: largest loss difference (nats/token) allowed between the committed command-line
#: sweep (run at ci on the development machine) and this chapter's live runs of the same
#: seeds, in *Many runs at once*; other scales run other configs, so nothing is compared
CLI_MATCH_TOLERANCE = {"ci": 1e-3, "laptop": math.inf, "gpu": math.inf, "paper": math.inf}

#: per scale, in *Your own model*: the GPT-2 shape the chapter builds (``width``, ``depth``,
#: ``heads``), how many articles it writes to its ``.jsonl`` (``n_texts``), the seeds per arm
#: and the other arguments of :func:`cldyn_lib.analysis_config`. At ci a random-init model
#: of width 32 on the documents' own tokens (``vocab="docs"``): 6 runs of about 2 s each.
OWN_MODEL = {
    "ci": dict(width=32, depth=2, heads=4, n_texts=40, seeds=3, n_docs=6, context=64,
               steps=5, epochs=3, optimizer="adam", lr=2e-3, vocab="docs"),
    "laptop": dict(width=128, depth=4, heads=4, n_texts=100, seeds=5, n_docs=25, context=64,
                   steps=10, epochs=5, optimizer="adam", lr=1e-3, vocab="docs"),
    "gpu": dict(width=512, depth=8, heads=8, n_texts=100, seeds=5, n_docs=25, context=256,
                steps=10, epochs=5, optimizer="adam", lr=1e-4, vocab="full"),
    "paper": dict(width=2048, depth=16, heads=8, n_texts=100, seeds=5, n_docs=25, context=256,
                  steps=10, epochs=5, optimizer="adam", lr=1e-4, vocab="full"),
}  # fmt: skip

PYTHIA_SIZES = ("160m", "410m", "1b", "1.4b", "2.8b")


def live_cyclic_config(scale: str, device: str) -> CyclicConfig:
    """The base config of the live runs of *Emergence with scale* and *What drives recovery*.

    At ``ci`` and ``laptop``: that scale's preset on the CPU. At ``gpu`` and ``paper`` (whose
    other cells fine-tune Pythia) the live runs stay the small ``ci`` preset, on ``device``.
    Used in the chapters *Emergence with scale* and *What drives recovery*.
    """
    check_choice("scale", scale, SCALES)
    if scale in CPU_SCALES:
        return CyclicConfig.preset(scale, device="cpu")
    return CyclicConfig.preset("ci", device=device)


def seed_band_config(scale: str, device: str) -> CyclicConfig:
    """The base config of the live seed band of *Many runs at once*: the preset of ``scale``,
    on ``device`` at the CPU scales and on the preset's own device at ``gpu`` and ``paper``.

    Taught in the chapter *Many runs at once*.
    """
    check_choice("scale", scale, SCALES)
    if scale in CPU_SCALES:
        return CyclicConfig.preset(scale, device=device)
    return CyclicConfig.preset(scale)


def pythia_comparison(scale: str, device: str) -> dict[tuple[str, str], CyclicConfig]:
    """Yang et al.'s Fig. 2: the ``paper`` preset for every Pythia size, pre-trained and random.

    Keyed by ``(size, weights)``. On ``device`` at the GPU scales; at the CPU scales the
    configs are only described (device ``"auto"``), never run (:func:`run_pythia_comparison`).
    Taught in the chapter *Emergence with scale*.
    """
    check_choice("scale", scale, SCALES)
    on = "auto" if scale in CPU_SCALES else device
    return {
        (size, weights): CyclicConfig.preset(
            "paper", model=f"pythia-{size}", weights=weights, device=on
        )
        for size in PYTHIA_SIZES
        for weights in ("pretrained", "random")
    }


def run_pythia_comparison(
    configs: dict[tuple[str, str], CyclicConfig], scale: str
) -> dict[tuple[str, str], CyclicResult]:
    """Run the configs of :func:`pythia_comparison` at ``gpu`` and ``paper`` scale; at the CPU
    scales return ``{}`` (they need a GPU). Taught in the chapter *Emergence with scale*."""
    check_choice("scale", scale, SCALES)
    if scale in CPU_SCALES:
        return {}
    return {key: run_cyclic(cfg) for key, cfg in configs.items()}
