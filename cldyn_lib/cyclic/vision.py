"""Cyclic training beyond language: CIFAR-10 classification and causal image modeling.

Yang et al., section 3.4 and appendix A.1-A.2 (Fig. 7). The loop is the language engine's: T
items in a fixed order, M Adam steps on each (a fresh optimiser per item, as Yang et al.'s
vision scripts rebuild Adam for every batch), the loss of every item after every episode::

    res = run_vision(VisionConfig.preset("ci", task="classify", arch="vit"))
    res.losses      # (E*T + 1, T), the loss-matrix convention of cldyn_lib.metrics
    res.schedule    # (E, T)

- ``task="classify"``: an item is a batch of CIFAR-10 images with their labels; mean
  cross-entropy per image. ``arch="vit"`` (a ViT, ``transformers``) or ``"cnn"`` (a VGG-style
  network of 3x3 convolutions). ``weights="pretrained"`` loads ViT-B/32 from the hub or VGG-19
  from ``torchvision`` with a new 10-class head, images resized to 256 and centre-cropped to
  224 (appendix A.2); ``"random"`` builds small models for 32x32 inputs.
- ``task="igpt"``: an item is one image as a sequence of colour-cluster tokens, predicted
  one after the other by an ImageGPT-architecture model (``transformers``), dropout off as in
  A.1; mean cross-entropy per token. Offline there is no ImageGPT palette, so the 512 colours
  are a seeded k-means of CIFAR-10 pixels (from images not trained on); with
  ``weights="pretrained"`` the hub checkpoint and its own palette are used.

Data: the CIFAR-10 *test* images of the offline mirror (JPEG re-encodings), since the mirror
has no train split; Yang et al.'s appendix says CIFAR-10 (its code loads CIFAR-100). Models are
put in train mode for the steps and eval mode for the evaluations (Yang et al.'s code never calls
train mode; with dropout off, as here, the two modes compute the same function).

Taught in the chapter *Beyond language*.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..config import Config, ConfigError, check_choice, check_float, check_int, resolve_device
from ..data.cifar10 import downsample, kmeans_palette, load_cifar10, nearest_colour
from ..models.image import HUB, build_image_model, hub_palette
from ..progress import tqdm
from ..results import provenance

TASKS = ("classify", "igpt")
ARCHS = ("vit", "cnn")


@dataclasses.dataclass(frozen=True)
class VisionConfig(Config):
    """One cyclic run on images. Defaults: Yang et al.'s classification setup (A.2)."""

    task: str = "classify"  #: "classify" or "igpt"
    arch: str = "vit"  #: classify: "vit" or "cnn"
    n_items: int = 25  #: T: batches (classify) or images (igpt)
    batch_size: int = 32  #: images per item (igpt: Yang et al. use 1)
    steps: int = 10  #: M
    epochs: int = 5  #: E
    lr: float | None = None  #: None: 1e-4 (classify, A.2) or 1e-3 (igpt, A.1)
    order: str = "cyclic"  #: "cyclic" or "shuffled" (the null control)
    weights: str = "random"  #: "random" (small models) or "pretrained" (hub)
    image_size: int = 32  #: random models: input side (igpt: tokens per side)
    width: int = 64
    depth: int = 2
    heads: int = 4
    n_colors: int = 512  #: igpt: palette size (k-means colours)
    seed: int = 0
    device: str = "auto"

    # random-init small models learn little in M steps at the paper's lr 1e-4: ci and laptop
    # use 1e-3; see vision_preset() for the image-modeling changes
    PRESETS = {
        "ci": dict(n_items=10, batch_size=4, steps=5, epochs=3, image_size=16, width=32,
                   lr=1e-3, device="cpu"),
        "laptop": dict(n_items=25, batch_size=8, steps=10, epochs=4, image_size=16, width=32,
                       lr=1e-3, device="cpu"),
        "gpu": dict(weights="pretrained"),
        "paper": dict(weights="pretrained"),
    }  # fmt: skip

    def validate(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("arch", self.arch, ARCHS)
        check_int("n_items", self.n_items, 2, 1000)
        check_int("batch_size", self.batch_size, 1, 1024)
        check_int("steps", self.steps, 1, 10_000)
        check_int("epochs", self.epochs, 1, 1000)
        if self.lr is not None:
            check_float("lr", self.lr, 0, 1, lo_open=True)
        check_choice("order", self.order, ("cyclic", "shuffled"))
        check_choice("weights", self.weights, ("random", "pretrained"))
        check_int("image_size", self.image_size, 8, 64)
        if self.task == "classify" and self.arch == "cnn" and self.image_size % 8:
            raise ConfigError(
                f"image_size must be a multiple of 8 for the CNN; got {self.image_size}"
            )
        if self.task == "classify" and self.arch == "vit" and self.image_size % 4:
            raise ConfigError(
                f"image_size must be a multiple of 4 (patches); got {self.image_size}"
            )
        check_int("width", self.width, 8, 4096)
        check_int("depth", self.depth, 1, 48)
        check_int("heads", self.heads, 1, 64)
        if self.width % self.heads:
            raise ConfigError(f"heads={self.heads} must divide width={self.width}")
        check_int("n_colors", self.n_colors, 2, 4096)
        if self.n_items * self.batch_size > 9000:
            raise ConfigError("n_items * batch_size must be <= 9000 (the rest fits the palette)")
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.task == "classify" else 1e-3)


MODELS = ("vit", "cnn", "igpt")
#: image modeling: one image per item (A.1), fewer tokens per image than 32x32 off the GPU
IGPT = {
    "ci": dict(batch_size=1, image_size=8),
    "laptop": dict(batch_size=1, image_size=8),
    "gpu": dict(batch_size=1, image_size=32),
    "paper": dict(batch_size=1, image_size=32),
}


def vision_preset(scale: str, model: str, **overrides) -> VisionConfig:
    """The preset of ``scale`` for ``model`` ("vit", "cnn" or "igpt"), with ``overrides``."""
    check_choice("model", model, MODELS)
    if model == "igpt":
        return VisionConfig.preset(scale, task="igpt", **{**IGPT[scale], **overrides})
    if model == "cnn" and scale == "ci":  # 16-32-64 channels: the time budget
        overrides = {"width": 16, **overrides}
    return VisionConfig.preset(scale, task="classify", arch=model, **overrides)


@dataclasses.dataclass
class VisionResult:
    losses: np.ndarray  #: (E*T+1, T)
    schedule: np.ndarray  #: (E, T)
    train_losses: np.ndarray  #: (E*T, M)
    provenance: dict
    config: VisionConfig

    def recovery_scores(self) -> np.ndarray:
        return metrics.recovery_scores(self.losses, self.schedule)

    def to_arrays(self) -> dict:
        return {"losses": self.losses, "schedule": self.schedule, "train_losses": self.train_losses}


# ---------------------------------------------------------------- data


@dataclasses.dataclass
class Items:
    x: torch.Tensor  #: (T, B, ...) model inputs
    y: torch.Tensor  #: (T, B) labels, or (T, B, L) token targets
    palette: np.ndarray | None
    picked: np.ndarray  #: indices into the CIFAR-10 test set


def vision_items(config: VisionConfig, device: str) -> Items:
    """Draw T*B images (seeded) and turn them into the task's inputs and targets."""
    data = load_cifar10("test")
    rng = np.random.default_rng([config.seed, 11])
    order = rng.permutation(len(data.images))
    T, B = config.n_items, config.batch_size
    picked = order[: T * B]
    imgs = data.images[picked].astype(np.float32) / 255.0  # (T*B, 32, 32, 3)
    if config.task == "classify":
        if config.weights == "pretrained":  # A.2: resize to 256, centre crop 224
            t = torch.as_tensor(imgs).permute(0, 3, 1, 2)
            t = F.interpolate(t, size=256, mode="bilinear", align_corners=False)[
                ..., 16:240, 16:240
            ]
        else:
            t = torch.as_tensor(downsample(imgs, config.image_size)).permute(0, 3, 1, 2)
        t = (t - 0.5) / 0.5
        x = t.reshape(T, B, *t.shape[1:]).contiguous()
        y = torch.as_tensor(data.labels[picked]).reshape(T, B)
        return Items(x.to(device), y.to(device), None, picked)
    side = 32 if config.weights == "pretrained" else config.image_size
    small = downsample(imgs, side)
    if config.weights == "pretrained":
        palette = hub_palette()
    else:  # fit on pixels of images that are not trained on
        rest = downsample(data.images[order[T * B :]].astype(np.float32) / 255.0, side)
        pix = rest.reshape(-1, 3)
        pix = pix[rng.choice(len(pix), min(len(pix), 40 * config.n_colors), replace=False)]
        palette = kmeans_palette(pix, config.n_colors, config.seed)
    tok = nearest_colour(small.reshape(-1, 3), palette).reshape(T, B, side * side)
    sos = palette.shape[0]  # the start-of-sequence id is the last one
    seq = np.concatenate([np.full((T, B, 1), sos), tok], axis=2)
    t = torch.as_tensor(seq)
    return Items(
        t[..., :-1].contiguous().to(device), t[..., 1:].contiguous().to(device), palette, picked
    )


def item_losses(model, config: VisionConfig, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each image in a batch: (B,). Classification: cross-entropy; igpt: per token."""
    if config.task == "classify":
        out = model(x)
        logits = out.logits if hasattr(out, "logits") else out
        return F.cross_entropy(logits, y, reduction="none")
    logits = model(input_ids=x).logits  # (B, L, n_colors): the head leaves out the SOS id
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return ce.view(y.shape).mean(1)


# ---------------------------------------------------------------- the loop


def schedule_of(config: VisionConfig) -> np.ndarray:
    """The (E, T) order of items: the same every epoch, or reshuffled (seeded)."""
    T, E = config.n_items, config.epochs
    if config.order == "cyclic":
        return np.tile(np.arange(T), (E, 1))
    rng = np.random.default_rng([config.seed, 13])
    return np.stack([rng.permutation(T) for _ in range(E)])


@torch.no_grad()
def evaluate_items(model, config: VisionConfig, items: Items, chunk: int = 256) -> torch.Tensor:
    """(T,) mean loss of every item, in batched forwards, eval mode."""
    model.eval()
    T, B = items.y.shape[:2]
    x = items.x.reshape(T * B, *items.x.shape[2:])
    y = items.y.reshape(T * B, *items.y.shape[2:])
    out = torch.cat([item_losses(model, config, x[a : a + chunk], y[a : a + chunk])
                     for a in range(0, T * B, chunk)])  # fmt: skip
    return out.view(T, B).mean(1)


def check_resources(config: VisionConfig) -> str:
    """The device; with ``weights="pretrained"``, checks the hub files exist (before compute)."""
    device = resolve_device(config.device)
    if config.weights == "pretrained" and not (config.task == "classify" and config.arch == "cnn"):
        from huggingface_hub import try_to_load_from_cache

        name = HUB["igpt" if config.task == "igpt" else "vit"]
        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(
                f"weights='pretrained' needs {name} in the Hugging Face cache (offline here); "
                "go online once or use weights='random'"
            )
    return device


def run_vision(config: VisionConfig, *, progress: bool = True) -> VisionResult:
    """Cyclic training on images for ``config``; see the module docstring."""
    t0 = time.perf_counter()
    device = check_resources(config)
    items = vision_items(config, device)
    palette_size = 0 if items.palette is None else len(items.palette)
    model = build_image_model(config, palette_size).to(device)
    E, T, M = config.epochs, config.n_items, config.steps
    schedule = schedule_of(config)
    losses = torch.zeros(E * T + 1, T, device=device)
    train = torch.zeros(E * T, M, device=device)
    losses[0] = evaluate_items(model, config, items)
    for k in tqdm(range(E * T), desc="episodes", disable=not progress):
        doc = int(schedule.flat[k])
        opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)  # fresh per item
        model.train()
        for m in range(M):
            loss = item_losses(model, config, items.x[doc], items.y[doc]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train[k, m] = loss.detach()
        losses[k + 1] = evaluate_items(model, config, items)
    n_params = sum(p.numel() for p in model.parameters())
    extra = {"run": {"n_params": n_params, "total_s": time.perf_counter() - t0,
                     "learning_rate": config.learning_rate, "palette": palette_size,
                     "data": "CIFAR-10 test set (offline JPEG mirror)"}}  # fmt: skip
    prov = provenance(config, device=device, extra=extra)
    return VisionResult(losses.cpu().numpy().astype(np.float64), schedule,
                        train.cpu().numpy(), prov, config)  # fmt: skip


def run_vision_seeds(config: VisionConfig, seeds, progress: bool = False) -> list[VisionResult]:
    """:func:`run_vision` for each seed in ``seeds``."""
    return [run_vision(config.replace(seed=int(s)), progress=progress) for s in seeds]


def vision_study(config: VisionConfig, seeds=(0, 1, 2)) -> dict[str, np.ndarray]:
    """Loss matrices of ``config`` in the fixed and the reshuffled order, for each seed."""
    out = {}
    for order in ("cyclic", "shuffled"):
        runs = run_vision_seeds(config.replace(order=order), seeds)
        out[f"{order}_losses"] = np.stack([r.losses for r in runs])
        out[f"{order}_schedule"] = np.stack([r.schedule for r in runs])
    return out


def vision_study5(config: VisionConfig) -> dict[str, np.ndarray]:
    """:func:`vision_study` with five seeds (0-4), the fewest with which the status page's
    exact sign test can reach p = 0.031; committed as ``vision5-<model>``. Taught in the
    chapter *Beyond language*."""
    return vision_study(config, seeds=tuple(range(5)))


def vision_runs(arrays, order: str = "cyclic") -> list[VisionResult]:
    """The runs of a :func:`vision_study` result (e.g. a committed file) as VisionResults."""
    L, S = arrays[f"{order}_losses"], arrays[f"{order}_schedule"]
    return [VisionResult(x, s, np.zeros((0, 0)), {}, None) for x, s in zip(L, S)]
