"""Runs that survive (issue 8): a run killed with SIGKILL, at a seeded random episode and in
the middle of a checkpoint write, resumes to bitwise the loss matrix of an uninterrupted run;
same seed, same numbers; divergence stops a run with its partial result; checkpoints load
with weights_only=True and a damaged or foreign one is refused."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import need_mirror

import cldyn_lib as cl
from cldyn_lib import checkpoint
from cldyn_lib.checkpoint import CheckpointError, DivergedError
from cldyn_lib.sequential import episodic

sys.path.insert(0, str(Path(__file__).parent))
import resume_worker as worker  # noqa: E402

WORKER = Path(__file__).parent / "resume_worker.py"


def run_worker(engine: str, ckdir, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(WORKER), engine, str(ckdir), str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def config_of(engine: str):
    if engine == "cyclic":
        return cl.CyclicConfig(**worker.CYCLIC)
    return cl.TransferConfig(**worker.TRANSFER)


def position(blob: dict) -> int:
    return int(blob["episode"] if "episode" in blob else blob["step"])


@pytest.mark.parametrize("engine", ["cyclic", "transfer"])
def test_killed_runs_resume_bitwise(engine, tmp_path):
    if engine == "cyclic":
        need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    ref = worker.run(engine, None)  # uninterrupted, no checkpoints
    ckdir = tmp_path / "ckpt"
    path = checkpoint.path_for(ckdir, engine, config_of(engine))
    # 1. SIGKILL at a seeded random point after the first checkpoint
    T, E = worker.CYCLIC["n_docs"], worker.CYCLIC["epochs"]
    rng = np.random.default_rng(8)
    # cyclic: an episode; transfer: a loss computation (60 steps + 5 evaluations)
    kill_at = int(rng.integers(T + 1, E * T)) if engine == "cyclic" else int(rng.integers(20, 65))
    killed = run_worker(engine, ckdir, tmp_path / "a.npz", "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "a.npz").exists() and path.exists()
    blob = checkpoint.load(path)
    assert blob["status"] == "running" and 0 < position(blob)
    if engine == "cyclic":  # the last complete epoch before the kill
        assert position(blob) == (kill_at // T) * T
    saved = path.read_bytes()
    # 2. resume, and SIGKILL half-way through its first checkpoint write
    killed = run_worker(engine, ckdir, tmp_path / "b.npz", "--kill-in-write", "1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    parts = list(ckdir.glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(saved)
    assert path.read_bytes() == saved, "a killed write must leave the last checkpoint intact"
    # 3. resume again (here, in the test's process): from the intact checkpoint, to the end
    resumed = worker.run(engine, str(ckdir))
    assert not list(ckdir.glob("*.part"))
    assert checkpoint.load(path)["status"] == "finished"
    assert sorted(ref) == sorted(resumed)
    for k in ref:
        assert ref[k].shape == resumed[k].shape and ref[k].tobytes() == resumed[k].tobytes(), k
    assert np.isfinite(ref["losses"]).all()


# ---------------------------------------------------------------- in-process


@pytest.fixture
def tiny_cyclic():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    return cl.CyclicConfig(**{**worker.CYCLIC, "epochs": 2})


def test_same_seed_same_bits_both_engines(tiny_cyclic):
    a = cl.run_cyclic(tiny_cyclic, progress=False)
    b = cl.run_cyclic(tiny_cyclic, progress=False)
    assert a.losses.tobytes() == b.losses.tobytes()
    assert a.train_losses.tobytes() == b.train_losses.tobytes()
    d = cl.run_cyclic(tiny_cyclic, progress=False, deterministic=True)  # a no-op on CPU
    assert d.losses.tobytes() == a.losses.tobytes()
    c = cl.run_cyclic(tiny_cyclic.replace(seed=1), progress=False)
    assert not np.array_equal(a.losses, c.losses)
    data, net = worker.transfer_data()
    cfg = cl.TransferConfig(**worker.TRANSFER)
    x, y = cl.run_transfer(cfg, net, data), cl.run_transfer(cfg, net, data)
    assert x.loss.tobytes() == y.loss.tobytes() and x.acc.tobytes() == y.acc.tobytes()
    w = cl.run_transfer(cfg, net, data, deterministic=True)
    assert w.loss.tobytes() == x.loss.tobytes()
    z = cl.run_transfer(cfg.replace(seed=1), net, data)
    assert not np.array_equal(x.loss, z.loss)


def test_resume_in_process_and_checkpoint_contents(tiny_cyclic, tmp_path):
    full = cl.run_cyclic(tiny_cyclic, progress=False, checkpoint_dir=tmp_path)
    path = checkpoint.path_for(tmp_path, "cyclic", tiny_cyclic)
    blob = torch.load(path, weights_only=True)  # no pickled objects inside
    assert blob["status"] == "finished" and blob["episode"] == 6
    assert blob["host_losses"].numpy().tobytes() == full.losses.tobytes()
    # a finished checkpoint resumes to the same result without training
    again = cl.run_cyclic(tiny_cyclic, progress=False, checkpoint_dir=tmp_path)
    assert again.losses.tobytes() == full.losses.tobytes()
    assert again.provenance["run"]["resumed_at_episode"] == 6


def test_foreign_or_damaged_checkpoints_are_refused(tiny_cyclic, tmp_path):
    cl.run_cyclic(tiny_cyclic, progress=False, checkpoint_dir=tmp_path)
    path = checkpoint.path_for(tmp_path, "cyclic", tiny_cyclic)
    other = tiny_cyclic.replace(seed=5)
    path.rename(checkpoint.path_for(tmp_path, "cyclic", other))  # under another config's name
    with pytest.raises(CheckpointError, match="not of this cyclic config"):
        cl.run_cyclic(other, progress=False, checkpoint_dir=tmp_path)
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        cl.run_cyclic(tiny_cyclic, progress=False, checkpoint_dir=tmp_path)


def test_divergence_stops_with_the_step_and_the_partial_result(tiny_cyclic, tmp_path):
    cfg = tiny_cyclic.replace(optimizer="sgd", lr=1e6)
    with pytest.raises(DivergedError, match=r"diverged: non-finite .* at episode \d+ of 6") as e:
        cl.run_cyclic(cfg, progress=False, checkpoint_dir=tmp_path)
    step = e.value.step["episode"]
    losses = e.value.result.losses
    assert np.isfinite(losses[: step + 1]).all() and np.isnan(losses[step + 1 :]).all()
    assert checkpoint.load(e.value.path)["status"] == "diverged"
    with pytest.raises(DivergedError, match=f"at episode {step + 1} of 6") as again:
        cl.run_cyclic(cfg, progress=False, checkpoint_dir=tmp_path)  # resuming says it again
    assert again.value.result.losses.tobytes() == losses.tobytes()
    data, net = worker.transfer_data()
    bad = cl.TransferConfig(**{**worker.TRANSFER, "lr": 1e12})
    with pytest.raises(DivergedError, match=r"non-finite training loss at step \d+ of 60"):
        cl.run_transfer(bad, net, data, on_diverge="raise")
    res = cl.run_transfer(bad, net, data)  # the default: a result marked diverged
    assert res.diverged and res.diverged_at >= 0 and np.isnan(res.train_loss[res.diverged_at])


def test_global_random_states_round_trip():
    states = checkpoint.global_rng_states()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_global_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_deterministic_mode_is_restored():
    before = torch.are_deterministic_algorithms_enabled()
    with checkpoint.deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() == before


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("mode", ["zapped_iid", "asb"])
def test_pretraining_interrupted_resumes_bitwise(mode, tmp_path, monkeypatch):
    from test_zapping import TINY, fake_omniglot

    monkeypatch.setattr(episodic, "EPISODES_PER_CHUNK", 1)  # a checkpoint every episode
    cfg = cl.PretrainConfig(mode=mode, **{**TINY, "epochs": 4, "zap_every": 1})
    data = fake_omniglot(cfg.n_classes)
    ref = cl.pretrain(cfg, data)
    n_losses = (len(ref.losses) * (1 + cfg.inner_steps)) if mode == "asb" else len(ref.losses)
    kill_at = int(np.random.default_rng(9).integers(n_losses // 3, n_losses))
    calls = [0]
    real = F.cross_entropy

    def interrupted(*a, **kw):
        calls[0] += 1
        if calls[0] == kill_at:
            raise Interrupted
        return real(*a, **kw)

    monkeypatch.setattr(F, "cross_entropy", interrupted)
    with pytest.raises(Interrupted):
        cl.pretrain(cfg, data, checkpoint_dir=tmp_path)
    monkeypatch.setattr(F, "cross_entropy", real)
    blob = checkpoint.load(checkpoint.path_for(tmp_path, "pretrain", cfg))
    assert blob["status"] == "running" and 0 < blob["step"] < len(ref.losses)
    res = cl.pretrain(cfg, data, checkpoint_dir=tmp_path)
    assert res.losses.tobytes() == ref.losses.tobytes()
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


@pytest.mark.parametrize("optimizer", ["adam", "fisher"])
def test_multi_epoch_transfer_with_callbacks_resumes_bitwise(optimizer, tmp_path):
    """Paper A's sequential-learning options (several epochs, the hand-written Fisher step,
    an on_start/on_step callback) survive an interruption mid-run like the defaults do."""
    data, net = worker.transfer_data()
    cfg = cl.TransferConfig(**{**worker.TRANSFER, "optimizer": optimizer, "lr": 1e-3, "epochs": 3})
    steps: list[int] = []

    def on_start(state):
        return lambda s, loss: steps.append(s.step)

    full = cl.run_transfer(cfg, net, data, on_start=on_start)
    assert steps == list(range(1, len(full.train_loss) + 1))  # on_step after every step

    class Stop(Exception):
        pass

    def stop_midway(state):
        def on_step(s, loss):
            if s.step == len(s.order) // 2 + 1:
                raise Stop

        return on_step

    with pytest.raises(Stop):
        cl.run_transfer(cfg, net, data, on_start=stop_midway, checkpoint_dir=tmp_path)
    blob = torch.load(checkpoint.path_for(tmp_path, "transfer", cfg), weights_only=True)
    assert 0 < blob["step"] < len(full.train_loss)  # a mid-run checkpoint exists
    resumed = cl.run_transfer(cfg, net, data, checkpoint_dir=tmp_path)
    assert resumed.loss.tobytes() == full.loss.tobytes()
    assert resumed.acc.tobytes() == full.acc.tobytes()
    assert resumed.train_loss.tobytes() == full.train_loss.tobytes()
