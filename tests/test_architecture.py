"""The shape of the source tree: imports one way, public names listed once, small pieces.

See docs/architecture.md for the rules these tests keep.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import exifclip

PACKAGE = Path(exifclip.__file__).parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80  # code lines, docstring excluded; longer needs a "# long:" comment saying why


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, current: str) -> str:
    """The absolute name of ``from {'.' * level}{module} import ...`` written in ``current``."""
    if level == 0:
        return module
    base = current.split(".")
    if not _is_package(current):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module imported, name imported or None, line)`` for every exifclip import of ``name``,
    function-level ones included, TYPE_CHECKING blocks left out."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("exifclip")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, name)
            if target.split(".")[0] != "exifclip":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        edges = set()
        for target, _, _ in _imports(name):
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_flow():
    graph = _graph()
    for name, edges in graph.items():
        if not name.startswith(("exifclip.cli", "exifclip.__main__")):
            assert not [e for e in edges if e.startswith("exifclip.cli")], f"{name} imports the command line"
        if name.startswith("exifclip.modeling"):
            upward = [e for e in edges if e.split(".")[1] in ("training", "splice", "distortion", "embedder", "probes")]
            assert not upward, f"{name} imports {upward}"


def test_no_module_imports_another_modules_private_names():
    offenders = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}.{imported}"
        for name in MODULES
        for target, imported, line in _imports(name)
        if imported is not None and imported.startswith("_") and not imported.startswith("__") and target != name
    ]
    assert not offenders, "\n".join(offenders)


def test_modules_are_small():
    big = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_functions_are_small_or_say_why():
    long = []
    for name, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            length = node.end_lineno - node.lineno + 1 - (len(doc.splitlines()) + 2 if doc else 0)
            body = lines[node.lineno - 1 : node.end_lineno]
            if length > MAX_FUNCTION_LINES and not any(line.strip().startswith("# long:") for line in body):
                long.append(f"{name}.{node.name} ({length} lines)")
    assert not long, "functions over 80 lines without a '# long:' reason: " + ", ".join(long)


def test_public_names_come_from_one_table():
    assert exifclip.__all__ == sorted(exifclip._EXPORTS) + ["__version__"]
    assert dir(exifclip) == sorted(exifclip.__all__), "dir() shows public names only"
    tree = ast.parse(MODULES["exifclip"].read_text())
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno in _type_checking_lines(tree):
            for alias in node.names:
                typed[alias.name] = "." * node.level + (node.module or "")
    assert typed == exifclip._EXPORTS, "the TYPE_CHECKING imports and _EXPORTS disagree"


@pytest.mark.parametrize("package", ["exifclip", "exifclip.modeling", "exifclip.splice", "exifclip.distortion",
                                     "exifclip.training"])
def test_every_exported_name_exists_where_it_is_said_to(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        if name != "__version__":
            assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("name", [n for n in MODULES if not n.rsplit(".", 1)[-1].startswith("_")])
def test_every_public_module_lists_what_it_defines(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_the_flat_module_paths_of_0_1_still_import():
    for old, new in exifclip._MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from exifclip.hub import load_model  # noqa: F401 - the form users wrote
    from exifclip.splice import SpliceLocalizer, consistency  # noqa: F401


def test_import_exifclip_loads_no_heavy_library():
    code = "import sys, exifclip; print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
