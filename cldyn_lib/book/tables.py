"""The tables of the two pages that read the executed chapters, as pandas DataFrames.

* :func:`status_html`, :func:`status_table` and :func:`verdict_count_table`: one row per
  claim of the papers, from
  :func:`~cldyn_lib.book.claims.evaluate_claims`. Taught in the appendix *Reproduction
  status*.
* :func:`execution_records` and :func:`timing_table`: how long each executed chapter took,
  read from its papermill record. Taught in the appendix *Execution times*.

``pandas`` is imported only when a table is built.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Iterable, Mapping


def _text(value: Any) -> str:
    """A cell's text: empty for None, on one line."""
    return "" if value is None else str(value).replace("\n", " ")


PAPERS = {"B": "Yang, Jones, Mozer and Ren (2024)", "A": "Frati, Traft, Clune and Cheney (2025)"}
#: how a row cites its paper's section or figure ("Yang et al., Sec. 4.4, Fig. 10b")
SHORT = {"B": "Yang et al.", "A": "Frati et al."}


def _cell(*parts: str) -> str:
    """HTML-escaped text parts joined by line breaks (the table is rendered as HTML)."""
    return "<br>".join(html.escape(_text(p)) for p in parts if _text(p))


def status_table(rows: Iterable[Mapping[str, Any]]):
    """The claims table as one pandas DataFrame, one row per claim (paper, section, claim,
    the paper's value, ours at each scale, the tests and nulls, the verdict): for analysis;
    the page shows :func:`status_html`.

    ``rows`` are the rows of :func:`~cldyn_lib.book.claims.evaluate_claims`. Taught in the
    appendix *Reproduction status*.
    """
    import pandas as pd

    records = []
    for r in rows:
        records.append({
            "paper": PAPERS.get(r["paper"], r["paper"]), "section": r["section"], "id": r["id"],
            "claim": _text(r["claim"]), "paper's value": _text(r["paper_value"]),
            "ours": "; ".join(f"{s['scale']}: {_text(s['shown'])}" for s in r["scales"]),
            "tests": "; ".join(f"{s['scale']}: {_text(s['test'])} (nulls: {_text(s['nulls'])})"
                               for s in r["scales"]),
            "verdict": r["verdict"],
        })  # fmt: skip
    return pd.DataFrame(records)


def status_html(rows: Iterable[Mapping[str, Any]]):
    """The claims table of the status page, as HTML: grouped by paper and by the chapter
    (section) that tests each claim, with a header row per group; per claim its text (linked
    to the chapter) and the paper's value, ours at each scale, the test over seeds with what
    each null gave, and the verdict. Taught in the appendix *Reproduction status*."""
    from IPython.display import HTML

    e = html.escape
    out = ['<table class="status-table"><colgroup><col class="c-claim"><col class="c-ours">'
           '<col class="c-test"><col class="c-verdict"></colgroup>'
           "<thead><tr><th>claim (and the paper's value)</th><th>ours</th>"
           "<th>test over seeds; nulls</th><th>verdict</th></tr></thead><tbody>"]  # fmt: skip
    group = None
    for r in rows:
        paper = PAPERS.get(r["paper"], r["paper"])
        if (paper, r["section"]) != group:
            if group is None or paper != group[0]:
                out.append(f'<tr class="status-paper"><th colspan="4">{e(paper)}</th></tr>')
            out.append(
                f'<tr class="status-section"><th colspan="4">{e(_text(r["section"]))}</th></tr>'
            )
            group = (paper, r["section"])
        href = f"{r['chapter']}.html" + (f"#{r['anchor']}" if r.get("anchor") else "")
        claim = (f'<a href="{e(href)}"><b>{e(r["id"])}</b></a> '
                 f"({SHORT.get(r['paper'], r['paper'])}, {e(_text(r['where']))}): "
                 f"{e(_text(r['claim']))}<br><i>paper: {e(_text(r['paper_value']))}</i>")  # fmt: skip
        ours = "<br>".join(f"<i>{e(s['scale'])}</i>: {e(_text(s['shown']))}" for s in r["scales"])
        tests = "<br>".join(f"<i>{e(s['scale'])}</i>: {e(_text(s['test']))}; nulls: "
                            f"{e(_text(s['nulls']))} &rarr; {e(s['verdict'])}"
                            for s in r["scales"])  # fmt: skip
        out.append(f"<tr><td>{claim}</td><td>{ours or 'not run'}</td><td>{tests or 'none'}</td>"
                   f"<td><b>{e(r['verdict'])}</b></td></tr>")  # fmt: skip
    out.append("</tbody></table>")
    return HTML("".join(out))


def verdict_count_table(counts: Mapping[str, int]):
    """Claims per verdict word (only the words in use), as a DataFrame. Taught in the
    appendix *Reproduction status*."""
    import pandas as pd

    used = [(k, v) for k, v in counts.items() if v]
    return pd.DataFrame(used, columns=["verdict", "claims"])


def execution_records(executed_dir: str | Path, skip=("execution_times",)) -> list[tuple]:
    """``(page, scale, seconds, finished)`` of every executed notebook in ``executed_dir``
    that has a papermill record (pages in ``skip`` left out), sorted by file name.

    Raises FileNotFoundError when there is none. Taught in the appendix *Execution times*.
    """
    records = []
    for nb_path in sorted(Path(executed_dir).glob("*.ipynb")):
        meta = json.loads(nb_path.read_text(encoding="utf-8"))["metadata"].get("papermill", {})
        if nb_path.stem in skip or meta.get("duration") is None:
            continue
        scale = (meta.get("parameters") or {}).get("SCALE", "?")
        records.append(
            (nb_path.stem, scale, float(meta["duration"]), meta.get("end_time", "")[:19])
        )
    if not records:
        raise FileNotFoundError(f"no executed chapters with papermill records in {executed_dir!r}")
    return records


def timing_table(records, budget_s: float = 45.0, book_budget_s: float = 480.0):
    """The timing table: page, scale, time (s), within the budget of ``budget_s`` per page,
    when it finished (UTC); a last row sums all pages against ``book_budget_s``.

    ``records`` are those of :func:`execution_records`. Taught in the appendix *Execution
    times*.
    """
    import pandas as pd

    rows = [
        (name, scale, f"{sec:.1f}", "yes" if sec <= budget_s else f"no (> {budget_s:.0f} s)", end)
        for name, scale, sec, end in records
    ]
    total = sum(r[2] for r in records)
    rows.append(("all pages", "", f"{total:.1f}", "yes" if total <= book_budget_s else "no", ""))
    columns = ["page", "scale", "time (s)", "within budget", "finished (UTC)"]
    return pd.DataFrame(rows, columns=columns)
