"""The cache's modules form no import circle and know no storyboard: each one imports alone,
first, in a fresh interpreter, without loading the storyboard, plan, render, sync or cli."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hailuo_pipe

PACKAGE = Path(hailuo_pipe.__file__).parent
MODULES = sorted(
    "hailuo_pipe.cache" + ("" if p.stem == "__init__" else f".{p.stem}")
    for p in (PACKAGE / "cache").glob("*.py")
)
ABOVE = (
    "hailuo_pipe.storyboard",
    "hailuo_pipe.plan",
    "hailuo_pipe.render",
    "hailuo_pipe.sync",
    "hailuo_pipe.cli",
)


@pytest.mark.parametrize("module", MODULES)
def test_each_cache_module_imports_first_and_alone_knowing_no_storyboard(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({ABOVE!r})))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"{module} loads {run.stdout.split()}"


def _imports(path: Path) -> set[str]:
    """Every hailuo_pipe module `path` imports, at the top or inside a function (a circle
    closed by an import deferred into a function is still a circle); the package uses absolute
    imports only."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # a submodule?
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith("hailuo_pipe")}


def _graph() -> dict[str, set[str]]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: _imports(path) & set(names) for name, path in names.items()}


def test_no_import_circle_passes_through_the_cache_or_sync() -> None:
    graph = _graph()
    watched = [m for m in graph if m.startswith(("hailuo_pipe.cache", "hailuo_pipe.sync"))]
    assert "hailuo_pipe.cache.s3_store" in watched and "hailuo_pipe.sync" in watched
    for start in watched:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            module = todo.pop()
            assert module != start, f"{start} imports itself back through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
