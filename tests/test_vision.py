"""Cyclic training on images (paper B, Fig. 7): configs, palette, tokens, loss matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import need_mirror

import cldyn_lib as cl
from cldyn_lib.cyclic import vision
from cldyn_lib.data import cifar10
from cldyn_lib.models.image import build_image_model


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("task", "segment", r"task must be one of 'classify', 'igpt'"),
        ("arch", "resnet", r"arch must be one of 'vit', 'cnn'"),
        ("n_items", 1, r"n_items must be an integer in \[2, 1000\]; got 1"),
        ("lr", 0.0, r"lr must be a number in \(0, 1\]; got 0.0"),
        ("heads", 3, r"heads=3 must divide width=64"),
        ("image_size", 12, r"image_size must be a multiple of 8 for the CNN"),
    ],
)
def test_bad_values_name_the_parameter(field, value, match):
    base = {"arch": "cnn"} if field == "image_size" else {}
    with pytest.raises(cl.ConfigError, match=match):
        cl.VisionConfig(**{**base, field: value})


def test_presets_and_learning_rates():
    assert cl.VisionConfig().learning_rate == 1e-4  # A.2
    assert cl.VisionConfig(task="igpt").learning_rate == 1e-3  # A.1
    c = cl.vision_preset("ci", "igpt")
    assert c.task == "igpt" and c.batch_size == 1
    with pytest.raises(cl.ConfigError, match="model must be one of 'vit', 'cnn', 'igpt'"):
        cl.vision_preset("ci", "resnet")


def test_kmeans_palette_is_seeded_and_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1, 0.1], [0.9, 0.1, 0.1], [0.1, 0.9, 0.9]])
    pix = np.concatenate([c + 0.01 * rng.normal(size=(200, 3)) for c in centres])
    a = cifar10.kmeans_palette(pix, 3, seed=1)
    b = cifar10.kmeans_palette(pix, 3, seed=1)
    np.testing.assert_array_equal(a, b)
    found = a[np.argsort(a[:, 0] + 2 * a[:, 1])]
    np.testing.assert_allclose(
        found, centres[np.argsort(centres[:, 0] + 2 * centres[:, 1])], atol=0.01
    )
    lab = cifar10.nearest_colour(centres, a)
    np.testing.assert_allclose(a[lab], centres, atol=0.01)


def test_downsample_is_an_area_average():
    img = np.arange(4 * 4 * 3, dtype=float).reshape(1, 4, 4, 3)
    out = cifar10.downsample(img, 2)
    np.testing.assert_allclose(out[0, 0, 0], img[0, :2, :2].mean((0, 1)))


def test_small_models_have_the_right_outputs():
    x = torch.zeros(2, 3, 16, 16)
    for arch in ("vit", "cnn"):
        m = build_image_model(cl.VisionConfig(arch=arch, image_size=16, width=16, heads=2))
        out = m(x)
        assert (out.logits if hasattr(out, "logits") else out).shape == (2, 10)
    cfg = cl.VisionConfig(task="igpt", image_size=8, width=16, heads=2, batch_size=1)
    m = build_image_model(cfg, palette_size=32)
    assert all(getattr(m.config, k) == 0.0 for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    assert m(input_ids=torch.zeros(1, 64, dtype=torch.long)).logits.shape == (1, 64, 32)


def test_igpt_item_loss_is_the_mean_token_cross_entropy():
    cfg = cl.VisionConfig(task="igpt", image_size=8, width=16, heads=2, batch_size=1)
    m = build_image_model(cfg, palette_size=16)
    x = torch.randint(0, 16, (2, 64))
    y = torch.randint(0, 16, (2, 64))
    logits = m(input_ids=x).logits
    direct = torch.nn.functional.cross_entropy(logits[1], y[1])
    assert vision.item_losses(m, cfg, x, y)[1].item() == pytest.approx(direct.item(), rel=1e-5)


def test_run_follows_the_loss_matrix_convention_and_is_seeded():
    need_mirror("cifar10", "cifar10_test_jpeg_YoongiKim.tar.gz")
    cfg = cl.vision_preset(
        "ci", "igpt", n_items=3, steps=2, epochs=2, n_colors=16, width=16, heads=2
    )
    a = cl.run_vision(cfg, progress=False)
    b = cl.run_vision(cfg, progress=False)
    assert a.losses.shape == (7, 3) and a.schedule.shape == (2, 3)
    np.testing.assert_array_equal(a.losses, b.losses)
    cl.check_loss_matrix(a.losses, a.schedule)
    assert a.losses[1, 0] < a.losses[0, 0]  # training on item 1 lowers its loss
    assert np.isclose(a.losses[0].mean(), np.log(16), atol=0.5)  # untrained: about ln(colours)
    c = cl.run_vision(
        cfg.replace(task="classify", arch="cnn", batch_size=2, width=8), progress=False
    )
    assert c.losses.shape == (7, 3) and np.isfinite(c.losses).all()


def test_pretrained_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        cl.ConfigError, match="needs openai/imagegpt-small in the Hugging Face cache"
    ):
        vision.check_resources(cl.VisionConfig.preset("gpu", task="igpt", device="cpu"))
