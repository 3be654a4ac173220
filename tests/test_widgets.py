"""The slider panel puts each figure (or the ConfigError message) into its Output widget."""

import ipywidgets as w
import matplotlib
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.pylabtools import select_figure_formats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cldyn_lib import panel  # noqa: E402
from cldyn_lib.config import ConfigError  # noqa: E402


@pytest.fixture(autouse=True)
def png_figures():
    """Format figures as PNG, as the inline backend does in a notebook kernel."""
    select_figure_formats(InteractiveShell.instance(), {"png"})
    plt.close("all")  # figures left open by other tests


def draw(a=1):
    if a < 0:
        raise ConfigError(f"a must be >= 0; got {a}")
    fig, ax = plt.subplots()
    ax.plot([0, a])
    return fig


def test_panel_shows_the_figure_and_reruns_on_change():
    slider = w.IntSlider(1, min=-1, max=5)
    box = panel(draw, a=slider)
    out = box.children[-1]
    assert isinstance(out, w.Output) and len(out.outputs) == 1
    assert "image/png" in out.outputs[0]["data"]
    slider.value = -1  # a bad value: the message instead of a figure
    assert len(out.outputs) == 1 and "a must be >= 0; got -1" in out.outputs[0]["text"]
    slider.value = 2
    assert "image/png" in out.outputs[0]["data"]
    assert plt.get_fignums() == []  # every figure was closed


def test_manual_panel_runs_only_on_the_button():
    box = panel(draw, manual=True, a=w.IntSlider(1))
    out, button = box.children[-1], box.children[-2]
    assert out.outputs == ()
    button.click()
    assert "image/png" in out.outputs[0]["data"]
