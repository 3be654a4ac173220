"""Glued numbers and figures, and the Colab check: what every chapter's prose is built on.

* :func:`glue` is ``myst_nb.glue`` for everything a chapter quotes: a number, bool or string
  (NumPy scalars become plain Python values; NaN and inf are refused, so a page never shows
  "nan"), a per-seed array (a list of floats, :func:`per_seed_list`) or a matplotlib figure (made legible for the page by
  :func:`~cldyn_lib.make_legible`, glued without displaying it, then closed; its
  smallest font and dpi are glued beside it as ``<key>__fonts`` for the browser test).
* :func:`glued_values` reads every glued value back from an *executed* notebook.

``myst_nb`` is imported only when :func:`glue` is called, so the engines import without it.
Used by every chapter; introduced in *The toy model*.
"""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np


def in_colab() -> bool:
    """True inside Google Colab (the chapters' first cell installs cldyn only there)."""
    return "google.colab" in sys.modules


def as_plain(value: Any) -> Any:
    """NumPy scalars and 0-d arrays -> Python bool/int/float; other values unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def glue(key: str, value: Any, display: bool = False) -> None:
    """``myst_nb.glue`` for a number, bool, string or matplotlib figure; NaN and inf are errors.

    A figure is glued for ``{glue:figure}`` and then closed, so it is shown only where the
    text places it.
    """
    from myst_nb import glue as _glue

    if _is_figure(value):
        from ..legibility import make_legible

        fonts = make_legible(value)
        _glue(key, value, display=display)
        _glue(f"{key}__fonts", fonts, display=False)
        import matplotlib.pyplot as plt

        plt.close(value)
        return
    if isinstance(value, np.ndarray) and value.ndim == 1 or isinstance(value, (list, tuple)):
        value = per_seed_list(value)  # a per-seed array of a claim's test
    value = as_plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"glued value {key!r} is {value}: the text would show it as such")
    _glue(key, value, display=display)


def glue_sweep_seeds(prefix: str, sweeps: dict, key: str = "score") -> None:
    """Glue, for every sweep in ``sweeps`` (name -> a computed sweep with ``labels`` and
    ``get(i, key)``, e.g. :class:`~cldyn_lib.CyclicSweepData`), each variant's per-seed
    ``key`` in the last scored epoch as ``<prefix>_<name>_v<i>``: the arrays the claims'
    tests over seeds read (``book/claims.yml``). Taught in *What drives recovery*."""
    for name, data in sweeps.items():
        for i in range(len(data.labels)):
            glue(f"{prefix}_{name}_v{i}", np.asarray(data.get(i, key))[:, -1])


def per_seed_list(values) -> list:
    """A 1-D array of numbers as a list of floats, ``None`` where a value is not finite (a
    diverged seed): what a claim's test over seeds reads back with :func:`glued_values`."""
    out = []
    for v in np.asarray(values, dtype=float).reshape(-1):
        out.append(float(v) if math.isfinite(v) else None)
    return out


def _is_figure(value: Any) -> bool:
    return type(value).__name__ == "Figure" and hasattr(value, "savefig")


def glued_values(notebook: str | Path) -> dict[str, Any]:
    """All values glued in an executed notebook, parsed back from their ``text/plain``."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            key = (meta or {}).get("mime_prefix", "") + "text/plain"
            if not meta or key not in out.get("data", {}):
                continue
            text = out["data"][key]
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[meta["name"]] = text
    return values
