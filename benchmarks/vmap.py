"""K runs as one batched model (cl.run_cyclic_batched, cl.run_transfer_batched) against K
separate runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vmap.py                       # both engines, ci
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vmap.py --engine cyclic --scale laptop --ks 1 4 8

For K = 1, 4, 8, 16 and each engine it times, with the same torch thread count on both
sides (``--threads``, default 1):

- ``separate``: K runs one after another in this process (the engines' own loops);
- ``batched``: one batched run of K (default method; ``--method vmap``
  times ``torch.func.vmap`` instead);
- ``2 procs``: the K separate runs split over two single-thread processes running at once
  (the fair parallel baseline on a 2-core machine), and ``2 procs batched``: K/2 batched in
  each of two processes. Process start-up and imports are excluded (the workers wait for a
  go signal after a warm-up).

It prints the speed-ups (separate / batched and separate / 2 procs), the batched time over
one run's time (the goal: 8 seeds in <= 2x one seed for the ci ConvNet), and the achieved
FLOP/s (``torch.utils.flop_counter`` on one run, times K, over the wall time) against a
measured fp32 matmul. The engines: ``convnet``: paper A's transfer at the ci preset (10
classes, 150 batch-1 steps, 11 evaluations) from the ci pre-trained ConvNet (16 channels),
full fine-tuning (``--train all``, default) or the linear probe (``--train head``);
``cyclic``: paper B's cyclic run at the preset (ci: T=10, C=64, M=10, E=4, d=64, L=2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

import cldyn_lib as cl


class Engine:
    """Builds the K configs of one engine and runs them separately or batched."""

    def __init__(self, name: str, scale: str, train: str, method: str):
        self.name, self.scale, self.train, self.method = name, scale, train, method
        if name == "convnet":
            self.model = cl.load_or_pretrain(cl.PretrainConfig.preset("ci")).model
            if scale != "ci":  # laptop width (32 channels) with random weights: speed only
                self.model = cl.ConvNet(32, 1000, generator=torch.Generator().manual_seed(0))
            self.base = cl.TransferConfig.preset(scale, train=train)
            self.data = cl.load_transfer_data(self.base)
        else:
            self.base = cl.CyclicConfig.preset(scale)
            if scale == "laptop":
                self.base = self.base.replace(epochs=2)  # time budget on a shared machine

    def configs(self, seeds):
        return [self.base.replace(seed=int(s)) for s in seeds]

    def separate(self, seeds) -> None:
        if self.name == "convnet":
            for c in self.configs(seeds):
                cl.run_transfer(c, self.model, self.data)
        else:
            for c in self.configs(seeds):
                cl.run_cyclic(c, progress=False)

    def batched(self, seeds) -> None:
        if self.name == "convnet":
            method = "grouped" if self.method == "batched" else "vmap"
            cl.run_transfer_batched(self.configs(seeds), self.model, self.data, method=method)
        else:
            cl.run_cyclic_batched(self.configs(seeds), method=self.method)

    def flops_one_run(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            self.separate([0])
        return float(fc.get_total_flops())


REPEATS = 1


def timed(fn, *args) -> float:
    """The fastest of ``REPEATS`` runs (the machine is shared: the minimum is the least
    disturbed measurement)."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def worker(args) -> None:
    """Warm up, say ready, wait for 'go' on stdin, run, print the compute time."""
    torch.set_num_threads(1)
    eng = Engine(args.engine, args.scale, args.train, args.method)
    seeds = [int(s) for s in args.worker_seeds.split(",")]
    eng.separate([99]) if args.worker_mode == "separate" else eng.batched([98, 99])
    print("ready", flush=True)
    sys.stdin.readline()
    fn = eng.separate if args.worker_mode == "separate" else eng.batched
    print(json.dumps({"seconds": timed(fn, seeds)}), flush=True)


def two_processes(args, seeds, mode: str) -> float:
    halves = [seeds[: len(seeds) // 2], seeds[len(seeds) // 2 :]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for h in halves:
        cmd = [sys.executable, __file__, "--engine", args.engine, "--scale", args.scale,
               "--train", args.train, "--method", args.method, "--worker-mode", mode,
               "--worker-seeds", ",".join(map(str, h))]  # fmt: skip
        procs.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        )
    for p in procs:
        while p.stdout.readline().strip() != "ready":
            pass
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    return max(o["seconds"] for o in outs)  # each worker's compute time, started together


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["convnet", "cyclic", "both"], default="both")
    ap.add_argument("--scale", choices=["ci", "laptop"], default="ci")
    ap.add_argument("--train", choices=["all", "head"], default="all")
    ap.add_argument("--method", choices=["batched", "vmap"], default="batched")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--repeats", type=int, default=1, help="time each side n times, keep the fastest"
    )
    ap.add_argument("--no-procs", action="store_true", help="skip the two-process baselines")
    ap.add_argument("--worker-mode", default="", help=argparse.SUPPRESS)
    ap.add_argument("--worker-seeds", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global REPEATS
    REPEATS = args.repeats
    if args.worker_mode:
        return worker(args)
    torch.set_num_threads(args.threads)
    peak = cl.matmul_rate()
    print(f"torch {torch.__version__}, {args.threads} thread(s), fp32 1024^2 matmul: "
          f"{peak / 1e9:.1f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    engines = ["convnet", "cyclic"] if args.engine == "both" else [args.engine]
    for name in engines:
        args.engine = name
        eng = Engine(name, args.scale, args.train, args.method)
        eng.separate([99])  # warm-up (data, caches)
        eng.batched([98, 99])
        flops = eng.flops_one_run()
        one = timed(eng.separate, [0])
        label = (
            f"{name} ({args.scale}"
            + (f", train={args.train}" if name == "convnet" else "")
            + f", {args.method})"
        )
        print(f"\n{label}: one run {one:.2f} s, {flops / 1e9:.2f} GFLOP per run")
        print(
            " K | separate |  batched | speed-up | batched/one | 2 procs | speed-up | 2 procs batched | batched GFLOP/s (% of matmul)"
        )
        for K in args.ks:
            seeds = list(range(K))
            sep = one if K == 1 else timed(eng.separate, seeds)
            bat = timed(eng.batched, seeds)
            rate = K * flops / bat
            procs = procs_b = float("nan")
            if not args.no_procs and K >= 2:
                procs = two_processes(args, seeds, "separate")
                procs_b = two_processes(args, seeds, "batched")
            print(f"{K:2d} | {sep:7.2f}s | {bat:7.2f}s | {sep / bat:7.2f}x | {bat / one:10.2f}x | "
                  f"{procs:6.2f}s | {sep / procs:7.2f}x | {procs_b:14.2f}s | "
                  f"{rate / 1e9:6.1f} ({100 * rate / peak:.0f}%)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
