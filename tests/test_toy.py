"""Paper B's toy model (section 4.4)."""

import numpy as np
import pytest

import cldyn_lib as cl


def test_must_show_reflect_rs_rises_with_every_epoch():
    losses = cl.simulate(target="reflect", n_tasks=25, dim=100, lr=0.01, epochs=6)
    assert losses.shape == (6 * 25 + 1, 25)
    rs = cl.recovery_scores(losses)
    assert len(rs) == 5
    assert np.all(np.diff(rs) > 0), rs
    assert rs[0] > 0.2


def test_same_seed_same_numbers_and_different_seed_differs():
    a = cl.simulate(seed=3, epochs=3)
    b = cl.simulate(seed=3, epochs=3)
    c = cl.simulate(seed=4, epochs=3)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_training_step_matches_the_equations():
    """One episode by hand: P <- P - lr (P x - f(w)) x^T, then w <- f^{-1}(P x)."""
    cfg = cl.ToyConfig(n_tasks=3, dim=5, epochs=1, lr=0.05, target="reflect", seed=1)
    rng = np.random.default_rng(cfg.seed)
    x = rng.uniform(-1, 1, (3, 5))
    P = rng.normal(0, 1 / 5, (5, 5))
    w = rng.uniform(-1, 1, 5)
    y = rng.uniform(-1, 1, (3, 5))
    P = P - cfg.lr * np.outer(P @ x[0] - (y[0] - w), x[0])
    w = y[0] - P @ x[0]
    expected = 0.5 * np.sum((x @ P.T - (y - w)) ** 2, axis=1)
    assert cl.run_toy(cfg).losses[1] == pytest.approx(expected, rel=1e-10)
    assert expected[0] == pytest.approx(0.0, abs=1e-20)  # the task just trained is solved


def test_paper_identity_setting_is_refused_before_compute():
    with pytest.raises(cl.ConfigError, match=r"lr must be in \(0, 0.006\) for dim=1000"):
        cl.ToyConfig(target="identity", dim=1000, lr=0.01)
    res = cl.run_toy(cl.ToyConfig(target="identity", dim=1000, lr=0.001, epochs=4))
    assert np.isfinite(res.losses).all()
    assert res.kappa == pytest.approx(0.001 * 1000 / 3, rel=0.05)
    assert np.all(cl.recovery_scores(res.losses) > 0.5)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("n_tasks", 1, "n_tasks must be an integer in \\[2"),
        ("dim", 0, "dim must be"),
        ("epochs", 0, "epochs must be"),
        ("lr", 0.0, "lr must be"),
        ("lr", -1.0, "lr must be"),
        ("target", "mirror", "target must be one of 'identity', 'reflect'"),
        ("order", "random", "order must be one of"),
        ("seed", -1, "seed must be"),
        ("epochs", 2.5, "epochs must be an integer"),
    ],
)
def test_bad_config_values(field, value, match):
    with pytest.raises(cl.ConfigError, match=match):
        cl.ToyConfig(**{field: value})


def test_circle_forms_in_task_order_and_not_under_reshuffling():
    fixed = cl.run_toy(cl.ToyConfig(epochs=20, seed=0))
    c = cl.circle_order(cl.pca_2d(fixed.embeddings[-1])[0])
    assert abs(c.winding) == 1 and c.order >= 0.9
    shuffled = cl.run_toy(cl.ToyConfig(epochs=20, seed=0, order="shuffled"))
    assert sorted(shuffled.schedule[1]) == list(range(25))
    assert not np.array_equal(shuffled.schedule[0], shuffled.schedule[1])
    s = cl.circle_order(cl.pca_2d(shuffled.embeddings[-1])[0])
    assert s.order < 0.8
    fixed_rs = cl.recovery_scores(fixed.losses)
    shuffled_rs = cl.recovery_scores(shuffled.losses, shuffled.schedule)
    assert np.all(fixed_rs > shuffled_rs)


def test_circle_order_on_synthetic_points():
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    ring = np.c_[np.cos(angles), np.sin(angles)]
    c = cl.circle_order(ring)
    assert (c.winding, c.order) == (1, 1.0) and c.radius_cv == pytest.approx(0, abs=1e-12)
    assert cl.circle_order(ring[::-1]).winding == -1
    twice = np.c_[np.cos(2 * angles), np.sin(2 * angles)]
    assert cl.circle_order(twice).winding == 2


def test_epoch_map_slowest_pattern_is_one_turn():
    modes = cl.circle_modes(25, 0.33)
    assert modes.moduli[0] == pytest.approx(1.0)
    assert modes.revolutions == 1
    assert abs(modes.slowest_phase_step) == pytest.approx(2 * np.pi / 25, rel=1e-6)
    assert 0 < modes.ratio < 1
    # a longer cycle fades the competing pattern more slowly
    assert cl.circle_modes(50, 0.33).ratio > modes.ratio
    with pytest.raises(cl.ConfigError, match="kappa"):
        cl.epoch_map(10, 2.5)


def test_dashboard_draws_three_panels():
    import matplotlib

    matplotlib.use("Agg")
    fig = cl.toy_dashboard(n_tasks=8, dim=20, epochs=3, lr=0.05)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlabel() == "training episode"
