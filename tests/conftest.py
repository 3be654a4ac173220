"""Shared fixtures. The rendered-book tests need `make book` first (the Makefile's `test`
target builds it); everything else runs on the library alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("CLDYN_MIRROR", ROOT.parent / "shared" / "data"))
BUILD = ROOT / "_build"


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """No mirror, an empty cache, no CLDYN_DATA: only what a test provides is found."""
    monkeypatch.setenv("CLDYN_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("CLDYN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLDYN_DATA", raising=False)
    monkeypatch.delenv("CLDYN_OFFLINE", raising=False)
    return tmp_path


def need_mirror(*parts: str) -> Path:
    path = MIRROR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"offline mirror file {path} not present")
    return path


def tiny_cyclic(**overrides):
    """A cyclic run of well under a second (T=3 documents of 16 tokens, a 2-block model of
    width 16); tests override what they study."""
    import cldyn_lib as cl

    fields = dict(
        n_docs=3, context=16, steps=2, epochs=2, optimizer="adam", lr=1e-3, weights="random",
        width=16, depth=2, heads=2, vocab="docs", device="cpu",
    )  # fmt: skip
    return cl.CyclicConfig(**{**fields, **overrides})


# ---------------------------------------------------------------- your own model (tiny)

WORDS = (
    "the a cat dog sat on mat ran far and then slept under tree bird sang song in morning "
    "night river flowed past old mill stone bridge"
).split()
TINY_VOCAB = 48  #: embedding rows of the tiny models (more than the tokenizer's 29 ids)


def word_tokenizer(eos: bool = True):
    """A word-level tokenizer of :data:`WORDS` (29 ids; id 0 the end-of-text token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    kw = {"eos_token": "<|endoftext|>"} if eos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", **kw)


def tiny_lm(arch: str, **overrides):
    """A 2-block causal LM of width 16 built from its config: "gpt2", "llama" or "neox"."""
    import torch
    import transformers as t

    common = dict(vocab_size=TINY_VOCAB, bos_token_id=0, eos_token_id=0)
    configs = {
        "gpt2": lambda: t.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, **common),
        "llama": lambda: t.LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=64, **common,
        ),
        "neox": lambda: t.GPTNeoXConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=64, **common,
        ),
    }  # fmt: skip
    cfg = configs[arch]()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return t.AutoModelForCausalLM.from_config(cfg)


def save_tiny(folder: Path, arch: str, tokenizer=None, **overrides) -> Path:
    """``save_pretrained`` a tiny model and its tokenizer into ``folder``."""
    tiny_lm(arch, **overrides).save_pretrained(folder)
    (tokenizer or word_tokenizer()).save_pretrained(folder)
    return folder


def tiny_texts(n: int = 12, seed: int = 0) -> list[str]:
    """``n`` texts of 10-40 words of :data:`WORDS` (seeded)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))) for _ in range(n)]


@pytest.fixture(scope="session")
def own(tmp_path_factory):
    """Tiny GPT-2, Llama and GPT-NeoX folders and the same 12 documents in every format."""
    import json

    root = tmp_path_factory.mktemp("own")
    paths = {arch: save_tiny(root / arch, arch) for arch in ("gpt2", "llama", "neox")}
    texts = tiny_texts()
    with open(root / "docs.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": t, "n": i}) + "\n")
    (root / "docs.txt").write_text("\n".join(texts) + "\n")
    (root / "folder").mkdir()
    for i, t in enumerate(texts):
        (root / "folder" / f"{i:02d}.txt").write_text(t)
    paths.update(root=root, jsonl=root / "docs.jsonl", txt=root / "docs.txt",
                 folder=root / "folder", texts=texts)  # fmt: skip
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in paths.items()}
