"""Slider panels for the chapters' interactive demos.

:func:`panel` lays out ipywidgets controls above the output of a library function that
draws a figure. A parameter the function rejects (a :class:`~cldyn_lib.ConfigError`)
is shown as its message instead of a traceback. With ``manual=True`` nothing runs until the
reader presses *Run* (for experiments that take more than a second).

Sliders need a live kernel (Jupyter, Colab); the rendered book shows them inert. So every
panel is preceded by a note saying so (:data:`KERNEL_NOTE`, class ``kernel-note``), and in the
book build (:func:`~cldyn_lib.in_book_build`) the panel draws no figure of its own
and its *Run* button is disabled: the chapter glues the one static figure made with the
default values above it. Introduced in *The toy model*.
"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import HTML, display

from ..config import ConfigError
from ..progress import in_book_build

#: the note shown right above every slider panel (the browser test looks for its class)
KERNEL_NOTE = (
    '<div class="admonition note kernel-note"><p class="admonition-title">Live demo</p>'
    "<p>The controls below need a live kernel: open this page in Colab with the rocket button "
    "at the top of the page, or run the notebook in Jupyter. On the rendered page they are "
    "inert; the figure above them was made with their default values.</p></div>"
)


def panel(fn: Callable[..., Any], *, manual: bool = False, columns: int = 3, **controls: w.Widget):
    """Display ``controls`` in a grid and ``fn(**values)``'s figure below them.

    Returns the outer widget. ``fn`` should draw with matplotlib (it is shown and closed).
    """
    out = w.Output()

    def run(**values):
        # The figure goes into the widget's state from the kernel side (append_display_data)
        # rather than through `with out: display(fig)`: the latter makes a headless client
        # (papermill/nbclient) echo the output back to the kernel, and on this machine such
        # messages over ~64 KB (any figure) deadlocked the notebook's execution.
        try:
            result = fn(**values)
        except ConfigError as err:
            out.outputs = ()
            out.append_stdout(f"Not run: {err}\n")
            return
        fig = result if isinstance(result, plt.Figure) else plt.gcf()
        out.outputs = ()
        out.append_display_data(fig)
        plt.close(fig)

    for ctl in controls.values():
        ctl.style = {"description_width": "initial"}
        ctl.layout = w.Layout(width="auto")
    grid = w.GridBox(
        list(controls.values()),
        layout=w.Layout(grid_template_columns=f"repeat({columns}, minmax(180px, 1fr))"),
    )
    static = in_book_build()
    if manual:
        button = w.Button(description="Run", button_style="primary", icon="play")
        if static:
            button.disabled, button.description = True, "Run (needs a live kernel)"
        button.on_click(lambda _: run(**{k: c.value for k, c in controls.items()}))
        box = w.VBox([grid, button, out])
    else:
        for ctl in controls.values():
            ctl.observe(lambda _: run(**{k: c.value for k, c in controls.items()}), names="value")
        if not static:
            run(**{k: c.value for k, c in controls.items()})
        box = w.VBox([grid, out])
    display(HTML(KERNEL_NOTE))
    display(box)
    return box
