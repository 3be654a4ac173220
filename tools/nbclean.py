"""Strip notebooks for git: no outputs, no execution counts, no editor metadata.

    python tools/nbclean.py book/*.ipynb          # rewrite in place
    python tools/nbclean.py --check book/*.ipynb  # exit 1 if any would change

Kept: cell tags (``parameters``), ``mystnb`` cell options, the kernelspec and language info.
Authoring tip: ``jupytext --to py:percent book/x.ipynb`` gives an editable script; convert it
back with ``jupytext --to ipynb`` and run this tool.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEEP_NB_META = ("kernelspec", "language_info")
KEEP_CELL_META = ("tags", "mystnb")


def clean(nb: dict) -> dict:
    nb["metadata"] = {k: nb["metadata"][k] for k in KEEP_NB_META if k in nb.get("metadata", {})}
    nb["metadata"].setdefault(
        "kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"}
    )
    nb["metadata"]["language_info"] = {"name": "python"}
    for cell in nb["cells"]:
        cell["metadata"] = {
            k: cell["metadata"][k] for k in KEEP_CELL_META if k in cell.get("metadata", {})
        }
        cell.pop("id", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    dirty = []
    for p in paths:
        text = p.read_text(encoding="utf-8")
        new = dumps(clean(json.loads(text)))
        if new != text:
            dirty.append(p)
            if not check:
                p.write_text(new, encoding="utf-8")
    if check and dirty:
        print("not clean (run tools/nbclean.py):", *map(str, dirty), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
