"""Safe loading (issue 8), checked on the source itself: no pickle is ever loaded, no
``allow_pickle=True``, no ``trust_remote_code=True``, and every ``torch.load`` passes
``weights_only=True``. Scans the library, tools, benchmarks, tests and the chapters' code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import ROOT

# assembled from parts so that this file does not match its own patterns
FORBIDDEN = [
    re.compile(r"\bpickle\.loads?\s*\("),
    re.compile(r"\b(?:c?[Pp]ickle|dill|joblib)\.load"),
    re.compile(r"\bread_" + r"pickle\s*\("),
    re.compile(r"allow_" + r"pickle\s*=\s*True"),
    re.compile(r"trust_remote_" + r"code\s*=\s*True"),
    re.compile(r"\bUnpick" + r"ler\s*\("),
]
TORCH_LOAD = re.compile(r"\btorch\.load\s*\(")


def _call_text(src: str, start: int) -> str:
    """The text of the call whose ``(`` is at ``start`` (up to its matching ``)``)."""
    depth = 0
    for i in range(start, len(src)):
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        if depth == 0:
            return src[start : i + 1]
    return src[start:]


def problems(src: str) -> list[str]:
    """Every unsafe loading pattern in ``src`` (Python code), as short descriptions."""
    found = [m.group(0) for p in FORBIDDEN for m in p.finditer(src)]
    for m in TORCH_LOAD.finditer(src):
        call = _call_text(src, m.end() - 1)
        if not re.search(r"weights_only\s*=\s*True", call):
            found.append("torch.load without weights_only=True: " + call[:60])
    return found


def sources() -> dict[str, str]:
    out = {}
    for folder in ("cldyn_lib", "tools", "benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name != Path(__file__).name:
                out[str(path.relative_to(ROOT))] = path.read_text()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out[str(path.relative_to(ROOT))] = code
    return out


def test_the_scanner_catches_each_pattern():
    bad = [
        "x = pickle.load(f)",
        "x = pickle.loads(b)",
        "d = np.load(p, allow_" + "pickle=True)",
        "m = AutoModel.from_pretrained(n, trust_remote_" + "code=True)",
        "s = torch.load(path)",
        "s = torch.load(path, map_location=f(x), weights_only=False)",
        "df = pd.read_" + "pickle(p)",
    ]
    for snippet in bad:
        assert problems(snippet), snippet
    assert not problems("s = torch.load(p, map_location=dev(0), weights_only=True)")
    assert not problems("d = np.load(p, allow_pickle=False)")


def test_no_unsafe_loading_anywhere():
    src = sources()
    assert len(src) > 40 and any(k.startswith("cldyn_lib/checkpoint") for k in src)
    bad = {name: p for name, text in src.items() if (p := problems(text))}
    assert not bad, f"unsafe loading: {bad}"
