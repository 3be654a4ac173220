"""Results: atomic writes, provenance, load-or-compute."""

from pathlib import Path

import numpy as np
import pytest

import cldyn_lib as cl
from cldyn_lib import results


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLDYN_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_roundtrip_with_provenance(results_dir):
    cfg = cl.ToyConfig(epochs=2)
    prov = results.provenance(cfg, scale="laptop", device="cpu")
    path = results.save_result(
        results_dir / "x.npz", {"losses": np.arange(6.0).reshape(3, 2)}, prov
    )
    back = results.load_result(path)
    assert np.array_equal(back["losses"], np.arange(6.0).reshape(3, 2))
    p = back.provenance
    assert p["config"]["type"] == "ToyConfig" and p["config"]["epochs"] == 2
    assert p["scale"] == "laptop" and "numpy" in p["versions"] and "torch" in p["versions"]
    assert {"commit", "dirty", "library_dirty", "library_sha256"} <= set(p["git"])
    assert p["git"]["library_sha256"] == results.library_sha256() and p["device"]["type"] == "cpu"
    assert "scale laptop" in back.label()


def test_failed_write_leaves_nothing_under_the_final_name(results_dir, monkeypatch):
    target = results_dir / "y.npz"
    results.save_result(target, {"a": np.zeros(3)}, {"v": 1})

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", explode)
    with pytest.raises(OSError, match="disk full"):
        results.save_result(target, {"a": np.ones(3)}, {"v": 2})
    assert np.array_equal(results.load_result(target)["a"], np.zeros(3))  # old one intact
    assert not list(results_dir.glob("*.part"))
    with pytest.raises(ValueError, match="reserved"):
        results.save_result(target, {results.PROVENANCE_KEY: 1}, {})


def test_load_or_compute_computes_once(results_dir):
    calls = []

    def compute(cfg):
        calls.append(cfg)
        return {"value": np.array([cfg.seed])}

    cfg = cl.ToyConfig(seed=7)
    first = results.load_or_compute("demo", cfg, compute, scale="laptop")
    second = results.load_or_compute("demo", cfg, compute, scale="laptop")
    assert len(calls) == 1 and second["value"][0] == 7
    assert first.path == second.path and cfg.key() in second.path.name
    # the compute time is recorded (the regeneration time of `make results` adds these up)
    assert second.provenance["compute_seconds"] == first.provenance["compute_seconds"] >= 0
    results.load_or_compute("demo", cfg, compute, scale="laptop", recompute=True)
    assert len(calls) == 2
    with pytest.raises(FileNotFoundError, match="computing it is not allowed"):
        results.load_or_compute("demo", cfg.replace(seed=8), compute, allow_compute=False)


def test_reproduction_tolerance_is_zero_only_on_the_same_cpu_and_packages():
    prov = cl.provenance()
    assert prov["device"]["cpu"] == cl.cpu_signature() and "/" in prov["device"]["cpu"]
    assert cl.reproduction_tolerance(prov) == 0.0
    other_cpu = {**prov, "device": {**prov["device"], "cpu": "another CPU/AVX512"}}
    assert cl.reproduction_tolerance(other_cpu) == 0.05
    other_torch = {**prov, "versions": {**prov["versions"], "torch": "0.0"}}
    assert cl.reproduction_tolerance(other_torch) == 0.05
    assert cl.reproduction_tolerance({}) == 0.05  # results made before the signature existed


def test_reproduces_is_bitwise_at_zero_tolerance_and_checks_start_and_mean_otherwise():
    curve = np.linspace(5.0, 1.0, 40)
    assert cl.reproduces(curve, curve.copy(), 0.0)
    assert not cl.reproduces(curve, curve + 1e-9, 0.0)  # bitwise means bitwise
    assert cl.reproduces(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 0.0)
    drift = curve + np.linspace(0.0, 0.08, 40)  # round-off growing over training (mean 0.04)
    assert cl.reproduces(curve, drift, 0.05)
    assert not cl.reproduces(curve, curve + 0.1, 0.05)  # off from the start
    late = curve.copy()
    late[10:] += 0.3  # right at the start, wrong later: the mean gives it away
    assert not cl.reproduces(curve, late, 0.05)
    assert not cl.reproduces(curve, curve[:-1], 0.05)  # another shape


def test_git_provenance_from_the_environment_without_a_repository(monkeypatch):
    """A copy on a GPU machine has no .git: the commit and cleanliness come from the
    environment, set by whoever copied a clean commit there."""
    monkeypatch.setattr(results, "repo_root", lambda: None)
    monkeypatch.delenv("CLDYN_COMMIT", raising=False)
    assert results.git_commit()["commit"] is None
    monkeypatch.setenv("CLDYN_COMMIT", "abc123")
    monkeypatch.setenv("CLDYN_CLEAN", "1")
    git = results.git_commit()
    assert git["commit"] == "abc123" and git["dirty"] is False and git["from"] == "environment"
    monkeypatch.setenv("CLDYN_CLEAN", "0")
    assert results.git_commit()["dirty"] is True


def test_library_hash_changes_with_the_source(tmp_path):
    import shutil

    src = Path(results.__file__).parent
    copy = shutil.copytree(
        src, tmp_path / "cldyn_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert results.library_sha256(copy) == results.library_sha256()
    (copy / "metrics.py").write_text((copy / "metrics.py").read_text() + "\n# a change\n")
    assert results.library_sha256(copy) != results.library_sha256()
    (copy / "new.py").write_text("")
    (copy / "metrics.py").write_text((src / "metrics.py").read_text())
    assert results.library_sha256(copy) != results.library_sha256()
