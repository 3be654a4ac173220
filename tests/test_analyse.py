"""``python -m cldyn_lib analyse`` and :func:`cldyn_lib.analyse`: both arms per seed, the
verdict's words, the report's files, resuming, divergence, and bad options refused."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest

import cldyn_lib as cl
from cldyn_lib import cli
from cldyn_lib.cyclic import analyse as analyse_module
from cldyn_lib.cyclic import engine


def small(own, **kw):
    fields = dict(n_docs=4, context=16, steps=2, epochs=3, optimizer="adam", lr=3e-3,
                  device="cpu")  # fmt: skip
    return cl.analysis_config(own["gpt2"], own["jsonl"], **{**fields, **kw})


@pytest.fixture(scope="module")
def done(own, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    res = cl.analyse(small(own), out, seeds=2, progress=False, log=None)
    return res, out, cl.write_report(res)


def test_both_arms_per_seed_with_matched_documents(done):
    res, out, _ = done
    assert res.seeds == [0, 1] and len(res.fixed) == len(res.control) == 2
    T, E = 4, 3
    for f, c in zip(res.fixed, res.control):
        assert np.array_equal(f.schedule, np.tile(np.arange(T), (E, 1)))  # the fixed order
        assert all(sorted(r) == list(range(T)) for r in c.schedule)
        assert not all(np.array_equal(r, c.schedule[0]) for r in c.schedule)  # reshuffled
        assert f.doc_ids == c.doc_ids  # the same documents ...
        assert np.array_equal(f.losses[0], c.losses[0])  # ... and the same initial model
    assert res.fixed[0].doc_ids != res.fixed[1].doc_ids  # another seed draws others
    # the verdict's data are the engine's recovery scores
    rs = np.array([cl.recovery_scores(r.losses, r.schedule)[-1] for r in res.fixed])
    np.testing.assert_allclose(res.scores("cyclic")[:, -1], rs)
    assert (
        res.verdict
        == cl.recovery_verdict(rs, res.scores("shuffled")[:, -1], res.forgotten("cyclic")[:, -1])[0]
    )


def test_report_files_and_provenance(done):
    res, out, page = done
    assert page == out / "report.html"
    for name in ("document1", "shift_averaged", "recovery_score", "forgotten"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert f"Verdict: <b>{res.verdict}</b>" in text
    assert "delta = 0.1" in text and "over 2 seed(s) [0, 1]" in text
    assert "RS(E-1) of the fixed order &gt; RS(E-1) of the reshuffled control" in text
    packed = cl.load_result(out / "losses.npz")
    assert packed["fixed_losses"].shape == (2, 13, 4)
    assert np.array_equal(packed["control_losses"][1], res.control[1].losses)
    assert packed.provenance["analysis"]["verdict"] == res.verdict
    assert packed.provenance["config"]["causal_lm"].endswith("gpt2")
    runs = sorted((out / "runs").glob("*.npz"))
    assert len(runs) == 4 and not list((out / "checkpoints").glob("*.ckpt"))
    one = cl.load_result(runs[0])
    assert one.provenance["data"][0]["sha256"] and "losses" in one


def test_the_same_call_loads_finished_runs(own, done, monkeypatch):
    res, out, _ = done

    def no_run(*a, **k):
        raise AssertionError("a finished run was computed again")

    monkeypatch.setattr(analyse_module, "run_cyclic", no_run)
    again = cl.analyse(small(own), out, seeds=2, progress=False, log=None)
    assert again.loaded == 4 and again.verdict == res.verdict
    assert all(np.array_equal(a.losses, b.losses) for a, b in zip(again.fixed, res.fixed))


def test_an_interrupted_analysis_resumes_from_its_checkpoint_bitwise(own, tmp_path, monkeypatch):
    clean = cl.analyse(small(own), tmp_path / "clean", progress=False, log=None)
    calls = {"n": 0}
    real = engine.train_episode

    def dies(state, doc):
        calls["n"] += 1
        if calls["n"] == 4 * 3 + 6:  # the control run, in its second epoch
            raise KeyboardInterrupt
        return real(state, doc)

    monkeypatch.setattr(engine, "train_episode", dies)
    with pytest.raises(KeyboardInterrupt):
        cl.analyse(small(own), tmp_path / "cut", progress=False, log=None)
    assert len(list((tmp_path / "cut" / "runs").glob("*.npz"))) == 1  # the fixed order
    assert len(list((tmp_path / "cut" / "checkpoints").glob("*.ckpt"))) == 1  # epoch 1
    monkeypatch.setattr(engine, "train_episode", real)
    resumed = cl.analyse(small(own), tmp_path / "cut", progress=False, log=None)
    assert resumed.loaded == 1
    assert resumed.control[0].provenance["run"]["resumed_at_episode"] == 4
    for a, b in ((clean.fixed[0], resumed.fixed[0]), (clean.control[0], resumed.control[0])):
        assert np.array_equal(a.losses, b.losses)


@pytest.mark.parametrize(
    "fixed, control, forgotten, verdict",
    [
        ([0.5] * 5, [0.1] * 5, [1.0] * 5, "reproduced"),
        ([0.5] * 4, [0.1] * 4, [1.0] * 4, "indicative (4 seeds)"),
        ([0.5], [0.1], [1.0], "indicative (1 seed)"),
        ([0.1] * 5, [0.5] * 5, [1.0] * 5, "contradicted"),
        ([0.5, 0.1, 0.5, 0.1, 0.5], [0.1, 0.3, 0.1, 0.3, 0.1], [1.0] * 5, "inconclusive"),
        ([0.15] * 6, [0.1] * 6, [1.0] * 6, "not reproduced at this scale"),
        ([0.5] * 5, [0.1] * 5, [0.01] * 5, "not testable at this scale (the fixed order"),
    ],
)
def test_verdict_words(fixed, control, forgotten, verdict):
    words, outcome = cl.recovery_verdict(np.array(fixed), np.array(control), np.array(forgotten))
    assert words.startswith(verdict)
    assert words.split(" (")[0] in cl.VERDICTS
    assert outcome.n == len(fixed)


def test_the_command_runs_prints_the_estimate_first_and_writes_the_report(own, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["analyse", "--model", own["gpt2"], "--docs", own["jsonl"], "--docs-field", "text",
            "-T", "4", "-C", "16", "-M", "2", "-E", "3", "--optimizer", "adam", "--lr", "3e-3",
            "--device", "cpu", "--no-progress", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 runs to do") and "T=4 C=16 M=2 E=3 on cpu" in lines[0]
    assert lines[1].startswith("estimated: about") and "MiB per run" in lines[1]
    assert lines[-2].startswith("verdict: ") and lines[-1] == str(out / "report.html")
    library = cl.analyse(small(own), tmp_path / "lib", progress=False, log=None)
    assert np.array_equal(cl.load_result(out / "losses.npz")["fixed_losses"][0],
                          library.fixed[0].losses)  # fmt: skip
    assert cli.main(argv) == 0  # again: everything loaded
    assert "estimated" not in capsys.readouterr().out


def test_analysis_command_round_trips(own):
    cfg = small(own, vocab="docs", frozen_blocks=1, mask_prob=0.1, reset_optimizer=False)
    line = cl.analysis_command(cfg, "rep/", seeds=5)
    assert line.startswith("python -m cldyn_lib analyse --model ") and "--seeds 5" in line
    args = cli.build_parser().parse_args(shlex.split(line)[3:])
    assert analyse_module_config(args) == cfg and args.seeds == 5
    wrapped = cl.analysis_command(cfg, "rep/", seeds=5, wrap=60)
    # every row fits, except one option whose value (a long temporary path) alone is wider
    rows = wrapped.splitlines()[1:]
    assert all(len(row) <= 60 or len(shlex.split(row.rstrip(" \\"))) <= 2 for row in rows), wrapped
    assert len(rows) >= 5, wrapped
    assert shlex.split(wrapped.replace("\\\n", " ")) == shlex.split(line)


def analyse_module_config(args):
    from cldyn_lib.cyclic.analyse_command import config_from_options

    return config_from_options(args, cli.parse_value)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-C", "128"], r"context \(C\) must be <= 64"),
        (["-T", "40"], r"n_docs \(T\) must be <= 12"),
        (["-E", "1"], r"epochs must be an integer in \[2, 10000\]"),
        (["--docs-field", "body"], "line 1 has no 'body'"),
        (["--set", "nonsense=1"], "--set: 'nonsense' is not a CyclicConfig field"),
        (["--full-windows"], "require_full=True asks for documents of at least 16"),
    ],
)
def test_bad_options_exit_2_naming_the_parameter_before_compute(
    own, tmp_path, capsys, monkeypatch, extra, message
):
    def no_compute(*a, **k):
        raise AssertionError("compute started")

    monkeypatch.setattr(engine, "train_episode", no_compute)
    argv = ["analyse", "--model", own["gpt2"], "--docs", own["jsonl"], "-T", "4", "-C", "16",
            "-M", "2", "-E", "3", "--out", str(tmp_path), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ")
    assert re.search(message, err), err


def test_a_diverged_run_prints_one_line_and_writes_the_partial_result(own, tmp_path, capsys):
    out = tmp_path / "div.npz"
    argv = ["run", "cyclic", "--preset", "ci", "--n-docs", "3", "--context", "16", "--steps",
            "2", "--epochs", "2", "--optimizer", "sgd", "--lr", "1e6", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: cyclic run diverged")
    assert "Traceback" not in err and str(out) in err
    partial = cl.load_result(out)
    assert np.isnan(partial["losses"][1:]).all() and np.isfinite(partial["losses"][0]).all()
    assert partial.provenance["diverged"]["episode"] == 0
    argv = ["analyse", "--model", own["gpt2"], "--docs", own["jsonl"], "-T", "3", "-C", "16",
            "-M", "2", "-E", "2", "--lr", "1e6", "--no-progress", "--out", str(tmp_path / "a")]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "partial result saved to" in err
    assert list((tmp_path / "a" / "runs").glob("*-diverged.npz"))
