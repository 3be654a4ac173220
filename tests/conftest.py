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
