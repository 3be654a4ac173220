"""Paper A's machinery: the ConvNet, zapping, the four pre-training modes, transfer and the
zap-divergence protocol. Tiny models on synthetic images, so the whole file runs in seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cldyn_lib as cl
from cldyn_lib.config import ConfigError
from cldyn_lib.data.omniglot import OmniglotTensors
from cldyn_lib.models import convnet
from cldyn_lib.sequential import episodic, transfer

TINY = dict(channels=4, n_outputs=12, n_classes=6, epochs=2, batch_size=16, asb_episodes=3,
            meta_episodes=2, inner_steps=3, remember=5)  # fmt: skip


def fake_omniglot(n_classes: int, seed: int = 0, split: str = "background") -> OmniglotTensors:
    """Random 'characters': each class is a random blob pattern plus per-drawing noise."""
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand((n_classes, 1, 1, 28, 28), generator=g) > 0.8).float()
    noise = 0.3 * torch.rand((n_classes, 20, 1, 28, 28), generator=g)
    images = (1 - proto + noise).clamp(0, 1)
    src = cl.DataSource("omniglot", "explicit", "synthetic test fixture")
    return OmniglotTensors(images[:, :15], images[:, 15:], np.arange(n_classes), split, src)


# ---------------------------------------------------------------- model


def test_convnet_shapes_and_no_conv_bias():
    net = cl.ConvNet(256, 1000)
    assert net.n_features == 2304 and net.head.weight.shape == (1000, 2304)
    assert convnet.feature_size(28) == 3
    for name in ("conv1", "conv2", "conv3"):
        block = getattr(net, name)
        assert block[0].bias is None and isinstance(block[1], torch.nn.InstanceNorm2d)
    assert [type(m).__name__ for m in net.conv3] == ["Conv2d", "InstanceNorm2d", "ReLU"]
    small = cl.ConvNet(4, 10)
    assert small(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert tuple(convnet.layer_weights(small)) == convnet.LAYERS


def test_conv_bias_before_instance_norm_gets_no_true_gradient():
    # why the model has bias=False: InstanceNorm removes any per-channel constant
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, 3, bias=True).double()
    norm = torch.nn.InstanceNorm2d(3, affine=True).double()
    x = torch.rand(4, 1, 10, 10, dtype=torch.float64)
    norm(conv(x)).pow(3).sum().backward()
    assert conv.bias.grad.abs().max() < 1e-9 < conv.weight.grad.abs().max()


# ---------------------------------------------------------------- zapping


def test_zap_changes_exactly_the_chosen_rows():
    head = torch.nn.Linear(20, 10)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    idx = cl.zap(head, [1, 4], generator=torch.Generator().manual_seed(0))
    assert idx.tolist() == [1, 4]
    changed = (head.weight != w0).all(dim=1)
    assert changed.tolist() == [r in (1, 4) for r in range(10)]
    assert torch.equal(head.weight[[0, 2, 3, 5, 6, 7, 8, 9]], w0[[0, 2, 3, 5, 6, 7, 8, 9]])
    assert torch.equal(head.bias, b0)  # biases are not reset during pre-training
    cl.zap(head, 7, reset_bias=True)
    assert head.bias[7] == 0 and torch.equal(head.bias[[0, 1, 2]], b0[[0, 1, 2]])


@pytest.mark.parametrize(
    "init, rows, expected",
    [("kaiming", "all", math.sqrt(2 / 2304)), ("reference", "all", math.sqrt(2 / 2304 / 1000)),
     ("reference", list(range(3)), math.sqrt(2 / 2304 / 3)), ("reference", 5, 0.0295)],
)  # fmt: skip
def test_zap_std_per_row_kaiming_and_the_reference_quirk(init, rows, expected):
    head = torch.nn.Linear(2304, 1000)
    idx = cl.zap(head, rows, init=init, generator=torch.Generator().manual_seed(1))
    std = head.weight[idx].std().item()
    assert std == pytest.approx(expected, rel=0.05 if len(idx) < 3 else 0.02)


def test_zap_rows_out_of_range_is_a_config_error():
    head = torch.nn.Linear(8, 10)
    with pytest.raises(
        ConfigError, match=r"zap rows must be in \[0, 9\] \(the head has 10 outputs\); got 10"
    ):
        cl.zap(head, [3, 10])
    with pytest.raises(ConfigError, match="zap rows must be in"):
        cl.zap(head, -1)
    with pytest.raises(ConfigError, match="zap rows must not repeat"):
        cl.zap(head, [2, 2])
    with pytest.raises(ConfigError, match="zap init must be one of"):
        cl.zap(head, "all", init="xavier")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cl.PretrainConfig(mode="maml"),
         "mode must be one of 'iid', 'zapped_iid', 'asb', 'meta_asb'; got 'maml'"),
        (lambda: cl.PretrainConfig(lr=0.0), r"lr must be a number in \(0, inf\]; got 0.0"),
        (lambda: cl.PretrainConfig(inner_lr=-0.1), r"inner_lr must be a number in \(0, inf\]"),
        (lambda: cl.TransferConfig(lr=-1e-3), r"lr must be a number in \(0, inf\]; got -0.001"),
        (lambda: cl.DivergenceConfig(lr=0), r"lr must be a number in \(0, inf\]; got 0"),
        (lambda: cl.TransferConfig(n_classes=700),
         r"n_classes must be an integer in \[1, 659\] \(the evaluation set has 659 characters\); got 700"),
        (lambda: cl.TransferConfig(protocol="random"), "protocol must be one of 'sequential', 'iid'"),
        (lambda: cl.TransferConfig(optimizer="rmsprop"), "optimizer must be one of 'sgd', 'adam'"),
        (lambda: cl.PretrainConfig(n_classes=965), r"n_classes must be an integer in \[2, 964\]"),
        (lambda: cl.DivergenceConfig(zap_rows="some"), "zap_rows must be one of 'all', 'none'"),
    ],
)  # fmt: skip
def test_bad_input_raises_config_error_with_a_clear_message(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_transfer_with_more_classes_than_the_head_fails_before_training():
    net = cl.ConvNet(4, 5)
    with pytest.raises(ConfigError, match="n_classes=6 is more than the head's 5 outputs"):
        cl.run_transfer(cl.TransferConfig(n_classes=6, eval_every=2), net, fake_omniglot(6))


def test_divergence_rejects_out_of_range_rows_before_training():
    net = cl.ConvNet(4, 5)
    cfg = cl.DivergenceConfig(zap_rows=(1, 5), steps=2, batch_size=4)
    with pytest.raises(ConfigError, match=r"zap rows must be in \[0, 4\]"):
        cl.run_divergence(cfg, net, fake_omniglot(3))


# ---------------------------------------------------------------- Meta-ASB


def test_meta_gradient_matches_finite_differences_on_a_tiny_model():
    torch.manual_seed(0)
    net = cl.ConvNet(2, 3, image_size=22, generator=torch.Generator().manual_seed(0)).double()
    inner_x = torch.rand(3, 1, 22, 22, dtype=torch.float64)
    inner_y = torch.tensor([1, 1, 1])
    outer_x = torch.rand(5, 1, 22, 22, dtype=torch.float64)
    outer_y = torch.tensor([1, 0, 2, 1, 0])
    lr = 0.5
    grads, loss = episodic.meta_gradient(net, inner_x, inner_y, outer_x, outer_y, lr)
    first, _ = episodic.meta_gradient(
        net, inner_x, inner_y, outer_x, outer_y, lr, second_order=False
    )
    params = dict(net.named_parameters())

    def outer_loss(shifted):
        fast = episodic.inner_loop(net, shifted, inner_x, inner_y, lr, create_graph=False)
        out = torch.func.functional_call(net, fast, (outer_x,))
        return F.cross_entropy(out, outer_y).item()

    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):
        v = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params.items()}
        plus = {n: (p + eps * v[n]).detach().requires_grad_() for n, p in params.items()}
        minus = {n: (p - eps * v[n]).detach().requires_grad_() for n, p in params.items()}
        fd = (outer_loss(plus) - outer_loss(minus)) / (2 * eps)
        analytic = sum((grads[n] * v[n]).sum().item() for n in params)
        approx = sum((first[n] * v[n]).sum().item() for n in params)
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)
        # the first-order shortcut is measurably different: the test would catch losing it
        assert abs(approx - fd) > 100 * abs(analytic - fd)
    assert loss.item() == pytest.approx(outer_loss(params))


# ---------------------------------------------------------------- pre-training


def test_pretraining_same_seed_is_bitwise_identical_and_seeds_differ():
    data = fake_omniglot(6)
    for mode in cl.PRETRAIN_MODES:
        cfg = cl.PretrainConfig(mode=mode, **TINY)
        a, b = cl.pretrain(cfg, data), cl.pretrain(cfg, data)
        c = cl.pretrain(cfg.replace(seed=1), data)
        sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), mode
        assert np.array_equal(a.losses, b.losses) and np.all(np.isfinite(a.losses))
        assert not torch.equal(sa["head.weight"], sc["head.weight"])


def test_zapped_iid_without_a_zap_is_iid_and_with_zaps_differs():
    data = fake_omniglot(6)
    iid = cl.pretrain(cl.PretrainConfig(mode="iid", lr=0.01, **TINY), data)
    no_zap = cl.PretrainConfig(mode="zapped_iid", lr=0.01, **{**TINY, "zap_every": 2})
    same = cl.pretrain(no_zap, data)
    zapped = cl.pretrain(no_zap.replace(zap_every=1), data)
    assert np.array_equal(iid.losses, same.losses)
    assert not np.array_equal(iid.losses, zapped.losses)
    steps_per_epoch = math.ceil(6 * 15 / TINY["batch_size"])
    # the second epoch starts from a near-zero head (reference init) whose biases were kept:
    # the loss jumps back to about ln(12), far above the IID run's at the same step
    jump = zapped.losses[steps_per_epoch]
    assert jump == pytest.approx(math.log(12), abs=0.2) and jump > iid.losses[steps_per_epoch] + 0.1


def test_asb_episode_zaps_the_class_row_and_trains(monkeypatch):
    data = fake_omniglot(6)
    zapped_rows = []
    real_zap = episodic.zap

    def spy(head, rows, **kw):
        zapped_rows.append(rows)
        return real_zap(head, rows, **kw)

    monkeypatch.setattr(episodic, "zap", spy)
    res = cl.pretrain(cl.PretrainConfig(mode="asb", **TINY), data)
    assert len(zapped_rows) == TINY["asb_episodes"] and all(0 <= r < 6 for r in zapped_rows)
    assert len(res.losses) == TINY["asb_episodes"]


def test_load_or_pretrain_caches_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("CLDYN_CACHE", str(tmp_path))
    data = fake_omniglot(6)
    cfg = cl.PretrainConfig(mode="iid", **TINY)
    first = cl.load_or_pretrain(cfg, data=data)
    assert first.path.exists() and first.seconds > 0
    again = cl.load_or_pretrain(cfg, data=data)
    assert again.seconds == 0 and np.array_equal(first.losses, again.losses)
    assert torch.equal(first.model.head.weight, again.model.head.weight)


# ---------------------------------------------------------------- transfer


def test_eval_schedule_and_trained_at():
    cfg = cl.TransferConfig(n_classes=7, eval_every=3)
    seen, trained_at = transfer.eval_schedule(cfg)
    assert seen.tolist() == [0, 3, 6, 7]
    assert trained_at.tolist() == [1, 1, 1, 2, 2, 2, 3]


@pytest.mark.parametrize("train", ["head", "all"])
def test_transfer_matrices_determinism_and_frozen_features(train):
    data = fake_omniglot(4, seed=3, split="evaluation")
    net = cl.ConvNet(4, 10, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = cl.TransferConfig(n_classes=4, eval_every=2, train=train, lr=0.01)
    a, b = cl.run_transfer(cfg, net, data), cl.run_transfer(cfg, net, data)
    assert a.acc.shape == a.loss.shape == (3, 4) and len(a.train_loss) == 60
    assert np.array_equal(a.acc, b.acc) and np.array_equal(a.train_loss, b.train_loss)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # input untouched
    conv_same = torch.equal(a.model.conv1[0].weight, net.conv1[0].weight)
    assert conv_same == (train == "head")
    assert a.eval_steps.tolist() == [0, 30, 60] and not a.diverged
    # the fresh head: per-row Kaiming, zero bias, so all classes start near chance
    assert a.acc[0].mean() <= 0.6 and a.seen_mean()[0] != a.seen_mean()[0]  # NaN at row 0
    assert a.acc[-1].mean() > 0.5  # the fake classes are easy


def test_transfer_divergence_is_reported_not_raised():
    data = fake_omniglot(2, split="evaluation")
    cfg = cl.TransferConfig(n_classes=2, eval_every=1, optimizer="sgd", lr=1e12, train="all")
    res = cl.run_transfer(cfg, cl.ConvNet(4, 4), data)
    assert res.diverged and math.isnan(res.final_acc)


# ---------------------------------------------------------------- zap divergence


def test_cosines_of_two_identical_runs_are_one():
    data = fake_omniglot(5)
    net = cl.ConvNet(4, 8, generator=torch.Generator().manual_seed(0))
    cfg = cl.DivergenceConfig(zap_rows="none", steps=5, batch_size=8, lr=1e-2)
    res = cl.run_divergence(cfg, net, data)
    assert np.allclose(res.weight_cos, 1.0, atol=1e-12)
    assert np.isnan(res.disp_cos[0]).all() and np.allclose(res.disp_cos[1:], 1.0, atol=1e-12)
    assert np.array_equal(res.grad_norm[0], res.grad_norm[1])


def test_zap_divergence_starts_apart_in_the_head_only_and_is_deterministic():
    data = fake_omniglot(5)
    net = cl.ConvNet(4, 8, generator=torch.Generator().manual_seed(0))
    cfg = cl.DivergenceConfig(steps=6, batch_size=8, lr=1e-2)
    a, b = (cl.run_divergence(cfg, net, data) for _ in range(2))
    assert a.layers == convnet.LAYERS
    assert np.allclose(a.weight_cos[0, :3], 1.0, atol=1e-12) and abs(a.weight_cos[0, 3]) < 0.5
    assert np.array_equal(a.weight_cos, b.weight_cos) and np.array_equal(a.grad_norm, b.grad_norm)
    # after the zap the two runs' first gradients differ in every layer
    assert np.all(a.grad_norm[0, 0] != a.grad_norm[1, 0])


def test_diverged_run_is_marked_not_raised():
    data = fake_omniglot(5)
    net = cl.ConvNet(4, 8)
    cfg = cl.DivergenceConfig(optimizer="sgd", lr=1e12, steps=8, batch_size=8)
    res = cl.run_divergence(cfg, net, data)
    assert 0 <= res.diverged_at < 8 and res.diverged
    assert np.isnan(res.weight_cos[res.diverged_at + 2 :]).all()


def test_half_life():
    assert cl.half_life(np.array([0.0, 0.2, 0.6, 0.9])) == 2
    assert math.isnan(cl.half_life(np.array([0.0, 0.1])))


# ---------------------------------------------------------------- studies


def test_best_probe_picks_the_learning_rate_with_the_best_seed_mean():
    final = np.zeros((2, 2, 3, 3))  # (mode, protocol, lr, seed)
    final[0, 0] = [[0.1, 0.2, 0.3], [0.5, 0.5, 0.0], [0.2, 0.2, 0.2]]  # means .2, .33, .2
    final[1, 1, 2] = [0.9, np.nan, 0.9]  # a diverged seed disqualifies nothing else here
    curves = np.arange(2 * 2 * 3 * 3 * 2 * 4, dtype=float).reshape(2, 2, 3, 3, 2, 4)
    arrays = {"probe_final": final, "probe_curves": curves, "probe_lrs": np.array([1, 2, 3]),
              "probe_forgetting_all": final * 0}  # fmt: skip
    best = cl.best_probe(arrays)
    assert best["best_lr"][0, 0] == 2 and best["best_lr"][1, 0] == 1
    assert best["best_lr"][1, 1] == 1  # the NaN mean of lr 3 does not win
    assert np.array_equal(best["final"][0, 0], final[0, 0, 1])
    assert np.array_equal(best["acc"][0, 0], curves[0, 0, 1, :, 0])
    assert np.array_equal(best["loss"][1, 0], curves[1, 0, 0, :, 1])


def test_seen_mean_averages_seen_classes_only_in_sequential_transfer():
    acc = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.5, 1.0]])
    seen = np.array([0, 1, 2, 3])
    res = cl.TransferResult(
        cl.TransferConfig(n_classes=3, eval_every=1), acc, acc, np.zeros(45),
        seen * 15, seen, np.array([1, 2, 3]), np.arange(3), diverged=False,
    )  # fmt: skip
    assert np.allclose(res.seen_mean()[1:], [1.0, 0.75, 2 / 3]) and np.isnan(res.seen_mean()[0])
    res.config = res.config.replace(protocol="iid")
    assert np.allclose(res.seen_mean()[1:], [1 / 3, 0.5, 2 / 3])


def test_table1_marks_diverged_and_missing_cells():
    final = np.full((1, 2, 1, 3), 0.5)
    final[0, 0, 0, 1] = np.nan  # one diverged seed of the sequential probe
    arrays = {"probe_final": final, "probe_curves": np.zeros((1, 2, 1, 3, 2, 2)),
              "probe_lrs": np.array([1e-3]), "probe_forgetting_all": np.zeros((1, 2, 1, 3)),
              "full_final": np.array([[[np.nan] * 3, [np.nan] * 3]]),
              "full_best_lr": np.array([[1e-4, 1e-4]])}  # fmt: skip
    row = cl.table1(arrays, ["iid"], full_protocols=("sequential",)).iloc[0].tolist()
    assert row[0] == "IID" and row[1].startswith("50.0 ± 0.0 (1 diverged)")
    assert row[3] == "diverged (lr 0.0001)" and row[4] == "-"
    # the sequential probe at full fine-tuning's lr: the grid's nearest value (here its only)
    assert row[5] == "50.0 ± 0.0 (1 diverged) (lr 0.001)"


def test_probe_at_full_lr_takes_the_probe_grid_value_nearest_in_log_lr():
    lrs = np.array([1e-4, 1e-3, 1e-2])
    final = np.arange(2 * 2 * 3 * 2, dtype=float).reshape(2, 2, 3, 2)  # (mode, protocol, lr, seed)
    full_lr = np.array([[2e-4, 1.0], [4e-3, 1.0]])  # sequential: nearest 1e-4, then 1e-2 in log
    got = cl.probe_at_full_lr({"probe_lrs": lrs, "probe_final": final, "full_best_lr": full_lr})
    assert np.allclose(got["lr"], [1e-4, 1e-2])
    seq = cl.sequential.transfer_studies.PROTOCOLS.index("sequential")
    assert np.array_equal(got["final"], np.stack([final[0, seq, 0], final[1, seq, 2]]))


def test_shock_study_arrays_do_not_depend_on_the_number_of_workers(tmp_path, monkeypatch):
    from conftest import need_mirror

    need_mirror()
    monkeypatch.setenv("CLDYN_CACHE", str(tmp_path))  # spawned workers inherit it
    study = cl.ShockStudy.preset("ci").replace(
        modes=("iid", "zapped_iid"), n_seeds=1, probe_lrs=(1e-3,), full_lrs=(1e-3, 3e-3)
    )
    one = cl.run_shock_study(study, workers=1)
    two = cl.run_shock_study(study, workers=2)
    assert set(one) == set(two)
    for key in one:
        assert np.array_equal(one[key], two[key], equal_nan=True), key
    M, P, S = 2, 2, 1
    assert one["probe_final"].shape == (M, P, 1, S)
    assert one["full_final_all"].shape == (M, P, 2, S) and one["full_best_lr"].shape == (M, P)
    assert one["full_train_loss"].shape[:2] == (M, S)
    assert one["pretrain_loss_zapped_iid"].shape[0] == S
