"""Sphinx configuration of the faasplan documentation (``sphinx-build -W docs docs/_build``)."""

from __future__ import annotations

import importlib.metadata

project = "faasplan"
author = "The faasplan authors"
copyright = "2026, The faasplan authors (MIT licence)"
release = importlib.metadata.version("faasplan")
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
root_doc = "index"

# The docstrings are numpydoc: Parameters / Returns / Examples sections, reST roles.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = f"faasplan {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Simulate, plan and run serverless DAG workflows",
                      "fixed_sidebar": True, "page_width": "1100px"}
