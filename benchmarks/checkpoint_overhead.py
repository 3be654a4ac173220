"""Size and time of checkpoints at a scale, for both engines.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/checkpoint_overhead.py [--scale ci]

Runs paper B's cyclic engine (``CyclicConfig.preset(scale)``, a checkpoint every epoch) and
paper A's transfer engine (``TransferConfig.preset(scale)`` on the ``PretrainConfig`` model
of that scale, a checkpoint every evaluation), each once without and once with checkpoints
into a temporary folder, checks that the loss matrices are bitwise equal, and prints the
checkpoint size, the time per checkpoint and that time as a fraction of an epoch
(cyclic) or of the interval between evaluations (transfer).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cldyn_lib as cl
from cldyn_lib import checkpoint


def measure(name, run_plain, run_ckpt, intervals):
    t0 = time.perf_counter()
    plain = run_plain()
    t_plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        saver_box = {}
        real = checkpoint.Checkpointer

        class Spy(real):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                saver_box["s"] = self

        checkpoint.Checkpointer = Spy
        try:
            t0 = time.perf_counter()
            with_ck = run_ckpt(d)
            t_ck = time.perf_counter() - t0
        finally:
            checkpoint.Checkpointer = real
    s = saver_box["s"]
    same = plain.tobytes() == with_ck.tobytes()
    per = sum(s.seconds) / len(s.seconds)
    print(
        f"{name}: {len(s.sizes)} checkpoints of {max(s.sizes) / 2**10:.0f} KiB, "
        f"{per * 1e3:.1f} ms each = {100 * per / (t_plain / intervals):.1f}% of an interval "
        f"({t_plain / intervals * 1e3:.0f} ms); run {t_plain:.2f} s plain, {t_ck:.2f} s "
        f"with checkpoints; bitwise equal: {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="ci")
    scale = ap.parse_args().scale
    cfg = cl.CyclicConfig.preset(scale)
    cl.run_cyclic(cfg.replace(epochs=1), progress=False)  # warm-up (caches, first calls)
    measure(
        f"cyclic {scale}",
        lambda: cl.run_cyclic(cfg, progress=False).losses,
        lambda d: cl.run_cyclic(cfg, progress=False, checkpoint_dir=d).losses,
        cfg.epochs,
    )
    pcfg = cl.PretrainConfig.preset(scale)
    model = cl.load_or_pretrain(pcfg).model
    tcfg = cl.TransferConfig.preset(scale)
    data = cl.load_transfer_data(tcfg)
    n_evals = len(cl.sequential.transfer.eval_schedule(tcfg)[0]) - 1
    measure(
        f"transfer {scale}",
        lambda: cl.run_transfer(tcfg, model, data).loss,
        lambda d: cl.run_transfer(tcfg, model, data, checkpoint_dir=d).loss,
        n_evals,
    )


if __name__ == "__main__":
    main()
