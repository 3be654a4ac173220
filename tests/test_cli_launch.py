"""The command line and the sweep API (local processes and submitit's local executor)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import cldyn_lib as cl
from cldyn_lib import cli, launch
from cldyn_lib.config import ConfigError


def _toy_direct(cfg: cl.ToyConfig) -> dict:
    return cl.run_toy(cfg).to_arrays()


def test_help_documents_every_field_of_every_experiment(capsys):
    for name, exp in launch.experiments().items():
        with pytest.raises(SystemExit) as e:
            cli.main(["run", name, "--help"])
        assert e.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        docs = cli.field_docs(exp.config_class)
        for f in dataclasses.fields(exp.config_class):
            assert f"--{f.name.replace('_', '-')}" in text, (name, f.name)
            assert f.name in docs and docs[f.name], (name, f.name)
            assert " ".join(docs[f.name].split())[:30] in text, (name, f.name)


def test_parse_value_and_grid():
    assert cli.parse_value("none", "float | None") is None
    assert cli.parse_value("3e-4", "float | None") == 3e-4
    assert cli.parse_value("false", "bool") is False
    assert cli.parse_value("1e-3,1e-2", "tuple") == (1e-3, 1e-2)
    assert cli.parse_value("iid", "tuple") == ("iid",)
    grid = cli.parse_vary(["seed=0:3", "lr=0.01,0.02"], cl.ToyConfig)
    assert len(grid) == 6 and grid[0] == {"seed": "0", "lr": "0.01"}
    with pytest.raises(ConfigError, match="unknown field 'sed'"):
        cli.parse_vary(["sed=0:3"], cl.ToyConfig)


def test_bad_value_exits_with_the_configs_message_before_compute(capsys, tmp_path):
    out = tmp_path / "not-written" / "x.npz"
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "toy", "--lr", "5", "--out", str(out)])
    assert e.value.code == 2 and not out.parent.exists()  # nothing written, no folder made
    assert "lr must be in (0, " in capsys.readouterr().err


def test_run_writes_a_result_equal_to_the_direct_run(tmp_path):
    out = tmp_path / "toy.npz"
    assert cli.main(["run", "toy", "--seed", "3", "--epochs", "4", "--out", str(out)]) == 0
    res = cl.load_result(out)
    direct = _toy_direct(cl.ToyConfig.preset("ci", seed=3, epochs=4))
    for k, v in direct.items():
        np.testing.assert_array_equal(res[k], v)
    assert res.provenance["config"]["seed"] == 3 and res.provenance["experiment"] == "toy"


@pytest.mark.parametrize("executor", ["inline", "local", "submitit-local"])
def test_sweep_on_an_executor_packs_results_that_load_back(tmp_path, executor):
    if executor == "submitit-local":
        import submitit  # noqa: F401  (in the test extra: a missing one fails, never skips)
    cfgs = [cl.ToyConfig.preset("ci", seed=s, epochs=3) for s in (0, 1, 2)]
    ex = launch.make_executor(
        executor, tmp_path / "logs", **({"max_workers": 2} if executor == "local" else {})
    )
    path = launch.run_sweep("toy", cfgs, tmp_path / "sweep.npz", ex, scale="ci")
    if hasattr(ex, "shutdown"):
        ex.shutdown()
    sw = launch.load_sweep(path)
    assert len(sw) == 3 and sw.field("seed") == [0, 1, 2] and sw.experiment == "toy"
    for i, c in enumerate(cfgs):
        direct = _toy_direct(c)
        for k, v in direct.items():
            np.testing.assert_array_equal(sw.run(i)[k], v)
    assert sw.stack("losses").shape[0] == 3
    assert sw.provenance["sweep"]["executor"]


def test_sweep_rejects_wrong_config_types(tmp_path):
    with pytest.raises(ConfigError, match="is not a ToyConfig"):
        launch.run_sweep("toy", [cl.CyclicConfig()], tmp_path / "x.npz", launch.InlineExecutor())
    with pytest.raises(ConfigError, match="executor must be one of"):
        launch.make_executor("kubernetes")


def test_command_line_sweep_through_submitit(tmp_path):
    import submitit  # noqa: F401  (in the test extra: a missing one fails, never skips)

    out = tmp_path / "sweep.npz"
    cmd = [sys.executable, "-m", "cldyn_lib", "sweep", "toy", "--vary", "seed=0:2",
           "--epochs", "2", "--executor", "submitit-local", "--folder", str(tmp_path / "logs"),
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sw = launch.load_sweep(out)
    assert sw.field("seed") == [0, 1] and sw.provenance["sweep"]["executor"] == "LocalExecutor"
    np.testing.assert_array_equal(
        sw.run(1)["losses"], _toy_direct(cl.ToyConfig.preset("ci", seed=1, epochs=2))["losses"]
    )
