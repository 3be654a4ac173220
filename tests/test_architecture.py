"""The library's shape, as rules that keep holding: floors, no cycles, small modules, one
public API that names the chapter teaching each name, engines that run without the book's
extra dependencies.

The import graph is read from the source (``ast``), module-level *and* function-level
imports alike, so a lazy import inside a function cannot hide a cycle or an upward import.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "cldyn_lib"
MAX_LINES = 400

#: floor of each top-level part of the package: a module imports only from floors <= its own
FLOORS = {
    **dict.fromkeys(
        (
            "config",
            "metrics",
            "results",
            "checkpoint",
            "files",
            "plots",
            "batching",
            "stats",
            "speed",
            "progress",
            "legibility",
        ),
        0,
    ),
    "data": 1,
    "models": 2,
    "cyclic": 3,
    "sequential": 3,
    "book": 4,
    "launch": 5,
    "cli": 5,
    "__main__": 6,
}
WINGS = ("cyclic", "sequential")  # the two papers' wings never import each other


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every cldyn_lib import in ``path``."""
    package = name if is_package(path) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cldyn_lib"):
                    out.append((a.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cldyn_lib"):
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            rest = [n for n in names if f"{target}.{n}" not in known]
            out += [(s, [], node.lineno) for s in subs]
            if rest or not subs:
                out.append((target, rest, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: {t for t, _, _ in imports_of(name, path, known) if t in known and t != name}
        for name, path in mods.items()
    }


def part(name: str) -> str:
    return name.split(".")[1] if name.count(".") else "__init__"


def test_no_import_cycle_module_or_function_level():
    g = graph()
    g.pop("cldyn_lib", None)  # the lazy public API imports by name, on first use
    for deps in g.values():
        deps.discard("cldyn_lib")
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m) :] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_upward_import_and_wings_apart():
    bad = []
    for src, deps in graph().items():
        if src == "cldyn_lib":
            continue
        a = part(src)
        for dst in deps:
            if dst == "cldyn_lib":
                bad.append(f"{src} imports the package root (use the module itself)")
                continue
            b = part(dst)
            if FLOORS[b] > FLOORS[a]:
                bad.append(f"{src} (floor {FLOORS[a]}) imports {dst} (floor {FLOORS[b]})")
            if a in WINGS and b in WINGS and a != b:
                bad.append(f"{src} imports the other wing: {dst}")
    assert not bad, "\n".join(sorted(bad))


def test_every_module_has_a_floor():
    assert {part(n) for n in modules() if n != "cldyn_lib"} <= set(FLOORS)


def test_no_module_over_the_line_limit():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}, long


def test_no_private_name_crosses_a_module():
    mods = modules()
    known = set(mods)
    bad = []
    for name, path in mods.items():
        for target, names, line in imports_of(name, path, known):
            bad += [f"{name}:{line} imports {target}.{n}" for n in names if n.startswith("_")]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = set()  # local names bound to cldyn_lib modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "cldyn_lib" in (node.module or "")
            ):
                aliases |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name.startswith("cldyn")}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                bad.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_tests_use_no_private_library_names():
    bad = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"from cldyn_lib[\w.]* import .*\b_[a-z]\w*", line):
                bad.append(f"{path.name}:{line_no}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_one_definition_per_concept_name():
    seen: dict[str, list[str]] = {}
    for name, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                seen.setdefault(node.name, []).append(name)
    for concept in ("run_sweep", "Sweep", "evaluate", "run_seeds", "summarize", "load", "setup"):
        assert len(seen.get(concept, [])) <= 1, (concept, seen[concept])
    spelled = [n for n in seen if "summarise" in n]
    assert not spelled, f"one spelling (summarize): {spelled}"


# ---------------------------------------------------------------- the public API


def test_public_api_names_resolve_and_are_unique():
    import cldyn_lib as cl

    names = [n for group in cl.API.values() for n in group]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for module, group in cl.API.items():
        mod = importlib.import_module(f"cldyn_lib.{module}")
        for n in group:
            assert hasattr(mod, n), f"cldyn_lib.{module} has no {n}"
            assert getattr(cl, n) is getattr(mod, n)


def chapter_titles() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for p in toc["parts"] for c in p["chapters"]]
    intro = (ROOT / "book" / "intro.md").read_text()
    titles = ["the book's introduction", *re.findall(r"^#+ (.+)$", intro, re.M)]
    for f in files:
        path = ROOT / f"{f}.ipynb"
        text = path.read_text() if path.exists() else (ROOT / f"{f}.md").read_text()
        titles += re.findall(r'"# ([^\\"]+)', text)[:1] or re.findall(r"^# (.+)$", text, re.M)[:1]
    return titles


TEACH = re.compile(
    r"(?:Taught in|Used in|Used by|Introduced in|reuses)[^.]*?(\*[^*]+\*)", re.S | re.I
)


def test_every_public_name_names_the_chapter_that_teaches_it():
    """Its own docstring or its module's says where the book teaches it, by a real title."""
    import cldyn_lib as cl

    titles = chapter_titles()
    missing, stale = [], []
    for module, group in cl.API.items():
        mod = importlib.import_module(f"cldyn_lib.{module}")
        for n in group:
            obj = getattr(mod, n)
            own = obj.__doc__ if callable(obj) and obj.__doc__ else ""
            text = (own if TEACH.search(own) else "") or (mod.__doc__ or "")
            found = re.findall(r"\*([^*]+)\*", " ".join(m.group(0) for m in TEACH.finditer(text)))
            found = [" ".join(t.split()) for t in found]
            if not found and "introduction" not in text:
                missing.append(f"{module}.{n}")
            stale += [f"{module}: *{t}*" for t in found if not any(x.startswith(t) for x in titles)]
    assert not missing, f"no chapter named for: {missing}"
    assert not stale, f"chapters that do not exist: {sorted(set(stale))}"


def test_api_page_is_generated_from_the_registry():
    r = subprocess.run([sys.executable, "tools/make_api_page.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_api_page_lists_every_public_name():
    text = (ROOT / "book" / "api.md").read_text()
    import cldyn_lib as cl

    absent = [n for n in cl.__all__ if not re.search(rf"\b{re.escape(n)}\b", text)]
    assert not absent, f"book/api.md does not list {absent}"


ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc):`~?(cldyn_lib[\w.]*)`")
BARE = re.compile(r":(?:func|class|data|exc):`~?([A-Za-z_]\w*)`")


def test_docstring_references_resolve():
    """Qualified references import; a bare name is the module's own or a public name."""
    import cldyn_lib as cl

    bad = []
    for name, path in modules().items():
        text = path.read_text()
        mod = importlib.import_module(name)
        bad += [f"{name}: {ref}" for ref in BARE.findall(text)
                if not hasattr(mod, ref) and ref not in cl.__all__]  # fmt: skip
        for ref in ROLE.findall(text):
            parts = ref.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ModuleNotFoundError:
                    continue
                try:
                    for attr in parts[cut:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    bad.append(f"{name}: {ref}")
                break
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- lazy and minimal imports


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_import_is_lazy():
    r = run_python(
        "import sys, cldyn_lib as cl\n"
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'myst_nb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "cl.recovery_score\n"
        "assert 'torch' not in sys.modules\n"
        "cl.CyclicConfig\n"
        "assert 'torch' in sys.modules\n"
    )
    assert r.returncode == 0, r.stderr


BLOCKED = ("ipywidgets", "IPython", "pooch", "seaborn", "myst_nb", "papermill", "nbformat",
           "jupyter_client", "ipykernel")  # fmt: skip


@pytest.mark.slow
def test_engines_import_and_run_without_the_book_extras():
    """As on the GPU machine (torch, transformers, numpy, scipy, pandas, tqdm, matplotlib,
    pyyaml only): every engine module imports, and a tiny run of each wing goes through."""
    code = f"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {BLOCKED!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Block())
import cldyn_lib as cl
for sub in ("data", "models", "cyclic", "sequential"):
    pkg = importlib.import_module("cldyn_lib." + sub)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
for m in ("config", "metrics", "results", "checkpoint", "files", "plots", "batching", "launch"):
    importlib.import_module("cldyn_lib." + m)
cfg = cl.CyclicConfig(n_docs=3, context=16, steps=2, epochs=2, optimizer="adam", lr=1e-3,
                      weights="random", width=16, depth=2, heads=2, vocab="docs", device="cpu")
assert cl.run_cyclic(cfg, progress=False).losses.shape == (7, 3)
pre = cl.pretrain(cl.PretrainConfig.preset("ci", mode="iid", epochs=1, n_classes=5, n_outputs=8))
res = cl.run_transfer(cl.TransferConfig.preset("ci", n_classes=3), pre.model)
assert res.acc.shape[1] == 3
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
print("ok")
"""
    r = run_python(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


# ---------------------------------------------------------------- the chapters


def chapter_code() -> dict[str, str]:
    import json

    out = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out[nb.stem] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return out


def test_chapters_use_only_the_public_api():
    bad = []
    for name, code in chapter_code().items():
        for pattern in (r"from cldyn_lib", r"import cldyn_lib\.", r"cldyn_lib\.\w", r"myst_nb",
                        r"\bcl\.(?:cyclic|sequential|data|models|book)\."):  # fmt: skip
            bad += [f"{name}: {m}" for m in re.findall(rf".*{pattern}.*", code)]
    assert not bad, "\n".join(bad)


def test_chapters_define_no_helpers_and_never_branch_on_the_scale():
    bad = []
    for name, code in chapter_code().items():
        bad += [f"{name}: {m.strip()}" for m in re.findall(r"^\s*def \w+.*$", code, re.M)]
        bad += [f"{name}: {m.strip()}" for m in re.findall(r".*\bscale\s*[=!]=.*", code)]
    assert not bad, "\n".join(bad)


def test_every_public_function_and_class_has_a_docstring():
    import inspect

    import cldyn_lib as cl

    bare = [n for n in cl.__all__
            if (inspect.isfunction(getattr(cl, n)) or inspect.isclass(getattr(cl, n)))
            and not (getattr(cl, n).__doc__ or "").strip()]  # fmt: skip
    assert not bare, bare
