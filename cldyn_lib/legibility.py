"""Figures a reader can read on the page: fonts scaled for the displayed width, no grid on maps.

The book's pages show a figure at most :data:`COLUMN_PX` pixels wide (the text column of the
default Jupyter Book theme in a 1280 px window), so a wide figure saved at 100 dpi is shrunk
and its 9-point labels would come out at about 6 px. :func:`make_legible`, which
:func:`~cldyn_lib.glue` applies to every glued figure, raises every font of a figure that
would be smaller than :data:`MIN_FONT_PX` on the page to that size, redoes the layout, turns off
the grid on axes that show an image (a heat map) and returns the figure's smallest font and
its dpi, which the chapter glues beside the figure so the browser test can check the page.
Introduced in the chapter *The toy model*.
"""

from __future__ import annotations

import warnings

#: width (CSS px) of the text column in which the book shows figures, in a 1280 px window
COLUMN_PX = 672
#: the smallest font, in CSS px on the page, that the book accepts in a figure
MIN_FONT_PX = 9.0


def _texts(fig):
    """Every visible, non-empty text artist of ``fig`` except tick labels (set per axis)."""
    from matplotlib.text import Text

    ticks = {id(t) for ax in fig.axes for a in (ax.xaxis, ax.yaxis) for t in _ticklabels(a)}
    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and id(t) not in ticks
    ]


def _ticklabels(axis):
    return [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]


def smallest_font_pt(fig) -> float:
    """The smallest font size (points) among the visible texts of ``fig``, tick labels included."""
    fig.draw_without_rendering()
    sizes = [t.get_fontsize() for t in _texts(fig)]
    sizes += [
        t.get_fontsize() for ax in fig.axes for a in (ax.xaxis, ax.yaxis) for t in _ticklabels(a)
    ]
    return float(min(sizes)) if sizes else float("inf")


def displayed_font_px(min_pt: float, dpi: float, natural_px: float, shown_px: float) -> float:
    """The smallest font in CSS px: ``min_pt`` points at ``dpi``, an image ``natural_px`` wide
    shown ``shown_px`` wide."""
    return min_pt * dpi / 72.0 * min(1.0, shown_px / natural_px)


def make_legible(fig, column_px: float = COLUMN_PX, min_px: float = MIN_FONT_PX) -> dict:
    """Raise the fonts of ``fig`` that would be under ``min_px`` when it is shown ``column_px``
    wide, drop the grid over heat maps; returns ``{"min_pt", "dpi", "scale"}`` (``scale``:
    how much the smallest font grew)."""
    for ax in fig.axes:
        if ax.images or any(type(c).__name__ == "QuadMesh" for c in ax.collections):
            ax.grid(False)
    dpi = float(fig.dpi)
    min_pt = smallest_font_pt(fig)
    # the page shows the figure's tight bounding box (plus the inline backend's 0.1 in pad)
    tight = fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2
    width_px = max(fig.get_size_inches()[0], tight) * dpi
    scale = 1.0
    if min_pt != float("inf"):
        shown = displayed_font_px(min_pt, dpi, width_px, column_px)
        if shown < min_px:
            floor = min_pt * min_px / shown * 1.06  # a margin: the page rounds image widths
            scale = floor / min_pt
            for t in _texts(fig):
                t.set_fontsize(max(t.get_fontsize(), floor))
            for ax in fig.axes:
                for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                    labels = _ticklabels(axis)
                    if labels:
                        size = max(labels[0].get_fontsize(), floor)
                        ax.tick_params(axis=name, which="both", labelsize=size)
            engine = fig.get_layout_engine()
            # tight_layout() leaves a placeholder engine: lay out again; a constrained or
            # tight engine lays out at every draw by itself
            if engine is None or type(engine).__name__ == "PlaceHolderLayoutEngine":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fig.tight_layout()
            min_pt = smallest_font_pt(fig)
    return {"min_pt": round(min_pt, 2), "dpi": dpi, "scale": round(float(scale), 3)}
