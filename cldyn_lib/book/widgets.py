"""Slider panels for the chapters' interactive demos.

:func:`panel` lays out ipywidgets controls above the output of a library function that
draws a figure. A parameter the function rejects (a :class:`~cldyn_lib.ConfigError`)
is shown as its message instead of a traceback. With ``manual=True`` nothing runs until the
reader presses *Run* (for experiments that take more than a second).

Sliders need a live kernel (Jupyter, Colab); the rendered book shows them inert, next to a
static figure made with the default values. Introduced in *The toy model*.
"""

from __future__ import annotations

from typing import Any, Callable

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import display

from ..config import ConfigError


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
    if manual:
        button = w.Button(description="Run", button_style="primary", icon="play")
        button.on_click(lambda _: run(**{k: c.value for k, c in controls.items()}))
        box = w.VBox([grid, button, out])
    else:
        for ctl in controls.values():
            ctl.observe(lambda _: run(**{k: c.value for k, c in controls.items()}), names="value")
        run(**{k: c.value for k, c in controls.items()})
        box = w.VBox([grid, out])
    display(box)
    return box
