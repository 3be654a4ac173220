"""Vectorised runs: K runs as one batched model equal K separate runs (both engines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import need_mirror, tiny_cyclic
from test_zapping import fake_omniglot

import cldyn_lib as cl
from cldyn_lib.config import ConfigError

# ---------------------------------------------------------------- the optimizer


@pytest.mark.parametrize("kind", ["adam", "sgd", "sgd-momentum"])
@pytest.mark.parametrize("foreach", [True, False])
def test_stacked_optimizer_equals_torch_optimizers_with_a_lr_per_run(kind, foreach):
    g = torch.Generator().manual_seed(0)
    K, lrs = 3, [1e-3, 1e-2, 3e-2]
    w0 = torch.randn(K, 4, 5, generator=g)
    grads = [torch.randn(K, 4, 5, generator=g) for _ in range(4)]
    momentum = 0.9 if kind == "sgd-momentum" else 0.0
    stacked = {"w": w0.clone()}
    opt = cl.StackedOptimizer(kind.split("-")[0], torch.tensor(lrs),
                           momentum=momentum, foreach=foreach)  # fmt: skip
    for gr in grads:
        opt.step(stacked, {"w": gr})
    for k in range(K):
        p = torch.nn.Parameter(w0[k].clone())
        if kind == "adam":
            ref = torch.optim.Adam([p], lr=lrs[k])
        else:
            ref = torch.optim.SGD([p], lr=lrs[k], momentum=momentum)
        for gr in grads:
            p.grad = gr[k].clone()
            ref.step()
        torch.testing.assert_close(stacked["w"][k], p.detach(), rtol=1e-6, atol=1e-7)


def test_stacked_optimizer_leaves_stopped_runs_alone():
    w = {"w": torch.ones(2, 3)}
    opt = cl.StackedOptimizer("adam", torch.tensor([0.1, 0.1]))
    opt.step(w, {"w": torch.ones(2, 3)}, active=torch.tensor([True, False]))
    assert (w["w"][1] == 1).all() and (w["w"][0] < 1).all()


# ---------------------------------------------------------------- paper A: transfer


@pytest.fixture(scope="module")
def convnet_and_data():
    model = cl.ConvNet(8, 16, generator=torch.Generator().manual_seed(0))
    return model, fake_omniglot(6, seed=1, split="evaluation")


def _transfer_cfgs(lrs=(1e-3, 3e-3, 1e-2), **kw):
    base = dict(n_classes=6, eval_every=2, **kw)
    runs = zip((0, 1, 2), lrs, ("sequential", "iid", "sequential"))
    return [cl.TransferConfig(seed=s, lr=lr, protocol=p, **base) for s, lr, p in runs]


@pytest.mark.parametrize("train", ["head", "all"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("method", ["grouped", "vmap"])
def test_transfer_vmapped_equals_separate_runs(convnet_and_data, train, optimizer, method):
    model, data = convnet_and_data
    # Adam fine-tuning everything at lr 1e-2 amplifies float round-off (see benchmarks/README)
    lrs = (1e-4, 1e-4, 1e-4) if (train, optimizer) == ("all", "adam") else (1e-3, 3e-3, 1e-2)
    cfgs = _transfer_cfgs(lrs, train=train, optimizer=optimizer)
    separate = [cl.run_transfer(c, model, data) for c in cfgs]
    together = cl.run_transfer_batched(cfgs, model, data, method=method)
    for a, b in zip(separate, together):
        assert b.config == a.config
        np.testing.assert_allclose(b.loss, a.loss, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.acc, a.acc, atol=0.21)  # 5 held-out images: one flip
        assert abs(np.nanmean(b.acc) - np.nanmean(a.acc)) < 0.02
    # the runs really differ (seed, lr and order are per run)
    assert not np.allclose(together[0].train_loss, together[1].train_loss)


def test_transfer_vmapped_with_a_model_per_run_and_a_diverging_run(convnet_and_data):
    _, data = convnet_and_data
    models = [cl.ConvNet(8, 16, generator=torch.Generator().manual_seed(s)) for s in (3, 4)]
    cfgs = [cl.TransferConfig(n_classes=6, eval_every=3, train="all", optimizer="sgd", lr=lr,
                           momentum=0.9, seed=0) for lr in (1e-3, 1e3)]  # fmt: skip
    separate = [cl.run_transfer(c, m, data) for c, m in zip(cfgs, models)]
    together = cl.run_transfer_batched(cfgs, models, data)
    assert separate[1].diverged and together[1].diverged and not together[0].diverged
    a, b = separate[0], together[0]  # the healthy run is unaffected by its diverged neighbour
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=1e-4, atol=1e-4)
    # the diverged run stops at its first non-finite loss, as a separate run does (at lr 1e3
    # the exact step depends on round-off in exploding logits, so only the pattern is checked)
    bad = np.flatnonzero(~np.isfinite(together[1].train_loss))
    assert np.isnan(together[1].train_loss[bad[0] + 1 :]).all() and np.isnan(b.acc).sum() == 0


def test_transfer_vmapped_several_epochs_and_a_bigger_head(convnet_and_data):
    """The sequential-learning options the batched loop supports (epochs, head_outputs)
    give the separate runs' matrices, rows and after-training index."""
    model, data = convnet_and_data
    cfgs = _transfer_cfgs((1e-3, 3e-3, 1e-2), train="head", optimizer="sgd", epochs=2,
                          head_outputs=8)  # fmt: skip
    separate = [cl.run_transfer(c, model, data) for c in cfgs]
    together = cl.run_transfer_batched(cfgs, model, data)
    for a, b in zip(separate, together):
        assert b.loss.shape == a.loss.shape and np.array_equal(b.eval_steps, a.eval_steps)
        np.testing.assert_array_equal(b.after_training, a.after_training)
        np.testing.assert_allclose(b.loss, a.loss, rtol=1e-4, atol=1e-4)
        assert b.diverged_at == a.diverged_at == -1


@pytest.mark.parametrize(
    "field, value", [("optimizer", "fisher"), ("beta2", 0.0), ("adam_power", 1.0),
                     ("eval_split", "train"), ("task_rotation", 15.0)],
)  # fmt: skip
def test_transfer_vmapped_refuses_options_it_does_not_batch(convnet_and_data, field, value):
    model, data = convnet_and_data
    cfgs = _transfer_cfgs(**{field: value})
    with pytest.raises(ConfigError, match=field):
        cl.run_transfer_batched(cfgs, model, data)


def test_vmapped_configs_must_agree_except_seed_lr_protocol(convnet_and_data):
    model, data = convnet_and_data
    cfgs = [
        cl.TransferConfig(n_classes=6, eval_every=3, train="head"),
        cl.TransferConfig(n_classes=6, eval_every=3, train="all"),
    ]
    with pytest.raises(ConfigError, match="field train differs"):
        cl.run_transfer_batched(cfgs, model, data)
    with pytest.raises(ConfigError, match="method must be one of"):
        cl.run_transfer_batched(cfgs[:1], model, data, method="loop")


def test_gpu_options_are_cuda_only_and_recorded(convnet_and_data):
    with pytest.raises(ConfigError, match="tf32 and bf16 need CUDA"):
        cl.VmapOptions(bf16=True).check_device("cpu")
    model, data = convnet_and_data
    res = cl.run_transfer_batched(_transfer_cfgs(train="head")[:2], model, data,
                                       options=cl.VmapOptions(compile=True))  # fmt: skip
    assert res[0].vmap["options"]["compile"].startswith("skipped")  # the CPU fallback
    assert res[0].vmap["options"]["tf32"] is False and res[0].vmap["K"] == 2


# ---------------------------------------------------------------- paper B: cyclic LM


_tiny = tiny_cyclic


@pytest.mark.parametrize(
    "overrides",
    [
        dict(optimizer="sgd", lr=0.05, epochs=3),
        dict(optimizer="adam", epochs=1),
        dict(optimizer="adam", reset_optimizer=False, epochs=1, order="shuffled"),
        dict(optimizer="sgd", lr=0.05, window="centre", shift=3, mask_prob=0.2, frozen_blocks=1),
    ],
    ids=["sgd", "adam-reset", "adam-kept-shuffled", "sgd-shift-mask-frozen"],
)
@pytest.mark.parametrize("method", ["batched", "vmap"])
def test_cyclic_vmapped_equals_separate_runs(overrides, method):
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    lrs = [overrides.pop("lr", 1e-3), 2 * overrides.get("lr", 1e-3)]
    cfgs = [_tiny(seed=s, lr=lr, **overrides) for s, lr in zip((0, 1, 2), lrs + [lrs[0]])]
    separate = [cl.run_cyclic(c, progress=False) for c in cfgs]
    together = cl.run_cyclic_batched(cfgs, method=method)
    sizes = {r.provenance["run"]["vocab_size"] for r in separate}
    assert len(sizes) > 1  # the seeds' vocabularies differ: the padding is exercised
    for a, b in zip(separate, together):
        assert b.doc_ids == a.doc_ids
        np.testing.assert_array_equal(b.schedule, a.schedule)
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.train_losses, a.train_losses, rtol=1e-4, atol=1e-4)
        assert b.provenance["vmap"]["K"] == 3 and b.provenance["vmap"]["method"] == method
    assert not np.allclose(together[0].losses, together[1].losses)


def test_cyclic_vmapped_rejects_configs_that_change_shapes():
    with pytest.raises(ConfigError, match="field width differs"):
        cl.run_cyclic_batched([_tiny(), _tiny(width=32)])


def test_batched_neox_logits_equal_transformers_for_every_run():
    from cldyn_lib.models import gpt_neox, neox_batched

    a = gpt_neox.Arch(32, 2, 4, 64, 50)
    models = [cl.build_random(a, seed=s) for s in range(3)]
    names = [n for n, _ in models[0].named_parameters()]
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names
    }
    ids = torch.randint(0, 50, (3, 2, 12), generator=torch.Generator().manual_seed(0))
    out = neox_batched.logits(params, ids, models[0])
    for k, m in enumerate(models):
        with torch.no_grad():
            ref = m(input_ids=ids[k]).logits
        torch.testing.assert_close(out[k], ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[0], out[1])


def test_run_seeds_batched_equals_separate_and_keeps_the_seed_order():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")

    cfg = _tiny(optimizer="sgd", lr=0.05, epochs=2)
    separate = cl.run_seeds(cfg, [2, 0, 1])
    together = cl.run_seeds(cfg, [2, 0, 1], batched=True)
    assert [r.config.seed for r in together] == [2, 0, 1]
    for a, b in zip(separate, together):
        assert a.doc_ids == b.doc_ids
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-4, atol=1e-4)
    assert not np.allclose(together[0].losses, together[1].losses)  # the seeds differ
