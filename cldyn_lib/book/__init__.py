"""The book layer: glued numbers and figures, slider panels, what a chapter does at each
scale (``chapter``), the claims, and the tables of the status pages (``tables``).

Its extra dependencies (``myst_nb``, ``ipywidgets``, ``IPython``, ``yaml``, ``pandas``) are
imported only when one of its functions is used, so the engines run without them.
"""
