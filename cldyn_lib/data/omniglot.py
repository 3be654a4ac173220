"""Omniglot as Frati et al. use it: class subsets, 15/5 drawing splits, float tensors in [0, 1].

:func:`load_omniglot` reads the files and gives uint8 images (C, 20, 28, 28), Lanczos-resized,
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
import hashlib
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..config import check_choice, check_int
from ..files import cache_dir, save_npz_atomic
from .fetch import DataNotFoundError, DataSource, Remote, locate, reading

N_DRAWINGS = 20
N_TRAIN_DRAWINGS = 15
N_CLASSES = {"background": 964, "evaluation": 659}


# ---------------------------------------------------------------- the files

OMNIGLOT_SPLITS = ("background", "evaluation")
OMNIGLOT_PACKED = (
    "omniglot/derived/omniglot_105x105_packed.npz",
    "586a2543ae18dd1d63986297256ba1a087e26d0466a03bf52de8ffbf374cc444",
)
OMNIGLOT_REMOTES = {
    "background": Remote(
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
        "images_background.zip",
        md5="68d2efa1b9178cc56df9314c21c6e718",
    ),
    "evaluation": Remote(
        "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
        "images_evaluation.zip",
        md5="6b91aef0f799c5bb55b94e3f2daec811",
    ),
}


@dataclasses.dataclass
class Omniglot:
    """One Omniglot split: ``images[c, k]`` is drawing k of character c.

    ``images`` is uint8 of shape (C, 20, size, size) with 255 = white paper and 0 = ink (the
    PNGs' polarity); ``images / 255`` gives the [0, 1] inputs of Frati et al.'s ConvNet.
    Drawings are in a *canonical order*, sorted by a hash of their 105x105 pixels, so
    drawing k is the same image whether it came from the mirror or the official zips (their
    file orders differ). ``drawer[c, k]`` is the original ``_NN`` drawer number where known,
    else -1.
    """

    images: np.ndarray
    alphabet: np.ndarray
    character: np.ndarray
    drawer: np.ndarray
    split: str
    source: DataSource

    @property
    def n_classes(self) -> int:
        return self.images.shape[0]


def load_omniglot(split: str = "background", size: int = 28, path=None) -> Omniglot:
    """Omniglot ``split`` ("background": 964 characters; "evaluation": 659), resized.

    Images are resized from 105x105 with Lanczos filtering (PIL), as in Frati et al.'s reference
    code; ``size=105`` keeps the originals. Resized arrays are cached in the data cache.
    """
    check_choice("split", split, OMNIGLOT_SPLITS)
    check_int("size", size, 8, 105)
    rel, sha = OMNIGLOT_PACKED
    found = locate(
        "omniglot",
        path=path,
        mirror_path=rel,
        mirror_sha256=sha,
        remote=OMNIGLOT_REMOTES[split],
        how_to_provide="The official zips are images_background.zip / images_evaluation.zip "
        "from github.com/brendenlake/omniglot (python/).",
    )
    digest = found.source.sha256 or hashlib.sha256(str(found.path).encode()).hexdigest()
    cached = cache_dir() / "derived" / f"omniglot-{split}-{size}-{digest[:16]}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
    else:
        with reading(found.path, "Omniglot archive (.npz or official .zip)"):
            if found.layout == "mirror":
                full = _omniglot_from_packed(found.path, split)
            else:
                full = _omniglot_from_zip(found.path)
            arrays = _canonical_and_resized(*full, size=size)
        save_npz_atomic(cached, **arrays)
    return Omniglot(
        arrays["images"],
        arrays["alphabet"],
        arrays["character"],
        arrays["drawer"],
        split,
        found.source,
    )


def _omniglot_from_packed(path: Path, split: str):
    """Yield (alphabet, character, drawer [20], 20 images 105x105 uint8 {0,1}) per character."""
    with np.load(path, allow_pickle=False) as d:
        packed = d[f"{split}_images_packed"]
        alphabet, character = d[f"{split}_alphabet"], d[f"{split}_character"]
        drawer = d[f"{split}_drawing_index"].astype(np.int16)
    images = (np.unpackbits(packed[c], axis=-1, count=105) for c in range(len(packed)))
    return alphabet, character, drawer, images


def _omniglot_from_zip(path: Path):
    from PIL import Image

    groups: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) < 4 or not name.endswith(".png"):
                continue
            alphabet, character = parts[-3], parts[-2]
            m = re.search(r"_(\d+)\.png$", parts[-1])
            with Image.open(io.BytesIO(zf.read(name))) as im:
                pixels = (np.asarray(im.convert("L")) >= 128).astype(np.uint8)
            groups.setdefault((alphabet, character), []).append(
                (int(m.group(1)) if m else -1, pixels)
            )
    if not groups:
        raise DataNotFoundError(f"{path}: no Omniglot PNGs in the zip")
    keys = sorted(groups)
    alphabet = np.array([k[0] for k in keys])
    character = np.array([k[1] for k in keys])
    drawer = np.array([[d for d, _ in groups[k]] for k in keys], dtype=np.int16)
    images = (np.stack([im for _, im in groups[k]]) for k in keys)
    return alphabet, character, drawer, images


def _canonical_and_resized(alphabet, character, drawer, images, size: int) -> dict:
    from PIL import Image

    out, drawers = [], []
    for c, drawings in enumerate(images):
        keys = [hashlib.sha1(np.packbits(im).tobytes()).hexdigest() for im in drawings]
        order = np.argsort(keys, kind="stable")
        resized = []
        for k in order:
            im = Image.fromarray(drawings[k] * np.uint8(255))  # mode "L"
            if size != 105:
                im = im.resize((size, size), Image.LANCZOS)
            resized.append(np.asarray(im, dtype=np.uint8))
        out.append(np.stack(resized))
        drawers.append(drawer[c][order])
    return {
        "images": np.stack(out),
        "alphabet": np.asarray(alphabet).astype(str),
        "character": np.asarray(character).astype(str),
        "drawer": np.stack(drawers).astype(np.int16),
    }


# ---------------------------------------------------------------- Frati et al.'s splits


def drawing_split(n_classes: int, data_seed: int = 0, n_train: int = N_TRAIN_DRAWINGS):
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


def load_omniglot_tensors(
    split: str,
    n_classes: int | None = None,
    data_seed: int = 0,
    *,
    size: int = 28,
    n_train: int = N_TRAIN_DRAWINGS,
    path=None,
) -> OmniglotTensors:
    """Characters of ``split`` as :class:`OmniglotTensors` (all of them when ``n_classes`` is None)."""
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
