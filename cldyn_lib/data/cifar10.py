"""CIFAR-10: the test images of Yang et al.'s vision experiments (*Beyond language*).

Offline the mirror's 10,000 test images (JPEG); online the official *binary* archive
(md5-checked). Never unpickled: the python archive is not used. Also here: the seeded
k-means colour palette and nearest-colour tokens of the image-modeling task, and
area-average downsampling.

Taught in the chapter *Beyond language*.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile
from pathlib import Path

import numpy as np

from ..config import ConfigError, check_choice
from ..files import cache_dir, save_npz_atomic
from .fetch import DataNotFoundError, DataSource, Remote, locate, reading

# ---------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_JPEG = (
    "cifar10/cifar10_test_jpeg_YoongiKim.tar.gz",
    "6ccafce0baea2dd724c3b3f59be6e6a14a5fac416e8a86b110dcf69e632d8da3",
)
CIFAR10_REMOTE = Remote(
    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    size=170_052_171,
)


@dataclasses.dataclass
class Cifar10:
    """CIFAR-10 images (uint8, N x 32 x 32 x 3, RGB) and labels (int64, 0..9)."""

    images: np.ndarray
    labels: np.ndarray
    split: str
    source: DataSource
    classes: tuple[str, ...] = CIFAR10_CLASSES


def load_cifar10(split: str = "test", path=None) -> Cifar10:
    """CIFAR-10 ``split`` ("test" or "train").

    Offline: the mirror's 10,000 *test* images, re-encoded as JPEG (lossy), ordered by class
    then file number. Online: the official binary archive (md5-checked), in its own order.
    The mirror has no train split, so ``split="train"`` needs the archive.
    """
    check_choice("split", split, ("test", "train"))
    rel, sha = CIFAR10_JPEG
    found = locate(
        "cifar10",
        path=path,
        mirror_path=rel if split == "test" else None,
        mirror_sha256=sha,
        remote=CIFAR10_REMOTE,
    )
    digest = found.source.sha256 or "cache"
    cached = cache_dir() / "derived" / f"cifar10-{split}-{digest[:16]}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as d:
            images, labels = d["images"], d["labels"]
    else:
        if found.layout == "mirror" and split != "test":
            raise DataNotFoundError(f"{found.path}: the JPEG mirror only has the test split")
        with reading(found.path, "CIFAR-10 archive (.tar or .tar.gz)"):
            if found.layout == "mirror":
                images, labels = _cifar_from_jpeg_tar(found.path)
            else:
                images, labels = _cifar_from_binary(found.path, split)
        save_npz_atomic(cached, images=images, labels=labels)
    return Cifar10(images, labels, split, found.source)


def _cifar_from_jpeg_tar(path: Path):
    from PIL import Image

    pattern = re.compile(r"(?:^|/)test/([a-z]+)/(\d+)\.jpg$")
    items = []
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            match = pattern.search(m.name)
            if m.isfile() and match and match.group(1) in CIFAR10_CLASSES:
                label = CIFAR10_CLASSES.index(match.group(1))
                data = tf.extractfile(m).read()
                items.append((label, int(match.group(2)), data))
    if not items:
        raise DataNotFoundError(f"{path}: no test/<class>/NNNN.jpg images in the archive")
    items.sort(key=lambda it: (it[0], it[1]))
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), dtype=np.uint8) for _, _, d in items]
    )
    return images, np.array([it[0] for it in items], dtype=np.int64)


def _cifar_from_binary(path: Path, split: str):
    names = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    record = 1 + 3 * 32 * 32
    chunks = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            base = m.name.rsplit("/", 1)[-1]
            if m.isfile() and base in names:
                chunks[base] = tf.extractfile(m).read()
    missing = [n for n in names if n not in chunks]
    if missing:
        raise DataNotFoundError(f"{path}: missing {', '.join(missing)} in the CIFAR-10 archive")
    raw = np.frombuffer(b"".join(chunks[n] for n in names), dtype=np.uint8)
    if raw.size % record:
        raise DataNotFoundError(f"{path}: truncated CIFAR-10 batch ({raw.size} bytes)")
    raw = raw.reshape(-1, record)
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, raw[:, 0].astype(np.int64)


# ---------------------------------------------------------------- colour clusters and sizes


def kmeans_palette(pixels: np.ndarray, k: int, seed: int, iters: int = 15) -> np.ndarray:
    """A seeded k-means (Lloyd) of RGB ``pixels`` (n, 3) in [0, 1]: (k, 3) colours."""
    rng = np.random.default_rng(seed)
    x = np.asarray(pixels, dtype=np.float64)
    if len(x) < k:
        raise ConfigError(f"k-means needs at least k={k} pixels; got {len(x)}")
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iters):
        lab = nearest_colour(x, centres)
        counts = np.bincount(lab, minlength=k)
        sums = np.stack([np.bincount(lab, weights=x[:, c], minlength=k) for c in range(3)], 1)
        empty = counts == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
        if empty.any():  # re-seed empty clusters with random pixels
            centres[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
    return centres


def nearest_colour(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour (squared Euclidean) of each pixel (n, 3)."""
    out = np.empty(len(pixels), dtype=np.int64)
    p2 = (palette**2).sum(1)
    for a in range(0, len(pixels), 65_536):
        x = pixels[a : a + 65_536]
        out[a : a + 65_536] = np.argmin(p2[None, :] - 2 * x @ palette.T, axis=1)
    return out


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average (n, H, W, 3) images to (n, size, size, 3); H must be a multiple of size."""
    n, H, W, _ = images.shape
    if H % size or W % size:
        raise ConfigError(f"image_size={size} must divide the images' side {H}")
    f = H // size
    return images.reshape(n, size, f, size, f, 3).mean((2, 4))
