"""A run that can be killed: the subprocess of tests/test_resume.py (not a test module).

    python tests/resume_worker.py ENGINE CHECKPOINT_DIR OUT.npz [--kill-at N] [--kill-in-write N]

(CHECKPOINT_DIR "-": no checkpoints.)

ENGINE is "cyclic" or "transfer". ``--kill-at N`` sends SIGKILL to this process when the run
reaches episode N (cyclic) or its N-th loss computation (transfer); ``--kill-in-write N``
when the N-th checkpoint write is half done. Without them the run finishes and its loss
matrix is saved to OUT.npz.
"""

from __future__ import annotations

import argparse
import os
import signal
import types

import numpy as np
import torch

import cldyn_lib as cl
from cldyn_lib import checkpoint
from cldyn_lib.data.omniglot import OmniglotTensors
from cldyn_lib.sequential import transfer_engine

CYCLIC = dict(
    n_docs=3, context=16, steps=2, epochs=4, optimizer="adam", lr=1e-3, reset_optimizer=False,
    weights="random", width=16, depth=1, heads=2, vocab="docs", device="cpu",
)  # fmt: skip
TRANSFER = dict(n_classes=4, eval_every=1, train="all", optimizer="sgd", lr=0.01)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def transfer_data() -> tuple[OmniglotTensors, cl.ConvNet]:
    g = torch.Generator().manual_seed(3)
    proto = (torch.rand((4, 1, 1, 28, 28), generator=g) > 0.8).float()
    images = (1 - proto + 0.3 * torch.rand((4, 20, 1, 28, 28), generator=g)).clamp(0, 1)
    src = cl.DataSource("omniglot", "explicit", "synthetic test fixture")
    data = OmniglotTensors(images[:, :15], images[:, 15:], np.arange(4), "evaluation", src)
    return data, cl.ConvNet(4, 10, generator=torch.Generator().manual_seed(0))


def run(engine: str, ckdir: str | None):
    """The run of ``engine`` (resumed from ``ckdir`` if it holds a checkpoint) -> arrays."""
    if engine == "cyclic":
        res = cl.run_cyclic(cl.CyclicConfig(**CYCLIC), progress=False, checkpoint_dir=ckdir)
        return {"losses": res.losses, "train_losses": res.train_losses}
    data, net = transfer_data()
    res = cl.run_transfer(cl.TransferConfig(**TRANSFER), net, data, checkpoint_dir=ckdir)
    return {"losses": res.loss, "acc": res.acc, "train_losses": res.train_loss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["cyclic", "transfer"])
    ap.add_argument("checkpoint_dir")
    ap.add_argument("out")
    ap.add_argument("--kill-at", type=int, default=-1)
    ap.add_argument("--kill-in-write", type=int, default=-1)
    args = ap.parse_args()
    if args.kill_at >= 0 and args.engine == "cyclic":
        from cldyn_lib.cyclic import engine  # transformers: only when needed (a second per process)

        train_episode = engine.train_episode

        def killing_episode(state, doc):
            if state.episode == args.kill_at:
                die()
            train_episode(state, doc)

        engine.train_episode = killing_episode
    elif args.kill_at >= 0:
        calls = [0]

        def killing_loss(*a, **kw):
            calls[0] += 1
            if calls[0] == args.kill_at:
                die()
            return torch.nn.functional.cross_entropy(*a, **kw)

        transfer_engine.F = types.SimpleNamespace(cross_entropy=killing_loss)
    if args.kill_in_write >= 0:
        writes = [0]
        write_file = checkpoint._write_file

        def killing_write(f, data):
            writes[0] += 1
            if writes[0] == args.kill_in_write:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            write_file(f, data)

        checkpoint._write_file = killing_write
    arrays = run(args.engine, None if args.checkpoint_dir == "-" else args.checkpoint_dir)
    np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
