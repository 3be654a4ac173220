"""Yang et al.'s Figs. 2b, 3 and 6 at Pythia scale on one GPU: the smoke run and the main run.

On the GPU machine (torch and transformers installed; nothing else; no internet), from the
copy of the repository, with the data folder that travels beside it::

    CLDYN_MIRROR=.gpu-data CLDYN_COMMIT=<commit> CLDYN_CLEAN=1 PYTHONPATH=. \\
        python tools/gpu_pythia_scale.py smoke --out $OUT            # <= 90 s
    CLDYN_MIRROR=.gpu-data CLDYN_COMMIT=<commit> CLDYN_CLEAN=1 PYTHONPATH=. \\
        python tools/gpu_pythia_scale.py main --out $OUT --budget-s 420 [--timings smoke.json]

``smoke`` builds every shape of :func:`cldyn_lib.pythia_scale_plan`, times two training steps
and one evaluation of each, compares a few bf16 steps with fp32 on the 160M shape, measures
the card's bf16 matmul rate and prints the main run's estimate (per-step times measured here,
not FLOPs over peak, which is 5-10x optimistic at batch size 1); it writes ``smoke.json``.
``main`` runs the plan in priority order while the estimate of the next run fits the
remaining budget, writes each finished run at once (``<name>.npz`` with provenance: GPU,
precision, torch version, the commit from the environment), then the speed table (one epoch
of the engine against the reference-style loop on the 160M and 1B shapes), and prints a
summary table last. ``--tiny`` runs the same code at tiny shapes on the CPU (the dry run that
``make test`` checks). ``python tools/gpu_pythia_scale.py data`` copies the two data files
the runs need into ``.gpu-data/`` (git-ignored; about 3 MB) for the device tool's ``carry``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = ("cnn_dailymail/articles_permissive.jsonl", "tokenizers/gpt-neox-20b/tokenizer.json")


def plan(tiny: bool):
    import cldyn_lib as cl

    runs = cl.pythia_scale_plan()
    return [(n, g, cl.pythia_scale_tiny(c) if tiny else c) for n, g, c in runs]


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_shape(config) -> dict:
    """Seconds per training step and per evaluation forward of one shape (after a warm-up)."""
    import cldyn_lib as cl
    from cldyn_lib.cyclic.state import eval_chunk

    cfg = config.replace(steps=2, epochs=1)
    state = cl.setup_cyclic(cfg, device=cfg.check_resources())
    cl.train_episode(state, 0)  # warm-up: kernels, allocator
    sync(state.device)
    t0 = time.perf_counter()
    cl.train_episode(state, 1)
    sync(state.device)
    step = (time.perf_counter() - t0) / cfg.steps
    cl.evaluate_documents(state)
    sync(state.device)
    t0 = time.perf_counter()
    cl.evaluate_documents(state)
    sync(state.device)
    chunk = eval_chunk(state)
    forwards = -(-cfg.n_docs // chunk)
    return {"step_s": step, "eval_s": (time.perf_counter() - t0) / forwards, "chunk": chunk,
            "n_params": sum(p.numel() for p in state.model.parameters())}  # fmt: skip


def precision_check(config) -> float:
    """Largest |loss difference| over a few training steps, bf16 autocast against fp32."""
    import cldyn_lib as cl

    out = []
    for bf16 in (False, True):
        cfg = config.replace(steps=3, epochs=1, bf16=bf16 and config.device == "cuda")
        state = cl.setup_cyclic(cfg, device=cfg.check_resources())
        cl.train_episode(state, 0)
        out.append(state.train_losses[0].float().cpu().numpy())
    return float(np.max(np.abs(out[0] - out[1])))


def smoke(args) -> int:
    import torch

    import cldyn_lib as cl

    runs = plan(args.tiny)
    device = runs[0][2].check_resources()
    t0 = time.perf_counter()
    peak = cl.matmul_rate(n=256 if args.tiny else 8192, device=device)
    shapes: dict[str, dict] = {}
    for name, _, cfg in runs:
        key = shape_key(cfg)
        if key not in shapes:
            shapes[key] = time_shape(cfg) | {"example": name}
            print(f"{key:28s} step {shapes[key]['step_s'] * 1e3:7.1f} ms  eval forward "
                  f"{shapes[key]['eval_s'] * 1e3:7.1f} ms", flush=True)  # fmt: skip
    diff = precision_check(runs[3][2])  # the 160M shape
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "peak_flops": peak, "shapes": shapes, "bf16_vs_fp32_max_loss_diff": diff,
              "seconds": time.perf_counter() - t0, "torch": torch.__version__}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "smoke.json").write_text(json.dumps(report, indent=1))
    print(f"\nmatmul peak {peak / 1e12:.1f} TFLOP/s; bf16 vs fp32 over 3 steps: |diff| {diff:.2e}")
    estimate_table(runs, report)
    print(f"smoke: {report['seconds']:.1f} s")
    return 0


def shape_key(cfg) -> str:
    a = cfg.arch()
    return f"d={a.width} L={a.depth} f={a.mlp_width} {cfg.optimizer}"


def estimates(runs, timings: dict | None) -> dict[str, float]:
    import cldyn_lib as cl

    out = {}
    for name, _, cfg in runs:
        t = (timings or {}).get("shapes", {}).get(shape_key(cfg))
        if t:
            out[name] = cl.run_time_estimate(cfg, t["step_s"], t["eval_s"], t["chunk"])
        else:  # no measurement: FLOPs over a modest peak plus 5 ms per step
            out[name] = cl.flops_estimate(cfg, (timings or {}).get("peak_flops", 2e14), 5e-3)
    return out


def estimate_table(runs, timings) -> None:
    est = estimates(runs, timings)
    total = 0.0
    print(f"\n{'run':20s} {'group':6s} {'estimate (s)':>12s} {'cumulative':>10s}")
    for name, group, _ in runs:
        total += est[name]
        print(f"{name:20s} {group:6s} {est[name]:12.1f} {total:10.1f}")


def main_run(args) -> int:
    import torch

    import cldyn_lib as cl

    runs = [r for r in plan(args.tiny) if not args.only or r[0] in args.only]
    timings = json.loads(Path(args.timings).read_text()) if args.timings else None
    est = estimates(runs, timings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start, rows = time.perf_counter(), []
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    for name, group, cfg in runs:
        left = args.budget_s - (time.perf_counter() - t_start)
        if est[name] > left:
            rows.append((name, group, "skipped", est[name], None, None))
            continue
        t0 = time.perf_counter()
        try:
            res = cl.run_cyclic(cfg, progress=False, timing=True)
        except cl.DivergedError as err:  # keep the partial result
            res = err.result
        seconds = time.perf_counter() - t0
        rs = cl.recovery_scores(res.losses, res.schedule)
        forgot = [cl.recovery_parts(res.losses, n, res.schedule).forgotten
                  for n in range(1, cfg.epochs)]  # fmt: skip
        prov = dict(res.provenance, gpu=gpu, precision="bf16 autocast, TF32" if cfg.bf16 else "fp32",
                    estimate_s=est[name], seconds=seconds, group=group,
                    rerun=f"python tools/gpu_pythia_scale.py main --only {name}")  # fmt: skip
        cl.save_result(out / f"{name}.npz", {**res.to_arrays(), "recovery_scores": rs,
                                            "forgotten": np.array(forgot)}, prov)  # fmt: skip
        rows.append((name, group, f"{seconds:.1f}", est[name], rs, forgot))
        print(f"done {name}: {seconds:.1f} s (estimate {est[name]:.1f}), RS {np.round(rs, 3)}",
              flush=True)  # fmt: skip
    speed = speed_table(plan(args.tiny), out, args) if not args.no_speed else []
    print(f"\n{'run':20s} {'group':6s} {'seconds':>8s} {'estimate':>8s}  RS per epoch / forgotten")
    for name, group, sec, e, rs, forgot in rows:
        detail = "" if rs is None else f"{np.round(rs, 3)} / {np.round(forgot, 3)}"
        print(f"{name:20s} {group:6s} {sec:>8s} {e:8.1f}  {detail}")
    for line in speed:
        print(line)
    return 0


def speed_table(runs, out: Path, args) -> list[str]:
    """One epoch of the engine against the reference-style loop, on the 160M and 1B shapes."""
    import cldyn_lib as cl

    lines = ["\nspeed (one epoch): engine vs reference-style loop (batch-1 eval, a sync each)"]
    peak = cl.matmul_rate(n=256 if args.tiny else 8192, device=runs[0][2].device)
    table = {}
    for name in ("160m-gd", "1b-gd"):
        cfg = next(c for n, _, c in runs if n == name).replace(epochs=1)
        res = cl.run_cyclic(cfg, progress=False, timing=True)
        eng = res.provenance["run"]
        ref_losses, ref = cl.reference_style_run(cfg)
        table[name] = {"engine": eng, "reference": ref,
                       "max_abs_diff": float(np.nanmax(np.abs(ref_losses - res.losses)))}  # fmt: skip
        steps = cfg.n_docs * cfg.steps
        lines.append(
            f"{name}: eval {ref['eval_s'] / eng['eval_s']:.1f}x, epoch "
            f"{ref['total_s'] / eng['total_s']:.2f}x, {steps / eng['train_s']:.1f} steps/s, "
            f"train {eng['train_flops'] / cfg.epochs / eng['train_s'] / peak:.1%} and eval "
            f"{eng['eval_flops'] / eng['eval_s'] / peak:.1%} of the {peak / 1e12:.1f} TFLOP/s "
            f"matmul peak; losses agree to {table[name]['max_abs_diff']:.1e}"
        )
    (out / "speed.json").write_text(json.dumps(table, indent=1, default=float))
    return lines


def copy_data(args) -> int:
    """Copy the data files the runs read into ``.gpu-data`` (mirror layout) for ``carry``."""
    from cldyn_lib.data.fetch import mirror_dirs

    src = next(d for d in mirror_dirs() if (d / DATA_FILES[0]).exists())
    dest = ROOT / ".gpu-data"
    for rel in DATA_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)
    print(f"copied {len(DATA_FILES)} files into {dest} "
          f"({sum((dest / r).stat().st_size for r in DATA_FILES) / 2**20:.1f} MiB)")  # fmt: skip
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("smoke", "main", "data"))
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--timings", help="smoke.json of a smoke run on the same card")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (dry run)")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed table")
    ap.add_argument("--only", nargs="*", help="main: only these runs (by name)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return {"smoke": smoke, "main": main_run, "data": copy_data}[args.stage](args)


if __name__ == "__main__":
    sys.exit(main())
