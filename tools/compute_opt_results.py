"""Recompute the committed results of *Optimizers and sequential learning* and *Why Adam
remembers* (small arrays under data/results/, no weights).

    python tools/compute_opt_results.py [--scale laptop] [--only table3 variants ...]

Each result is ``cl.load_or_compute(name, config, fn, scale=scale)``: an existing file
is kept (pass --recompute to redo it). Pre-trained models are cached in data/cache/models
by ``cl.load_or_pretrain``. Measured on the 2-core development machine (one torch
thread, shared with 3-4 other jobs, so inflated): table3 118 s, boundary 47 s, variants
591 s, length 794 s, shift 69 s, pretrain about 16 min (it pre-trains 6 models), batch
about 15 min, at laptop scale. No laptop-scale ResNet ("arch") was computed; the chapter
uses the ci one, committed (``--scale ci --only arch``, about 2 minutes with pre-training).
"""

from __future__ import annotations

import argparse
import time

import torch

import cldyn_lib as cl


def recipes(scale: str) -> dict:
    out = {"table3": ("sequence-study", cl.SequenceStudy.preset(scale),
                      cl.run_sequence_study)}  # fmt: skip
    for key, cfg in cl.open_question_studies(scale).items():
        out[key] = (cl.result_name(key), cfg, cl.study_function(key))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="laptop")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--recompute", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    todo = recipes(args.scale)
    for key in args.only or list(todo):
        name, cfg, fn = todo[key]
        t0 = time.perf_counter()
        res = cl.load_or_compute(
            name, cfg, lambda c, fn=fn: fn(c, progress=True), scale=args.scale,
            recompute=args.recompute,
        )  # fmt: skip
        size = res.path.stat().st_size / 1e6
        print(
            f"{key}: {res.path.name}, {size:.2f} MB, {time.perf_counter() - t0:.0f} s", flush=True
        )


if __name__ == "__main__":
    main()
