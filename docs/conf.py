"""Sphinx configuration of the exifclip documentation.

Build (from the repository root)::

    pip install -e ".[docs,examples]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The build runs every ``examples/plot_*.py`` on the CPU with the packaged
model ``exifclip-small`` (sphinx-gallery) and never touches the network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

# The gallery and the API pages must build offline: never ask the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Headless matplotlib for the gallery.
os.environ.setdefault("MPLBACKEND", "Agg")

import exifclip  # noqa: E402

# PyTorch sizes its CPU thread pool to the cores it sees; on a machine shared
# with other jobs that pool can slow the gallery down by an order of
# magnitude. EXIFCLIP_DOCS_TORCH_THREADS=1 caps it for the build.
if os.environ.get("EXIFCLIP_DOCS_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["EXIFCLIP_DOCS_TORCH_THREADS"]))

project = "exifclip"
author = "exifclip developers"
copyright = "exifclip developers, BSD-3-Clause"
release = exifclip.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "exifclip_docs",  # docs/_ext: CLI reference, API coverage check, optional pages
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
]
default_role = "py:obj"
# Option names such as --resume appear in generated text: no "smart" dashes or quotes.
smartquotes = False

# -- API reference --------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_mock_imports: list[str] = []

numpydoc_show_class_members = False  # methods come from autodoc (see _templates/autosummary/class.rst)
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Docstring style is checked by the test suite and review, not by the docs build:
# a style nit in a module another change is editing must not break the site.
numpydoc_validation_checks: set[str] = set()

# -- Markdown pages (README-style pages in docs/, the changelog) ------------------------------
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- Gallery ---------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    # Only plot_*.py files are gallery examples; make_example.py is a script.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|make_example)\.py$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "reference_url": {"exifclip": None},
    "doc_module": ("exifclip",),
    "backreferences_dir": None,
}

# -- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"exifclip {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}

# Pages another change may not have written yet: listed in a toctree, dropped
# from it (with a note in the log) when the file is absent, so the site builds.
exifclip_optional_pages = ["reliability"]
