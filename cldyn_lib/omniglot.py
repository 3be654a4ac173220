"""Omniglot as paper A uses it: class subsets, 15/5 drawing splits, float tensors in [0, 1].

:func:`cldyn_lib.datasets.load_omniglot` gives uint8 images (C, 20, 28, 28), Lanczos-resized,
255 = white paper, with the 20 drawings of each character in a *canonical order* that is the
same for the offline mirror and the official zips. Here we pick characters and drawings
with seeded generators, so a split means the same images whichever source was used:

- the **background** set (964 characters) is for pre-training, the **evaluation** set (659)
  for transfer to novel characters;
- each character's 20 drawings are permuted with a generator seeded by ``data_seed``; the
  first 15 are for training, the last 5 are held out for evaluation;
- pixels are divided by 255 (white = 1, ink = 0, as in the reference), with no
  normalisation and no augmentation.

Taught in the chapter *Zapping and transfer shock*.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .config import check_choice, check_int
from .fetch import DataSource

N_DRAWINGS = 20
N_TRAIN = 15
N_CLASSES = {"background": 964, "evaluation": 659}


def drawing_split(n_classes: int, data_seed: int = 0, n_train: int = N_TRAIN):
    """Per-character permutations of the 20 drawings -> (train, test) index arrays.

    Returns two int arrays of shapes ``(n_classes, n_train)`` and
    ``(n_classes, 20 - n_train)``; row c lists the canonical drawing indices of character c.
    """
    check_int("n_train", n_train, 1, N_DRAWINGS - 1)
    rng = np.random.default_rng([data_seed, 20])
    perm = np.argsort(rng.random((n_classes, N_DRAWINGS)), axis=1)
    return perm[:, :n_train], perm[:, n_train:]


def class_subset(split: str, n_classes: int, data_seed: int = 0) -> np.ndarray:
    """``n_classes`` characters of ``split`` chosen with a seeded generator (all, in order,
    when ``n_classes`` is the split's size)."""
    total = N_CLASSES[check_choice("split", split, tuple(N_CLASSES))]
    check_int("n_classes", n_classes, 1, total)
    if n_classes == total:
        return np.arange(total)
    rng = np.random.default_rng([data_seed, 1 if split == "background" else 2])
    return np.sort(rng.choice(total, size=n_classes, replace=False))


@dataclasses.dataclass
class OmniglotTensors:
    """Float images in [0, 1] for a subset of characters, split into train and held-out.

    ``train_x[c, k]`` is training drawing k of the c-th chosen character, shape (1, 28, 28);
    labels are 0..C-1 in the order of ``classes`` (indices into the split).
    """

    train_x: torch.Tensor  #: (C, n_train, 1, size, size)
    test_x: torch.Tensor  #: (C, 20 - n_train, 1, size, size)
    classes: np.ndarray  #: (C,) character indices in the split
    split: str
    source: DataSource

    @property
    def n_classes(self) -> int:
        return self.train_x.shape[0]

    def flat(self, which: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """All images of ``which`` ("train" or "test") as (N, 1, s, s) and labels (N,)."""
        x = self.train_x if which == "train" else self.test_x
        C, K = x.shape[:2]
        return x.reshape(C * K, *x.shape[2:]), torch.arange(C).repeat_interleave(K)


def load(
    split: str,
    n_classes: int | None = None,
    data_seed: int = 0,
    *,
    size: int = 28,
    n_train: int = N_TRAIN,
    path=None,
) -> OmniglotTensors:
    """Characters of ``split`` as :class:`OmniglotTensors` (all of them when ``n_classes`` is None)."""
    from .datasets import load_omniglot

    check_choice("split", split, tuple(N_CLASSES))
    n_classes = N_CLASSES[split] if n_classes is None else n_classes
    classes = class_subset(split, n_classes, data_seed)
    data = load_omniglot(split, size=size, path=path)
    train_idx, test_idx = drawing_split(data.images.shape[0], data_seed, n_train)
    images = data.images[classes]
    rows = np.arange(len(classes))[:, None]
    to_float = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(2)  # noqa: E731
    return OmniglotTensors(
        to_float(images[rows, train_idx[classes]]),
        to_float(images[rows, test_idx[classes]]),
        classes,
        split,
        data.source,
    )


def rotate_tasks(data: OmniglotTensors, degrees_per_task: float) -> OmniglotTensors:
    """A copy of ``data`` whose class c (train and held-out drawings) is rotated by
    ``c * degrees_per_task`` degrees about the image centre (bilinear; the paper outside
    the image stays white). Consecutive tasks then differ in their input distribution as
    well as their class: the shift knob of *Why Adam remembers*."""
    import math

    import torch.nn.functional as F

    def rotate(x: torch.Tensor, deg: float) -> torch.Tensor:
        if deg % 360 == 0:
            return x.clone()
        a = math.radians(deg)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        ink = F.grid_sample(1 - x, grid, mode="bilinear", align_corners=False)
        return (1 - ink).clamp(0, 1)

    angles = [c * degrees_per_task for c in range(data.n_classes)]
    return dataclasses.replace(
        data,
        train_x=torch.stack([rotate(data.train_x[c], a) for c, a in enumerate(angles)]),
        test_x=torch.stack([rotate(data.test_x[c], a) for c, a in enumerate(angles)]),
    )
