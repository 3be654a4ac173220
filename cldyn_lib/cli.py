"""The command line: run any experiment config, or a sweep of them, headlessly.

::

    python -m cldyn_lib list
    python -m cldyn_lib run cyclic --preset ci --seed 3 --out run.npz
    python -m cldyn_lib run cyclic --help            # every field, its type, default and doc
    python -m cldyn_lib sweep cyclic --preset ci --vary seed=0:8 --executor submitit-local \\
        --out data/results/sweep-cli-cyclic-seeds.npz
    python -m cldyn_lib analyse --model ./my-model --docs notes.jsonl -T 10 -C 128 -M 5 \\
        -E 4 --seeds 5 --out report/                 # your model: see cyclic.analyse_command

Options are generated from the experiment's config dataclass: one ``--field`` per field,
documented with the field's ``#:`` comment, its type and its default (the chosen
``--preset`` changes some).
Values are validated by the config itself (a bad value exits with the config's message
before any compute). ``run`` writes one result file (``cldyn_lib.results``); a run that
diverges prints one line and writes its partial result there (exit status 1). ``sweep``
writes one packed file (:func:`cldyn_lib.launch.load_sweep` reads it back). Taught in the
appendix *Many runs at once*; ``analyse`` (:mod:`cldyn_lib.cyclic.analyse_command`) in the
appendix *Your own model*.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import re
import sys
from pathlib import Path

from . import launch
from .checkpoint import DivergedError
from .config import SCALES, ConfigError
from .cyclic.analyse_command import add_analyse_options, run_analyse_command

#: docs of fields whose class has no ``#:`` comment for them (shared names)
FALLBACK_DOCS = {
    "seed": "random seed of the run (same seed -> same numbers on a CPU)",
    "device": '"auto" (CUDA when present), "cpu" or "cuda"',
    "depth": "0 = the model's; number of transformer blocks (random and stand-in weights)",
    "heads": "0 = the model's; attention heads (random and stand-in weights)",
    "mlp_width": "0 = 4 x width; MLP hidden width (random and stand-in weights)",
    "optimizer": '"adam" or "sgd"',
    "n_seeds": "seeds 0..n-1 of every run",
    "order": '"fixed" (the paper) or "shuffled" (a new order every epoch: the null control)',
}

_FIELD_DOC = re.compile(r"^\s+(\w+)\s*:\s*[^=]+?=.*#:\s*(.+)$")


def field_docs(cls) -> dict[str, str]:
    """``{field: doc}`` from the ``#:`` comments in the class bodies of ``cls`` and its bases."""
    docs: dict[str, str] = {
        f.name: FALLBACK_DOCS[f.name] for f in dataclasses.fields(cls) if f.name in FALLBACK_DOCS
    }
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in src.splitlines():
            m = _FIELD_DOC.match(line)
            if m:
                docs[m.group(1)] = m.group(2).strip()
    return docs


def parse_value(text: str, annotation: str):
    """A command-line string as a field value: ``"none"`` -> None for optional fields,
    booleans from true/false/1/0, tuples from comma lists, numbers and strings otherwise."""
    ann = str(annotation)
    low = text.strip().lower()
    if "None" in ann and low in ("none", "null", ""):
        return None
    if ann == "bool":
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"expected true or false; got {text!r}")
    if "tuple" in ann and ("," in text or ann == "tuple"):
        return tuple(_literal(t) for t in text.split(",") if t.strip())
    if ann.startswith("int"):
        try:
            return int(text)
        except ValueError:
            return text  # the config reports the bad value
    if ann.startswith("float"):
        try:
            return float(text)
        except ValueError:
            return text
    return _literal(text) if ann != "str" else text


def _literal(text: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _fields(cls):
    return [f for f in dataclasses.fields(cls) if f.init]


def _add_field_options(parser: argparse.ArgumentParser, cls) -> None:
    docs = field_docs(cls)
    group = parser.add_argument_group(
        f"{cls.__name__} fields (the --preset overrides some defaults)"
    )
    for f in _fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "required"
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"field_{f.name}",
            metavar=str(f.type).upper().replace(" ", ""),
            default=argparse.SUPPRESS,
            help=f"{docs.get(f.name, '(no doc)')} [type {f.type}; default {default!r}]",
        )


def config_from_args(cls, scale: str, values: dict):
    """The config for ``scale`` with the given ``{field: text}`` overrides parsed and applied."""
    types = {f.name: f.type for f in _fields(cls)}
    overrides = {k: parse_value(v, types[k]) for k, v in values.items()}
    if scale in getattr(cls, "PRESETS", {}):
        return cls.preset(scale, **overrides)
    return cls(**overrides)


def parse_vary(items: list[str], cls) -> list[dict]:
    """``["seed=0:8", "lr=1e-3,1e-2"]`` -> the grid (product) of overrides, as field texts.

    ``a:b`` is the integer range a..b-1; values are separated by commas, or by semicolons
    when a value is itself a comma list (tuple fields).
    """
    names = {f.name for f in _fields(cls)}
    axes = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--vary needs field=values; got {item!r}")
        name, text = item.split("=", 1)
        name = name.strip().replace("-", "_")
        if name not in names:
            raise ConfigError(f"--vary: unknown field {name!r} for {cls.__name__}")
        if re.fullmatch(r"\d+:\d+", text.strip()):
            a, b = map(int, text.split(":"))
            vals = [str(v) for v in range(a, b)]
        else:
            vals = [v for v in text.split(";" if ";" in text else ",") if v.strip()]
        if not vals:
            raise ConfigError(f"--vary {name}: no values")
        axes.append([(name, v) for v in vals])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def build_parser() -> argparse.ArgumentParser:
    exps = launch.experiments()
    parser = argparse.ArgumentParser(
        prog="python -m cldyn_lib",
        description="Run cldyn experiments headlessly; results load in the chapters.",
        epilog="`python -m cldyn_lib run EXPERIMENT --help` lists every field of EXPERIMENT.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    add_analyse_options(sub.add_parser(
        "analyse", help="Yang et al.'s protocol on your model and documents, with a report",
        description="Fixed order against a reshuffled control, per seed, on any causal LM "
                    "and any documents; writes report.html, figures and loss matrices.",
    ))  # fmt: skip
    for command, help_text in (
        ("run", "run one config and write its result file"),
        ("sweep", "run a grid of configs on an executor and write one packed file"),
    ):
        p = sub.add_parser(command, help=help_text)
        psub = p.add_subparsers(dest="experiment", required=True)
        for name, exp in exps.items():
            q = psub.add_parser(
                name, help=exp.doc, description=f"{exp.doc} ({exp.config_class.__name__})."
            )
            q.add_argument(
                "--preset",
                default="ci",
                choices=SCALES,
                help="the scale preset the fields start from",
            )
            q.add_argument(
                "--out", default="", help="result file (.npz); default under data/results/cli/"
            )
            if command == "sweep":
                q.add_argument(
                    "--vary",
                    action="append",
                    default=[],
                    metavar="FIELD=VALUES",
                    help="values of one field (a:b = integer range; repeat for a grid)",
                )
                q.add_argument(
                    "--executor",
                    default="local",
                    choices=launch.EXECUTORS,
                    help="where the jobs run (submitit-local: submitit's local executor)",
                )
                q.add_argument(
                    "--max-workers", type=int, default=0, help="local: processes (0 = cores)"
                )
                q.add_argument(
                    "--folder", default="", help="submitit: folder for logs and job files"
                )
                q.add_argument(
                    "--timeout-min", type=int, default=60, help="submitit/slurm: job time limit"
                )
                q.add_argument(
                    "--slurm",
                    action="append",
                    default=[],
                    metavar="KEY=VALUE",
                    help="submitit/slurm parameter, e.g. slurm_partition=gpu, gpus_per_node=1",
                )
            _add_field_options(q, exp.config_class)
    return parser


def _default_out(kind: str, experiment: str, scale: str, key: str) -> Path:
    from .results import results_dir

    return results_dir() / "cli" / f"{kind}-{experiment}-{scale}-{key}.npz"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, exp in launch.experiments().items():
            print(f"{name:12s} {exp.config_class.__name__:16s} {exp.doc}")
        return 0
    if args.command == "analyse":
        try:
            return run_analyse_command(args, parse_value)
        except ConfigError as e:
            parser.exit(2, f"error: {e}\n")
    exp = launch.get(args.experiment)
    values = {k[len("field_") :]: v for k, v in vars(args).items() if k.startswith("field_")}
    try:
        if args.command == "run":
            cfg = config_from_args(exp.config_class, args.preset, values)
            out = (
                Path(args.out)
                if args.out
                else _default_out("run", exp.name, args.preset, cfg.key())
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                launch.run_job(exp.name, cfg.to_dict(), str(out), args.preset)
            except DivergedError as err:
                return diverged(err, out)
            print(out)
            return 0
        grid = parse_vary(args.vary, exp.config_class)
        configs = [config_from_args(exp.config_class, args.preset, {**values, **g}) for g in grid]
        extra = {k: v for k, v in (_kv(s) for s in args.slurm)}
        if args.executor == "local":
            executor = launch.make_executor("local", max_workers=args.max_workers or None)
        elif args.executor in ("submitit-local", "slurm"):
            executor = launch.make_executor(
                args.executor, args.folder or "submitit_logs", timeout_min=args.timeout_min, **extra
            )
        else:
            executor = launch.make_executor(args.executor, **extra)
        import hashlib

        key = hashlib.sha256("".join(c.key() for c in configs).encode()).hexdigest()[:12]
        out = Path(args.out) if args.out else _default_out("sweep", exp.name, args.preset, key)
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"{len(configs)} configs of {exp.name} on {args.executor} -> {out}", file=sys.stderr)
        launch.run_sweep(exp.name, configs, out, executor, scale=args.preset)
        if hasattr(executor, "shutdown"):
            executor.shutdown()
        print(out)
        return 0
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")


def diverged(err: DivergedError, out: Path) -> int:
    """One line for a diverged run, and its partial result written to ``out``: status 1."""
    from .results import save_result

    saved = ""
    if hasattr(err.result, "to_arrays"):
        prov = {**getattr(err.result, "provenance", {}), "diverged": err.step}
        save_result(out, err.result.to_arrays(), prov)
        saved = f"; partial result written to {out}"
    first = str(err).split("; the partial result")[0]
    print(f"error: {first}{saved}", file=sys.stderr)
    return 1


def _kv(text: str):
    if "=" not in text:
        raise ConfigError(f"expected KEY=VALUE; got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), _literal(v)
