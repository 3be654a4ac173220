"""Frati et al.'s four pre-training modes on Omniglot's background set, and a cache of their models.

- ``"iid"``: shuffled mini-batches (256) of all training images, Adam at lr 1e-3.
- ``"zapped_iid"``: the same, and every ``zap_every``-th epoch after the first starts by
  resampling *all* rows of the head (:func:`cldyn_lib.zap`).
- ``"asb"`` (alternating sequential and batch learning): each episode picks one class, draws
  ``inner_steps`` of its training images (with replacement), zaps that class's row, takes
  ``inner_steps`` SGD steps of batch 1 at ``inner_lr`` on all parameters, then one Adam step
  on those images plus ``remember`` random training images.
- ``"meta_asb"``: the same episode, but the Adam step applies the gradient of the final
  (batch) loss with respect to the weights *before* the inner steps, differentiating through
  all of them (second order, written with ``torch.func`` instead of the ``higher`` library:
  :mod:`cldyn_lib.sequential.episodic`); the inner steps themselves are then thrown away.

Pre-trained models are expensive and shared by chapters, so :func:`load_or_pretrain` keeps
their weights in the data cache (``data/cache/models``, never committed), keyed by the config.

Taught in the chapter *Zapping and transfer shock*; *How far a shock travels* reuses the models.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint as ck
from ..config import Config, ConfigError, check_choice, check_float, check_int
from ..data.omniglot import N_CLASSES, OmniglotTensors, load_omniglot_tensors
from ..files import cache_dir, write_atomic
from ..models.convnet import ConvNet
from ..models.resnet import ResNet
from ..progress import tqdm
from ..results import provenance
from .episodic import train_episodic
from .zapping import INITS, zap

PRETRAIN_MODES = ("iid", "zapped_iid", "asb", "meta_asb")
ARCHS = ("convnet", "resnet")
MODE_LABELS = {"iid": "IID", "zapped_iid": "zapped IID", "asb": "ASB", "meta_asb": "Meta-ASB"}


@dataclasses.dataclass(frozen=True)
class PretrainConfig(Config):
    """One pre-training run. Defaults are the reference's Omniglot settings (scale ``paper``)."""

    mode: str = "iid"  #: "iid", "zapped_iid", "asb" or "meta_asb"
    channels: int = 256  #: conv channels (256 in the paper)
    n_outputs: int = 1000  #: rows of the head (1000 in the reference, for 964 classes)
    n_classes: int = 964  #: background characters used (a seeded subset when < 964)
    epochs: int = 10  #: iid / zapped_iid: passes over the training images
    batch_size: int = 256  #: iid / zapped_iid mini-batch
    lr: float = 1e-3  #: Adam learning rate (the outer step of asb / meta_asb)
    zap_every: int = 1  #: zapped_iid: zap all head rows every k-th epoch after the first
    zap_init: str = "reference"  #: "reference" (std sqrt(2/(k d))) or "kaiming" (sqrt(2/d))
    zap_until: int = 0  #: zapped_iid: no zap from this epoch on, so the head settles (0: none)
    asb_episodes: int = 9000  #: asb: number of episodes
    meta_episodes: int = 25000  #: meta_asb: number of episodes
    inner_steps: int = 20  #: asb / meta_asb: batch-1 SGD steps on one class per episode
    inner_lr: float = 0.1  #: asb / meta_asb: SGD learning rate of the inner steps
    remember: int = 64  #: asb / meta_asb: random training images added to the Adam step
    data_seed: int = 0  #: which characters (when n_classes < 964) and which 15 drawings
    seed: int = 0  #: weights, data order, zaps
    arch: str = "convnet"  #: "convnet" (Frati et al.) or "resnet" (*Why Adam remembers*)

    KEY_OMIT_DEFAULTS = ("arch", "zap_until")  # added later: cached models keep their names

    PRESETS = {
        # ci: about a second per run on one CPU thread; far too small for any trend
        "ci": dict(channels=16, n_outputs=128, n_classes=50, epochs=8, batch_size=32,
                   asb_episodes=50, meta_episodes=25, inner_steps=10),
        # laptop: about an hour for 4 modes x 3 seeds on one CPU thread
        "laptop": dict(channels=32, n_classes=964, epochs=10, asb_episodes=4000,
                       meta_episodes=2000),
        "gpu": dict(channels=256, epochs=10, asb_episodes=9000, meta_episodes=5000),
        "paper": dict(),
    }  # fmt: skip

    def validate(self) -> None:
        check_choice("mode", self.mode, PRETRAIN_MODES)
        check_int("channels", self.channels, 1, 1024)
        check_int("n_classes", self.n_classes, 2, N_CLASSES["background"])
        check_int("n_outputs", self.n_outputs, self.n_classes, 100_000)
        check_int("epochs", self.epochs, 1, 10_000)
        check_int("batch_size", self.batch_size, 1, 100_000)
        check_float("lr", self.lr, 0, None, lo_open=True)
        check_int("zap_every", self.zap_every, 1, 10_000)
        check_choice("zap_init", self.zap_init, INITS)
        check_int("zap_until", self.zap_until, 0, self.epochs)
        check_int("asb_episodes", self.asb_episodes, 1, 10_000_000)
        check_int("meta_episodes", self.meta_episodes, 1, 10_000_000)
        check_int("inner_steps", self.inner_steps, 1, 1000)
        check_float("inner_lr", self.inner_lr, 0, None, lo_open=True)
        check_int("remember", self.remember, 0, 100_000)
        check_int("data_seed", self.data_seed, 0, 2**32 - 1)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_choice("arch", self.arch, ARCHS)


@dataclasses.dataclass
class TrainState:
    """Everything a pre-training loop changes, in one place (so it can be saved and resumed)."""

    model: ConvNet
    optimizer: torch.optim.Optimizer  #: Adam (the outer optimizer of the episodic modes)
    generator: torch.Generator  #: zaps
    rng: np.random.Generator  #: data order and episode sampling
    step: int = 0  #: Adam steps taken
    losses: list = dataclasses.field(default_factory=list)  #: training loss of each Adam step


@dataclasses.dataclass
class PretrainResult:
    """A pre-trained model and how it got there."""

    config: PretrainConfig
    model: ConvNet
    losses: np.ndarray  #: training loss of every Adam step (the batch loss for asb/meta_asb)
    seconds: float  #: compute time (0 when loaded from the cache)
    provenance: dict
    path: Path | None = None


def build_pretrain_model(config: PretrainConfig, seed: int | None = None) -> ConvNet:
    """The untrained model of ``config`` (weights drawn from ``seed``, default config.seed):
    Frati et al.'s ConvNet, or the small ResNet of :mod:`cldyn_lib.models.resnet` (``arch="resnet"``)."""
    gen = torch.Generator().manual_seed(config.seed if seed is None else seed)
    if config.arch == "resnet":
        return ResNet(config.channels, config.n_outputs, generator=gen)
    return ConvNet(config.channels, config.n_outputs, generator=gen)


def load_pretrain_data(config: PretrainConfig) -> OmniglotTensors:
    """The background characters and training drawings ``config`` pre-trains on."""
    return load_omniglot_tensors("background", config.n_classes, config.data_seed)


def initial_state(config: PretrainConfig, device: str = "cpu") -> TrainState:
    model = build_pretrain_model(config).to(device)
    return TrainState(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
        generator=torch.Generator().manual_seed(config.seed + 1),
        rng=np.random.default_rng([config.seed, 3]),
    )


def pretrain(
    config: PretrainConfig,
    data: OmniglotTensors | None = None,
    device: str = "cpu",
    progress: bool = False,
    *,
    checkpoint_dir=None,
    checkpoint_every: int = 1,
) -> PretrainResult:
    """Pre-train a ConvNet with ``config.mode``; deterministic given the config on CPU.

    ``checkpoint_dir``: save the state there every ``checkpoint_every`` epochs (iid modes)
    or every ``checkpoint_every`` x 100 episodes (asb, meta_asb), and resume from it when it
    exists: bitwise the same model and losses on a CPU (see :mod:`cldyn_lib.checkpoint`).
    """
    saver = ck.checkpointer(checkpoint_dir, "pretrain", config, checkpoint_every)
    data = load_pretrain_data(config) if data is None else data
    if data.n_classes != config.n_classes:
        raise ConfigError(f"data has {data.n_classes} classes; config.n_classes={config.n_classes}")
    state = initial_state(config, device)
    on_chunk = None
    if saver is not None:
        blob = saver.load()
        if blob is not None:
            restore_pretrain(state, blob)

        def on_chunk(s, k):
            if k % saver.every == 0:
                saver.save(pretrain_payload(s))

    t0 = time.perf_counter()
    if config.mode in ("iid", "zapped_iid"):
        train_iid(config, state, data, progress, on_epoch=on_chunk)
    else:
        train_episodic(config, state, data, progress, on_chunk=on_chunk)
    seconds = time.perf_counter() - t0
    if saver is not None:
        saver.save(pretrain_payload(state), "finished")
    prov = provenance(config, device=device, sources=[data.source])
    return PretrainResult(config, state.model.cpu(), np.array(state.losses), seconds, prov)


def train_iid(config: PretrainConfig, state: TrainState, data, progress=False, on_epoch=None):
    """IID and zapped IID: shuffled mini-batches; zapped IID resamples the whole head every
    ``zap_every``-th epoch after the first (``zap_init``; biases and Adam moments kept), and
    not from epoch ``zap_until`` on when it is set (the head then settles before the end).

    Starts at the epoch ``state.step`` has reached (a resumed state); ``on_epoch(state, k)``
    is called after the k-th epoch (e.g. a checkpoint)."""
    model, opt = state.model, state.optimizer
    device = next(model.parameters()).device
    x, y = data.flat("train")
    per_epoch = -(-len(x) // config.batch_size)
    first = state.step // per_epoch
    for epoch in tqdm(range(first, config.epochs), desc=config.mode, disable=not progress):
        zapping = config.mode == "zapped_iid" and (not config.zap_until or epoch < config.zap_until)
        if zapping and epoch > 0 and epoch % config.zap_every == 0:
            zap(model.head, "all", init=config.zap_init, generator=state.generator)
        order = state.rng.permutation(len(x))
        for start in range(0, len(x), config.batch_size):
            idx = torch.from_numpy(order[start : start + config.batch_size])
            loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state.step += 1
            state.losses.append(loss.item())
        if on_epoch is not None and epoch + 1 < config.epochs:
            on_epoch(state, epoch + 1)


# ---------------------------------------------------------------- the model cache


def model_path(config: PretrainConfig) -> Path:
    """Where :func:`load_or_pretrain` keeps the weights of ``config`` (in the data cache)."""
    return cache_dir() / "models" / f"pretrain-{config.mode}-{config.key()}.pt"


def load_or_pretrain(
    config: PretrainConfig,
    device: str = "cpu",
    *,
    recompute: bool = False,
    checkpoint_dir=None,
    progress: bool = False,
    data: OmniglotTensors | None = None,
) -> PretrainResult:
    """The pre-trained model of ``config``: from the weight cache if there, else trained and
    saved there (``torch.save`` of tensors and strings, loaded with ``weights_only=True``).
    ``checkpoint_dir``: resumable training (see :func:`pretrain`)."""
    path = model_path(config)
    if path.exists() and not recompute:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = build_pretrain_model(config)
        model.load_state_dict(blob["state_dict"])
        prov = json.loads(blob["provenance"])
        return PretrainResult(config, model, blob["losses"].numpy(), 0.0, prov, path)
    res = pretrain(
        config, data=data, device=device, progress=progress, checkpoint_dir=checkpoint_dir
    )
    res.provenance["seconds"] = res.seconds
    blob = {
        "state_dict": res.model.state_dict(),
        "losses": torch.from_numpy(res.losses),
        "provenance": json.dumps(res.provenance, sort_keys=True, default=str),
    }
    write_atomic(path, lambda f: torch.save(blob, f))
    res.path = path
    return res


# ---------------------------------------------------------------- checkpoints


def pretrain_payload(state) -> dict[str, Any]:
    """Everything :func:`pretrain` needs to continue ``state``."""
    return {
        "step": int(state.step),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "order_rng": ck.np_generator_state(state.rng),
        "losses": torch.tensor(state.losses, dtype=torch.float64),
    }


def restore_pretrain(state, blob: dict[str, Any]) -> None:
    """Put a checkpoint's state into a fresh ``initial_state(config)`` (same config)."""
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.generator.set_state(blob["generator"])
    ck.set_np_generator_state(state.rng, blob["order_rng"])
    state.losses = blob["losses"].tolist()
    state.step = int(blob["step"])
    ck.set_global_rng_states(blob["rng"])
