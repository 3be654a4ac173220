"""The GPU runs, prepared on the CPU: the plans follow the papers' protocols, fit the card,
and the same commands run end to end at tiny shapes here (the dry run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cldyn_lib as cl

ROOT = Path(__file__).resolve().parent.parent


def test_pythia_scale_plan_is_paper_b_protocol_in_priority_order():
    plan = cl.pythia_scale_plan()
    names = [n for n, _, _ in plan]
    assert names[:3] == ["1b-gd", "1b-gd-shuffled", "1b-adam-reset"]  # Fig. 6 first
    assert [g for _, g, _ in plan] == sorted((g for _, g, _ in plan),
                                             key=["fig6", "fig2b", "fig3", "seeds"].index)  # fmt: skip
    for name, group, c in plan:
        assert (c.n_docs, c.context, c.steps, c.epochs) == (25, 256, 10, 5), name
        assert c.weights == "random" and c.init == "pythia" and c.bf16 and c.tf32
        assert cl.memory_estimate_gb(c) < 100, name  # one H200 (139 GiB)
        if group == "fig3":  # paper B's scratch code: d = 2048, L = 16 in the init, MLP 8192
            assert c.init_dims == "reference" and c.arch().mlp_width == 8192
    adam = dict((n, c) for n, _, c in plan)["1b-adam-reset"]
    assert adam.optimizer == "adam" and adam.lr == 1e-4 and adam.reset_optimizer
    widths = sorted(c.arch().width for n, g, c in plan if g == "fig3" and n.endswith("L16"))
    assert widths == [256, 512, 1024, 2048]


def test_estimates_use_measured_steps():
    cfg = dict((n, c) for n, _, c in cl.pythia_scale_plan())["1b-gd"]
    # 1250 steps and 126 evaluation forwards of 25 documents each
    assert cl.run_time_estimate(cfg, 0.01, 0.02, 25) == pytest.approx(1250 * 0.01 + 126 * 0.02)
    assert cl.flops_estimate(cfg, 1e15, overhead_s=0.01) > 1250 * 0.01


def run_tool(*args, tmp):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_pythia_scale.py"), *args,
                        "--tiny", "--out", str(tmp)], capture_output=True, text=True,
                       cwd=ROOT, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.slow
def test_pythia_scale_dry_run_at_tiny_shapes(tmp_path):
    out = run_tool("smoke", tmp=tmp_path)
    smoke = json.loads((tmp_path / "smoke.json").read_text())
    assert smoke["shapes"] and "bf16_vs_fp32_max_loss_diff" in smoke and "estimate" in out
    out = run_tool("main", "--timings", str(tmp_path / "smoke.json"), "--only", "1b-gd",
                   "1b-adam-reset", tmp=tmp_path)  # fmt: skip
    for name in ("1b-gd", "1b-adam-reset"):
        res = cl.load_result(tmp_path / f"{name}.npz")
        assert res["losses"].shape == (2 * 4 + 1, 4) and np.isfinite(res["losses"]).all()
        assert res.provenance["gpu"] and res.provenance["rerun"].endswith(name)
        assert res.provenance["estimate_s"] > 0
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert set(speed) == {"160m-gd", "1b-gd"} and speed["1b-gd"]["max_abs_diff"] < 1e-4
    assert "speed (one epoch)" in out and "RS per epoch" in out
