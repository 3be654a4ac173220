"""Loaders for the book's data sets: CNN/DailyMail articles, the GPT-NeoX tokenizer,
Omniglot and CIFAR-10. Each finds its files with :func:`cldyn_lib.fetch.locate` and records
where they came from in ``.source`` (a :class:`~cldyn_lib.fetch.DataSource`).

No loader ever unpickles third-party data: Omniglot comes from the packed ``.npz`` (loaded
with ``allow_pickle=False``) or the official PNG zips, CIFAR-10 from JPEGs or the *binary*
archive. See ``data/README.md`` for sources and licences.

Used by the language-model chapters (articles, tokenizer), the zapping and optimizer
chapters (Omniglot) and *Beyond language* (CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from .config import check_choice, check_int
from .fetch import (
    DataNotFoundError,
    DataSource,
    Remote,
    cache_dir,
    locate,
    offline,
    reading,
    write_atomic,
)

# ---------------------------------------------------------------- CNN/DailyMail

ARTICLE_POOLS = ("permissive", "all")
_ARTICLE_FILES = {
    "permissive": (
        "cnn_dailymail/articles_permissive.jsonl",
        "9a8e84f4fc3b16f1d91b7c5e151d1fed2cd168ef9eb89ed3dd741d7175b32424",
    ),
    "all": (
        "cnn_dailymail/articles.jsonl",
        "272a7decec309c05f94d8d7e0b8bf4e05630547c9e5a178f11a54f61cd6ce637",
    ),
}


@dataclasses.dataclass
class Articles:
    """News articles used as documents: ``texts[i]`` has identifier ``ids[i]``."""

    ids: list[str]
    texts: list[str]
    source: DataSource

    def __len__(self) -> int:
        return len(self.texts)


def load_articles(pool: str = "permissive", path=None) -> Articles:
    """CNN/DailyMail articles.

    ``pool="permissive"`` is the default: the 270 mirror articles whose source repositories
    are MIT/Apache licensed (FRANK and allennlp, all from the test split). ``"all"`` adds
    2,100 SumLLM articles (CC BY-NC 4.0, truncated to about 900 words). Without the mirror,
    the pool is the Hugging Face ``cnn_dailymail`` 3.0.0 *train* split, as in paper B
    (needs the ``datasets`` package and internet); ``path`` may point at any ``.jsonl`` with
    ``{"id", "article"}`` lines.
    """
    check_choice("pool", pool, ARTICLE_POOLS)
    rel, sha = _ARTICLE_FILES[pool]
    try:
        found = locate("cnn_dailymail", path=path, mirror_path=rel, mirror_sha256=sha)
    except DataNotFoundError as err:
        return _articles_from_hub(err)
    ids, texts = [], []
    with open(found.path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                ids.append(str(row["id"]))
                texts.append(row["article"])
    return Articles(ids, texts, found.source)


def _articles_from_hub(err: DataNotFoundError) -> Articles:
    hint = "pip install datasets (and be online) to use the Hugging Face copy"
    if offline():
        raise DataNotFoundError(f"{err}\nHugging Face hub: skipped (CLDYN_OFFLINE is set)")
    try:
        import datasets  # optional: pip install "cldyn[online]"
    except ImportError:
        raise DataNotFoundError(f"{err}\nHugging Face hub: not tried ({hint})") from None
    try:
        ds = datasets.load_dataset("cnn_dailymail", "3.0.0", split="train")
    except Exception as hub_err:  # network errors come in many types
        raise DataNotFoundError(f"{err}\nHugging Face hub: failed ({hub_err})") from None
    src = DataSource(
        "cnn_dailymail", "hub", "hf:cnn_dailymail/3.0.0/train", note="full train split"
    )
    return Articles(list(ds["id"]), list(ds["article"]), src)


# ---------------------------------------------------------------- tokenizer

TOKENIZER_FILE = (
    "tokenizers/gpt-neox-20b/tokenizer.json",
    "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade",
)
PYTHIA_HUB_TOKENIZER = "EleutherAI/pythia-160m"


def load_tokenizer(path=None, return_source: bool = False):
    """The GPT-NeoX (Pythia) tokenizer as a ``transformers`` fast tokenizer.

    Offline it is built from the mirror's ``tokenizer.json`` (EleutherAI's 20B tokenizer,
    50,277 ids; "Hello world" -> [12092, 1533]); online from the Pythia repository on the hub.
    The end-of-text token (id 0) doubles as padding, as in paper B's code.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    rel, sha = TOKENIZER_FILE
    try:
        found = locate("gpt-neox-tokenizer", path=path, mirror_path=rel, mirror_sha256=sha)
        tok = PreTrainedTokenizerFast(
            tokenizer_file=str(found.path),
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )
        source = found.source
    except DataNotFoundError as err:
        if offline():
            raise
        try:
            tok = AutoTokenizer.from_pretrained(PYTHIA_HUB_TOKENIZER)
        except Exception as hub_err:
            raise DataNotFoundError(f"{err}\nHugging Face hub: failed ({hub_err})") from None
        source = DataSource("gpt-neox-tokenizer", "hub", f"hf:{PYTHIA_HUB_TOKENIZER}")
    tok.pad_token = tok.eos_token
    return (tok, source) if return_source else tok


# ---------------------------------------------------------------- Omniglot

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
    PNGs' polarity); ``images / 255`` gives the [0, 1] inputs of paper A's ConvNet.
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

    Images are resized from 105x105 with Lanczos filtering (PIL), as in paper A's reference
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


# ---------------------------------------------------------------- helpers


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write an ``.npz`` atomically (see :func:`cldyn_lib.fetch.write_atomic`)."""
    write_atomic(path, lambda f: np.savez(f, **arrays))
