"""Regenerate every committed CPU result under ``data/results/`` (``make results``).

    python tools/make_results.py            # every result not yet made by this library code
    python tools/make_results.py --list     # what it would do, and why
    python tools/make_results.py sweep-width probes-T50   # only these
    python tools/make_results.py --jobs 2   # two results at once, each in its own process

Resumable: a result whose file records a clean tree and the current library source hash
(``provenance["git"]["library_sha256"]``, :func:`cldyn_lib.results.library_sha256`) is
skipped; any other is recomputed and written atomically, so an interrupted run continues
where it stopped. It refuses to run from a tree whose tracked files (outside
``data/results/``) are modified: a committed result must name the commit that made it.
Results made on a GPU name their own command (tools/gpu_*.py) and are not made here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cldyn_lib as cl  # noqa: E402
from cldyn_lib import results  # noqa: E402


def recipes() -> dict[str, tuple]:
    """``{short name: (result name, config, compute, scale)}`` of every committed CPU result."""
    out = {}
    for name in cl.BOOK_SWEEPS:
        out[f"sweep-{name}"] = (f"sweep-{name}", cl.book_sweep(name, "laptop"),
                                cl.run_cyclic_sweep, "laptop")  # fmt: skip
    out["probes-T25"] = (
        "probes",
        cl.CyclicConfig.preset("laptop", n_docs=25),
        cl.probe_study,
        "laptop",
    )
    out["probes-T50"] = ("probes", cl.CyclicConfig.preset("laptop", n_docs=50, epochs=4),
                         cl.probe_study, "laptop")  # fmt: skip
    for m in ("vit", "cnn", "igpt"):
        out[f"vision5-{m}"] = (f"vision5-{m}", cl.vision_preset("laptop", m), cl.vision_study5,
                               "laptop")  # fmt: skip
    out["sequence-study"] = ("sequence-study", cl.SequenceStudy.preset("laptop"),
                             cl.run_sequence_study, "laptop")  # fmt: skip
    for key, cfg in cl.open_question_studies("laptop").items():
        if key != "arch":  # the chapter uses the ci ResNet sweep
            out[cl.result_name(key)] = (cl.result_name(key), cfg, cl.study_function(key), "laptop")
    arch = cl.open_question_studies("ci")["arch"]
    out["arch-sweep-ci"] = (cl.result_name("arch"), arch, cl.study_function("arch"), "ci")
    out["divergence-study"] = ("divergence-study", cl.DivergenceStudy.preset("laptop"),
                               cl.run_divergence_study, "laptop")  # fmt: skip
    out["shock-study"] = (
        "shock-study",
        cl.ShockStudy.preset("laptop"),
        cl.run_shock_study,
        "laptop",
    )
    out["feature-stats"] = ("feature-stats", cl.ShockStudy.preset("laptop"),
                            cl.run_feature_stats, "laptop")  # fmt: skip
    # Frati et al.'s headline contrast (zapped IID against IID) with the five seeds an exact
    # one-sided sign test needs to reach p = 0.031; seeds 0-2 repeat the study above
    out["shock-study-zap5"] = ("shock-study", zap5_study(), cl.run_shock_study, "laptop")
    return out


def zap5_study():
    """The laptop shock study cut to its IID and zapped-IID arms, with five seeds."""
    return cl.ShockStudy.preset("laptop").replace(modes=("iid", "zapped_iid"), n_seeds=5)


def status(name, config, scale) -> str:
    """ "current" (clean, made by this library code), or why the result must be (re)made."""
    path = results.result_path(name, config, scale)
    return status_of(results.load_result(path) if path.exists() else None)


def status_of(res) -> str:
    """:func:`status` of a loaded result (None: missing)."""
    if res is None:
        return "missing"
    git = res.provenance.get("git") or {}
    if git.get("dirty") is not False:
        return "made from a dirty tree"
    if git.get("library_sha256") != results.library_sha256():
        return "made by other library code"
    return "current"


def recorded_seconds(res) -> float | None:
    """The compute time a result (a path, or a loaded result) records:
    ``provenance["compute_seconds"]``, else the sum of a sweep's per-run ``seconds``; None for
    older files that record neither."""
    if not isinstance(res, results.Result):
        res = results.load_result(res)
    if "compute_seconds" in res.provenance:
        return float(res.provenance["compute_seconds"])
    if "seconds" in res.arrays:
        return float(res.arrays["seconds"].sum())
    return None


#: the longest results (hours of CPU between them), started first when --jobs > 1
LONG_FIRST = ("shock-study", "sweep-factors5", "divergence-study", "feature-stats",
              "shock-study-zap5", "sweep-docs_long", "sweep-docs_long_control", "sweep-width",
              "sweep-docs5")  # fmt: skip


def run_parallel(commands: list[list[str]], jobs: int, env=None) -> list[int]:
    """Run ``commands`` (argument lists), at most ``jobs`` at a time, in the order given;
    return their exit codes in that order. Each child's output goes to this terminal."""
    from concurrent.futures import ThreadPoolExecutor

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1; got {jobs}")
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda c: subprocess.run(c, env=env).returncode, commands))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="short names (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="show each result's status and stop")
    parser.add_argument("--jobs", type=int, default=1,
                        help="results made at once, each in its own process (default 1)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")
    todo = recipes()
    unknown = [n for n in args.names if n not in todo]
    if unknown:
        parser.error(f"unknown result(s) {', '.join(unknown)}; choose from {', '.join(todo)}")
    names = args.names or list(todo)
    if args.list:
        timed = []
        for n in names:
            name, cfg, _, scale = todo[n]
            path = results.result_path(name, cfg, scale)
            res = results.load_result(path) if path.exists() else None  # read once
            sec = recorded_seconds(res) if res is not None else None
            timed += [sec] if sec is not None else []
            took = f"{sec / 60:6.1f} min" if sec is not None else "     ? min"
            print(f"{n:24s} {path.name:48s} {took}  {status_of(res)}")
        print(f"recorded compute: {sum(timed) / 3600:.1f} h in {len(timed)} of {len(names)} "
              f"results (one process each)")  # fmt: skip
        return 0
    git = results.git_commit()
    if git["dirty"] is not False:
        print(
            "refusing: tracked files outside data/results/ are modified (commit first)",
            file=sys.stderr,
        )
        return 2
    t_all = time.perf_counter()
    if args.jobs > 1:
        stale = [n for n in names if status(*(todo[n][i] for i in (0, 1, 3))) != "current"]
        stale.sort(key=lambda n: LONG_FIRST.index(n) if n in LONG_FIRST else len(LONG_FIRST))
        print(f"{len(names) - len(stale)} current, {len(stale)} to make, {args.jobs} at once",
              flush=True)  # fmt: skip
        env = {**os.environ, "CLDYN_WORKERS": "1"}  # the jobs already fill the cores
        codes = run_parallel([[sys.executable, __file__, n] for n in stale], args.jobs, env)
        failed = [n for n, c in zip(stale, codes) if c != 0]
        print(f"all done in {(time.perf_counter() - t_all) / 60:.1f} min"
              + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)  # fmt: skip
        return 1 if failed else 0
    for n in names:
        name, cfg, fn, scale = todo[n]
        why = status(name, cfg, scale)
        if why == "current":
            print(f"{n}: current, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        res = cl.load_or_compute(name, cfg, lambda c, fn=fn: fn(c), scale=scale, recompute=True)
        print(f"{n}: {why} -> {res.path.name}, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"all done in {(time.perf_counter() - t_all) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
