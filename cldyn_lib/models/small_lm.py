"""A small pre-trained GPT-NeoX made here: the offline stand-in for Pythia's checkpoints.

Yang et al.'s main results fine-tune *pre-trained* Pythia models. No weights can be downloaded
on the machine that builds this book, so the library pre-trains a small model itself, on news
articles that are never used as cyclic documents: the 2,100 SumLLM articles of the mirror's
``"all"`` pool (the default cyclic pool, ``"permissive"``, is the other 270). It predicts
tokens of a *common vocabulary* (:func:`~cldyn_lib.data.documents.common_vocab`: the most
frequent ids of that corpus plus one rare-token class), and is far weaker than any Pythia
model: it is a stand-in, labelled as such wherever it is used. The GPU presets use real
Pythia checkpoints instead.

The weights are cached under ``data/cache/models`` (never committed) by a hash of the
:class:`SmallLMConfig`; :func:`load_small_lm` loads them or pre-trains (seconds at ci scale).

Taught in the chapter *Emergence with scale*.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import torch

from ..config import Config, check_float, check_int
from ..data.documents import TokenPool, Vocab, common_vocab, tokenize_pool
from ..files import cache_dir, write_atomic
from ..progress import tqdm
from . import gpt_neox as lm


@dataclasses.dataclass(frozen=True)
class SmallLMConfig(Config):
    """Shape and pre-training budget of the stand-in (Adam, constant lr after warm-up)."""

    KEY_TYPE = "StandinConfig"  #: its name before the rename (cached weights keep their keys)

    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_width: int = 0  #: 0 = 4 x width
    vocab_k: int = 2048  #: model ids: k-2 most frequent tokens, padding, a rare-token class
    seq: int = 64  #: tokens per pre-training sequence (cyclic runs with C <= seq are in range)
    batch: int = 16
    steps: int = 300
    lr: float = 3e-3
    seed: int = 0

    PRESETS = {
        "ci": dict(steps=300),
        "laptop": dict(steps=3000, seq=256),
        "gpu": dict(steps=20000, seq=256, batch=32),
        "paper": dict(steps=20000, seq=256, batch=32),
    }

    def validate(self) -> None:
        lm.pythia_arch("pythia-70m", self.width, self.depth, self.heads, self.mlp_width, 4)
        check_int("vocab_k", self.vocab_k, 16, 50_304)
        check_int("seq", self.seq, 8, lm.CONTEXT)
        check_int("batch", self.batch, 1, 4096)
        check_int("steps", self.steps, 1, 10**7)
        check_float("lr", self.lr, 0, 1, lo_open=True)
        check_int("seed", self.seed, 0, 2**32 - 1)

    def arch(self) -> lm.Arch:
        return lm.pythia_arch(
            "pythia-70m", self.width, self.depth, self.heads, self.mlp_width, self.vocab_k
        )


@dataclasses.dataclass
class SmallLM:
    """A pre-trained stand-in: the model, its vocabulary and how it was made."""

    model: torch.nn.Module
    vocab: Vocab
    config: SmallLMConfig
    info: dict  #: final pre-training loss, seconds, tokens seen, where the weights are


def pretraining_corpus() -> TokenPool:
    """The stand-in's articles: pool ``"all"`` minus the ``"permissive"`` cyclic pool."""
    everything = tokenize_pool("all")
    held_out = set(tokenize_pool("permissive").ids)
    keep = [i for i, a in enumerate(everything.ids) if a not in held_out]
    return TokenPool(
        [everything.ids[i] for i in keep],
        [everything.tokens[i] for i in keep],
        "all minus permissive",
        everything.sources,
    )


def small_lm_vocab(k: int) -> Vocab:
    """The stand-in's common vocabulary of ``k`` ids (see :func:`pretraining_corpus`)."""
    return common_vocab(pretraining_corpus().tokens, k)


def cache_paths(cfg: SmallLMConfig):
    """The cached weights (``.pt``) and metadata (``.json``) of ``cfg``."""
    base = cache_dir() / "models" / f"standin-{cfg.key()}"
    return base.with_suffix(".pt"), base.with_suffix(".json")


def pretrain_small_lm(cfg: SmallLMConfig, progress: bool = True) -> SmallLM:
    """Pre-train a stand-in from a Pythia-style random initialisation (no caching)."""
    corpus = pretraining_corpus()
    vocab = common_vocab(corpus.tokens, cfg.vocab_k)
    stream = vocab.encode(np.concatenate(corpus.tokens))
    model = lm.build_random(cfg.arch(), "pythia", "model", cfg.seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    warmup = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    rng = np.random.default_rng([cfg.seed, 7])
    n = torch.full((cfg.batch,), cfg.seq)
    losses, t0 = [], time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc="pre-training the stand-in", disable=not progress):
        starts = rng.integers(0, len(stream) - cfg.seq, size=cfg.batch)
        ids = torch.as_tensor(np.stack([stream[s : s + cfg.seq] for s in starts]))
        loss = lm.document_losses(model(input_ids=ids).logits, ids, n).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    info = {
        "final_loss": float(np.mean(losses[-max(1, cfg.steps // 20) :])),
        "first_loss": losses[0],
        "seconds": time.perf_counter() - t0,
        "tokens": cfg.steps * cfg.batch * cfg.seq,
        "corpus_articles": len(corpus),
        "corpus_tokens": int(len(stream)),
        "rare_token_share": float(np.mean(stream == vocab.size - 1)),
    }
    model.eval()
    return SmallLM(model, vocab, cfg, info)


def load_small_lm(cfg: SmallLMConfig, progress: bool = True) -> SmallLM:
    """The cached stand-in for ``cfg``, pre-training it first if it is not cached."""
    weights, meta = cache_paths(cfg)
    if weights.exists() and meta.exists():
        info = json.loads(meta.read_text())
        model = lm.build_random(cfg.arch(), "pythia", "model", cfg.seed)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        vocab = Vocab(np.asarray(info.pop("vocab_ids"), dtype=np.int64), True, info["vocab"])
        return SmallLM(model, vocab, cfg, info)
    s = pretrain_small_lm(cfg, progress)
    write_atomic(weights, lambda f: torch.save(s.model.state_dict(), f))
    payload = {**s.info, "config": cfg.to_dict(), "vocab": s.vocab.name}
    payload["vocab_ids"] = s.vocab.ids.tolist()
    write_atomic(meta, lambda f: f.write(json.dumps(payload).encode()))
    return s
