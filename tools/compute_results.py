"""Compute the book's sweeps at a scale and save them under ``data/results/``.

    python tools/compute_results.py --scale laptop            # every missing sweep
    python tools/compute_results.py --scale laptop width depth  # only these

Each sweep is saved by :func:`cldyn_lib.load_or_compute` as soon as it is done (with
its provenance), so an interrupted run resumes where it stopped. The ``ci`` book build reads
these files and never computes them.
"""

from __future__ import annotations

import argparse
import time

import cldyn_lib as cl


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"sweeps (default: all of {', '.join(cl.BOOK_SWEEPS)})"
    )
    parser.add_argument("--scale", default="laptop")
    args = parser.parse_args(argv)
    for name in args.names or list(cl.BOOK_SWEEPS):
        t0 = time.perf_counter()
        data = cl.load_cyclic_sweep(name, args.scale, allow_compute=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s ({data.label()})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
