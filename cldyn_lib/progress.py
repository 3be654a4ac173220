"""Progress bars for long work: in a terminal or a live notebook, never in the rendered book.

``tools/build_book.py`` sets ``CLDYN_BOOK_BUILD=1`` for the kernels that execute the
chapters. :func:`in_book_build` reads it: then :func:`tqdm` draws no bar (neither text nor
widget lands in a page) and the slider panels draw no initial figure. ``CLDYN_PROGRESS=0``
switches the bars off anywhere. Every engine's ``progress=`` option goes through
:func:`tqdm`. Taught in the appendix *Many runs at once*.
"""

from __future__ import annotations

import os

_OFF = ("0", "false", "no", "off")


def in_book_build() -> bool:
    """True while ``tools/build_book.py`` executes the chapters (``CLDYN_BOOK_BUILD=1``)."""
    return os.environ.get("CLDYN_BOOK_BUILD", "").strip().lower() not in ("", *_OFF)


def progress_enabled() -> bool:
    """False in the book build or when ``CLDYN_PROGRESS`` is 0/false/no/off, else True."""
    return not in_book_build() and os.environ.get("CLDYN_PROGRESS", "1").strip().lower() not in _OFF


def tqdm(*args, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm(*args, **kwargs)``, disabled also when :func:`progress_enabled` is
    False."""
    from tqdm.auto import tqdm as _tqdm

    return _tqdm(*args, disable=disable or not progress_enabled(), **kwargs)
