"""Glue, reading glued values back, and the claims registry."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


CLAIM = {"id": "C1", "paper": "B", "section": "S", "where": "Fig. 1", "claim": "c",
         "paper_value": "v", "chapter": "chap", "values": {"x": "x", "f": "flag"},
         "shown": "{x:.1f}", "reproduced_if": "x > 0.4 and f"}  # fmt: skip


def test_glued_values_and_predicate_claims(tmp_path):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, "n": 5, "s": "text",
                                                "lo": 0.1, "hi": 0.9})  # fmt: skip
    assert cl.glued_values(tmp_path / "chap.ipynb")["s"] == "text"
    (row,) = cl.evaluate_claims([CLAIM], tmp_path)
    assert row["scales"][0]["shown"] == "0.4" and row["verdict"] == "indicative (no seed test)"
    # a null whose values pass the same predicate makes the claim not discriminating
    (row,) = cl.evaluate_claims([dict(CLAIM, nulls={"noise": {"x": "hi"}})], tmp_path)
    assert row["verdict"] == "not discriminating" and "noise: passes" in row["scales"][0]["nulls"]
    (row,) = cl.evaluate_claims([dict(CLAIM, nulls={"noise": {"x": "lo"}})], tmp_path)
    assert row["verdict"] == "indicative (no seed test)"
    # a null given as samples passes when the predicate holds in more than 5% of them
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, "hi": 0.9, "lo": 0.1,
                                                "few": [0.1] * 19 + [0.9], "many": [0.1, 0.9]})  # fmt: skip
    (row,) = cl.evaluate_claims([dict(CLAIM, nulls={"chance": {"x": "few"}})], tmp_path)
    assert (
        row["verdict"] == "indicative (no seed test)" and "fails in 5%" in row["scales"][0]["nulls"]
    )
    (row,) = cl.evaluate_claims([dict(CLAIM, nulls={"chance": {"x": "many"}})], tmp_path)
    assert row["verdict"] == "not discriminating" and "passes in 50%" in row["scales"][0]["nulls"]
    (row,) = cl.evaluate_claims([dict(CLAIM, reproduced_if="x > 0.5")], tmp_path)
    assert row["verdict"] == "inconclusive (no seed test)"
    with pytest.raises(KeyError, match="chap::missing"):
        cl.evaluate_claims([dict(CLAIM, values={"x": "missing"})], tmp_path)
    with pytest.raises(FileNotFoundError, match="other.ipynb"):
        cl.evaluate_claims([dict(CLAIM, chapter="other")], tmp_path)


def test_a_claim_reads_an_arm_from_another_chapter(tmp_path):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True})
    executed_notebook(tmp_path / "other.ipynb", {"x": 0.9, "arm": [-0.5, -0.4, -0.6, -0.5, -0.7]})
    claim = dict(CLAIM, values={"x": "other::x", "f": "flag"})
    (row,) = cl.evaluate_claims([claim], tmp_path)
    assert row["scales"][0]["shown"] == "0.9"  # the other chapter's x, not chap's 0.42
    test = {"effect": "other::arm", "reference": 0.0, "delta": 0.0}
    (row,) = cl.evaluate_claims([dict(CLAIM, test=test)], tmp_path)
    assert row["verdict"] == "contradicted", row
    with pytest.raises(KeyError, match="other::missing"):
        cl.evaluate_claims([dict(CLAIM, values={"x": "other::missing"})], tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.ipynb"):
        cl.evaluate_claims([dict(CLAIM, values={"x": "absent::x"})], tmp_path)


SEEDS = {"eff5": [0.5, 0.6, 0.55, 0.7, 0.65], "ctl5": [0.1, 0.2, 0.15, 0.1, 0.2],
         "noise5": [0.45, 0.5, 0.6, 0.7, 0.66], "eff3": [0.5, 0.6, 0.55], "ctl3": [0.1, 0.2, 0.1],
         "low5": [0.0, 0.1, 0.05, 0.0, 0.1], "bad": [0.1, None]}  # fmt: skip


@pytest.mark.parametrize(
    "test, verdict",
    [
        ({"effect": "eff5", "reference": "ctl5", "delta": 0.1}, "reproduced"),
        ({"effect": "eff3", "reference": "ctl3", "delta": 0.1}, "indicative (3 seeds)"),
        ({"effect": "low5", "reference": "ctl5", "delta": 0.1}, "contradicted"),
        # a constant reference that the noise arm also clears: the predicate does not discriminate
        ({"effect": "eff5", "reference": 0.2, "delta": 0.1, "nulls": {"noise": "noise5"}},
         "not discriminating"),
        ({"effect": "eff5", "reference": 0.2, "delta": 0.1, "nulls": {"control": "ctl5"}},
         "reproduced"),
        ({"effect": "eff5", "reference": "ctl5", "delta": 0.1,
          "must_hold_in": {"one head per task": {"effect": "low5", "reference": "ctl5"}}},
         "confounded (one head per task)"),
        ({"effect": "ctl5", "reference": "eff5", "direction": "less", "delta": 0.1}, "reproduced"),
        # equivalence: every seed within the margin, five seeds reach the level (TOST)
        ({"effect": "eff5", "reference": "noise5", "delta": 0.2, "kind": "equivalence"},
         "reproduced"),
        # three seeds all outside the margin: too few to call the difference significant
        ({"effect": "eff3", "reference": "ctl3", "delta": 0.2, "kind": "equivalence"},
         "inconclusive"),
    ],
)  # fmt: skip
def test_claims_with_a_test_over_seeds(tmp_path, test, verdict):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, **SEEDS})
    (row,) = cl.evaluate_claims([dict(CLAIM, test=test)], tmp_path)
    assert row["verdict"] == verdict, row
    word = "within" if test.get("kind") == "equivalence" else "beyond"
    assert f"seeds {word}" in row["scales"][0]["test"]


def test_claim_scales_nulls_and_overrides(tmp_path):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, **SEEDS})
    good = {"effect": "eff5", "reference": "ctl5", "delta": 0.1}
    larger = {"scale": "laptop", "values": {"x": "x", "f": "flag"}, "test": good}
    small = {"effect": "eff3", "reference": "ctl3", "delta": 0.1}
    (row,) = cl.evaluate_claims([dict(CLAIM, test=small, larger=larger)], tmp_path)
    assert [s["scale"] for s in row["scales"]] == ["ci", "laptop"]
    assert row["verdict"] == "reproduced at the larger scale only"
    (row,) = cl.evaluate_claims([dict(CLAIM, values={}, larger=larger)], tmp_path)
    assert row["verdict"] == "reproduced" and len(row["scales"]) == 1
    for field, word in (("confound", "confounded"), ("contradicted_by", "contradicted"),
                        ("not_testable", "not testable at this scale")):  # fmt: skip
        (row,) = cl.evaluate_claims([dict(CLAIM, test=good, **{field: "why"})], tmp_path)
        assert row["verdict"] == f"{word} (why)"
    # a measured confound: confounded only while its predicate holds on the glued values
    for when, confounded in (("x > 0.4", True), ("x > 0.5", False)):
        check = {"values": {"x": "x"}, "when": when}
        (row,) = cl.evaluate_claims([dict(CLAIM, test=good, confound="moving control",
                                          confound_if=check)], tmp_path)  # fmt: skip
        assert row["confound_check"] is confounded
        assert row["verdict"] == ("confounded (moving control)" if confounded else "reproduced")
    with pytest.raises(ValueError, match="null 'n' .* not finite"):
        cl.evaluate_claims([dict(CLAIM, test=dict(good, nulls={"n": "bad"}))], tmp_path)
    rows = cl.evaluate_claims([dict(CLAIM, test=good)], tmp_path)
    cl.check_verdicts(rows)
    rows[0]["scales"][0]["null_passed"] = True  # as if a null had passed: the build must fail
    with pytest.raises(ValueError, match="C1 is called 'reproduced' but a null passes"):
        cl.check_verdicts(rows)
    rows[0]["verdict"] = "probably fine"
    with pytest.raises(ValueError, match="not a verdict"):
        cl.check_verdicts(rows)
    counts = cl.verdict_counts(cl.evaluate_claims([dict(CLAIM, test=good), CLAIM], tmp_path))
    assert counts["reproduced"] == 1 and counts["indicative"] == 1 and sum(counts.values()) == 2


def test_load_claims_refuses_bad_entries(tmp_path):
    def write(claim):
        (tmp_path / "c.yml").write_text(yaml.safe_dump([claim]))
        return tmp_path / "c.yml"

    assert cl.load_claims(write(CLAIM))[0]["id"] == "C1"
    with pytest.raises(ValueError, match="lacks section"):
        cl.load_claims(write({k: v for k, v in CLAIM.items() if k != "section"}))
    with pytest.raises(ValueError, match="unknown field"):
        cl.load_claims(write(dict(CLAIM, verdict="reproduced")))
    with pytest.raises(ValueError, match="C1: confound_if needs a confound text"):
        cl.load_claims(write(dict(CLAIM, confound_if={"values": {}, "when": "True"})))
    with pytest.raises(ValueError, match="C1: bad test: direction"):
        cl.load_claims(write(dict(CLAIM, test={"effect": "e", "direction": "up"})))


def test_glue_per_seed_lists():
    assert cl.book.glue.per_seed_list(np.array([1, np.nan, 2.5])) == [1.0, None, 2.5]


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


def test_status_tables_group_escape_and_link(tmp_path):
    executed_notebook(tmp_path / "chap.ipynb", {"x": 0.42, "flag": True, **SEEDS})
    claims = [dict(CLAIM, test={"effect": "eff5", "reference": "ctl5", "delta": 0.1}, anchor="sec-a"),
              dict(CLAIM, id="C2", claim="a < b & c", section="T"),
              dict(CLAIM, id="C3", paper="A", section="U")]  # fmt: skip
    rows = cl.evaluate_claims(claims, tmp_path)
    page = cl.status_html(rows).data
    assert page.count('class="status-paper"') == 2 and page.count('class="status-section"') == 3
    assert '<a href="chap.html#sec-a"><b>C1</b></a> (Yang et al., Fig. 1)' in page
    assert "a &lt; b &amp; c" in page and "a < b & c" not in page
    frame = cl.status_table(rows)
    assert list(frame["verdict"]) == ["reproduced", "indicative (no seed test)"] * 1 + [
        "indicative (no seed test)"
    ]
    assert cl.verdict_count_table(cl.verdict_counts(rows)).set_index("verdict")[
        "claims"
    ].to_dict() == {"reproduced": 1, "indicative": 2}


def test_build_book_orders_chapters_longest_first_and_checks_jobs():
    """`make book` runs two chapters at once; the last build's longest chapter starts first,
    a chapter never timed (a new one) before all of them, and --jobs must be at least 1."""
    sys.path.insert(0, str(ROOT / "tools"))
    import build_book as bb

    nbs = [bb.SRC / "book" / f"{n}.ipynb" for n in ("a", "b", "c", "new")]
    times = {"book/a.ipynb": 3.0, "book/b.ipynb": 30.0, "book/c.ipynb": 10.0}
    assert [nb.stem for nb in bb.longest_first(nbs, times)] == ["new", "b", "c", "a"]
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        bb.execute(nbs, "ci", jobs=0)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--jobs", "0"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "--jobs must be at least 1" in r.stderr
