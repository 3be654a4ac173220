"""Your own documents for cyclic training: read any text, tokenise it with any tokenizer.

:func:`load_texts` reads the documents a user names in ``CyclicConfig(docs=...)``:

- ``notes.jsonl``: one JSON object per line, the text in a named field (``docs_field``);
- ``notes.txt``: one document per line (blank lines are skipped);
- a folder: every ``*.txt`` file in it (sorted by name) is one document;
- ``hf:NAME``, ``hf:NAME:CONFIG`` or ``hf:NAME:CONFIG:SPLIT``: a Hugging Face dataset with a
  text column (needs the optional ``datasets`` package; split ``train`` by default).

An empty document, a missing field or an unreadable line is a :class:`~cldyn_lib.ConfigError`
that names the file, the line and the parameter, before any tokenisation or compute.
:func:`tokenize_texts` turns the texts into a :class:`~cldyn_lib.data.documents.TokenPool`
with the model's own tokenizer (its special tokens included: Llama's start token, none for
GPT-2 or Pythia), which :func:`~cldyn_lib.select_documents` then draws from, as it does from
the CNN/DailyMail pool; :func:`articles_as_texts` gives that pool as plain texts, for a model
with another tokenizer.

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..files import display_path
from .articles import load_articles
from .documents import TokenPool
from .fetch import DataSource, file_digest

TEXT_FORMATS = ".jsonl (a named text field), .txt (one document per line), a folder of .txt files"
HUB_PREFIX = "hf:"


@dataclasses.dataclass
class Texts:
    """Documents as strings: ``texts[i]`` has identifier ``ids[i]``; ``name`` for messages."""

    ids: list[str]
    texts: list[str]
    name: str
    source: DataSource

    def __len__(self) -> int:
        return len(self.texts)


def _empty(name: str, where: str) -> ConfigError:
    return ConfigError(
        f"docs: {where} of {name} is an empty document (no text); every document needs at "
        "least 2 tokens: remove it or give it text"
    )


def _from_jsonl(path: Path, field: str) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"docs: line {no} of {path.name} is not JSON ({err})") from None
            if not isinstance(row, dict) or field not in row:
                keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise ConfigError(
                    f"docs_field must name a field of every line of {path.name}; line {no} has "
                    f"no {field!r} (its fields: {keys})"
                )
            text = row[field]
            if not isinstance(text, str):
                raise ConfigError(
                    f"docs_field {field!r} must hold text; line {no} of {path.name} holds "
                    f"a {type(text).__name__}"
                )
            if not text.strip():
                raise _empty(path.name, f"line {no}")
            ids.append(str(row.get("id", f"line{no}")))
            texts.append(text)
    return ids, texts


def _from_txt(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if line.strip():
                ids.append(f"line{no}")
                texts.append(line.rstrip("\n"))
    return ids, texts


def _from_folder(path: Path) -> tuple[list[str], list[str]]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise ConfigError(f"docs: the folder {path} holds no .txt files (one document each)")
    texts = [p.read_text(encoding="utf-8") for p in files]
    for p, t in zip(files, texts):
        if not t.strip():
            raise _empty(path.name, f"file {p.name}")
    return [p.name for p in files], texts


def parse_hub_docs(docs: str) -> tuple[str, str | None, str]:
    """``"hf:NAME[:CONFIG[:SPLIT]]"`` -> (name, config or None, split, default ``train``)."""
    parts = docs[len(HUB_PREFIX) :].split(":")
    if not parts[0] or len(parts) > 3:
        raise ConfigError(
            f"docs must be hf:NAME, hf:NAME:CONFIG or hf:NAME:CONFIG:SPLIT; got {docs!r}"
        )
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split


def _from_hub(docs: str, field: str) -> tuple[list[str], list[str], DataSource]:
    name, config, split = parse_hub_docs(docs)
    try:
        import datasets  # optional: pip install "cldyn[online]"
    except ImportError:
        raise ConfigError(
            f"docs={docs!r} needs the datasets package (pip install datasets), or save the "
            "texts as a .jsonl and pass that"
        ) from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # offline, unknown name, ...: many error types
        raise ConfigError(f"docs={docs!r}: the dataset could not be loaded ({err})") from None
    columns = list(getattr(ds, "column_names", None) or [])
    if field not in columns:
        raise ConfigError(
            f"docs_field must name a text column of {name} ({split}); got {field!r} "
            f"(its columns: {columns})"
        )
    texts = list(ds[field])
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"docs_field {field!r} must hold text; row {i} of {name} does not")
        if not t.strip():
            raise _empty(name, f"row {i}")
    ids = [str(i) for i in ds["id"]] if "id" in columns else [f"row{i}" for i in range(len(texts))]
    src = DataSource(
        name, "hub", f"hf:{name}/{config or 'default'}/{split}", note=f"column {field}"
    )
    return ids, texts, src


def load_texts(docs: str, field: str = "text") -> Texts:
    """The documents named by ``docs`` (see the module docstring), in file order."""
    if not isinstance(docs, str) or not docs:
        raise ConfigError(f"docs must be a path or hf:NAME; got {docs!r}")
    if docs.startswith(HUB_PREFIX):
        ids, texts, src = _from_hub(docs, field)
        return Texts(ids, texts, docs, src)
    path = Path(docs).expanduser()
    if path.is_dir():
        ids, texts = _from_folder(path)
        h = hashlib.sha256()
        for i, t in zip(ids, texts):
            h.update(f"{i}\0{t}\0".encode())
        digest = h.hexdigest()
    elif path.is_file() and path.suffix in (".jsonl", ".txt"):
        ids, texts = _from_jsonl(path, field) if path.suffix == ".jsonl" else _from_txt(path)
        digest = file_digest(path)
    elif path.exists():
        raise ConfigError(f"docs must be one of: {TEXT_FORMATS} or hf:NAME; got {docs!r}")
    else:
        raise ConfigError(f"docs: {docs!r} does not exist (expected {TEXT_FORMATS} or hf:NAME)")
    if not texts:
        raise ConfigError(f"docs: {docs!r} holds no documents")
    src = DataSource("docs", "explicit", display_path(path), sha256=digest)
    return Texts(ids, texts, path.name, src)


def articles_as_texts(pool: str = "permissive") -> Texts:
    """The CNN/DailyMail pool of :func:`~cldyn_lib.load_articles` as plain texts."""
    a = load_articles(pool)
    return Texts(list(a.ids), list(a.texts), pool, a.source)


def tokenize_texts(texts: Texts, tokenizer, max_tokens: int) -> TokenPool:
    """Each text as the tokenizer's ids (at most ``max_tokens``), as a pool to draw from.

    A document with fewer than 2 tokens (nothing to predict) is a ConfigError naming it.
    """
    enc = tokenizer(texts.texts, truncation=True, max_length=max_tokens)["input_ids"]
    tokens = [np.asarray(e, dtype=np.int64) for e in enc]
    for i, t in enumerate(tokens):
        if len(t) < 2:
            raise ConfigError(
                f"docs: document {i + 1} ({texts.ids[i]!r}) of {texts.name} has {len(t)} "
                "token(s); every document needs at least 2 (one to predict from)"
            )
    return TokenPool(list(texts.ids), tokens, texts.name, (texts.source,))
