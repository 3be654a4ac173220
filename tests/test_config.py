"""Validation helpers, presets, scales and notebook parameters."""

import dataclasses

import pytest

import cldyn_lib as cl
from cldyn_lib import config as c


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: c.check_int("T", 0, 1), "T must be an integer >= 1; got 0"),
        (lambda: c.check_int("T", True, 1), "T must be an integer >= 1; got True"),
        (lambda: c.check_int("M", 5, 1, 4), "M must be an integer in \\[1, 4\\]; got 5"),
        (lambda: c.check_float("lr", 0, 0, lo_open=True), "lr must be a number in \\(0, inf\\]"),
        (lambda: c.check_float("p", 1.0, 0, 1, hi_open=True), "p must be a number in \\[0, 1\\)"),
        (lambda: c.check_float("lr", float("nan"), 0), "lr must be a number"),
        (lambda: c.check_float("lr", "0.1", 0), "lr must be a number"),
        (lambda: c.check_choice("mode", "x", ("a", "b")), "mode must be one of 'a', 'b'; got 'x'"),
    ],
)
def test_check_messages_name_parameter_and_range(call, match):
    with pytest.raises(c.ConfigError, match=match):
        call()


def test_config_error_is_a_value_error():
    assert issubclass(c.ConfigError, ValueError)


def test_presets_and_overrides():
    cfg = cl.ToyConfig.preset("ci", seed=3)
    assert cfg.epochs == cl.ToyConfig.PRESETS["ci"]["epochs"] and cfg.seed == 3
    with pytest.raises(c.ConfigError, match="unknown parameter\\(s\\) lrr"):
        cl.ToyConfig.preset("ci", lrr=0.1)
    with pytest.raises(c.ConfigError, match="SCALE must be one of"):
        cl.ToyConfig.preset("huge")
    with pytest.raises(c.ConfigError, match="unknown parameter"):
        cfg.replace(nope=1)
    with pytest.raises(c.ConfigError, match="lr must be"):
        cfg.replace(lr=-1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.5


def test_key_is_stable_and_changes_with_fields():
    a, b = cl.ToyConfig(), cl.ToyConfig()
    assert a.key() == b.key() and len(a.key()) == 12
    assert a.key() != a.replace(seed=1).key()


def test_scale_device_and_notebook_parameters():
    assert c.resolve_scale("ci") == "ci"
    assert c.resolve_scale("auto") in c.SCALES
    assert c.resolve_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert c.resolve_scale("auto") == "ci"
        assert c.resolve_device("auto") == "cpu"
        with pytest.raises(c.ConfigError, match="no CUDA device"):
            c.resolve_device("cuda")
    assert cl.check_notebook_parameters("ci", 0, "cpu") == ("ci", 0, "cpu")
    for bad, match in [
        (("big", 0, "cpu"), "SCALE must be one of 'auto', 'ci'"),
        (("ci", -1, "cpu"), "SEED must be an integer"),
        (("ci", 0, "tpu"), "DEVICE must be one of 'auto', 'cpu', 'cuda'"),
    ]:
        with pytest.raises(c.ConfigError, match=match):
            cl.check_notebook_parameters(*bad)
