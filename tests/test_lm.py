"""GPT-NeoX models, vocabularies, documents, the pre-trained stand-in and sweeps."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import need_mirror

import cldyn_lib as cl
from cldyn_lib.cyclic.sweeps import variant
from cldyn_lib.data import documents
from cldyn_lib.models import causal_lm, gpt_neox, small_lm

ROOT = Path(__file__).resolve().parent.parent


def weight(model, suffix: str) -> torch.Tensor:
    return torch.cat(
        [p.detach().ravel() for n, p in model.named_parameters() if n.endswith(suffix)]
    )


@pytest.mark.parametrize("dims", ["model", "reference"])
def test_pythia_init_uses_small_and_wang_init(dims):
    a = cl.pythia_arch("pythia-70m", width=128, depth=4, heads=4, vocab_size=500)
    model = cl.build_random(a, "pythia", dims, seed=1)
    d, L = (128, 4) if dims == "model" else gpt_neox.REFERENCE_DIMS
    small, wang = math.sqrt(2 / (5 * d)), 2 / (L * math.sqrt(d))
    for suffix, std in [
        ("query_key_value.weight", small), ("dense_h_to_4h.weight", small),
        ("embed_in.weight", small), ("attention.dense.weight", wang),
        ("dense_4h_to_h.weight", wang),
    ]:  # fmt: skip
        assert weight(model, suffix).std().item() == pytest.approx(std, rel=0.03), suffix
    head = gpt_neox.output_head(model).weight  # found by get_output_embeddings, not by name
    assert head.std().item() == pytest.approx(small, rel=0.03)
    assert weight(model, "query_key_value.bias").abs().max() == 0
    assert (weight(model, "input_layernorm.weight") == 1).all()


def test_gaussian_init_and_seeds():
    a = cl.pythia_arch("pythia-70m", width=64, depth=2, heads=4, vocab_size=300)
    g = cl.build_random(a, "gaussian", seed=0)
    for suffix in ("query_key_value.weight", "dense_4h_to_h.weight", "embed_in.weight"):
        assert weight(g, suffix).std().item() == pytest.approx(0.02, rel=0.05)
    same = cl.build_random(a, "gaussian", seed=0)
    other = cl.build_random(a, "gaussian", seed=1)
    assert torch.equal(weight(g, "embed_in.weight"), weight(same, "embed_in.weight"))
    assert not torch.equal(weight(g, "embed_in.weight"), weight(other, "embed_in.weight"))


def test_arch_knobs_parameter_count_and_pythia_shapes():
    a = cl.pythia_arch("pythia-1b")
    assert (a.width, a.depth, a.heads, a.mlp_width) == (2048, 16, 8, 8192)
    small = cl.pythia_arch("pythia-160m", width=96, depth=3, heads=3, mlp_width=200, vocab_size=700)
    model = cl.build_random(small)
    assert sum(p.numel() for p in model.parameters()) == small.n_params()
    assert small.n_params(embeddings=False) == small.n_params() - 2 * 700 * 96
    assert model.config.intermediate_size == 200 and len(causal_lm.transformer_blocks(model)) == 3
    # Pythia-1B's non-embedding parameters: about 805M (its name counts the embeddings too)
    assert 0.80e9 < a.n_params(embeddings=False) < 0.81e9


def test_restrict_vocab_keeps_the_logits_of_kept_tokens_and_freeze_counts():
    a = cl.pythia_arch("pythia-70m", width=32, depth=2, heads=4, vocab_size=50)
    model = cl.build_random(a, seed=2)
    keep = np.array([0, 3, 7, 9, 42])
    ids_full = torch.tensor([[3, 9, 42, 7, 0, 3]])
    with torch.no_grad():
        full = model(input_ids=ids_full).logits[..., keep]
    causal_lm.restrict_vocab_(model, keep)
    ids_new = torch.tensor([[1, 3, 4, 2, 0, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids_new).logits, full)
    frozen = causal_lm.freeze_blocks_(model, 1)
    block0 = sum(p.numel() for p in causal_lm.transformer_blocks(model)[0].parameters())
    assert frozen == 5 * 32 + block0


def test_vocabularies():
    full = documents.full_vocab()
    assert full.size == 50_304 and np.array_equal(full.encode(np.array([5, 0])), [5, 0])
    v = documents.vocab_of(np.array([[7, 3, 7], [9, 0, 0]]))
    assert v.ids.tolist() == [0, 3, 7, 9] and v.encode(np.array([9, 7])).tolist() == [3, 2]
    with pytest.raises(ValueError, match="lacks token ids"):
        v.encode(np.array([4]))
    common = documents.common_vocab([np.array([5, 5, 5, 6, 6, 8])], k=4)
    assert common.size == 4 and common.ids.tolist() == [0, 5, 6]
    assert common.encode(np.array([8, 5, 123])).tolist() == [3, 1, 3]  # 3 = rare tokens
    sub, rows = common.restrict(np.array([6, 8]))
    assert (
        rows.tolist() == [0, 2, 3] and sub.unk and sub.encode(np.array([6, 8])).tolist() == [1, 2]
    )


def test_document_selection_is_seeded_and_respects_length_and_exclusions():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    pool = cl.tokenize_pool("permissive")
    assert len(pool) == 270
    a = cl.select_documents(pool, 5, 64, seed=3)
    b = cl.select_documents(pool, 5, 64, seed=3)
    assert a.ids == b.ids and np.array_equal(a.tokens, b.tokens)
    assert a.tokens.shape == (5, 64) and (a.lengths == 64).all()
    long = cl.select_documents(pool, 42, 1024, seed=0)  # 42 articles have >= 1024
    assert (long.lengths == 1024).all()
    with pytest.raises(cl.ConfigError, match="n_docs must be <= 42"):
        cl.select_documents(pool, 43, 1024)
    centre = cl.select_documents(pool, 3, 64, window="centre", exclude=set(a.ids))
    assert centre.tokens.shape == (3, 128) and not set(centre.ids) & set(a.ids)
    ids, n = centre.window_at(centre.eval_start)
    assert ids.shape == (3, 64) and np.array_equal(ids, centre.tokens[:, 32:96])


def test_standin_pretrains_caches_and_never_sees_the_cyclic_pool():
    need_mirror("cnn_dailymail", "articles.jsonl")
    corpus = small_lm.pretraining_corpus()
    permissive = cl.tokenize_pool("permissive")
    assert len(corpus) == 2100 and not set(corpus.ids) & set(permissive.ids)
    cfg = cl.SmallLMConfig(width=16, depth=1, heads=2, vocab_k=64, seq=16, batch=4,
                                 steps=40, lr=1e-2, seed=987)  # fmt: skip
    weights, meta = small_lm.cache_paths(cfg)
    try:
        s = cl.load_small_lm(cfg, progress=False)
        assert s.info["final_loss"] < s.info["first_loss"] - 0.5
        again = cl.load_small_lm(cfg, progress=False)  # from the cache
        for (n1, p1), (_, p2) in zip(s.model.named_parameters(), again.model.named_parameters()):
            assert torch.equal(p1, p2), n1
        assert np.array_equal(s.vocab.ids, again.vocab.ids) and s.vocab.size == 64
    finally:
        weights.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)


def test_sweep_summaries_and_key_stability():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    base = cl.CyclicConfig(n_docs=3, context=16, steps=2, epochs=3, optimizer="adam", lr=1e-3,
                        weights="random", width=16, depth=1, heads=2, vocab="docs", device="cpu")  # fmt: skip
    sw = cl.CyclicSweep("t", base, (variant("M=1", steps=1), variant("M=2", steps=2)), (0, 1))
    arrays = cl.run_cyclic_sweep(sw, progress=False)
    assert arrays["v1_score"].shape == (2, 2) and arrays["v0_losses"].shape == (2, 10, 3)
    direct = cl.run_cyclic(sw.config(1, 1), progress=False)
    np.testing.assert_allclose(arrays["v1_score"][1], direct.recovery_scores(), rtol=1e-5)
    assert sw.key() == cl.CyclicSweep("t", base, sw.variants, (0, 1)).key()
    assert sw.key() != cl.CyclicSweep("t", base.replace(lr=2e-3), sw.variants, (0, 1)).key()
    with pytest.raises(cl.ConfigError, match="steps must be an integer"):
        cl.CyclicSweep("t", base, (variant("bad", steps=0),))


def test_benchmark_reference_style_loop_agrees_with_the_engine():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "cyclic_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # the benchmark imports and times this loop
    assert "cl.reference_style_run(" in (ROOT / "benchmarks" / "cyclic_eval.py").read_text()
    cfg = cl.CyclicConfig(n_docs=4, context=16, steps=2, epochs=2, optimizer="adam", lr=1e-3,
                       weights="random", width=16, depth=1, heads=2, vocab="docs", device="cpu")  # fmt: skip
    ref, clock = cl.reference_style_run(cfg)
    eng = cl.run_cyclic(cfg, progress=False)
    np.testing.assert_allclose(eng.losses, ref, rtol=1e-5, atol=1e-5)
    assert clock["eval_s"] > 0 and not np.array_equal(ref[0], ref[-1])
