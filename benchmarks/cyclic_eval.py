"""The cyclic engine against a reference-style loop that evaluates one document at a time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cyclic_eval.py [--scale ci] [--n-docs 25]

Paper B's code evaluates every document separately after each episode, at batch size 1, and
copies each loss to the host (``.item()``): T forwards and T host syncs per evaluation. The
engine (:func:`cldyn_lib.run_cyclic`) evaluates all T documents in a few padded,
batched forwards and copies the loss matrix to the host once per epoch. Everything else is
the same here: the same model and initial weights (``cl.setup_cyclic`` with the same seed), the
same pre-tokenised documents, the same training steps (``cl.train_episode``), ``no_grad``
evaluation, the same evaluation points. The script checks that the two loss matrices agree
to float tolerance, then prints the speed-up of the evaluation phase and of the whole run,
and the achieved FLOP/s against this machine's measured fp32 matmul rate.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import cldyn_lib as cl


def compare(config: cl.CyclicConfig, peak: float) -> dict:
    # warm up: the token cache, transformers' first model, the allocator
    cl.run_cyclic(config.replace(epochs=1), progress=False)
    ref_losses, ref = cl.reference_style_run(config)
    res = cl.run_cyclic(config, progress=False, timing=True)
    eng = res.provenance["run"]
    diff = float(np.max(np.abs(res.losses - ref_losses)))
    np.testing.assert_allclose(res.losses, ref_losses, rtol=1e-4, atol=1e-4)
    return {
        "config": config,
        "max_abs_diff": diff,
        "eval_speedup": ref["eval_s"] / eng["eval_s"],
        "run_speedup": ref["total_s"] / eng["total_s"],
        "ref": ref,
        "eng": eng,
        "eval_flops_s": eng["eval_flops"] / eng["eval_s"],
        "ref_eval_flops_s": eng["eval_flops"] / ref["eval_s"],
        "train_flops_s": eng["train_flops"] / eng["train_s"],
        "peak": peak,
    }


def report(r: dict) -> str:
    c, e, f = r["config"], r["eng"], r["ref"]
    g = 1e9
    return "\n".join(
        [
            f"T={c.n_docs} C={c.context} M={c.steps} E={c.epochs}, {e.get('n_params', 0):,} parameters "
            f"(vocab {e['vocab_size']}), {e['eval_docs_per_forward']} documents per eval forward",
            f"  loss matrices agree: max |difference| = {r['max_abs_diff']:.2e} nats",
            f"  evaluation: engine {e['eval_s']:.2f} s, reference-style {f['eval_s']:.2f} s "
            f"-> speed-up {r['eval_speedup']:.1f}x",
            f"  whole run:  engine {e['total_s']:.2f} s, reference-style {f['total_s']:.2f} s "
            f"-> speed-up {r['run_speedup']:.2f}x (training {e['train_s']:.2f} s vs "
            f"{f['train_s']:.2f} s)",
            f"  achieved: eval {r['eval_flops_s'] / g:.1f} GFLOP/s (reference-style "
            f"{r['ref_eval_flops_s'] / g:.1f}), training {r['train_flops_s'] / g:.1f} GFLOP/s; "
            f"fp32 matmul peak {r['peak'] / g:.1f} GFLOP/s "
            f"({100 * r['eval_flops_s'] / r['peak']:.0f}% / {100 * r['ref_eval_flops_s'] / r['peak']:.0f}%"
            f" / {100 * r['train_flops_s'] / r['peak']:.0f}%)",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="ci", help="cl.CyclicConfig preset (ci, laptop, gpu)")
    parser.add_argument("--n-docs", type=int, nargs="*", default=[10, 25])
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    device = cl.resolve_device("auto")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")
    peak = cl.matmul_rate(device=device, dtype=torch.float32)
    print(f"fp32 matmul (1024x1024): {peak / 1e9:.1f} GFLOP/s\n")
    for T in args.n_docs:
        extra = {"epochs": args.epochs} if args.epochs else {}
        cfg = cl.CyclicConfig.preset(args.scale, n_docs=T, device=device, **extra)
        print(report(compare(cfg, peak)), "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
