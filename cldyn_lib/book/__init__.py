"""The book layer: glued numbers and figures, slider panels, the claims and the status page.

Its extra dependencies (``myst_nb``, ``ipywidgets``, ``IPython``, ``yaml``) are imported only
when one of its functions is used, so the engines run without them.
"""
