"""Bitwise fingerprints of every engine at its ci preset (CPU, float32, one thread).

    python tools/engine_fingerprints.py --write tests/fixtures/engine_fingerprints.json
    python tools/engine_fingerprints.py --check tests/fixtures/engine_fingerprints.json

Each case runs one engine (cyclic runs and variants, batched seeds, probes, the vision runs,
pre-training in each mode, transfer and batched transfer, zap divergence, the optimizer
studies, the toy model) and records the sha256 of every array it returns. ``--check``
reruns them and fails on any difference: a refactoring that claims "behaviour unchanged"
must leave every hash as it was. Caches are redirected to a temporary folder, so nothing
is loaded from an earlier run. About two minutes on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def api():
    """The engines, by the names this check uses (the one place that follows the layout)."""
    import cldyn_lib as cl

    return cl


def digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:20]


def state_digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def cases(cl):
    """name -> function returning {array name: array or digest string}."""

    def cyc(**kw):
        def run():
            r = cl.run_cyclic(cl.CyclicConfig.preset("ci", **kw), progress=False)
            return {"losses": r.losses, "train_losses": r.train_losses}

        return run

    def seeds_batched():
        rs = cl.run_seeds(cl.CyclicConfig.preset("ci"), (0, 1, 2), batched=True)
        return {f"losses{k}": r.losses for k, r in enumerate(rs)}

    def probes():
        return dict(cl.probe_study(cl.CyclicConfig.preset("ci", seed=0)))

    def vision(model, **kw):
        def run():
            r = cl.run_vision(cl.vision_preset("ci", model, **kw), progress=False)
            return {"losses": r.losses}

        return run

    def pretrain(mode):
        def run():
            r = cl.pretrain(cl.PretrainConfig.preset("ci", mode=mode))
            return {"losses": r.losses, "model": state_digest(r.model)}

        return run

    def pre_model(mode="iid"):
        return cl.load_or_pretrain(cl.PretrainConfig.preset("ci", mode=mode)).model

    def transfer(**kw):
        def run():
            r = cl.run_transfer(cl.TransferConfig.preset("ci", **kw), pre_model())
            return {"acc": r.acc, "loss": r.loss, "train_loss": r.train_loss}

        return run

    def transfer_batched():
        base = cl.TransferConfig.preset("ci", train="all", lr=1e-3)
        cfgs = [base.replace(seed=s, lr=lr) for s in (0, 1) for lr in (1e-3, 1e-2)]
        rs = cl.run_transfer_batched(cfgs, pre_model())
        return {f"acc{k}": r.acc for k, r in enumerate(rs)} | {
            f"loss{k}": r.loss for k, r in enumerate(rs)
        }

    def divergence(**kw):
        def run():
            pcfg = cl.PretrainConfig.preset("ci", mode="zapped_iid")
            model = cl.load_or_pretrain(pcfg).model
            data = cl.load_pretrain_data(pcfg)
            r = cl.run_divergence(cl.DivergenceConfig.preset("ci", **kw), model, data)
            return r.to_arrays()

        return run

    def study(fn, cfg):
        def run():
            return dict(fn(cfg))

        return run

    def toy(**kw):
        def run():
            r = cl.run_toy(cl.ToyConfig.preset("ci", **kw))
            return r.to_arrays()

        return run

    studies = cl.open_question_studies("ci")
    return {
        "cyclic": cyc(),
        "cyclic_shuffled": cyc(order="shuffled"),
        "cyclic_sgd": cyc(optimizer="sgd", lr=0.03),
        "cyclic_adam_kept": cyc(reset_optimizer=False),
        "cyclic_centre_shift_mask": cyc(window="centre", shift=8, mask_prob=0.1),
        "cyclic_frozen_partial": cyc(frozen_blocks=1, order="partial", shuffle_n=4),
        "cyclic_standin": cyc(weights="standin", vocab="common", width=0, depth=0, heads=0),
        "cyclic_seeds_batched": seeds_batched,
        "probes": probes,
        "vision_vit": vision("vit"),
        "vision_cnn_shuffled": vision("cnn", order="shuffled"),
        "vision_igpt": vision("igpt"),
        **{f"pretrain_{m}": pretrain(m) for m in ("iid", "zapped_iid", "asb", "meta_asb")},
        "transfer_seq_head": transfer(),
        "transfer_iid_all": transfer(protocol="iid", train="all", lr=1e-3),
        "transfer_sgd_epochs": transfer(optimizer="sgd", lr=1e-2, epochs=2, train="all"),
        "transfer_fisher": transfer(optimizer="fisher", lr=1e-4),
        "transfer_batched": transfer_batched,
        "divergence": divergence(),
        "divergence_sgd": divergence(optimizer="sgd", lr=0.1),
        "sequence_study": study(cl.run_sequence_study, cl.SequenceStudy.preset("ci")),
        "boundary_study": study(cl.run_boundary_study, studies["boundary"]),
        "variants_sweep": study(cl.run_sequence_sweep, studies["variants"]),
        "toy_reflect": toy(),
        "toy_identity": toy(target="identity", dim=1000, lr=0.001),
        "toy_shuffled": toy(order="shuffled"),
    }


def fingerprints(only=None) -> dict:
    cl = api()
    out = {}
    for name, fn in cases(cl).items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        arrays = fn()
        out[name] = {k: (v if isinstance(v, str) else digest(v)) for k, v in sorted(arrays.items())}
        print(f"{name:28s} {len(arrays):3d} arrays  {time.perf_counter() - t0:6.1f} s", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="JSON")
    g.add_argument("--check", metavar="JSON")
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CLDYN_CACHE"] = tmp  # nothing comes from an earlier run's cache
        os.environ["CLDYN_RESULTS"] = str(Path(tmp) / "results")
        got = fingerprints(args.only)
    if args.write:
        Path(args.write).write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.write}: {len(got)} cases")
        return 0
    want = json.loads(Path(args.check).read_text())
    bad = [
        f"{case}.{k}: {want.get(case, {}).get(k)} -> {v}"
        for case, arrays in got.items()
        for k, v in arrays.items()
        if want.get(case, {}).get(k) != v
    ]
    missing = [c for c in want if c not in got and (not args.only or c in args.only)]
    for line in bad + [f"{c}: not run" for c in missing]:
        print("DIFFERS", line)
    print(f"{len(got)} cases, {sum(map(len, got.values()))} arrays: "
          + ("all bitwise equal" if not (bad or missing) else f"{len(bad)} differ"))  # fmt: skip
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main())
