"""Documents for cyclic training: tokenised articles, seeded selection, windows, vocabularies.

Yang et al. fine-tunes on T news articles, each cut to its first C tokens (shorter ones padded
with the end-of-text token, id 0, which the loss ignores). This module turns the articles of
:func:`cldyn_lib.load_articles` into fixed-shape token arrays:

- :func:`tokenize_pool` tokenises a pool once with the GPT-NeoX tokenizer and caches the ids
  (``data/cache/derived``), so a chapter does not pay ~3 s of tokenizer start-up per run;
- :func:`select_documents` draws T articles with a seeded generator, in training order;
- :class:`Vocab` maps GPT-NeoX ids to the ids a model uses. ``full_vocab()`` keeps all
  50,304 rows of Pythia's embedding; :func:`tokenizer_vocab` the tokenizer's 50,277 (paper
  B's code resizes to them); :func:`vocab_of` keeps only the ids that occur in the
  documents (a smaller softmax, much faster on a CPU); :func:`common_vocab` keeps the k most
  frequent ids of a corpus plus one "rare token" class (the pre-trained stand-in's).

Taught in the chapter *Anticipatory recovery in a language model* (``book/lm_phenomenon.ipynb``); used by every
language-model chapter.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from ..config import ConfigError, check_choice
from ..files import cache_dir, write_atomic
from .articles import ARTICLE_POOLS, TOKENIZER_FILE, load_articles, load_tokenizer
from .fetch import DataNotFoundError, DataSource, locate

PAD_ID = 0  #: GPT-NeoX's end-of-text token, used as padding (as in Yang et al.'s code)
FULL_VOCAB_SIZE = 50_304  #: rows of Pythia's embedding (the tokenizer has 50,277 ids)
TOKENIZER_VOCAB_SIZE = 50_277  #: ids of the GPT-NeoX tokenizer (Yang et al.'s code resizes to it)
MAX_TOKENS = 2048  #: tokens kept per article (2C for C = 1024 with the centre window)
HUB_SUBSET = 5000  #: articles tokenised when the pool is the full Hugging Face train split
WINDOWS = ("first", "centre")


@dataclasses.dataclass
class TokenPool:
    """Every article of a pool as GPT-NeoX ids (at most :data:`MAX_TOKENS` each)."""

    ids: list[str]  #: article identifiers
    tokens: list[np.ndarray]  #: int32 ids of each article
    pool: str
    sources: tuple[DataSource, ...]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens])

    def __len__(self) -> int:
        return len(self.tokens)


def _tokenizer_digest() -> str:
    rel, sha = TOKENIZER_FILE
    try:
        return locate("gpt-neox-tokenizer", mirror_path=rel, mirror_sha256=sha).source.sha256
    except DataNotFoundError:
        return "hub"


def tokenize_pool(pool: str = "permissive") -> TokenPool:
    """Tokenise the articles of ``pool`` (see :func:`~cldyn_lib.load_articles`), cached.

    The cache file is named after the sha256 of the article file and of the tokenizer, so a
    different copy of either is tokenised again.
    """
    check_choice("pool", pool, ARTICLE_POOLS)
    articles = load_articles(pool)
    key = f"{articles.source.sha256 or articles.source.location}:{_tokenizer_digest()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / "derived" / f"tokens-{pool}-{MAX_TOKENS}-{digest}.npz"
    sources = (articles.source,)
    if path.exists():
        with np.load(path, allow_pickle=False) as d:
            flat, offsets, ids = d["flat"], d["offsets"], d["ids"].tolist()
        tokens = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return TokenPool(ids, tokens, pool, sources)
    idx = np.arange(len(articles))
    if len(idx) > 20_000:  # the full hub split: a fixed random subset is plenty for T <= 200
        idx = np.sort(np.random.default_rng(0).choice(idx, HUB_SUBSET, replace=False))
    tok = load_tokenizer()
    texts = [articles.texts[i] for i in idx]
    enc = tok(texts, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS)
    tokens = [np.asarray(e, dtype=np.int32) for e in enc["input_ids"]]
    ids = [articles.ids[i] for i in idx]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])])
    flat = np.concatenate(tokens) if tokens else np.zeros(0, np.int32)
    write_atomic(
        path, lambda f: np.savez(f, flat=flat, offsets=offsets, ids=np.array(ids, dtype=str))
    )
    return TokenPool(ids, tokens, pool, sources)


# ---------------------------------------------------------------- documents


@dataclasses.dataclass
class Documents:
    """T documents in training order, as padded GPT-NeoX ids.

    ``tokens[t]`` holds the first ``C`` tokens of article t (``window="first"``) or its first
    ``2C`` (``window="centre"``: training windows start at ``C/2 + s``, evaluation at
    ``C/2``), padded with :data:`PAD_ID`; ``lengths[t]`` counts its real tokens.
    """

    ids: list[str]
    tokens: np.ndarray  #: (T, C) or (T, 2C) int64
    lengths: np.ndarray  #: (T,) real tokens per row
    context: int  #: C
    window: str  #: "first" or "centre"
    pool: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def eval_start(self) -> int:
        """Where the evaluation window starts: 0, or ``C/2`` for the centre window."""
        return 0 if self.window == "first" else self.context // 2

    def window_at(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids (T, C) of the window starting at ``start`` and its real-token counts (T,)."""
        C = self.context
        ids = self.tokens[:, start : start + C]
        n = np.clip(self.lengths - start, 0, C)
        return ids, n


def select_documents(
    tokens: TokenPool,
    n_docs: int,
    context: int,
    *,
    window: str = "first",
    seed: int = 0,
    require_full: bool = True,
    exclude: frozenset[str] | set[str] = frozenset(),
    first: bool = False,
    pad_id: int = PAD_ID,
) -> Documents:
    """Draw ``n_docs`` articles with a seeded generator; their order is the training order.

    ``require_full`` keeps only articles with at least C tokens (2C for the centre window), so
    no document is padded; without it shorter articles are padded and the padding is masked
    out of the loss. Articles whose id is in ``exclude`` are never drawn (the pre-trained
    stand-in's training articles). A pool too small for the request raises ConfigError.
    ``first=True`` takes the first ``n_docs`` candidates in the pool's order instead of a
    seeded draw; ``pad_id`` pads (a model's own padding or end-of-text id; Pythia's is 0).
    """
    check_choice("window", window, WINDOWS)
    width = context if window == "first" else 2 * context
    lengths = tokens.lengths
    ok = np.array([i not in exclude for i in tokens.ids], dtype=bool)
    if require_full:
        ok &= lengths >= width
    candidates = np.flatnonzero(ok & (lengths >= 2))
    if len(candidates) < n_docs:
        need = f"with >= {width} tokens " if require_full else ""
        raise ConfigError(
            f"n_docs must be <= {len(candidates)} for pool {tokens.pool!r} with context={context} "
            f"and window={window!r} ({len(candidates)} articles {need}are available); "
            f"got {n_docs}"
        )
    if first:
        chosen = candidates[:n_docs]
    else:
        rng = np.random.default_rng([seed, 0])
        chosen = rng.choice(candidates, size=n_docs, replace=False)
    out = np.full((n_docs, width), pad_id, dtype=np.int64)
    n = np.zeros(n_docs, dtype=np.int64)
    for row, i in enumerate(chosen):
        t = tokens.tokens[i][:width]
        out[row, : len(t)] = t
        n[row] = len(t)
    return Documents([tokens.ids[i] for i in chosen], out, n, context, window, tokens.pool)


# ---------------------------------------------------------------- vocabularies


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A map from GPT-NeoX ids to a model's ids: ``ids[k]`` is the GPT-NeoX id of model id k.

    ``ids[0]`` is always :data:`PAD_ID`. With ``unk=True`` the last model id stands for every
    GPT-NeoX id not in ``ids`` (a "rare token" class); otherwise such ids are an error.
    """

    ids: np.ndarray
    unk: bool = False
    name: str = "custom"

    @property
    def size(self) -> int:
        return len(self.ids) + int(self.unk)

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """GPT-NeoX ids -> model ids (same shape)."""
        tokens = np.asarray(tokens)
        hi = max(FULL_VOCAB_SIZE, int(tokens.max(initial=0)) + 1, int(self.ids.max()) + 1)
        table = np.full(hi, len(self.ids) if self.unk else -1, dtype=np.int64)
        table[self.ids] = np.arange(len(self.ids))
        out = table[tokens]
        if not self.unk and (out < 0).any():
            missing = np.unique(tokens[out < 0])[:5]
            raise ValueError(f"vocabulary {self.name!r} lacks token ids {missing.tolist()}...")
        return out

    def restrict(self, tokens: np.ndarray) -> tuple["Vocab", np.ndarray]:
        """The sub-vocabulary of the model ids that occur in ``tokens`` (GPT-NeoX ids).

        Returns it and the model ids it keeps (rows to keep of an embedding or output head).
        """
        used = np.unique(np.concatenate([[0], self.encode(tokens).ravel()]))
        keep_unk = self.unk and used[-1] == len(self.ids)
        kept = used[:-1] if keep_unk else used
        return Vocab(self.ids[kept], keep_unk, self.name + "+docs"), used


def full_vocab(size: int = FULL_VOCAB_SIZE) -> Vocab:
    """All ``size`` rows of a model's embedding, unchanged (Pythia's 50,304 by default)."""
    return Vocab(np.arange(size), False, "full")


def tokenizer_vocab(size: int = TOKENIZER_VOCAB_SIZE) -> Vocab:
    """The first ``size`` ids: the tokenizer's own (GPT-NeoX's 50,277 by default).

    Yang et al.'s code resizes Pythia's 50,304-row embedding and head to the tokenizer's 50,277
    ids; ``vocab="full"`` keeps all 50,304 rows. The 27 extra rows are never a target, so
    they only add their share of the softmax: at random initialisation every loss is
    5.5e-4 nats per token higher (measured on Pythia-160M's shape; a uniform softmax gives
    ln(50,304 / 50,277) = 5.4e-4), and less once the model has learnt to avoid them.
    """
    return Vocab(np.arange(size), False, "tokenizer")


def vocab_of(tokens: np.ndarray) -> Vocab:
    """Only the ids that occur in ``tokens`` (plus the padding id): nothing is merged."""
    ids = np.unique(np.concatenate([[PAD_ID], np.asarray(tokens).ravel()]))
    return Vocab(ids.astype(np.int64), False, "docs")


def common_vocab(token_lists, k: int) -> Vocab:
    """The ``k - 2`` most frequent ids of a corpus, padding and a rare-token class: ``k`` ids."""
    counts = np.bincount(np.concatenate(token_lists), minlength=FULL_VOCAB_SIZE)
    counts[PAD_ID] = -1
    order = np.argsort(-counts, kind="stable")[: k - 2]
    ids = np.concatenate([[PAD_ID], np.sort(order)]).astype(np.int64)
    return Vocab(ids, True, f"common{k}")
