"""Committed results you can regenerate: every file under data/results/ names a clean commit in
HEAD's history, and a few of them, re-run here (one variant, one seed), give the committed
arrays (bitwise on the CPU type and packages that made them, else within float round-off).

``make results`` (tools/make_results.py) regenerates them; its registry must name every
committed file, so none is orphaned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cldyn_lib as cl
from cldyn_lib import results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "data" / "results"
sys.path.insert(0, str(ROOT / "tools"))

#: files made from a dirty tree by earlier sessions, still awaiting `make results`; the list
#: may only shrink: a test fails when a listed file has been regenerated but is still listed
AWAITING: set[str] = set()


def committed_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "data/results"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    return [ROOT / f for f in tracked if f.endswith(".npz")]


def provenance_git(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as d:
        prov = json.loads(str(d["__provenance__"])) if "__provenance__" in d.files else {}
    return prov.get("git") or {}


def is_ancestor(commit: str) -> bool:
    r = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT,
                       capture_output=True)  # fmt: skip
    return r.returncode == 0


def test_every_committed_result_comes_from_a_clean_commit_in_history():
    files = committed_files()
    assert files, "no committed results"
    bad = {}
    for f in files:
        git = provenance_git(f)
        if git.get("dirty") is not False:
            bad[f.name] = "dirty tree"
        elif not git.get("commit") or not is_ancestor(git["commit"]):
            bad[f.name] = f"commit {git.get('commit')} is not an ancestor of HEAD"
    unexpected = {k: v for k, v in bad.items() if k not in AWAITING}
    assert unexpected == {}, f"committed results that cannot be trusted: {unexpected}"
    regenerated = AWAITING - set(bad)
    assert not regenerated, f"regenerated, so take them off AWAITING: {sorted(regenerated)}"


def test_the_regeneration_registry_names_every_committed_result():
    import make_results

    made = {results.result_path(n, cfg, s).name for n, cfg, _, s in make_results.recipes().values()}
    committed = {f.name for f in committed_files() if f.parent == RESULTS}
    assert committed - made == set(), "committed results that `make results` cannot remake"


def clean_sweeps(k: int = 3):
    """The ``k`` committed laptop sweeps, from clean commits, whose first run was fastest."""
    out = []
    for name in cl.BOOK_SWEEPS:
        sweep = cl.book_sweep(name, "laptop")
        path = results.result_path(f"sweep-{name}", sweep, "laptop")
        if not path.exists() or provenance_git(path).get("dirty") is not False:
            continue
        res = results.load_result(path)
        out.append((float(res.arrays["seconds"][0, 0]), name, sweep, res))
    return sorted(out, key=lambda t: t[0])[:k]


def test_committed_sweeps_rerun_to_the_same_arrays():
    from conftest import need_mirror

    need_mirror()
    picked = clean_sweeps(3)
    assert len(picked) == 3, "fewer than three committed laptop sweeps come from a clean tree"
    for _, name, sweep, res in picked:
        again = cl.rerun_sweep_run(sweep, 0, 0)
        tol = results.reproduction_tolerance(res.provenance)
        for key, value in again.items():
            stored = res.arrays[f"v0_{key}"][0]
            assert results.reproduces(stored, value, tol), f"sweep-{name} v0_{key}"


@pytest.mark.parametrize(
    "git, ok", [({"dirty": False, "commit": "x"}, True), ({"dirty": True}, False)]
)
def test_make_results_treats_dirty_files_as_missing(tmp_path, monkeypatch, git, ok):
    import make_results

    monkeypatch.setenv("CLDYN_RESULTS", str(tmp_path))
    cfg = cl.book_sweep("frozen", "laptop")
    assert make_results.status("sweep-frozen", cfg, "laptop") == "missing"
    prov = {"git": {**git, "library_sha256": results.library_sha256()}}
    results.save_result(
        results.result_path("sweep-frozen", cfg, "laptop"), {"a": np.zeros(1)}, prov
    )
    assert (make_results.status("sweep-frozen", cfg, "laptop") == "current") is ok


def test_make_results_adds_up_the_recorded_compute_time(tmp_path):
    import make_results

    timed, sweep, old = tmp_path / "timed.npz", tmp_path / "sweep.npz", tmp_path / "old.npz"
    results.save_result(timed, {"a": np.zeros(1)}, {"compute_seconds": 12.5})
    results.save_result(sweep, {"seconds": np.array([[1.0, 2.0], [3.0, 4.0]])}, {})
    results.save_result(old, {"a": np.zeros(1)}, {})
    got = [make_results.recorded_seconds(p) for p in (timed, sweep, old)]
    assert got == [12.5, 10.0, None]


def test_make_results_runs_at_most_jobs_processes_and_keeps_every_exit_code(tmp_path):
    import sys

    import make_results

    child = (
        "import pathlib, sys, time\n"
        "d, i = pathlib.Path(sys.argv[1]), sys.argv[2]\n"
        "(d / f'run{i}').touch()\n"
        "(d / f'seen{i}').write_text(str(len(list(d.glob('run*')))))\n"
        "time.sleep(1.5)\n"
        "(d / f'run{i}').unlink()\n"
        "sys.exit(3 if i == '2' else 0)\n"
    )
    commands = [[sys.executable, "-c", child, str(tmp_path), str(i)] for i in range(5)]
    assert make_results.run_parallel(commands, 2) == [0, 0, 3, 0, 0]
    seen = [int((tmp_path / f"seen{i}").read_text()) for i in range(5)]
    assert max(seen) <= 2 and max(seen) == 2  # two at once, never three
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        make_results.run_parallel(commands, 0)
