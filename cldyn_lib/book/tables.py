"""The tables of the two pages that read the executed chapters, as pandas DataFrames.

* :func:`status_table` and :func:`verdict_count_table`: one row per claim of the papers, from
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
    """The claims table, one row per claim, grouped by paper and section: the claim (linked
    to the chapter that tests it), the paper's value, ours at each scale, the test over
    seeds with what each null gave, and the verdict. A pandas ``Styler`` of HTML cells.

    ``rows`` are the rows of :func:`~cldyn_lib.book.claims.evaluate_claims`. Taught in the
    appendix *Reproduction status*.
    """
    import pandas as pd

    records, index = [], []
    for r in rows:
        href = f"{r['chapter']}.html" + (f"#{r['anchor']}" if r.get("anchor") else "")
        claim = (f'<a href="{html.escape(href)}"><b>{html.escape(r["id"])}</b></a> '
                 f"({SHORT.get(r['paper'], r['paper'])}, {html.escape(_text(r['where']))})<br>"
                 f"{html.escape(_text(r['claim']))}")  # fmt: skip
        ours = (
            "<br>".join(
                f"<i>{html.escape(s['scale'])}</i>: {html.escape(_text(s['shown']))}"
                for s in r["scales"]
            )
            or "not run"
        )
        tests = (
            "<br>".join(
                f"<i>{html.escape(s['scale'])}</i>: {html.escape(_text(s['test']))}; nulls: "
                f"{html.escape(_text(s['nulls']))} &rarr; {html.escape(s['verdict'])}"
                for s in r["scales"]
            )
            or "none"
        )
        records.append({"claim": claim, "paper's value": _cell(r["paper_value"]), "ours": ours,
                        "test over seeds, nulls": tests,
                        "verdict": f"<b>{html.escape(r['verdict'])}</b>"})  # fmt: skip
        index.append((PAPERS.get(r["paper"], r["paper"]), _text(r["section"])))
    columns = ["claim", "paper's value", "ours", "test over seeds, nulls", "verdict"]
    df = pd.DataFrame(records, columns=columns,
                      index=pd.MultiIndex.from_tuples(index, names=["paper", "section"]))  # fmt: skip
    return df.style.set_table_attributes('class="status-table"')


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
