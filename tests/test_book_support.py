"""Glue, reading glued values back, and the claims registry."""

import json
from pathlib import Path

import pytest
import yaml

import cldyn_lib as cl
from cldyn_lib.book.claims import safe_eval

ROOT = Path(__file__).resolve().parent.parent


def executed_notebook(path: Path, values: dict) -> Path:
    """A notebook whose outputs look like myst_nb.glue's (display=False) outputs."""
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}},
            "data": {"application/papermill.record/text/plain": repr(v)},
        }
        for k, v in values.items()
    ]
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 4}  # fmt: skip
    path.write_text(json.dumps(nb))
    return path


def test_safe_eval():
    names = {"a": 0.7, "b": 0.2, "ok": True}
    assert safe_eval("a > b + 0.1 and ok", names)
    assert not safe_eval("a < b or not ok", names)
    assert safe_eval("abs(b - a) >= 0.4 and max(a, b) == a", names)
    assert safe_eval("0 < b < a", names)
    with pytest.raises(KeyError, match="'c'"):
        safe_eval("c > 1", names)
    for evil in ("__import__('os')", "a.__class__", "[x for x in ()]", "open('f')"):
        with pytest.raises(ValueError, match="unsupported"):
            safe_eval(evil, names)


def test_glued_values_and_claims(tmp_path):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, "n": 5, "s": "text"})
    assert cl.glued_values(tmp_path / "chap.ipynb") == {
        "x": 0.42,
        "flag": True,
        "n": 5,
        "s": "text",
    }
    claim = {"id": "C1", "paper": "B", "where": "Fig. 1", "claim": "c", "paper_value": "v",
             "chapter": "chap", "values": {"x": "x", "f": "flag"}, "shown": "{x:.1f}",
             "reproduced_if": "x > 0.4 and f"}  # fmt: skip
    (row,) = cl.evaluate_claims([claim], tmp_path)
    assert row["ci"] == "0.4" and row["ci_ok"] and row["verdict"] == "reproduced"
    larger = dict(claim, larger={"scale": "laptop", "values": {"x": "n", "f": "flag"}})
    (row,) = cl.evaluate_claims([dict(larger, reproduced_if="x < 1 and f")], tmp_path)
    assert row["ci_ok"] and row["larger_ok"] is False
    assert row["verdict"] == "reproduced at ci scale only"
    only_larger = dict(claim, values={}, larger={"scale": "laptop", "values": {"n": "n"},
                                                  "shown": "n={n}", "reproduced_if": "n > 4"})  # fmt: skip
    (row,) = cl.evaluate_claims([only_larger], tmp_path)
    assert row["ci"] == "not run at ci scale" and row["ci_ok"] is False
    assert row["larger"] == "n=5" and row["larger_ok"]
    assert row["verdict"] == "reproduced at the larger scale only"
    with pytest.raises(KeyError, match="chap::missing"):
        cl.evaluate_claims([dict(claim, values={"x": "missing"})], tmp_path)
    with pytest.raises(FileNotFoundError, match="other.ipynb"):
        cl.evaluate_claims([dict(claim, chapter="other")], tmp_path)


def test_glue_refuses_nan():
    pytest.importorskip("myst_nb")
    with pytest.raises(ValueError, match="'bad' is nan"):
        cl.glue("bad", float("nan"))


def test_claims_registry_is_well_formed():
    claims = cl.load_claims(ROOT / "book" / "claims.yml")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    assert claims, "no claims registered"
    for c in claims:
        assert f"book/{c['chapter']}" in files, f"claim {c['id']}: chapter not in the toc"
        assert c["paper"] in ("A", "B")
        names = {k: 1.0 for k in c["values"]}
        if names:
            safe_eval(c["reproduced_if"], names)  # parses and uses only declared variables
        if c.get("larger"):
            big = {k: 1.0 for k in c["larger"]["values"]}
            safe_eval(c["larger"].get("reproduced_if", c["reproduced_if"]), big)
