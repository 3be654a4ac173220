"""``python -m cldyn_lib analyse``: Yang et al.'s protocol on your model and documents, one command.

::

    python -m cldyn_lib analyse --model ./my-model --docs notes.jsonl --docs-field text \\
        -T 10 -C 128 -M 5 -E 4 --seeds 5 --out report/

runs :func:`cldyn_lib.analyse` on :func:`cldyn_lib.analysis_config` of the options (every
other :class:`~cldyn_lib.CyclicConfig` field with ``--set FIELD=VALUE``), prints the time and
memory estimate first, shows a progress bar per run, and writes the report
(:func:`cldyn_lib.write_report`). Run the same command again to resume. A bad option exits
with status 2 and a message naming it, before any compute; a diverged run with status 1,
one line, and its partial result saved. :func:`analysis_command` writes the command line of
a config (the chapter shows it).

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from .. import checkpoint as ck
from ..config import ConfigError
from .analyse import analyse, analysis_config
from .config import CyclicConfig

#: option -> (config field, short form): the options of the command besides --set
OPTIONS = {
    "docs_field": "--docs-field", "n_docs": "-T", "context": "-C", "steps": "-M",
    "epochs": "-E", "weights": "--weights", "optimizer": "--optimizer", "lr": "--lr",
    "vocab": "--vocab", "frozen_blocks": "--frozen-blocks", "mask_prob": "--mask-prob",
    "window": "--window", "shift": "--shift", "doc_selection": "--doc-selection",
    "lora_rank": "--lora-rank", "device": "--device",
}  # fmt: skip
LONG = {"n_docs": "--n-docs", "context": "--context", "steps": "--steps", "epochs": "--epochs"}


def add_analyse_options(p: argparse.ArgumentParser) -> None:
    """The options of ``analyse`` (see the module docstring)."""
    p.add_argument("--model", required=True,
                   help="folder (save_pretrained) or hub id of any transformers causal LM with "
                        "its tokenizer; a Pythia name (pythia-160m) means the book's Pythia")  # fmt: skip
    p.add_argument(
        "--docs",
        default="",
        help=".jsonl, .txt (one document per line), a folder "
        "of .txt files or hf:NAME[:CONFIG[:SPLIT]]; default: the CNN/DailyMail pool",
    )
    p.add_argument("--out", required=True, help="folder of the report, runs and checkpoints")
    p.add_argument("--seeds", type=int, default=1, help="seeds per arm (>= 5 for a verdict)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed")
    p.add_argument(
        "--full-windows",
        action="store_true",
        help="refuse documents shorter than C tokens instead of padding them",
    )
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other CyclicConfig field, e.g. --set reset_optimizer=false",
    )
    helps = {
        "docs_field": "text field of each .jsonl line (or hub column) [text]",
        "n_docs": "T, documents [10]", "context": "C, tokens per document [128]",
        "steps": "M, steps per document [5]", "epochs": "E, epochs (>= 2) [4]",
        "weights": "pretrained (the folder's weights) or random (its architecture, "
                   "initialised afresh) [pretrained]",
        "optimizer": "sgd or adam [sgd]", "lr": "learning rate [sgd 1e-3, adam 1e-4]",
        "vocab": "full (every embedding row), tokenizer (its ids) or docs (ids in the "
                 "documents: fast on a CPU) [full]",
        "frozen_blocks": "freeze the embedding and the first B blocks [0]",
        "mask_prob": "mask each input token with this probability [0]",
        "window": "first or centre [first]", "shift": "window shift w (centre window) [0]",
        "doc_selection": "random (drawn with the seed) or first (file order) [random]",
        "lora_rank": "LoRA rank through peft (0 = full fine-tuning) [0]",
        "device": "auto, cpu or cuda [auto]",
    }  # fmt: skip
    for field, flag in OPTIONS.items():
        names = [flag] + ([LONG[field]] if field in LONG else [])
        p.add_argument(*names, dest=f"field_{field}", default=argparse.SUPPRESS,
                       metavar=field.upper(), help=helps[field])  # fmt: skip


def config_from_options(args: argparse.Namespace, parse_value) -> CyclicConfig:
    """The config of parsed ``analyse`` options (``parse_value(text, type)`` reads values)."""
    types = {f.name: str(f.type) for f in dataclasses.fields(CyclicConfig)}
    fields = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set needs FIELD=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in types or k in ("causal_lm", "docs", "seed", "order", "require_full"):
            raise ConfigError(f"--set: {k!r} is not a CyclicConfig field that --set may change")
        fields[k] = parse_value(v, types[k])
    for k, v in vars(args).items():
        if k.startswith("field_"):
            fields[k[6:]] = parse_value(v, types[k[6:]])
    return analysis_config(args.model, args.docs, full_windows=args.full_windows, **fields)


def analysis_command(
    config: CyclicConfig, out: str, seeds: int = 1, first_seed: int = 0, wrap: int = 0
) -> str:
    """The ``python -m cldyn_lib analyse`` line that runs ``config`` into ``out``
    (``wrap``: break it into lines of at most that many characters, ending in ``\\``)."""
    model = config.causal_lm or config.model
    base = analysis_config(model, config.docs)
    words = ["python", "-m", "cldyn_lib", "analyse", "--model", model]
    if config.docs:
        words += ["--docs", config.docs]
    for field, flag in OPTIONS.items():
        value = getattr(config, field)
        if value != getattr(base, field) or field in ("n_docs", "context", "steps", "epochs"):
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    skip = {"causal_lm", "docs", "seed", "order", "require_full", "model", *OPTIONS}
    for f in (x.name for x in dataclasses.fields(CyclicConfig)):
        if f not in skip and getattr(config, f) != getattr(base, f):
            words += ["--set", f"{f}={getattr(config, f)}"]
    if config.require_full:
        words.append("--full-windows")
    if seeds != 1:
        words += ["--seeds", str(seeds)]
    if first_seed:
        words += ["--first-seed", str(first_seed)]
    words += ["--out", str(out)]
    words = [shlex.quote(w) for w in words]
    items, i = [" ".join(words[:4])], 4
    while i < len(words):  # an option stays on the line of its value
        pair = i + 1 < len(words) and words[i].startswith("-") and not words[i + 1].startswith("-")
        items.append(" ".join(words[i : i + 1 + pair]))
        i += 1 + pair
    if not wrap:
        return " ".join(items)
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(item) + 3 > wrap:
            lines[-1] += " \\"
            lines.append("    " + item)
        else:
            lines[-1] += " " + item
    return "\n".join(lines)


def run_analyse_command(args: argparse.Namespace, parse_value) -> int:
    """Run ``analyse`` for parsed options; returns the exit status (ConfigError propagates)."""
    from .report import write_report

    config = config_from_options(args, parse_value)
    try:
        result = analyse(config, args.out, seeds=args.seeds, first_seed=args.first_seed,
                         progress=not args.no_progress, checkpoint_every=args.checkpoint_every)  # fmt: skip
    except ck.DivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    page = write_report(result)
    s = result.summary()
    print(f"verdict: {s['verdict']} (RS(E-1) fixed {s['rs_fixed']:.3f}, control "
          f"{s['rs_control']:.3f}, {s['n_seeds']} seed(s)); {result.seconds:.1f} s")  # fmt: skip
    print(page)
    return 0
