"""Sphinx: resolve references to the public API (``cldyn_lib.run_cyclic``, or a bare
``run_cyclic`` that is not defined in the module at hand) to the place where the name is
defined and documented (``cldyn_lib.cyclic.engine.run_cyclic``).

Docstrings name public objects as readers call them, ``cl.<name>``; ``book/api.md``
documents each one in its own module. The mapping is ``cldyn_lib.API``.
"""

from __future__ import annotations


def _public(app, env, node, contnode):
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or "." in target.removeprefix("cldyn_lib."):
        return None  # only cldyn_lib.<name> and a bare <name>
    import cldyn_lib

    name = target.removeprefix("cldyn_lib.")
    module = next((m for m, names in cldyn_lib.API.items() if name in names), None)
    if module is None:
        return None
    full = f"cldyn_lib.{module}.{name}"
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], full, node, contnode
    )


def setup(app):
    app.connect("missing-reference", _public)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
