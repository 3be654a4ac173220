"""Write ``book/api.md``: every module of ``cldyn_lib`` by floor, its public names in ``cl``.

    python tools/make_api_page.py           # rewrite book/api.md
    python tools/make_api_page.py --check   # exit 1 if it is out of date (a test runs this)

The page is generated from ``cldyn_lib.API`` and the package's modules, so it lists every
public name and never goes stale; each module's docstring says which chapter teaches it.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import cldyn_lib

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "api.md"

FLOORS = [
    ("Ground floor: configs, metrics, results, checkpoints, files, plots, batching, statistics",
     ["config", "metrics", "results", "checkpoint", "files", "plots", "batching", "stats", "speed", "progress", "legibility"]),
    ("Data", ["data"]),
    ("Models", ["models"]),
    ("Yang et al. (Yang et al.): the cyclic wing", ["cyclic"]),
    ("Frati et al. (Frati et al.): the sequential wing", ["sequential"]),
    ("The book layer", ["book"]),
    ("Many runs and the command line", ["launch", "cli"]),
]  # fmt: skip

INTRO = """# API reference

Every chapter starts with `import cldyn_lib as cl` and uses only the names listed here as
`cl.<name>` (they load on first use: `import cldyn_lib` alone imports neither torch nor
transformers). The library is a house of floors; a module imports only from its own floor
or the ones below, and the two papers' wings never import each other:

| floor | packages | imports |
|---|---|---|
| 0 | `config`, `metrics`, `results`, `checkpoint`, `files`, `plots`, `batching`, `stats` | NumPy, SciPy, torch, matplotlib |
| 1 | `data` | floor 0 |
| 2 | `models` | floors 0-1 |
| 3 | `cyclic` (Yang et al.), `sequential` (Frati et al.) | floors 0-2, not each other |
| 4 | `book` | floors 0-3 |
| 5 | `launch`, `cli` | everything |

Each module's docstring says which chapter teaches it (`tests/test_architecture.py` checks
the rules, and that this page lists every public name; `python tools/make_api_page.py`
writes it).
"""


def modules_of(part: str) -> list[str]:
    name = f"cldyn_lib.{part}"
    mod = importlib.import_module(name)
    if not hasattr(mod, "__path__"):
        return [name]
    subs = [m.name for m in pkgutil.iter_modules(mod.__path__, name + ".")]
    return [name] + sorted(subs)


def page() -> str:
    out = [INTRO]
    for title, parts in FLOORS:
        out.append(f"## {title}\n")
        for part in parts:
            for name in modules_of(part):
                mod = importlib.import_module(name)
                short = name[len("cldyn_lib.") :]
                public = cldyn_lib.API.get(short, ())
                first = (mod.__doc__ or "").strip().splitlines()[0].rstrip(".")
                out.append(f"### `{name}`\n")
                out.append(f"{first}.\n")
                if public:
                    out.append("In `cl`: " + ", ".join(f"`{n}`" for n in public) + ".\n")
                out.append(
                    f"```{{eval-rst}}\n.. automodule:: {name}\n   :members:\n   :undoc-members:\n```\n"
                )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = page()
    if args.check:
        if PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python tools/make_api_page.py")
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
