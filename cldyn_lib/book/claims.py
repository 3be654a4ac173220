"""The claims of both papers, kept as data, and the verdicts of the reproduction-status page.

:func:`evaluate_claims` decides, for each claim of the papers kept in ``book/claims.yml``,
whether our numbers reproduce it, from the values the chapters glued (a small, safe
predicate language, :func:`safe_eval`: comparisons, arithmetic, ``and``/``or``/``not``,
``abs``/``min``/``max``).

Taught in the appendix *Reproduction status*.
"""

from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Any, Mapping

from .glue import glued_values

# ---------------------------------------------------------------- claims

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow,
}  # fmt: skip
_CMPOPS = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip
_FUNCS = {"abs": abs, "min": min, "max": max}


def safe_eval(expr: str, names: Mapping[str, Any]) -> Any:
    """Evaluate a claim predicate such as ``"adam > gd + 0.1 and rises"`` without ``eval``."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise KeyError(f"predicate {expr!r} uses {node.id!r}, which has no value")
            return names[node.id]
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp)
                if type(op) not in _CMPOPS or not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
        ):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(f"predicate {expr!r}: unsupported syntax {ast.dump(node)[:60]}")

    return ev(ast.parse(expr, mode="eval"))


def load_claims(path: str | Path) -> list[dict[str, Any]]:
    """The claims registry (``book/claims.yml``), checked for required fields."""
    import yaml

    claims = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    required = {"id", "paper", "where", "claim", "paper_value", "chapter", "values", "shown",
                "reproduced_if"}  # fmt: skip
    ids = set()
    for c in claims:
        missing = required - set(c)
        if missing:
            raise ValueError(f"claim {c.get('id', '?')} lacks {', '.join(sorted(missing))}")
        if c["id"] in ids:
            raise ValueError(f"duplicate claim id {c['id']}")
        ids.add(c["id"])
    return claims


def _evaluate(claim, values_spec, glued, chapter):
    names, missing = {}, []
    for var, key in values_spec.items():
        if key in glued:
            names[var] = glued[key]
        else:
            missing.append(f"{chapter}::{key}")
    if missing:
        raise KeyError(f"claim {claim['id']}: no glued value for {', '.join(missing)}")
    return claim["shown"].format(**names), bool(safe_eval(claim["reproduced_if"], names))


def evaluate_claims(claims, executed_dir: str | Path) -> list[dict[str, Any]]:
    """Evaluate every claim from the glued values of the executed chapters in ``executed_dir``.

    Each claim names its chapter notebook, the glued keys it reads (``values``, and
    optionally ``larger.values`` for committed larger-scale results), how to show them and
    the predicate that decides "reproduced". A missing notebook or glued value raises.
    ``values: {}`` marks a claim tested only at the larger scale; ``larger`` may override
    ``shown`` and ``reproduced_if``.
    """
    executed_dir = Path(executed_dir)
    cache: dict[str, dict[str, Any]] = {}
    rows = []
    for c in claims:
        nb = executed_dir / f"{c['chapter']}.ipynb"
        if c["chapter"] not in cache:
            if not nb.exists():
                raise FileNotFoundError(f"claim {c['id']}: executed chapter {nb} not found")
            cache[c["chapter"]] = glued_values(nb)
        glued = cache[c["chapter"]]
        if c["values"]:
            ours, ok = _evaluate(c, c["values"], glued, c["chapter"])
        else:  # a claim tested only on committed larger-scale results
            ours, ok = "not run at ci scale", False
        row = {
            "id": c["id"], "paper": c["paper"], "where": c["where"], "claim": c["claim"],
            "paper_value": c["paper_value"], "ci": ours, "ci_ok": ok,
            "larger": None, "larger_ok": None, "larger_scale": None,
        }  # fmt: skip
        if c.get("larger"):
            big = c["larger"]
            spec = {**c, **{k: big[k] for k in ("shown", "reproduced_if") if k in big}}
            row["larger"], row["larger_ok"] = _evaluate(spec, big["values"], glued, c["chapter"])
            row["larger_scale"] = big["scale"]
        row["verdict"] = verdict(row["ci_ok"], row["larger_ok"])
        rows.append(row)
    return rows


def verdict(ci_ok: bool, larger_ok: bool | None) -> str:
    if ci_ok and larger_ok in (True, None):
        return "reproduced"
    if ci_ok or larger_ok:
        return "reproduced at " + ("ci scale only" if ci_ok else "the larger scale only")
    return "not reproduced"
