"""Find data files: an explicit path, a setting, the offline mirror, the cache, or a download.

Resolution order for every data set (first hit wins):

1. an explicit ``path=`` given to the loader;
2. the directory in the ``CLDYN_DATA`` environment variable (mirror layout or canonical file
   names inside it);
3. the offline mirror: ``CLDYN_MIRROR``, else ``../shared/data`` next to the repository
   (checked against the sha256 values of its MANIFEST);
4. the download cache (``CLDYN_CACHE``, else ``data/cache`` in the repository, else
   ``~/.cache/cldyn``): files there were verified before they got their final name;
5. a download from the canonical source with ``pooch``, verified by checksum (unless
   ``CLDYN_OFFLINE=1``).

If all fail, :class:`DataNotFoundError` lists every place looked and how to provide the
data. Each loader records which of these it used in a :class:`DataSource`, which goes into
the provenance of every result (online and offline copies can differ: JPEG vs lossless
CIFAR-10, the order of Omniglot drawings).

Used by every loader of :mod:`cldyn_lib.data`; the data sets are described in
``data/README.md``. Taught in the book's introduction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from ..files import cache_dir, display_path, offline, repo_root


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set was found anywhere; the message says where we looked."""


class ChecksumError(OSError):
    """A file's checksum (or size) differs from the expected one."""


class CorruptDataError(OSError):
    """A data file exists but cannot be read in its format (a damaged or wrong archive)."""


@contextlib.contextmanager
def reading(path, what: str):
    """Turn the many ways a damaged archive fails into one :class:`CorruptDataError`
    that names the file, the format expected and what to do."""
    try:
        yield
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, KeyError, ValueError) as e:
        raise CorruptDataError(
            f"{path}: corrupted or not a valid {what} ({type(e).__name__}: {e}); delete it "
            "and fetch it again, or pass path= to a good copy"
        ) from e


@dataclasses.dataclass(frozen=True)
class Remote:
    """A canonical download: URL, expected checksum(s) and size in bytes."""

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a loader found its data (recorded in every result's provenance)."""

    dataset: str
    kind: str  #: "explicit", "CLDYN_DATA", "mirror", "cache", "download" or "hub"
    location: str  #: path or URL (paths inside the repository are given relative to it)
    sha256: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Found:
    path: Path
    source: DataSource
    layout: str  #: "mirror" (the offline mirror's format) or "canonical" (the download's format)


# ---------------------------------------------------------------- places


def mirror_dirs() -> list[Path]:
    """Candidate offline-mirror roots, in the order they are tried."""
    dirs = []
    if os.environ.get("CLDYN_MIRROR"):
        dirs.append(Path(os.environ["CLDYN_MIRROR"]).expanduser())
    else:
        root = repo_root()
        if root is not None:
            dirs.append(root.parent / "shared" / "data")
        dirs.append(Path.cwd().parent / "shared" / "data")
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


# ---------------------------------------------------------------- checksums and download


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, md5: str | None = None, sha256: str | None = None, size=None) -> str:
    """Check a file's size and checksums; return its sha256. Raises :class:`ChecksumError`."""
    actual_size = Path(path).stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(
            f"{path}: size {actual_size} bytes, expected {size} (truncated or wrong file)"
        )
    if md5 is not None and (got := file_digest(path, "md5")) != md5.lower():
        raise ChecksumError(f"{path}: md5 {got}, expected {md5}")
    digest = file_digest(path, "sha256")
    if sha256 is not None and digest != sha256.lower():
        raise ChecksumError(f"{path}: sha256 {digest}, expected {sha256}")
    return digest


def download(remote: Remote, dest_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Download ``remote`` into the cache with ``pooch``, verify it, and only then give it its
    final name.

    ``pooch`` streams the file into a folder of its own beside the cache and checks its md5
    or sha256; the size and the other checksum are checked here; only a file that passed
    every check is renamed into the cache. A failed or interrupted download leaves nothing
    under the final name, so a partial file is never mistaken for a complete one.
    """
    import pooch  # only the download path needs it (the GPU machine and CI runs do not)

    dest_dir = Path(dest_dir or cache_dir())
    dest_dir.mkdir(parents=True, exist_ok=True)
    known = f"md5:{remote.md5}" if remote.md5 else remote.sha256 and f"sha256:{remote.sha256}"
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=remote.filename + ".") as tmp:
        try:
            got = Path(
                pooch.retrieve(
                    remote.url, known_hash=known or None, fname=remote.filename, path=tmp,
                    downloader=pooch.HTTPDownloader(progressbar=True, timeout=timeout),
                )
            )  # fmt: skip
        except ValueError as err:  # pooch's hash mismatch (its partial file is already gone)
            raise ChecksumError(f"{remote.url}: {err}; nothing was saved") from err
        except OSError as err:  # requests: the server closed before its Content-Length
            short = re.search(r"(\d+) bytes read, (\d+) more expected", str(err))
            if short is None:
                raise
            raise ChecksumError(
                f"{remote.url}: truncated download ({short[1]} bytes received, {short[2]} "
                "more expected); nothing was saved"
            ) from err
        verify(got, None, remote.sha256 if remote.md5 else None, remote.size)
        final = dest_dir / remote.filename
        os.replace(got, final)
    return final


# ---------------------------------------------------------------- resolution


def locate(
    dataset: str,
    *,
    path: str | os.PathLike | None = None,
    mirror_path: str | None = None,
    mirror_sha256: str | None = None,
    remote: Remote | None = None,
    how_to_provide: str = "",
) -> Found:
    """Find one data file by the resolution order in this module's docstring."""
    looked: list[str] = []
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataNotFoundError(f"{dataset}: the path given does not exist: {p}")
        layout = _layout_of(p, mirror_path, remote)
        src = DataSource(dataset, "explicit", display_path(p), file_digest(p))
        return Found(p, src, layout)

    if os.environ.get("CLDYN_DATA"):
        base = Path(os.environ["CLDYN_DATA"]).expanduser()
        for rel, layout in ((mirror_path, "mirror"), (remote and remote.filename, "canonical")):
            if rel:
                p = base / rel
                looked.append(f"CLDYN_DATA: {p}")
                if p.exists():
                    src = DataSource(dataset, "CLDYN_DATA", display_path(p), file_digest(p))
                    return Found(p, src, layout)

    if mirror_path:
        for root in mirror_dirs():
            p = root / mirror_path
            looked.append(f"offline mirror: {p}")
            if p.exists():
                digest = verify(p, sha256=mirror_sha256)
                return Found(p, DataSource(dataset, "mirror", display_path(p), digest), "mirror")

    if remote is not None:
        p = cache_dir() / remote.filename
        looked.append(f"download cache: {p}")
        if p.exists():
            sha = remote.sha256 or None
            return Found(
                p, DataSource(dataset, "cache", display_path(p), sha, remote.url), "canonical"
            )
        if offline():
            looked.append(f"download of {remote.url}: skipped (CLDYN_OFFLINE is set)")
        else:
            try:
                p = download(remote)
                digest = file_digest(p)
                return Found(p, DataSource(dataset, "download", remote.url, digest), "canonical")
            except OSError as err:  # no network, HTTP errors (requests), timeouts
                if isinstance(err, ChecksumError):
                    raise
                looked.append(f"download of {remote.url}: failed ({err})")

    raise DataNotFoundError(not_found_message(dataset, looked, how_to_provide))


def not_found_message(dataset: str, looked: list[str], how_to_provide: str) -> str:
    lines = [f"{dataset}: no copy found. Places looked, in order:"]
    lines += [f"  - {item}" for item in looked] or ["  - (none)"]
    lines.append(
        "Provide it by passing path=..., by setting CLDYN_DATA to a folder that holds it, "
        "by setting CLDYN_MIRROR to the offline mirror (shared/data), or by going online."
    )
    if how_to_provide:
        lines.append(how_to_provide)
    return "\n".join(lines)


def _layout_of(p: Path, mirror_path: str | None, remote: Remote | None) -> str:
    if remote is not None and p.name == remote.filename:
        return "canonical"
    if mirror_path is not None and p.name == Path(mirror_path).name:
        return "mirror"
    # fall back on the suffix: the mirror and canonical formats differ in every data set
    if remote is not None and "".join(p.suffixes[-2:]) == "".join(
        Path(remote.filename).suffixes[-2:]
    ):
        return "canonical"
    return "mirror"
