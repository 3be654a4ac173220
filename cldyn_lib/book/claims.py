"""The claims of both papers, kept as data, and the verdicts of the reproduction-status page.

:func:`evaluate_claims` decides each claim of the papers kept in ``book/claims.yml`` from
the values the chapters glued. A claim's **test** (declared before the run) is a contrast
over seeds (:mod:`cldyn_lib.stats`): the per-seed statistic of the effect arm against a
matched reference arm or a constant, with a direction, a minimum effect ``delta`` and a
level ``alpha``, and the same test with each **null** arm in place of the effect (a claim
that a null passes is "not discriminating"). A claim without per-seed values is decided by
its predicate over glued numbers (a small, safe language, :func:`safe_eval`: comparisons,
arithmetic, ``and``/``or``/``not``, ``abs``/``min``/``max``), evaluated also on the values of
each null arm; with no uncertainty it is at best "indicative". ``confound``,
``contradicted_by`` and ``not_testable`` name what the chapters found and override the
numbers: no claim is "reproduced" while a chapter finding contradicts it. A confound may be
a measurement instead: ``confound_if: {values: {...}, when: "<predicate>"}`` makes the claim
confounded only while the predicate holds on the glued values (e.g. a control that is
still learning at the fork).

Taught in the appendix *Reproduction status*.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
from pathlib import Path
from typing import Any, Mapping

from ..stats import Criterion, combine_scales, decide, verdict_of
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
    required = {"id", "paper", "section", "where", "claim", "paper_value", "chapter", "values",
                "shown", "reproduced_if"}  # fmt: skip
    ids = set()
    for c in claims:
        missing = required - set(c)
        if missing:
            raise ValueError(f"claim {c.get('id', '?')} lacks {', '.join(sorted(missing))}")
        if c["id"] in ids:
            raise ValueError(f"duplicate claim id {c['id']}")
        ids.add(c["id"])
        for spec in [c, c.get("larger") or {}]:
            if "test" in spec:
                criterion(spec["test"], c["id"])  # a bad criterion fails before any run
        check = c.get("confound_if")
        if check is not None and (
            not c.get("confound") or not isinstance(check, dict) or set(check) != {"values", "when"}
        ):
            raise ValueError(
                f"claim {c['id']}: confound_if needs a confound text and exactly "
                "'values' and 'when'"
            )
        unknown = set(c) - required - OPTIONAL
        if unknown:
            raise ValueError(f"claim {c['id']}: unknown field(s) {', '.join(sorted(unknown))}")
    return claims


#: fields a claim may have besides the required ones
OPTIONAL = {"larger", "test", "nulls", "anchor", "confound", "confound_if", "contradicted_by",
            "not_testable"}  # fmt: skip


def criterion(test: dict, claim_id: str = "?") -> Criterion:
    """The :class:`~cldyn_lib.stats.Criterion` of a claim's ``test`` block."""
    try:
        return Criterion(
            **{k: test[k] for k in ("kind", "direction", "delta", "alpha") if k in test}
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"claim {claim_id}: bad test: {err}") from None


class _Glued(Mapping):
    """The glued values one claim reads: its own chapter's ``key``, or ``other::key`` from
    the executed chapter ``other`` (e.g. an arm that another chapter runs)."""

    def __init__(self, chapter: str, load):
        self.chapter, self._load = chapter, load

    def _split(self, key: str) -> tuple[str, str]:
        chapter, _, k = key.rpartition("::")
        return chapter or self.chapter, k

    def __getitem__(self, key: str) -> Any:
        chapter, k = self._split(key)
        return self._load(chapter)[k]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        chapter, k = self._split(key)
        return k in self._load(chapter)

    def __iter__(self):
        return iter(self._load(self.chapter))

    def __len__(self) -> int:
        return len(self._load(self.chapter))


def _lookup(claim, key, glued, chapter):
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return key
    if key not in glued:
        raise KeyError(f"claim {claim['id']}: no glued value for {chapter}::{key}")
    return glued[key]


def _names(claim, spec, glued, chapter):
    return {var: _lookup(claim, key, glued, chapter) for var, key in spec.items()}


def _per_seed(claim, key, glued, chapter, what):
    import numpy as np

    raw = _lookup(claim, key, glued, chapter)
    if isinstance(raw, str):
        raise ValueError(f"claim {claim['id']}: {what} {chapter}::{key} is not numbers: {raw!r}")
    v = np.asarray([np.nan if x is None else x for x in np.atleast_1d(raw)], dtype=float)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"claim {claim['id']}: {what} {chapter}::{key} is not finite: {v}")
    return v


def _seed_test(claim, test, glued, chapter):
    """Outcomes of the effect arm and of each null (same test, null in place of the effect)."""
    crit = criterion(test, claim["id"])
    ref = test.get("reference", 0.0)
    ref = _per_seed(claim, ref, glued, chapter, "reference") if isinstance(ref, str) else ref
    effect = decide(_per_seed(claim, test["effect"], glued, chapter, "effect"), ref, crit)
    nulls = {
        name: decide(_per_seed(claim, key, glued, chapter, f"null {name!r}"), ref, crit)
        for name, key in (test.get("nulls") or {}).items()
    }
    extra = {}
    for name, spec in (test.get("must_hold_in") or {}).items():
        arm = dataclasses.replace(crit, direction=spec.get("direction", crit.direction),
                                  delta=spec.get("delta", crit.delta))  # fmt: skip
        ref_x = spec.get("reference", 0.0)
        if isinstance(ref_x, str):
            ref_x = _per_seed(claim, ref_x, glued, chapter, f"arm {name!r}")
        extra[name] = decide(_per_seed(claim, spec["effect"], glued, chapter, f"arm {name!r}"),
                             ref_x, arm)  # fmt: skip
    return crit, effect, nulls, extra


def _fmt_outcome(o, crit):
    if o.n == 0:
        return "no finite values"
    d = "d" if crit.direction == "greater" else "d (reference minus effect)"
    if crit.kind == "equivalence":
        return (f"{d} = {o.mean:+.3f} [{o.low:+.3f}, {o.high:+.3f}], {o.k}/{o.n} seeds "
                f"within +-{crit.delta:g}, p = {o.p:.3g}")  # fmt: skip
    return (f"{d} = {o.mean:+.3f} [{o.low:+.3f}, {o.high:+.3f}], {o.k}/{o.n} seeds "
            f"beyond {crit.delta:g}, p = {o.p:.3g}")  # fmt: skip


def _scale_row(claim, spec, glued, chapter):
    """(shown, verdict, test text, null text, whether a null passed) of a claim at one scale."""
    names = _names(claim, spec["values"], glued, chapter)
    shown = claim["shown"] if "shown" not in spec else spec["shown"]
    shown = shown.format(**names)
    predicate = spec.get("reproduced_if", claim["reproduced_if"])
    if "test" in spec:
        crit, effect, nulls, extra = _seed_test(claim, spec["test"], glued, chapter)
        verdict = verdict_of(effect, nulls, extra)
        null_passed = any(v.outcome == "passes" for v in nulls.values())
        test_text = _fmt_outcome(effect, crit)
        null_text = "; ".join(f"{k}: {v.outcome} (p = {v.p:.2g})" for k, v in nulls.items())
        null_text += "; " if null_text and extra else ""
        null_text += "; ".join(f"{k} (must hold): {v.outcome}" for k, v in extra.items())
        return shown, verdict, test_text, null_text or "none named", null_passed
    ok = bool(safe_eval(predicate, names))
    null_text, passing = [], []
    for name, null in (spec.get("nulls") or {}).items():
        share = _null_share(predicate, names, _names(claim, null, glued, chapter))
        if share > NULL_ALPHA:
            passing.append(name)
        null_text.append(f"{name}: {'passes' if share > NULL_ALPHA else 'fails'}"
                         + (f" in {share:.0%} of its samples" if 0 < share < 1 else ""))  # fmt: skip
    if ok and passing:
        verdict = "not discriminating"
    elif ok:
        verdict = "indicative (no seed test)"
    else:
        verdict = "inconclusive (no seed test)"
    text = f"{predicate}: {'holds' if ok else 'fails'}"
    return shown, verdict, text, "; ".join(null_text) or "none named", bool(passing)


#: a null "passes" a one-run predicate when it holds in more than this share of its samples
NULL_ALPHA = 0.05


def _null_share(predicate, names, null):
    """Share of a null's samples on which ``predicate`` holds (a scalar null: 0 or 1). A null
    given as glued lists (seeds, or random maps) is evaluated sample by sample."""
    lists = {k: v for k, v in null.items() if isinstance(v, list)}
    if not lists:
        return float(bool(safe_eval(predicate, {**names, **null})))
    n = {len(v) for v in lists.values()}
    if len(n) != 1 or 0 in n:
        raise ValueError(f"null samples of unequal or zero length: {sorted(n)}")
    hits = [bool(safe_eval(predicate, {**names, **null, **{k: v[i] for k, v in lists.items()}}))
            for i in range(n.pop())]  # fmt: skip
    return sum(hits) / len(hits)


def evaluate_claims(claims, executed_dir: str | Path) -> list[dict[str, Any]]:
    """Evaluate every claim from the glued values of the executed chapters in ``executed_dir``.

    Each claim names its chapter notebook, the glued keys it reads (``values``, and
    optionally ``larger.values`` for committed larger-scale results), how to show them, its
    per-seed ``test`` (or, without one, the predicate ``reproduced_if``) and its ``nulls``.
    A missing notebook or glued value raises, and so does a null or effect that is not
    finite. ``values: {}`` marks a claim not run at ci scale; ``larger`` may override
    ``shown``, ``reproduced_if``, ``test`` and ``nulls``.
    """
    executed_dir = Path(executed_dir)
    cache: dict[str, dict[str, Any]] = {}

    def load(chapter, claim_id):
        if chapter not in cache:
            nb = executed_dir / f"{chapter}.ipynb"
            if not nb.exists():
                raise FileNotFoundError(f"claim {claim_id}: executed chapter {nb} not found")
            cache[chapter] = glued_values(nb)
        return cache[chapter]

    rows = []
    for c in claims:
        glued = _Glued(c["chapter"], lambda ch, i=c["id"]: load(ch, i))
        row = {k: c[k] for k in ("id", "paper", "section", "where", "claim", "paper_value",
                                 "chapter")}  # fmt: skip
        row["anchor"] = c.get("anchor")
        scales, verdicts = [], []
        if c["values"]:
            scales.append(("ci", {k: c[k] for k in ("values", "test", "nulls") if k in c}))
        if c.get("larger"):
            scales.append((c["larger"]["scale"], c["larger"]))
        row["scales"] = []
        for scale, spec in scales:
            shown, v, test_text, null_text, null_passed = _scale_row(c, spec, glued, c["chapter"])
            row["scales"].append({"scale": scale, "shown": shown, "verdict": v, "test": test_text,
                                  "nulls": null_text, "null_passed": null_passed})  # fmt: skip
            verdicts.append(v)
        verdict = combine_scales(verdicts)
        row["confound_check"] = _confound_check(c, glued)
        if c.get("not_testable"):
            verdict = f"not testable at this scale ({c['not_testable']})"
        elif c.get("confound") and row["confound_check"] in (None, True):
            verdict = f"confounded ({c['confound']})"
        elif c.get("contradicted_by"):
            verdict = f"contradicted ({c['contradicted_by']})"
        row["verdict"] = verdict
        rows.append(row)
    return rows


def _confound_check(claim, glued):
    """None without ``confound_if``; else whether its predicate holds (the confound is there)."""
    check = claim.get("confound_if")
    if check is None:
        return None
    names = _names(claim, check["values"], glued, claim["chapter"])
    return bool(safe_eval(check["when"], names))


def check_verdicts(rows) -> None:
    """Fail (ValueError) if a claim is called reproduced while a null passes its test at some
    scale, or if a verdict is not one of :data:`~cldyn_lib.stats.VERDICTS`: the status page
    runs this, so the book build fails. Taught in the appendix *Reproduction status*."""
    from ..stats import verdict_word

    for r in rows:
        verdict_word(r["verdict"])
        if r["verdict"].startswith("reproduced") and any(s["null_passed"] for s in r["scales"]):
            raise ValueError(
                f"claim {r['id']} is called {r['verdict']!r} but a null passes its test"
            )


def verdict_counts(rows) -> dict[str, int]:
    """How many claims have each verdict word (:data:`~cldyn_lib.stats.VERDICTS` order)."""
    from ..stats import VERDICTS, verdict_word

    words = [verdict_word(r["verdict"]) for r in rows]
    return {v: words.count(v) for v in VERDICTS}
