"""The cyclic training engine (paper B): configs, determinism, evaluation, variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import need_mirror, tiny_cyclic

import cldyn_lib as cl
from cldyn_lib.cyclic import engine
from cldyn_lib.cyclic.state import eval_chunk, make_schedule
from cldyn_lib.data.documents import FULL_VOCAB_SIZE
from cldyn_lib.models import gpt_neox


@pytest.fixture(autouse=True)
def _mirror():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")


def tiny(**overrides) -> cl.CyclicConfig:
    """A run of well under a second: T=3 documents of 16 tokens, a 1-block model."""
    return tiny_cyclic(**{"depth": 1, **overrides})


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("n_docs", 0, r"n_docs must be an integer in \[1, "),
        ("steps", 0, r"steps must be an integer in \[1, "),
        ("epochs", 0, r"epochs must be an integer in \[1, "),
        ("context", 4096, r"context must be an integer in \[8, 2048\]; got 4096"),
        ("model", "gpt-5", r"model must be one of 'pythia-70m', .*; got 'gpt-5'"),
        ("frozen_blocks", 2, r"frozen_blocks must be an integer in \[0, 1\]; got 2"),
        ("lr", 0.0, r"lr must be a number in \(0, inf\]; got 0.0"),
        ("lr", -1e-3, r"lr must be a number in \(0, inf\]"),
        ("mask_prob", 1.0, r"mask_prob must be a number in \[0, 1\); got 1.0"),
        ("mask_prob", -0.1, r"mask_prob must be a number in \[0, 1\)"),
        ("optimizer", "rmsprop", r"optimizer must be one of 'sgd', 'adam'"),
        ("order", "random", r"order must be one of 'cyclic', 'shuffled', 'partial', 'reversed'"),
        ("init", "xavier", r"init must be one of 'pythia', 'gaussian', 'step0'"),
        ("weights", "none", r"weights must be one of"),
        ("vocab", "tiny", r"vocab must be one of 'full', 'docs', 'common'"),
    ],
)
def test_bad_values_name_the_parameter_and_range(field, value, match):
    with pytest.raises(cl.ConfigError, match=match):
        tiny(**{field: value})


def test_shift_partial_and_model_knob_errors():
    with pytest.raises(cl.ConfigError, match=r"shift must be an integer in \[0, 8\]; got 9"):
        tiny(window="centre", shift=9)
    with pytest.raises(cl.ConfigError, match="shift=4 needs window='centre'"):
        tiny(shift=4)
    for n in (1, 4):
        with pytest.raises(
            cl.ConfigError, match=rf"shuffle_n must be an integer in \[2, 3\]; got {n}"
        ):
            tiny(order="partial", shuffle_n=n)
    with pytest.raises(cl.ConfigError, match="width must be 0 with weights='pretrained'"):
        tiny(weights="pretrained")
    with pytest.raises(cl.ConfigError, match="heads must divide width=16"):
        tiny(heads=3)
    with pytest.raises(cl.ConfigError, match="tf32 and bf16 need device='cuda'"):
        tiny(bf16=True)
    with pytest.raises(cl.ConfigError, match="n_docs must be <= 270 for pool 'permissive'"):
        cl.run_cyclic(tiny(n_docs=271), progress=False)


def test_offline_without_weights_fails_before_any_compute(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))

    def no_compute(*args, **kwargs):
        raise AssertionError("setup ran: the error came too late")

    monkeypatch.setattr(engine, "setup_cyclic", no_compute)
    cfg = cl.CyclicConfig(model="pythia-160m", weights="pretrained", device="cpu")
    with pytest.raises(cl.ConfigError, match=r"weights='pretrained' .* needs pythia-160m weights"):
        cl.run_cyclic(cfg, progress=False)
    with pytest.raises(cl.ConfigError, match="weights_path must be a folder with a config.json"):
        cl.CyclicConfig(weights="pretrained", weights_path=str(tmp_path))


def test_cuda_requested_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(cl.ConfigError, match="DEVICE='cuda' but no CUDA device"):
        tiny(device="cuda").check_resources()


# ---------------------------------------------------------------- the run


def test_shapes_e1_and_bitwise_determinism():
    a = cl.run_cyclic(tiny(), progress=False)
    b = cl.run_cyclic(tiny(), progress=False)
    c = cl.run_cyclic(tiny(seed=1), progress=False)
    assert a.losses.shape == (2 * 3 + 1, 3) and a.schedule.shape == (2, 3)
    assert a.train_losses.shape == (6, 2) and np.isfinite(a.losses).all()
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.train_losses, b.train_losses)
    assert a.doc_ids != c.doc_ids and not np.allclose(a.losses, c.losses)
    one = cl.run_cyclic(tiny(epochs=1), progress=False)
    assert one.losses.shape == (4, 3) and one.recovery_scores().size == 0
    with pytest.raises(ValueError, match="E=1 epoch has no recovery score"):
        cl.recovery_score(one.losses, 1)


def test_provenance_records_device_precision_and_sizes():
    res = cl.run_cyclic(tiny(), progress=False)
    run = res.provenance["run"]
    assert (run["device"], run["tf32"], run["bf16"]) == ("cpu", False, False)
    assert run["n_params"] == gpt_neox.Arch(16, 1, 2, 64, run["vocab_size"]).n_params()
    assert (
        res.provenance["config"]["type"] == "CyclicConfig"
        and res.doc_ids == res.provenance["doc_ids"]
    )
    assert run["train_flops"] > 0 and run["eval_docs_per_forward"] == 3


def test_training_lowers_the_trained_documents_loss_and_first_step_loss_is_row0():
    res = cl.run_cyclic(tiny(steps=5, lr=3e-3), progress=False)
    for k in range(3):  # episode k of epoch 1 trains document k
        assert res.losses[k + 1, k] < res.losses[k, k]
    # the first step's loss is measured before any update: it equals the evaluation of row 0
    assert res.train_losses[0, 0] == pytest.approx(res.losses[0, 0], rel=1e-5)


def test_batched_padded_evaluation_equals_one_document_at_a_time():
    cfg = tiny(context=1024, require_full=False, n_docs=6, seed=5)
    state = cl.setup_cyclic(cfg, device="cpu")
    assert (state.lengths < 1024).any(), "the test needs at least one padded document"
    batched = cl.evaluate_documents(state).numpy()
    single = []
    with torch.no_grad():
        for t in range(cfg.n_docs):
            n = int(state.lengths[t])
            ids = state.tokens[t : t + 1, :n]  # the document alone, no padding at all
            logits = state.model(input_ids=ids).logits
            single.append(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item())
    np.testing.assert_allclose(batched, single, rtol=1e-5)
    cfg1 = cfg.replace(eval_batch=3)
    assert eval_chunk(cl.setup_cyclic(cfg1, device="cpu")) == 3


def test_document_losses_match_hf_labels_with_minus_100():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(1, 11, (2, 6))
    n = torch.tensor([6, 3])
    labels = ids.clone()
    labels[1, 3:] = -100
    expected = [
        torch.nn.functional.cross_entropy(logits[b, :-1], labels[b, 1:], ignore_index=-100)
        for b in range(2)
    ]
    got = gpt_neox.document_losses(logits, ids, n)
    torch.testing.assert_close(got, torch.stack(expected))


def test_schedules():
    T, E = 6, 4
    assert np.array_equal(make_schedule(tiny(n_docs=T, epochs=E)), np.tile(range(T), (E, 1)))
    shuffled = make_schedule(tiny(n_docs=T, epochs=E, order="shuffled"))
    assert all(sorted(r) == list(range(T)) for r in shuffled)
    assert len({tuple(r) for r in shuffled}) > 1
    partial = make_schedule(tiny(n_docs=T, epochs=E, order="partial", shuffle_n=4))
    assert (partial[:, 0] == 0).all() and (partial[:, 4:] == [4, 5]).all()
    assert all(sorted(r[1:4]) == [1, 2, 3] for r in partial)
    rev = make_schedule(tiny(n_docs=T, epochs=E, order="reversed"))
    assert (rev[:-1] == np.arange(T)).all() and (rev[-1] == np.arange(T)[::-1]).all()


def test_masking_and_window_shift():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (1, 20000))
    masked = engine.mask_tokens(ids, 0.3, gen)
    share = (masked == 0).float().mean().item()
    assert 0.28 < share < 0.32 and ((masked == ids) | (masked == 0)).all()
    assert engine.mask_tokens(ids, 0.0, gen) is ids
    state = cl.setup_cyclic(tiny(window="centre", shift=5), device="cpu")
    starts = [engine.window_start(state) for _ in range(400)]
    assert min(starts) == 8 - 5 and max(starts) == 8 + 5  # C/2 +- w with C = 16
    assert state.tokens.shape[1] == 32 and state.docs.eval_start == 8


def test_frozen_blocks_do_not_move_and_others_do():
    cfg = tiny(depth=2, frozen_blocks=1)
    state = cl.setup_cyclic(cfg, device="cpu")
    before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    cl.train_episode(state, 0)
    for name, p in state.model.named_parameters():
        moved = not torch.equal(before[name], p)
        frozen = "embed_in" in name or ".layers.0." in name
        assert moved != frozen, name


def test_adam_reset_per_document_or_kept():
    for reset, expected_steps in ((True, 2), (False, 6)):
        state = cl.setup_cyclic(tiny(reset_optimizer=reset), device="cpu")
        for doc in range(3):
            cl.train_episode(state, doc)
        steps = {int(s["step"]) for s in state.optimizer.state.values()}
        assert steps == {expected_steps}


def test_learning_rate_defaults_and_inverse_scaling():
    assert cl.CyclicConfig().learning_rate == 1e-3 and cl.CyclicConfig().optimizer == "sgd"
    assert tiny(lr=None).learning_rate == 1e-4  # adam's default in paper B's scripts
    # appendix B.5: 0.01 for M=1, 0.002 for M=5, 0.001 for M=10, 0.0005 for M=20
    for m, lr in ((1, 0.01), (5, 0.002), (10, 0.001), (20, 0.0005)):
        cfg = tiny(optimizer="sgd", lr=1e-3, steps=m, lr_scaling="inverse_steps")
        assert cfg.learning_rate == pytest.approx(lr)


def test_paper_defaults():
    cfg = cl.CyclicConfig()
    assert (cfg.n_docs, cfg.context, cfg.steps, cfg.epochs) == (25, 256, 10, 5)
    assert (cfg.optimizer, cfg.model, cfg.weights, cfg.order) == (
        "sgd",
        "pythia-1b",
        "pretrained",
        "cyclic",
    )


# ---------------------------------------------------------------- models and interop


def test_pretrained_code_path_on_a_local_save_pretrained_folder(tmp_path):
    a = gpt_neox.Arch(16, 2, 2, 64, FULL_VOCAB_SIZE)
    saved = cl.build_random(a, seed=3)
    saved.save_pretrained(tmp_path)
    cfg = cl.CyclicConfig(
        weights="pretrained", weights_path=str(tmp_path), n_docs=3, context=16, steps=1,
        epochs=1, vocab="docs", device="cpu",
    )  # fmt: skip
    assert cfg.arch().depth == 2 and cfg.arch().width == 16
    with pytest.raises(cl.ConfigError, match=r"frozen_blocks must be an integer in \[0, 2\]"):
        cfg.replace(frozen_blocks=3)
    state = cl.setup_cyclic(cfg, device="cpu")
    # the restricted model's logits are the saved model's logits of the kept tokens
    keep = torch.as_tensor(state.vocab.ids)
    ids_model = state.tokens[:1]
    ids_full = keep[ids_model]
    with torch.no_grad():
        full = saved(input_ids=ids_full).logits[..., keep]
        restricted = state.model(input_ids=ids_model).logits
    torch.testing.assert_close(restricted, full, rtol=1e-5, atol=1e-5)
    res = cl.run_cyclic(cfg, progress=False)
    assert res.losses.shape == (4, 3) and np.isfinite(res.losses).all()


def test_reference_npz_fixture_loads_into_a_result(tmp_path):
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "reference_eval_losses.npz"
    res = cl.load_reference_npz(path)
    assert res.losses.shape == (3 * 4 + 1, 4) and res.schedule.shape == (3, 4)
    # the fixture: every document forgets to 3.0 and recovers to 2.0 before its next training
    assert res.recovery_scores() == pytest.approx([0.5, 0.5])
    np.savez(tmp_path / "other.npz", eval_losses=np.zeros((13, 4)))
    with pytest.raises(ValueError, match="no 'eval_losses_ckpt' array"):
        cl.load_reference_npz(tmp_path / "other.npz")
