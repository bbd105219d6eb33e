"""Sphinx helpers of the exifclip documentation (a local extension, not shipped).

``.. exifclip-cli::``
    The command-line reference, read from :func:`exifclip.cli.build_parser`
    at build time: one section per subcommand with its usage line, its
    description and every argument (choices, defaults, help). A flag added
    to the parser appears in the docs at the next build; nothing is copied.

``.. exifclip-public-names::``
    A table of every name in ``exifclip.__all__``, linked to the page that
    documents it in its own module, with the first line of its docstring.

Checks and fixes, at build time:

* every name in ``exifclip.__all__`` must be documented somewhere in the API
  reference (under its defining module); a missing one is a warning, so the
  ``-W`` build fails until ``docs/api.rst`` lists it;
* cross-references to the short public path (``exifclip.SpliceLocalizer``)
  resolve to the documented module path (``exifclip.splice.localizer.SpliceLocalizer``);
* pages named in the ``exifclip_optional_pages`` setting are dropped from
  toctrees while their source file does not exist (the site still builds).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

_USAGE_WIDTH = "88"


# -- command-line reference ----------------------------------------------------------------------
def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order they were added."""
    for action in parser._actions:  # argparse offers no public way to walk a parser
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def _signature(action: argparse.Action) -> str:
    """``--model MODEL``, ``-h, --help`` or ``images [images ...]`` for one argument."""
    if not action.option_strings:
        metavar = action.metavar or action.dest
        if action.nargs in ("+", "*"):
            return f"{metavar} [{metavar} ...]"
        if action.nargs == "?":
            return f"[{metavar}]"
        return str(metavar)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or action.dest.upper()
    if action.choices is not None and action.metavar is None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    if action.nargs == "?":
        metavar = f"[{metavar}]"
    elif action.nargs in ("+", "*"):
        metavar = f"{metavar} [{metavar} ...]"
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _default_text(action: argparse.Action) -> str | None:
    """The default worth printing, or None (flags, required options, 'not given')."""
    if action.nargs == 0 or action.required or action.default in (None, argparse.SUPPRESS):
        return None
    if isinstance(action.default, bool):
        return None
    if action.default == [] or action.default == "":
        return None
    return str(action.default)


def _usage(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _USAGE_WIDTH  # the same line breaks on every machine
    try:
        return parser.format_usage().strip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _argument_list(parser: argparse.ArgumentParser) -> nodes.definition_list:
    items = nodes.definition_list(classes=["exifclip-cli-arguments"])
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and parser.prog != "exifclip":
            continue  # -h/--help on every subcommand: said once, on the main command
        term = nodes.term()
        term += nodes.literal(text=_signature(action))
        definition = nodes.definition()
        paragraph = nodes.paragraph()
        text = _expanded_help(parser, action)
        if text:
            paragraph += nodes.Text(text)
        notes = []
        if action.required and action.option_strings:
            notes.append(nodes.Text("required"))
        default = _default_text(action)
        if default is not None:
            notes.extend([nodes.Text("default: "), nodes.literal(text=default)])
        if notes:
            paragraph += nodes.Text(" (" if text else "(")
            for note in notes:
                paragraph += note
            paragraph += nodes.Text(")")
        definition += paragraph
        items += nodes.definition_list_item("", term, definition)
    return items


def _group_note(parser: argparse.ArgumentParser) -> nodes.paragraph | None:
    """One line for each group of mutually exclusive options."""
    groups = [g for g in parser._mutually_exclusive_groups if len(g._group_actions) > 1]
    if not groups:
        return None
    paragraph = nodes.paragraph()
    for group in groups:
        options = [a.option_strings[-1] for a in group._group_actions]
        paragraph += nodes.Text("At most one of ")
        for i, option in enumerate(options):
            if i:
                paragraph += nodes.Text(", " if i < len(options) - 1 else " and ")
            paragraph += nodes.literal(text=option)
        paragraph += nodes.Text(" may be given. ")
    return paragraph


class CliReference(SphinxDirective):
    """``.. exifclip-cli::`` - the reference of every ``exifclip`` subcommand."""

    has_content = False
    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        from exifclip.cli import build_parser

        parser = build_parser()
        self.env.note_dependency(str(Path(inspect.getfile(build_parser)).resolve()))
        out: list[nodes.Node] = []
        top = nodes.paragraph()
        top += nodes.Text(parser.description or "")
        out.append(top)
        out.append(nodes.literal_block(text=_usage(parser), language="text"))
        out.append(_argument_list(parser))
        for name, one_line, sub in _subcommands(parser):
            section_id = nodes.make_id(f"cli-{name}")
            section = nodes.section(ids=[section_id], names=[nodes.fully_normalize_name(f"exifclip {name}")])
            title = nodes.title()
            title += nodes.literal(text=f"exifclip {name}")
            section += title
            summary = nodes.paragraph()
            summary += nodes.Text(one_line[0].upper() + one_line[1:] + "." if one_line else "")  # a sentence
            section += summary
            if sub.description:
                description = nodes.paragraph()
                description += nodes.Text(sub.description)
                section += description
            section += nodes.literal_block(text=_usage(sub), language="text")
            note = _group_note(sub)
            if note is not None:
                section += note
            section += _argument_list(sub)
            self.state.document.note_implicit_target(section, section)
            out.append(section)
        return out


# -- public names -----------------------------------------------------------------------------
def _public_targets() -> dict[str, tuple[str, object]]:
    """``name -> (documented dotted path, object)`` for every name in ``exifclip.__all__``."""
    import exifclip

    targets = {}
    for name in exifclip.__all__:
        if name.startswith("__"):
            continue
        module = "exifclip" + exifclip._EXPORTS[name]  # relative names: ".splice.localizer"
        obj = getattr(importlib.import_module(module), name)
        targets[name] = (f"{module}.{name}", obj)
    return targets


def _attribute_doc(path: str) -> str | None:
    """The ``#:`` comment above a module-level constant, as autodoc reads it."""
    from sphinx.pycode import ModuleAnalyzer

    module, _, name = path.rpartition(".")
    try:
        lines = ModuleAnalyzer.for_module(module).find_attr_docs().get(("", name))
    except Exception:  # noqa: BLE001 - no source to read: no summary
        return None
    return "\n".join(lines) if lines else None


def _summary(obj: object, path: str) -> str:
    if inspect.isclass(obj) or inspect.isroutine(obj):
        doc = inspect.getdoc(obj)
    else:
        doc = _attribute_doc(path)
    if not doc:
        return ""
    first = doc.strip().split("\n\n")[0]
    return " ".join(line.strip() for line in first.splitlines())


class PublicNames(SphinxDirective):
    """``.. exifclip-public-names::`` - a table of ``exifclip.__all__``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 70",
            "",
            "   * - ``from exifclip import ...``",
            "     - what it is",
        ]
        for name, (path, obj) in _public_targets().items():
            lines.append(f"   * - :py:obj:`{name} <{path}>`")
            lines.append(f"     - {_summary(obj, path)}")
        content = StringList(lines, source="exifclip-public-names")
        container = nodes.container()
        nested_parse_with_titles(self.state, content, container)
        return container.children


def _check_public_names(app: Sphinx, env) -> None:
    documented = env.get_domain("py").objects
    for name, (path, _) in _public_targets().items():
        if path not in documented:
            logger.warning(
                f"exifclip.{name} is in exifclip.__all__ but not documented: add {path.rsplit('.', 1)[1]} "
                f"to the autosummary of {path.rsplit('.', 1)[0]} in docs/api.rst",
                type="exifclip",
                subtype="api",
            )


def _resolve_public_path(app: Sphinx, env, node, contnode):
    """``exifclip.Name`` -> the documented ``exifclip.module.Name``.

    A ``:doc:`` link to an optional page that is not written yet becomes plain text.
    """
    if node.get("reftype") == "doc" and node.get("reftarget", "").strip("/") in app.config.exifclip_optional_pages:
        return contnode
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    match = re.fullmatch(r"exifclip\.(\w+)(\.\w+)?", target)
    if not match:
        return None
    import exifclip

    module = exifclip._EXPORTS.get(match.group(1))
    if module is None:
        return None
    new_target = f"exifclip{module}.{match.group(1)}{match.group(2) or ''}"
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], new_target, node, contnode)


# -- docstrings -------------------------------------------------------------------------------
# scikit-learn's convention names fitted attributes with a trailing underscore
# (``embedding_dim_``); bare in reST, ``word_`` is a hyperlink reference to a
# missing target. Such a name outside any backticks is shown as code instead.
_FITTED_NAME = re.compile(r"(?<![\w`:<*/.\-])([A-Za-z]\w*_)(?=[\s),.;:]|$)")


def _quote_fitted_names(app, what, name, obj, options, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        if "`" not in line and "_" in line:
            lines[i] = _FITTED_NAME.sub(r"``\1``", line)


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """scikit-learn adds ``set_{method}_request`` to every estimator class; they are its API, not ours."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


# -- optional pages -------------------------------------------------------------------------------
def _drop_missing_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    srcdir = Path(app.srcdir)
    for page in app.config.exifclip_optional_pages:
        if any((srcdir / f"{page}{suffix}").exists() for suffix in app.config.source_suffix):
            continue
        pattern = re.compile(rf"^[ \t]+{re.escape(page)}[ \t]*$", re.MULTILINE)
        if pattern.search(source[0]):
            source[0] = pattern.sub("", source[0])
            logger.info(f"exifclip docs: {page} is not written yet; left out of the toctree of {docname}")


def setup(app: Sphinx) -> dict:
    app.add_config_value("exifclip_optional_pages", [], "env")
    app.add_directive("exifclip-cli", CliReference)
    app.add_directive("exifclip-public-names", PublicNames)
    app.connect("source-read", _drop_missing_pages)
    app.connect("autodoc-process-docstring", _quote_fitted_names)
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    app.connect("env-check-consistency", _check_public_names)
    app.connect("missing-reference", _resolve_public_path)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
