"""Probes of cyclic training (paper B, section 4) against direct computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import need_mirror, tiny_cyclic

import cldyn_lib as cl
from cldyn_lib.cyclic.probes import CoordinateSubset
from cldyn_lib.models import gpt_neox


def tiny(**overrides) -> cl.CyclicConfig:
    return tiny_cyclic(**{"n_docs": 4, **overrides})


# ---------------------------------------------------------------- pure analysis


def test_residual_window_interior_is_the_centred_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 3))
    for edge in cl.RESIDUAL_EDGES:
        r = cl.weight_residuals(x, 4, edge)
        # row 5: window rows 3..6 (T/2 before, T/2 - 1 after)
        np.testing.assert_allclose(r[5], x[5] - x[3:7].mean(0))


def test_residual_window_edges_shift_or_truncate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 2))
    shift = cl.weight_residuals(x, 4, "shift")
    trunc = cl.weight_residuals(x, 4, "truncate")
    # start: "shift" uses the first 4 rows, "truncate" the rows of the centred window that exist
    np.testing.assert_allclose(shift[0], x[0] - x[0:4].mean(0))
    np.testing.assert_allclose(shift[1], x[1] - x[0:4].mean(0))
    np.testing.assert_allclose(trunc[0], x[0] - x[0:2].mean(0))
    np.testing.assert_allclose(trunc[1], x[1] - x[0:3].mean(0))
    # end: "shift" the last 4 rows, "truncate" rows 6..8 for row 8 (window 6..9 cut at 8)
    np.testing.assert_allclose(shift[8], x[8] - x[5:9].mean(0))
    np.testing.assert_allclose(trunc[8], x[8] - x[6:9].mean(0))
    # a window of the whole run: every shifted residual is relative to the run's mean
    np.testing.assert_allclose(cl.weight_residuals(x, 9, "shift"), x - x.mean(0))


def test_residual_window_longer_than_the_run_is_a_clear_error():
    with pytest.raises(
        cl.ConfigError, match=r"window must be in 1..5 \(the run has 5 checkpoints\); got 6"
    ):
        cl.weight_residuals(np.zeros((5, 2)), 6)
    with pytest.raises(cl.ConfigError, match="edge must be one of 'shift', 'truncate'"):
        cl.weight_residuals(np.zeros((5, 2)), 2, "wrap")


def helix(T: int, E: int, revs: float, dim: int = 40, seed: int = 0, decay: float = 0.0):
    """A helix with ``revs`` turns per epoch of T steps, drifting, in a random ``dim``-D basis."""
    t = np.arange(E * T + 1, dtype=float)
    r = 3.0 * np.exp(-decay * t / T)
    pts = np.stack(
        [0.05 * t, r * np.cos(2 * np.pi * revs * t / T), r * np.sin(2 * np.pi * revs * t / T)], 1
    )
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, 3)))
    noise = 0.01 * np.random.default_rng(seed + 1).normal(size=(len(t), dim))
    return pts @ q.T + noise


@pytest.mark.parametrize("revs", [1.0, 2.0, 3.0])
def test_pca_of_a_synthetic_helix_recovers_its_revolutions_per_epoch(revs):
    m = cl.helix_measures(helix(T=20, E=5, revs=revs), n_docs=20)
    assert m["revs_per_epoch"] == pytest.approx(revs, rel=0.05)


def test_helix_with_a_period_longer_than_an_epoch_is_told_apart():
    # the one-epoch detrending window no longer fits a whole turn: approximate, but not 1
    m = cl.helix_measures(helix(T=20, E=6, revs=0.5), n_docs=20)
    assert 0.4 < m["revs_per_epoch"] < 0.65


def test_helix_convergence_is_measured():
    shrinking = cl.helix_measures(helix(20, 5, 1.0, decay=0.4), 20)
    steady = cl.helix_measures(helix(20, 5, 1.0, decay=0.0), 20)
    assert shrinking["radius_ratio"] < 0.5 < 0.9 < steady["radius_ratio"] < 1.1


def test_stripe_period_of_a_periodic_similarity_matrix():
    T = 7
    t = np.arange(50)
    x = np.stack([np.cos(2 * np.pi * t / T), np.sin(2 * np.pi * t / T), 0.1 * np.ones(50)], 1)
    assert cl.stripe_period(cl.cosine_matrix(x)) == T


def test_diagonal_peak_lag_offset_and_symmetry():
    T = 10
    m = np.zeros((T, T))
    for j in range(T):  # the band near the diagonal is highest around document 4
        m[(j - 1) % T, j] = m[j, (j - 1) % T] = 1.0 - abs(j - 4) / T
    out = cl.diagonal_peak(m)
    assert out["position"] == 4
    assert out["lag"] == 5  # from the checkpoint after document 9 to document 4
    assert out["offset"] in (1, T - 1)
    assert out["symmetry"] == pytest.approx(1.0)
    skew = np.triu(np.ones((T, T)), 1)
    assert cl.diagonal_peak(skew)["symmetry"] < 0


def test_cosine_matrix_matches_direct_computation():
    x = np.random.default_rng(2).normal(size=(5, 7))
    c = cl.cosine_matrix(x)
    assert c[1, 3] == pytest.approx(x[1] @ x[3] / np.linalg.norm(x[1]) / np.linalg.norm(x[3]))


# ---------------------------------------------------------------- probes inside the engine


@pytest.fixture
def mirror():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")


def test_probe_hook_does_not_change_the_run(mirror):
    cfg = tiny()
    plain = cl.run_cyclic(cfg, progress=False)
    p = cl.Probes(cl.ProbeConfig(max_dims=500))
    probed = cl.run_cyclic(cfg, progress=False, probe=p)
    np.testing.assert_array_equal(plain.losses, probed.losses)
    out = p.result()
    N = cfg.epochs * cfg.n_docs + 1
    assert out.weights.shape == (N, 500) and out.head.shape[0] == N and out.acts.shape[0] == N
    assert out.grads.shape[0] == cfg.n_docs and out.pairwise.shape == (cfg.n_docs, cfg.n_docs)
    assert out.layer == "gpt_neox.layers.1.attention"
    assert out.memory_bytes["total"] > out.memory_bytes["recorded"] > 0


def test_pairwise_entry_equals_the_loss_change_measured_by_hand(mirror):
    cfg = tiny()
    state = cl.setup_cyclic(cfg)
    cl.run_cyclic(cfg, progress=False, state=state)
    weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    mat = cl.pairwise_recovery(state)
    # the weights are restored
    for k, v in state.model.state_dict().items():
        assert torch.equal(v, weights[k])
    # by hand, for i = 2: M Adam steps on document 2 from the checkpoint, loss of document 0
    i, j = 2, 0
    model = state.model
    C, s = cfg.context, state.docs.eval_start
    ids = state.tokens[:, s : s + C]
    n = (state.lengths - s).clamp(0, C)
    with torch.no_grad():
        before = gpt_neox.document_losses(
            model(input_ids=ids[j : j + 1]).logits, ids[j : j + 1], n[j : j + 1]
        )[0]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    for _ in range(cfg.steps):
        loss = gpt_neox.document_losses(
            model(input_ids=ids[i : i + 1]).logits, ids[i : i + 1], n[i : i + 1]
        )[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = gpt_neox.document_losses(
            model(input_ids=ids[j : j + 1]).logits, ids[j : j + 1], n[j : j + 1]
        )[0]
    assert mat[i, j] == pytest.approx(float(before - after), rel=1e-4, abs=1e-6)
    assert mat[i, i] > 0  # training on a document lowers its own loss


def test_gradients_match_autograd_on_the_layer(mirror):
    cfg = tiny()
    state = cl.setup_cyclic(cfg)
    g = cl.document_gradients(state, "gpt_neox.layers.0.mlp.dense_4h_to_h")
    mod = state.model.gpt_neox.layers[0].mlp.dense_4h_to_h
    C, s = cfg.context, state.docs.eval_start
    ids, n = state.tokens[1:2, s : s + C], (state.lengths[1:2] - s).clamp(0, C)
    loss = gpt_neox.document_losses(state.model(input_ids=ids).logits, ids, n)[0]
    direct = torch.autograd.grad(loss, [mod.weight, mod.bias])
    np.testing.assert_allclose(
        g[1].numpy(), torch.cat([d.reshape(-1) for d in direct]).numpy(), rtol=1e-5, atol=1e-7
    )


def test_unknown_layer_and_bad_document_are_clear_errors(mirror):
    with pytest.raises(
        cl.ConfigError,
        match=r"layer 'gpt_neox.layers.9' is not a module .*modules with parameters: gpt_neox.embed_in",
    ):
        cl.run_cyclic(
            tiny(), progress=False, probe=cl.Probes(cl.ProbeConfig(layer="gpt_neox.layers.9"))
        )
    with pytest.raises(cl.ConfigError, match=r"act_doc must be in 0..3; got 7"):
        cl.run_cyclic(tiny(), progress=False, probe=cl.Probes(cl.ProbeConfig(act_doc=7)))
    with pytest.raises(cl.ConfigError, match=r"max_dims must be an integer in \[16, "):
        cl.ProbeConfig(max_dims=3)


def test_subset_is_fixed_and_seeded():
    params = [torch.arange(100.0), torch.arange(50.0)]
    a = CoordinateSubset(params, 20, seed=3)
    b = CoordinateSubset(params, 20, seed=3)
    assert torch.equal(a(), b()) and a.dims == 20
    flat = torch.cat(params)
    assert torch.equal(a(), flat[a.index])


def test_estimate_memory_counts_the_checkpoint_and_buffers():
    est = cl.estimate_memory(10**6, 10**5, 10**4, 64, 32, n_docs=5, epochs=2, max_dims=1000)
    assert est["checkpoint"] == 4 * 10**6
    assert est["gradients"] == 4 * 5 * 1000
    assert est["total"] == sum(v for k, v in est.items() if k != "total")
    assert dataclasses.is_dataclass(cl.ProbeConfig())


def test_structure_nulls_show_what_the_predicates_cannot_tell_apart():
    """The no-similarity null repeats once per epoch by construction, so it has stripes of
    period one epoch and nearly one helix turn per epoch; a random walk has activation-like
    blocks. These are the values a probe claim must beat."""
    import cldyn_lib as cl

    nulls = cl.null_structure(10, 5, seeds=4)
    assert np.all(nulls["uncorrelated"]["stripe_epochs"] == 1.0)
    assert np.all(np.abs(nulls["uncorrelated"]["helix_revs"] - 1) < 0.1)
    assert np.all(nulls["random_walk"]["block"] > 0.1)
    a = cl.uncorrelated_updates(10, 3, dim=8, seed=1)
    assert a.shape == (31, 8) and np.array_equal(a, cl.uncorrelated_updates(10, 3, dim=8, seed=1))
    with pytest.raises(cl.ConfigError, match="n_docs >= 2"):
        cl.uncorrelated_updates(1, 3)
    with pytest.raises(cl.ConfigError, match="n_steps >= 2"):
        cl.random_walk(1)
