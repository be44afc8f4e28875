"""Sphinx configuration for ppinv's documentation (``python -m sphinx docs docs/_build``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "ppinv"
author = "ppinv developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
# The gallery shows the plots the experiment scripts commit.
html_extra_path = []
suppress_warnings = ["autodoc.import_object"]


def _write_gallery():
    """``gallery.rst``: every example model's docstring, its source, and the experiments' plots."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    lines = ["Gallery of example models", "=========================", "",
             "Each model lives in ``models/`` and is conditioned with ``ppinv.condition``; "
             "``experiments/compare.py`` samples every one of them beside the alternatives.", ""]
    for path in sorted((root / "models").glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        title = f"``models/{path.name}``"
        lines += [title, "-" * len(title), "", "::", ""]
        lines += ["    " + ln for ln in doc.splitlines()] + [""]
        lines += [f".. literalinclude:: ../models/{path.name}", "   :language: python", ""]
    lines += ["Plots", "-----", ""]
    for png in sorted((root / "experiments" / "results").glob("*.png")):
        lines += [f".. figure:: ../experiments/results/{png.name}", "   :width: 90%", "",
                  f"   ``experiments/results/{png.name}``", ""]
    (pathlib.Path(__file__).parent / "gallery.rst").write_text("\n".join(lines))


_write_gallery()
