"""Hand-written optimizers, multi-epoch sequential transfer and the studies built on them
(chapters *Optimizers and sequential learning* and *Why Adam remembers*). Tiny tensors and
models on synthetic images: the whole file runs in seconds."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_zapping import fake_omniglot

import cldyn_lib as cl
from cldyn_lib.config import ConfigError
from cldyn_lib.sequential import sequence, transfer

G1, G2, G3 = [0.5, -1.0, 0.0], [0.1, 0.3, 0.0], [-0.2, 0.4, 2.0]


def run_steps(opt_cls, grads, w0=(1.0, -2.0, 3.0), **kw):
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([w], **kw)
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return w.detach().numpy(), opt


def adam_by_hand(grads, lr, b1, b2, eps, power, w0=(1.0, -2.0, 3.0)):
    """The update rule written out with Python floats, one coordinate at a time."""
    out = []
    for i, w in enumerate(w0):
        m = v = 0.0
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g[i]
            v = b2 * v + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            w = w - lr * m_hat / (v_hat**power + eps)
        out.append(w)
    return np.array(out)


# ---------------------------------------------------------------- the update rules


@pytest.mark.parametrize(
    "betas, power",
    [((0.9, 0.999), 0.5), ((0.9, 0.999), 1.0), ((0.0, 0.999), 0.5), ((0.9, 0.0), 0.5),
     ((0.0, 0.0), 0.5)],
)  # fmt: skip
def test_adamp_matches_the_update_computed_by_hand(betas, power):
    w, _ = run_steps(cl.AdamP, [G1, G2, G3], lr=0.1, betas=betas, eps=1e-3, power=power)
    expected = adam_by_hand([G1, G2, G3], 0.1, *betas, 1e-3, power)
    assert np.allclose(w, expected, rtol=1e-12, atol=1e-12)


def test_adamp_first_step_by_hand():
    # after one step m_hat = g and v_hat = g**2: Adam moves by lr * g / (|g| + eps), no-sqrt
    # Adam by lr * g / (g**2 + eps); a zero gradient moves nothing
    w, _ = run_steps(cl.AdamP, [G1], lr=0.1, eps=1e-3, power=0.5)
    assert np.allclose(w, [1 - 0.1 * 0.5 / 0.501, -2 + 0.1 * 1.0 / 1.001, 3.0])
    w, _ = run_steps(cl.AdamP, [G1], lr=0.1, eps=1e-3, power=1.0)
    assert np.allclose(w, [1 - 0.1 * 0.5 / 0.251, -2 + 0.1 * 1.0 / 1.001, 3.0])


def test_adamp_with_power_one_half_is_torch_adam():
    torch.manual_seed(0)
    a = torch.randn(7, 5, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    target = torch.randn(7, 5)
    ours = cl.AdamP([a], lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    ref = torch.optim.Adam([b], lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(25):
        for w, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            ((w - target) ** 3).pow(2).sum().backward()
            opt.step()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a, b.detach() * 0)  # they moved


def test_diagonal_fisher_uses_the_running_mean_of_squared_gradients():
    w, opt = run_steps(cl.DiagonalFisher, [G1, G2], lr=0.1, eps=0.01)
    f1 = np.square(G1)
    f2 = (np.square(G1) + np.square(G2)) / 2
    expected = np.array([1.0, -2.0, 3.0]) - 0.1 * np.array(G1) / (f1 + 0.01)
    expected = expected - 0.1 * np.array(G2) / (f2 + 0.01)
    assert np.allclose(w, expected, rtol=1e-12)
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert np.allclose(state["exp_avg_sq"].numpy(), f2) and state["step"] == 2


def test_build_optimizer_picks_the_class_of_the_config():
    p = [torch.nn.Parameter(torch.zeros(2))]
    cfg = cl.TransferConfig
    assert type(cl.build_optimizer(cfg(optimizer="sgd"), p)) is torch.optim.SGD
    assert type(cl.build_optimizer(cfg(optimizer="adam"), p)) is torch.optim.Adam
    adamp = cl.build_optimizer(cfg(optimizer="adam", adam_power=1.0, eps=1e-3), p)
    assert type(adamp) is cl.AdamP and adamp.param_groups[0]["power"] == 1.0
    fisher = cl.build_optimizer(cfg(optimizer="fisher", eps=0.01), p)
    assert type(fisher) is cl.DiagonalFisher and fisher.param_groups[0]["eps"] == 0.01
    for name, overrides in cl.VARIANTS.items():
        assert cfg(**overrides).optimizer in transfer.OPTIMIZERS, name


# ---------------------------------------------------------------- watching the moments


def test_moment_tracker_first_step_and_reset():
    data = fake_omniglot(3, split="evaluation")
    net = cl.ConvNet(4, 6, generator=torch.Generator().manual_seed(0))
    cfg = cl.TransferConfig(n_classes=3, eval_every=1, epochs=2, lr=1e-2, train="all")
    trackers = []

    def start(state):
        trackers.append(cl.MomentTracker(state.model, 90, reset_at=[45]))
        return trackers[-1]

    cl.run_transfer(cfg, net, data, on_start=start)
    stats = trackers[0].stats  # (step, stat, layer)
    grad, upd, m, v_rms, cos = (stats[:, i] for i in range(5))
    # step 1: m_hat = g and v_hat = g**2, so ||m_hat|| = ||g||, cos = 1, rms(v_hat) = rms(g)
    n = np.array([sum(p.numel() for p in getattr(net, k).parameters()) for k in net.layer_names])
    assert np.allclose(m[0], grad[0], rtol=1e-5) and np.allclose(cos[0], 1.0, atol=1e-5)
    assert np.allclose(v_rms[0], grad[0] / np.sqrt(n), rtol=1e-4)
    assert np.all(upd[0] > 0) and np.isfinite(stats).all()
    # Adam state wiped after step 45: step 46 is a first step again
    assert np.allclose(cos[45], 1.0, atol=1e-5) and not np.allclose(cos[44], 1.0, atol=1e-3)


# ---------------------------------------------------------------- multi-epoch transfer


def test_multi_epoch_schedule_follows_the_loss_matrix_convention():
    cfg = cl.TransferConfig(n_classes=4, eval_every=1, epochs=3)
    seen, trained_at = transfer.eval_schedule(cfg)
    rows = transfer.training_rows(cfg)
    assert seen.tolist() == list(range(13))
    assert np.array_equal(rows, cl.after_training_rows(cl.default_schedule(4, 3)))
    assert trained_at.tolist() == [9, 10, 11, 12]
    assert transfer.eval_steps(cfg, 15).tolist() == [15 * k for k in range(13)]
    coarse = cl.TransferConfig(n_classes=5, eval_every=2, epochs=2, batch_size=4)
    assert transfer.eval_schedule(coarse)[0].tolist() == [0, 2, 4, 5, 7, 9, 10]
    assert transfer.training_rows(coarse).tolist() == [[1, 1, 2, 2, 3], [4, 4, 5, 5, 6]]
    # 75 images in batches of 4: 19 steps per epoch, no batch straddles an epoch
    assert transfer.eval_steps(coarse, 15).tolist() == [0, 8, 15, 19, 27, 34, 38]


def test_loss_matrix_rows_line_up_with_the_task_order():
    data = fake_omniglot(5, seed=1, split="evaluation")
    net = cl.ConvNet(4, 8, generator=torch.Generator().manual_seed(0))
    cfg = cl.TransferConfig(n_classes=5, eval_every=1, epochs=2, optimizer="sgd",
                                  momentum=0.0, lr=0.05)  # fmt: skip
    res = cl.run_transfer(cfg, net, data)
    assert res.loss.shape == (11, 5) and res.train_loss.shape == (150,)
    drops = res.loss[:-1] - res.loss[1:]  # drops[k] = improvement from row k to row k+1
    # in epoch 1, each task's loss falls most in the row right after its own training
    assert np.argmax(drops[:5], axis=0).tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(res.after_training[0], np.arange(1, 6))
    assert np.array_equal(res.epoch_end_rows(), [5, 10])
    # the training loss of step k is the loss of the image of task k // 15 (of its epoch)
    acc_seen = res.seen_mean()
    assert np.isnan(acc_seen[0]) and np.isfinite(acc_seen[1:]).all()


def test_same_seed_bitwise_identical_for_every_optimizer_and_seeds_differ():
    data = fake_omniglot(3, seed=2, split="evaluation")
    net = cl.ConvNet(4, 6, generator=torch.Generator().manual_seed(0))
    for overrides in cl.VARIANTS.values():
        cfg = cl.TransferConfig(n_classes=3, eval_every=1, epochs=2, lr=1e-3,
                                      train="all", **overrides)  # fmt: skip
        a, b = cl.run_transfer(cfg, net, data), cl.run_transfer(cfg, net, data)
        # bitwise, NaN where a run diverged (on some CPUs one of these tiny runs does)
        assert np.array_equal(a.loss, b.loss, equal_nan=True)
        assert np.array_equal(a.train_loss, b.train_loss, equal_nan=True)
        c = cl.run_transfer(cfg.replace(seed=1), net, data)
        assert not np.array_equal(a.loss, c.loss)


def test_fresh_head_size_eval_split_and_rotation():
    data = fake_omniglot(3, seed=4, split="evaluation")
    net = cl.ConvNet(4, 9, generator=torch.Generator().manual_seed(0))
    cfg = cl.TransferConfig(n_classes=3, eval_every=1, lr=1e-2)
    small = cl.run_transfer(cfg.replace(head_outputs=3), net, data)
    assert small.model.head.out_features == 3 and net.head.out_features == 9
    on_train = cl.run_transfer(cfg.replace(eval_split="train"), net, data)
    held_out = cl.run_transfer(cfg, net, data)
    assert np.array_equal(on_train.train_loss, held_out.train_loss)  # same training
    assert not np.array_equal(on_train.loss, held_out.loss)  # evaluated on other images
    rotated = cl.run_transfer(cfg.replace(task_rotation=90.0), net, data)
    assert not np.array_equal(rotated.train_loss[15:], held_out.train_loss[15:])
    assert np.array_equal(rotated.train_loss[:15], held_out.train_loss[:15])  # class 0: 0 deg


def test_rotate_tasks_by_quarter_turns_is_rot90():
    data = fake_omniglot(3, seed=5)
    rot = cl.rotate_tasks(data, 90.0)
    assert torch.equal(rot.train_x[0], data.train_x[0])
    assert torch.allclose(rot.train_x[1], torch.rot90(data.train_x[1], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rot.test_x[2], torch.rot90(data.test_x[2], 2, dims=(-2, -1)), atol=1e-5)
    assert torch.equal(data.train_x, fake_omniglot(3, seed=5).train_x)  # input untouched


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cl.TransferConfig(optimizer="rmsprop"),
         "optimizer must be one of 'sgd', 'adam', 'fisher'; got 'rmsprop'"),
        (lambda: cl.TransferConfig(beta1=1.0), r"beta1 must be a number in \[0, 1\); got 1.0"),
        (lambda: cl.TransferConfig(beta2=-0.1), r"beta2 must be a number in \[0, 1\); got -0.1"),
        (lambda: cl.TransferConfig(eps=0.0), r"eps must be a number in \(0, 1\]; got 0.0"),
        (lambda: cl.TransferConfig(adam_power=0),
         r"adam_power must be a number in \(0, 1\]; got 0"),
        (lambda: cl.TransferConfig(epochs=0), r"epochs must be an integer in \[1, 10000\]; got 0"),
        (lambda: cl.TransferConfig(eval_split="val"), "eval_split must be one of 'test', 'train'"),
        (lambda: cl.TransferConfig(n_classes=10, eval_every=1, head_outputs=5),
         r"head_outputs must be 0 \(keep the pre-trained head's rows\) or an integer in "
         r"\[n_classes=10, 100000\]; got 5"),
        (lambda: cl.TransferConfig(task_rotation=200),
         r"task_rotation must be a number in \[-180, 180\]; got 200"),
        (lambda: cl.SequenceStudy(variants=("rmsprop",), lrs=((1e-3,),)),
         "variant must be one of 'sgd', 'sgd_momentum', 'adam'"),
        (lambda: cl.SequenceStudy(lrs=((1e-3,),)),
         r"lrs must be a tuple of 2 learning-rate grids \(one per variant\)"),
        (lambda: cl.SequenceStudy(lrs=((1e-3,), (-1.0,))), r"lr must be a number in \(0, inf\]"),
        (lambda: cl.SequenceStudy(trains=("conv",)), "train must be one of 'head', 'all'"),
        (lambda: cl.SequenceStudy(batch_size=0), r"batch_size must be an integer in \[1, 100000\]"),
        (lambda: cl.SequenceSweep(field="lr"), "field must be one of 'n_classes', 'task_rotation'"),
        (lambda: cl.SequenceSweep(field="n_classes", values=(1,)), r"n_classes must be an integer in \[2, 659\]"),
        (lambda: cl.BoundaryStudy(arms=("adam", "lion"), lrs=(1e-3, 1e-3)), "arm must be one of"),
        (lambda: cl.BoundaryStudy(epochs=1), r"epochs must be an integer in \[2, 100\]"),
        (lambda: cl.PretrainConfig(arch="vit"), "arch must be one of 'convnet', 'resnet'"),
    ],
)  # fmt: skip
def test_bad_optimizer_settings_raise_config_errors_naming_the_field(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_adamp_and_fisher_reject_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="betas must lie in"):
        cl.AdamP(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="power"):
        cl.AdamP(p, power=0.0)
    with pytest.raises(ValueError, match="eps > 0"):
        cl.DiagonalFisher(p, eps=0.0)


# ---------------------------------------------------------------- metrics of the studies


def test_run_metrics_and_loss_since_training_by_hand():
    # 2 tasks, 2 epochs: rows 0..4; task 0 trained before rows 1 and 3, task 1 before 2 and 4
    loss = np.array([[5.0, 5.0], [1.0, 6.0], [0.5, 2.0], [0.2, 2.5], [0.4, 1.0]])
    acc = np.array([[0.0, 0.0], [1.0, 0.0], [0.8, 1.0], [1.0, 0.6], [0.9, 1.0]])
    rows = cl.after_training_rows(cl.default_schedule(2, 2))
    m = cl.sequence_metrics(loss, acc, rows)
    assert np.allclose(m["acc_epoch"], [0.9, 0.95])
    assert math.isclose(m["bwt1"], 1.0 - 0.5)  # task 0: 1.0 right after, 0.5 at the end of epoch 1
    assert math.isclose(m["bwt1_acc"], 0.8 - 1.0)
    assert math.isclose(m["bwt"], 0.2 - 0.4) and math.isclose(m["bwt_acc"], 0.9 - 1.0)
    since = cl.loss_since_training(loss, rows[0], horizon=3)
    assert np.allclose(since[0], [0.0, -0.5, -0.8, -0.6])
    assert np.allclose(since[1, :3], [0.0, 0.5, -1.0]) and np.isnan(since[1, 3])


def test_untrained_interference_and_loss_spikes_by_hand():
    # 3 tasks, 2 epochs: rows 0..6; step i (row i + 1) trains task i % 3
    loss = np.array([[5.0, 5.0, 5.0],
                     [1.0, 5.5, 6.0],   # task 0 trained: untrained tasks 1, 2 rise 0.5 and 1.0
                     [1.5, 0.5, 6.5],   # task 1 trained: untrained task 2 rises 0.5
                     [2.0, 1.0, 0.5],   # task 2 trained
                     [0.2, 4.0, 0.7],   # epoch 2, task 0 trained: task 1 spikes by 3.0
                     [0.4, 0.1, 0.6],
                     [0.5, 0.3, 0.1]])  # fmt: skip
    assert math.isclose(cl.untrained_interference(loss, 3), (0.5 + 1.0 + 0.5) / 3)
    assert math.isclose(cl.loss_spikes(loss, 3, [2]), 3.0)
    # epoch 1: the trained task's own drop is left out, the others' largest rise is 1.0
    assert math.isclose(cl.loss_spikes(loss, 3, [1]), 1.0)
    both = cl.loss_spikes(np.stack([loss, loss - 1.0]), 3, [1, 2])  # leading run axes
    assert np.allclose(both, [3.0, 3.0])
    with pytest.raises(ValueError, match="epochs must lie in 1..2"):
        cl.loss_spikes(loss, 3, [3])


def test_best_lr_index_never_picks_a_diverged_or_padded_learning_rate():
    acc = np.array([[[0.5, 0.5, 0.5], [0.9, np.nan, 0.9], [np.nan, np.nan, np.nan]],
                    [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4], [0.3, 0.3, 0.4]]])  # fmt: skip
    assert cl.best_lr_index(acc).tolist() == [0, 2]


def test_sequence_study_is_the_runs_it_describes(monkeypatch):
    data = fake_omniglot(3, seed=6, split="evaluation")
    nets = {s: cl.ConvNet(4, 6, generator=torch.Generator().manual_seed(s)) for s in (0, 1)}
    monkeypatch.setattr(sequence, "load_transfer_data", lambda cfg: data)
    monkeypatch.setattr(sequence, "load_or_pretrain",
                        lambda cfg: types.SimpleNamespace(model=nets[cfg.seed]))  # fmt: skip
    study = cl.SequenceStudy(variants=("sgd", "adam"), lrs=((1e-2,), (1e-3, 1e-2)),
                                   epochs=2, n_classes=3, n_seeds=2)  # fmt: skip
    out = cl.run_sequence_study(study)
    assert out["loss"].shape == (2, 2, 2, 2, 7, 3) and np.isnan(out["loss"][0, :, 1]).all()
    cfg = study.transfer_config("adam", lr=1e-2, train="all", seed=1)
    direct = cl.run_transfer(cfg, nets[1], data)
    assert np.array_equal(out["loss"][1, 1, 1, 1], direct.loss.astype(np.float32))
    summary = cl.sequence_summary(out)
    assert summary["best"]["acc_epoch"].shape == (2, 2, 2, 2)
    assert summary["best_lr"][0].tolist() == [1e-2, 1e-2]  # the only finished sgd lr


# ---------------------------------------------------------------- the other architecture


def test_resnet_interface_pretraining_and_transfer():
    net = cl.ResNet(4, 10, generator=torch.Generator().manual_seed(0))
    assert net.n_features == 16 and net.features(torch.rand(2, 1, 28, 28)).shape == (2, 16)
    assert net.layer_names == ("stem", "block1", "block2", "block3", "head")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs) and len(convs) == 9  # 7 + 2 projection shortcuts
    cfg = cl.PretrainConfig(arch="resnet", channels=4, n_outputs=12, n_classes=6, epochs=1,
                                  batch_size=16)  # fmt: skip
    res = cl.pretrain(cfg, data=fake_omniglot(6))
    assert isinstance(res.model, cl.ResNet) and np.isfinite(res.losses).all()
    out = cl.run_transfer(cl.TransferConfig(n_classes=3, eval_every=1, train="all"),
                                res.model, fake_omniglot(3, split="evaluation"))  # fmt: skip
    assert out.loss.shape == (4, 3) and not out.diverged
    assert F.cross_entropy(res.model(torch.rand(2, 1, 28, 28)), torch.tensor([0, 1])).isfinite()


def test_new_pretrain_field_keeps_the_old_cache_names():
    cfg = cl.PretrainConfig()
    import hashlib
    import json

    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("arch", "zap_until")}
    old = json.dumps({"type": "PretrainConfig", **fields}, sort_keys=True)
    assert cfg.key() == hashlib.sha256(old.encode()).hexdigest()[:12]
    assert cfg.replace(arch="resnet").key() != cfg.key()
    assert cfg.replace(mode="zapped_iid", zap_until=5).key() != cfg.replace(mode="zapped_iid").key()


def test_boundary_curve_by_hand():
    # T = 4 tasks, 2 epochs: rows 0..8; epoch 2 starts at row 4
    loss = np.zeros((9, 4))
    loss[4, 2:] = [1.0, 2.0]
    loss[5, 2:] = [1.5, 2.5]  # after retraining task 0: tasks 2 and 3 each lose 0.5
    loss[6, 2:] = [1.0, 3.0]  # after task 1: changes 0.0 and +1.0
    curve = cl.boundary_curve(loss, 2)
    assert np.allclose(curve, [0.0, 0.5, 0.5])
    assert np.allclose(cl.boundary_curve(np.stack([loss, 2 * loss]), 2), [curve, 2 * curve])
    with pytest.raises(ValueError, match=r"epoch must be in \[2, 2\]"):
        cl.boundary_curve(loss, 3)


def test_sequence_sweep_with_one_output_per_task_keeps_the_old_names():
    spare = cl.SequenceSweep(scale="laptop", field="n_classes", values=(5, 50))
    exact = spare.replace(one_output_per_task=True)
    assert [spare.study(v).head_outputs for v in (5, 50)] == [0, 0]  # the pre-trained head's
    assert [exact.study(v).head_outputs for v in (5, 50)] == [5, 50]
    assert exact.key() != spare.key()
    # the field is left out of the key at its default: committed sweeps keep their file names
    blob = {"type": "Sweep", **{k: v for k, v in spare.to_dict().items()
                                if k != "one_output_per_task"}}  # fmt: skip
    import hashlib
    import json

    text = json.dumps(blob, sort_keys=True)
    assert spare.key() == hashlib.sha256(text.encode()).hexdigest()[:12]
    with pytest.raises(ConfigError, match="one_output_per_task must be True or False"):
        spare.replace(one_output_per_task=1)
