"""What a cyclic run trains: its documents, its vocabulary and its model.

Two kinds of input share one engine. The book's: Pythia (GPT-NeoX) models, random, loaded
or the pre-trained stand-in, on the mirror's CNN/DailyMail articles tokenised once and
cached (:func:`cldyn_lib.tokenize_pool`). Yours: any ``transformers`` causal LM with its own
tokenizer (``causal_lm``, :mod:`cldyn_lib.models.causal_lm`) and any documents (``docs``,
:mod:`cldyn_lib.data.texts`), or either one with the book's other half. :func:`run_inputs`
builds them for :func:`~cldyn_lib.setup_cyclic`, documents first and the model last, so a
bad document is reported before a large model is loaded.

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..data.articles import load_tokenizer
from ..data.documents import (
    Documents,
    Vocab,
    full_vocab,
    select_documents,
    tokenize_pool,
    tokenizer_vocab,
    vocab_of,
)
from ..data.texts import articles_as_texts, load_texts, tokenize_texts
from ..models import causal_lm as clm
from ..models import gpt_neox as lm
from ..models.small_lm import load_small_lm, pretraining_corpus, small_lm_vocab
from .config import CyclicConfig


@dataclasses.dataclass
class RunInputs:
    """The documents, vocabulary and model of one run, and where they came from."""

    docs: Documents
    vocab: Vocab
    model: torch.nn.Module
    sources: tuple
    info: dict[str, Any]


def subseed(seed: int, stream: int) -> int:
    """An independent seed for random stream ``stream`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def window_of(config: CyclicConfig) -> int:
    """Tokens kept per document: C, or 2C for the centre window."""
    return config.context if config.window == "first" else 2 * config.context


# ---------------------------------------------------------------- the book's inputs


def _pythia_model(config: CyclicConfig, info: dict):
    if config.weights == "pretrained":
        return lm.load_pretrained(config.model, config.weights_path)
    if config.weights == "standin":
        s = load_small_lm(config.small_lm_config(), progress=False)
        info["standin"] = {k: v for k, v in s.info.items() if k != "config"}
        return s.model
    if config.init == "step0":
        return lm.load_pretrained(config.model, config.weights_path, revision="step0")
    init_seed = subseed(config.seed, 2)
    a = config.arch(vocab_size=info["base_vocab_size"])
    return lm.build_random(a, config.init, config.init_dims, init_seed)


def _pythia_base_vocab(config: CyclicConfig) -> Vocab:
    if config.vocab == "common":
        return small_lm_vocab(config.vocab_k)
    return tokenizer_vocab() if config.vocab == "tokenizer" else full_vocab()


def _check_own_docs(config: CyclicConfig, pool) -> None:
    """Your documents: enough of them, and none short when full windows are asked for."""
    if len(pool) < config.n_docs:
        raise ConfigError(
            f"n_docs (T) must be <= {len(pool)}, the documents in {pool.pool}; got {config.n_docs}"
        )
    width = window_of(config)
    short = np.flatnonzero(pool.lengths < width)
    if config.require_full and len(short):
        i = int(short[0])
        raise ConfigError(
            f"require_full=True asks for documents of at least {width} tokens (context={config.context}"
            f", window={config.window!r}); {len(short)} of {len(pool)} in {pool.pool} are shorter, "
            f"e.g. document {i + 1} ({pool.ids[i]!r}, {pool.lengths[i]} tokens): lower context, "
            "or set require_full=False to pad them and leave the padding out of the loss"
        )


def _documents(config: CyclicConfig, tokenizer, pad_id: int):
    """(documents, their sources): from the cached pool, or tokenised here."""
    common = dict(window=config.window, seed=config.seed, first=config.doc_selection == "first")
    if tokenizer is None:  # the book's pool with the book's tokenizer, cached
        pool = tokenize_pool(config.pool)
        exclude = frozenset()
        if config.weights == "standin" or config.vocab == "common":
            exclude = frozenset(pretraining_corpus().ids)  # never fine-tune on pre-training text
        docs = select_documents(pool, config.n_docs, config.context,
                                require_full=config.require_full, exclude=exclude, **common)  # fmt: skip
        return docs, pool.sources
    texts = (
        load_texts(config.docs, config.docs_field)
        if config.docs
        else articles_as_texts(config.pool)
    )
    pool = tokenize_texts(texts, tokenizer, window_of(config))
    if config.docs:
        _check_own_docs(config, pool)
    full = config.require_full and not config.docs  # the pool: only long articles are drawn
    docs = select_documents(pool, config.n_docs, config.context, require_full=full,
                            pad_id=pad_id, **common)  # fmt: skip
    return docs, pool.sources


def pythia_inputs(config: CyclicConfig) -> RunInputs:
    """The book's Pythia models, on the CNN/DailyMail pool or on your ``docs``."""
    tokenizer = load_tokenizer() if config.docs else None
    docs, sources = _documents(config, tokenizer, pad_id=0)
    # vocab: the model's ids; keep: the rows of a loaded model's embedding and head to keep
    base = _pythia_base_vocab(config)
    if config.vocab == "full":
        vocab, keep = base, None
    elif config.vocab == "tokenizer":
        vocab, keep = base, base.ids
    elif config.vocab == "docs":
        vocab = vocab_of(docs.tokens)
        keep = vocab.ids
    else:
        vocab, keep = base.restrict(docs.tokens)
    loaded = config.weights in ("pretrained", "standin") or config.init == "step0"
    info: dict[str, Any] = {"base_vocab_size": base.size if loaded else vocab.size}
    info["vocab_size"] = vocab.size
    model = _pythia_model(config, info)  # random models are built at the final size
    if loaded and keep is not None:
        clm.restrict_vocab_(model, keep)
    return RunInputs(docs, vocab, model, tuple(sources), info)


# ---------------------------------------------------------------- your model


def causal_lm_inputs(config: CyclicConfig) -> RunInputs:
    """Any causal LM with its tokenizer, on your ``docs`` or on the CNN/DailyMail pool."""
    src = config.causal_lm
    spec = clm.inspect_causal_lm(src, need_weights=config.weights == "pretrained")
    tokenizer = clm.load_lm_tokenizer(src)
    docs, sources = _documents(config, tokenizer, clm.pad_id_of(tokenizer))
    rows = spec.vocab_rows
    top = int(docs.tokens.max())
    if top >= rows:
        raise ConfigError(
            f"causal_lm {src!r}: its tokenizer gives id {top}, but the model's embedding has "
            f"only {rows} rows (a tokenizer that does not belong to this model?)"
        )
    if config.vocab == "full":
        vocab, keep = full_vocab(rows), None
    elif config.vocab == "tokenizer":
        vocab = tokenizer_vocab(min(len(tokenizer), rows))
        keep = None if vocab.size == rows else vocab.ids
    else:
        vocab = vocab_of(docs.tokens)
        keep = vocab.ids
    model = clm.load_causal_lm(src, config.weights, seed=subseed(config.seed, 2))
    if keep is not None:
        clm.restrict_vocab_(model, keep)
    info: dict[str, Any] = {
        "base_vocab_size": rows, "vocab_size": vocab.size, "causal_lm": {
            "class": type(model).__name__, "model_type": spec.model_type, "context": spec.context,
            "depth": spec.depth, "width": spec.width, "tied_embeddings": clm.is_tied(model),
            "tokenizer_size": len(tokenizer), "pad_id": clm.pad_id_of(tokenizer),
            "dropout_modules": sum(isinstance(m, torch.nn.Dropout) and m.p > 0
                                   for m in model.modules()),
        },
    }  # fmt: skip
    if config.lora_rank:
        model = clm.add_lora(model, config.lora_rank, config.lora_alpha, subseed(config.seed, 6))
    return RunInputs(docs, vocab, model, tuple(sources), info)


def run_inputs(config: CyclicConfig) -> RunInputs:
    """The documents, vocabulary and (frozen where asked) model of ``config``."""
    inputs = causal_lm_inputs(config) if config.causal_lm else pythia_inputs(config)
    model, info = inputs.model, inputs.info
    info["frozen_params"] = clm.freeze_blocks_(model, config.frozen_blocks)
    info["n_params"] = sum(p.numel() for p in model.parameters())
    info["n_params_non_embedding"] = info["n_params"] - clm.n_embedding_params(model)
    info["n_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return inputs
