"""Build the book: execute every chapter with papermill, then render HTML.

    python tools/build_book.py [--scale ci] [--only toy_model] [--jobs 2]

Steps (all outputs are build artifacts under ``_build/``):
1. copy the book sources (``_config.yml``, ``_toc.yml``, ``references.bib``, ``book/``) to
   ``_build/src``;
2. fetch MathJax, require.js and the Jupyter widget manager from the npm registry into
   ``_build/src/vendor`` (cached in ``_build/vendor-cache``), so the pages render offline;
3. execute the notebooks with papermill, injecting ``SCALE``, ``--jobs`` at a time (each in
   its own process with one torch thread; default 2, one per core of the development
   machine), longest first by the last build's times, then the pages that read the
   executed chapters (:data:`READ_EXECUTED`: reproduction status, execution times); the
   cell papermill injects is tagged ``remove-cell`` (the page shows the chapter's own parameters cell and says its scale);
4. ``jupyter-book build -W -n --keep-going`` on the executed copy (``execute_notebooks: off``),
   so any notebook error or Sphinx warning fails the build.

The rendered book ends up in ``_build/html`` (a link to ``_build/src/_build/html``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/: make_results

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
SRC = BUILD / "src"
CHAPTER_BUDGET_S = 45.0
#: pages that read the executed chapters, so they are executed after all of them
READ_EXECUTED = ("book/reproduction_status", "book/execution_times")
#: the whole ci build, HTML included (the developers' brief)
BOOK_BUDGET_S = 4 * 60.0

# npm package -> {file or folder inside the package: destination under vendor/}
VENDOR = {
    "mathjax@3.2.2": {"es5": "mathjax"},
    "requirejs@2.3.7": {"require.js": "require.js"},
    "@jupyter-widgets/html-manager@1.0.15": {"dist": "html-manager"},
}


def toc_docs(toc_path: Path) -> list[str]:
    """Document names in table-of-contents order (root first)."""
    toc = yaml.safe_load(toc_path.read_text())
    docs = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                docs.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) if isinstance(entry, dict) else []:
                walk(part.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return docs


def copy_sources() -> None:
    if SRC.exists():
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, SRC / name)
    shutil.copytree(
        ROOT / "book", SRC / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.pyc")
    )


def fetch_vendor_assets() -> None:
    cache = BUILD / "vendor-cache"
    cache.mkdir(parents=True, exist_ok=True)
    dest_root = SRC / "vendor"
    for spec, files in VENDOR.items():
        name, version = spec.rsplit("@", 1)
        tgz = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not tgz.exists():
            print(f"[vendor] npm pack {spec}", flush=True)
            subprocess.run(
                ["npm", "pack", spec, "--pack-destination", str(cache), "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        unpacked = cache / tgz.stem
        if not unpacked.exists():
            tmp = unpacked.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(tgz) as tf:
                tf.extractall(tmp, filter="data")
            tmp.rename(unpacked)
        for inner, target in files.items():
            src, dst = unpacked / "package" / inner, dest_root / target
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


def execute_one(nb: Path, scale: str) -> float:
    """Execute one notebook in place with papermill; return its wall time in seconds."""
    import os

    import papermill as pm

    # no progress bars, no initial demo figures (cldyn_lib.progress)
    os.environ["CLDYN_BOOK_BUILD"] = "1"
    rel = nb.relative_to(SRC)
    print(f"[execute] {rel} (SCALE={scale!r})", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb),
            str(nb),
            parameters={"SCALE": scale},
            kernel_name="python3",
            cwd=str(nb.parent),
            progress_bar=False,
            execution_timeout=600,  # a hung kernel fails the build instead of blocking it
            log_output=False,
        )
    except pm.PapermillExecutionError as err:
        print(f"[execute] FAILED {rel}: {err.ename}: {err.evalue}", file=sys.stderr)
        raise SystemExit(1) from None
    seconds = time.perf_counter() - t0
    hide_injected_parameters(nb)
    print(f"[execute] {rel}: {seconds:.1f} s", flush=True)
    return seconds


def longest_first(notebooks: list[Path], times: dict[str, float]) -> list[Path]:
    """``notebooks`` ordered by their last recorded time, longest first (unknown ones first,
    in their given order), so that ``--jobs`` workers finish close together."""
    return sorted(notebooks, key=lambda nb: -times.get(str(nb.relative_to(SRC)), float("inf")))


def execute(notebooks: list[Path], scale: str, jobs: int = 1) -> dict[str, float]:
    """Execute ``notebooks`` (in place), ``jobs`` at a time, each in its own process (the
    scheduler of ``make results``); return ``{relative path: seconds}``. Any failure stops
    the build (exit code 1)."""
    from make_results import run_parallel

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1; got {jobs}")
    if jobs == 1:
        return {str(nb.relative_to(SRC)): execute_one(nb, scale) for nb in notebooks}
    cmds = [[sys.executable, __file__, "--execute-one", str(nb), "--scale", scale]
            for nb in notebooks]  # fmt: skip
    codes = run_parallel(cmds, jobs)
    failed = [str(nb.relative_to(SRC)) for nb, code in zip(notebooks, codes) if code]
    if failed:
        print(f"[execute] FAILED: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    # each child records its own time in the notebook's papermill metadata
    return {str(nb.relative_to(SRC)): notebook_seconds(nb) for nb in notebooks}


def notebook_seconds(nb: Path) -> float:
    """The execution time papermill recorded in an executed notebook's metadata."""
    return float(json.loads(nb.read_text(encoding="utf-8"))["metadata"]["papermill"]["duration"])


def hide_injected_parameters(nb: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell``: the page shows the chapter's
    own parameters cell, and the chapter prints the scale it ran at."""
    data = json.loads(nb.read_text(encoding="utf-8"))
    for cell in data["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build_html() -> None:
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe), "build", str(SRC), "-W", "-n", "--keep-going"]
    print("[html] jupyter-book " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    link = BUILD / "html"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("src") / "_build" / "html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="ci", help="SCALE injected into every chapter")
    parser.add_argument("--only", nargs="*", help="execute only these notebooks (stems)")
    parser.add_argument("--no-html", action="store_true", help="execute only, skip rendering")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks executed at once, each in its own process (default 1)")  # fmt: skip
    parser.add_argument("--execute-one", type=Path, help=argparse.SUPPRESS)  # a --jobs worker
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")
    if args.execute_one:
        execute_one(args.execute_one.resolve(), args.scale)
        return 0

    t0 = time.perf_counter()
    copy_sources()
    fetch_vendor_assets()
    docs = toc_docs(SRC / "_toc.yml")
    docs = [d for d in docs if d not in READ_EXECUTED] + [d for d in READ_EXECUTED if d in docs]
    notebooks = [SRC / f"{d}.ipynb" for d in docs if (SRC / f"{d}.ipynb").exists()]
    if args.only:
        notebooks = [nb for nb in notebooks if nb.stem in args.only]
    times_file = BUILD / "execution_times.json"
    last = json.loads(times_file.read_text()) if times_file.exists() else {}
    readers = [nb for nb in notebooks if str(nb.relative_to(SRC).with_suffix("")) in READ_EXECUTED]
    chapters = longest_first([nb for nb in notebooks if nb not in readers], last)
    t_exec = time.perf_counter()
    durations = execute(chapters, args.scale, args.jobs)
    durations |= execute(readers, args.scale, 1)
    durations = {str(nb.relative_to(SRC)): durations[str(nb.relative_to(SRC))] for nb in notebooks}
    t_exec = time.perf_counter() - t_exec
    times_file.write_text(json.dumps(last | durations, indent=1))
    if not args.no_html:
        build_html()
    total = time.perf_counter() - t0
    print("\nchapter execution times (budget %.0f s each at ci scale):" % CHAPTER_BUDGET_S)
    for name, sec in durations.items():
        flag = "  OVER BUDGET" if args.scale == "ci" and sec > CHAPTER_BUDGET_S else ""
        print(f"  {sec:6.1f} s  {name}{flag}")
    executed = sum(durations.values())
    print(f"  {executed:6.1f} s  all notebooks, one after another")
    print(f"  {t_exec:6.1f} s  executing them, {args.jobs} at a time")
    over = "  OVER BUDGET" if args.scale == "ci" and total > BOOK_BUDGET_S else ""
    print(f"  {total:6.1f} s  whole build, HTML included (budget {BOOK_BUDGET_S:.0f} s){over}")
    if not args.no_html:
        print(f"\nopen {BUILD / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
