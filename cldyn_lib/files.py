"""Places and files: the repository, the cache, paths shown in results, atomic writes.

The ground floor of the library's file handling: :func:`write_atomic` (a file appears under
its final name only once it is complete) is used by results, checkpoints, caches and
downloads alike; :func:`repo_root`, :func:`cache_dir` and :func:`display_path` say where
things live without writing machine-specific paths into results.

Taught in the book's introduction (*Runs that survive*); used by every chapter through
:mod:`cldyn_lib.results` and the data loaders.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The repository checkout this package lives in (editable install), or None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").exists() and (root / "book").is_dir() else None


def cache_dir() -> Path:
    """Where downloads and derived arrays are kept."""
    if os.environ.get("CLDYN_CACHE"):
        return Path(os.environ["CLDYN_CACHE"]).expanduser()
    root = repo_root()
    return root / "data" / "cache" if root is not None else Path.home() / ".cache" / "cldyn"


def offline() -> bool:
    """True when ``CLDYN_OFFLINE`` is set: no loader tries the network."""
    return os.environ.get("CLDYN_OFFLINE", "").lower() in ("1", "true", "yes")


def display_path(path: Path) -> str:
    """A path relative to the repository's parent when inside it (no machine paths in results)."""
    root = repo_root()
    try:
        return str(Path(path).resolve().relative_to(root.parent)) if root else str(path)
    except ValueError:
        return str(path)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or an exception leaves no file under the final name (and no temporary file), so
    a partial file is never mistaken for a complete one. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_npz_atomic(path: Path, **arrays) -> None:
    """Write an ``.npz`` atomically (see :func:`write_atomic`); never a pickle."""
    import numpy as np

    write_atomic(path, lambda f: np.savez(f, **arrays))
