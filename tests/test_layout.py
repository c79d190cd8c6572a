"""The package's shape (docs/design.md, Layers): no import cycle anywhere, no module over 500 lines.

Imports are read from the source (every `import` and `from ... import`, at module level or inside
a function: a lazy import closes a cycle as surely as an eager one). The layers themselves are
checked by import-linter (`make lint`, the contract in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imagegen"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The package's modules that module `name` imports: `from a.b import c` is module a.b.c when
    there is one, else a.b (c is a name a.b defines). Importing a.b.c also runs a/__init__ and
    a/b/__init__ first; those implicit edges are not counted (every submodule would otherwise
    close a cycle with a package __init__ that imports it)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # a submodule, else a name defined in (the __init__ of) base
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {target for target in found if target in MODULES and target != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_walk_sees_lazy_and_relative_imports_and_finds_a_planted_cycle():
    assert "imagegen.pipelines" in imports_of("imagegen")  # lazy, inside __getattr__
    assert "imagegen.pipelines.base" in imports_of("imagegen.pipelines.diffusion")
    assert "imagegen.config.checks" in imports_of("imagegen.config.loading")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_module_that_imports_it_back():
    graph = {name: imports_of(name) for name in MODULES}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines; split it along a responsibility"


def test_the_cascade_disk_format_and_the_config_import_no_torch():
    """imagegen.cascade (manifest, assemble, its CLI) and imagegen.config stay one layer below
    everything that needs torch: reading or assembling a cascade folder is instant."""
    import subprocess
    import sys

    code = (
        "import sys, imagegen.cascade.assemble, imagegen.cascade.__main__, imagegen.config; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent).returncode == 0
