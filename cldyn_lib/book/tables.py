"""The tables of the two pages that read the executed chapters, as pandas DataFrames.

* :func:`status_table`: one row per claim of the papers, from
  :func:`~cldyn_lib.book.claims.evaluate_claims`. Taught in the appendix *Reproduction
  status*.
* :func:`execution_records` and :func:`timing_table`: how long each executed chapter took,
  read from its papermill record. Taught in the appendix *Execution times*.

``pandas`` is imported only when a table is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping


def _text(value: Any) -> str:
    """A cell's text: empty for None, on one line."""
    return "" if value is None else str(value).replace("\n", " ")


def status_table(rows: Iterable[Mapping[str, Any]]):
    """The claims table: claim, the paper's value, ours at ci and at the larger scale, verdict.

    ``rows`` are the rows of :func:`~cldyn_lib.book.claims.evaluate_claims`. Taught in the
    appendix *Reproduction status*.
    """
    import pandas as pd

    records = []
    for r in rows:
        larger = f"{r['larger']} ({r['larger_scale']})" if r["larger"] else "no committed result"
        records.append({
            "claim": _text(f"{r['id']} ({r['where']}): {r['claim']}"),
            "paper": _text(r["paper_value"]),
            "ours, ci": _text(r["ci"]),
            "ours, larger": _text(larger),
            "verdict": _text(r["verdict"]),
        })  # fmt: skip
    return pd.DataFrame(records, columns=["claim", "paper", "ours, ci", "ours, larger", "verdict"])


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
