"""Paper A's Omniglot splits: seeded characters and drawings, [0, 1] tensors (chapter
*Zapping and transfer shock*)."""

import numpy as np
import pytest
import torch
from conftest import need_mirror

import cldyn_lib as cl
from cldyn_lib.config import ConfigError
from cldyn_lib.data import omniglot


def test_drawing_split_is_a_seeded_partition_of_the_20_drawings():
    train, test = omniglot.drawing_split(30, data_seed=4)
    assert train.shape == (30, 15) and test.shape == (30, 5)
    both = np.concatenate([train, test], axis=1)
    assert all(sorted(row) == list(range(20)) for row in both)
    again, _ = omniglot.drawing_split(30, data_seed=4)
    other, _ = omniglot.drawing_split(30, data_seed=5)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    assert len({tuple(row) for row in train}) > 1  # each character has its own permutation


def test_class_subset():
    sub = omniglot.class_subset("background", 50, data_seed=0)
    assert len(set(sub)) == 50 and sub.max() < 964 and np.all(np.diff(sub) > 0)
    assert np.array_equal(sub, omniglot.class_subset("background", 50, data_seed=0))
    assert np.array_equal(omniglot.class_subset("evaluation", 659), np.arange(659))
    with pytest.raises(ConfigError, match=r"n_classes must be an integer in \[1, 659\]; got 660"):
        omniglot.class_subset("evaluation", 660)


def test_load_picks_the_seeded_drawings_of_the_canonical_order():
    need_mirror("omniglot", "derived", "omniglot_105x105_packed.npz")
    data = cl.load_omniglot_tensors("evaluation", 12, data_seed=3)
    raw = cl.load_omniglot("evaluation")
    train_idx, test_idx = omniglot.drawing_split(659, 3)
    assert data.train_x.shape == (12, 15, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert float(data.train_x.min()) >= 0 and float(data.train_x.max()) == 1.0
    for c, cls in enumerate(data.classes):
        for k in (0, 14):
            expect = raw.images[cls, train_idx[cls, k]].astype(np.float32) / 255
            assert np.array_equal(data.train_x[c, k, 0].numpy(), expect)
        expect = raw.images[cls, test_idx[cls, 4]].astype(np.float32) / 255
        assert np.array_equal(data.test_x[c, 4, 0].numpy(), expect)
    x, y = data.flat("test")
    assert x.shape == (60, 1, 28, 28) and y.tolist() == sorted(list(range(12)) * 5)
    assert data.source.dataset == "omniglot"
