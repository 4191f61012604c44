"""The house rules of the package (issue 14): small modules, no import circle, no emulator in it.

Read from the source, statically: an import circle need not fail at run time to make the code
hard to follow, and a module grows past its concept long before anything breaks.
"""

from __future__ import annotations

import ast
import graphlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hailuo_pipe"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _top_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that importing `name` runs (imports not inside functions, not
    under TYPE_CHECKING). Importing a.b.c runs a and a.b first; for `from a.b import c`, a.b's
    own code counts only when c is a name it defines, not a submodule. The importer's own
    packages are left out: they run before it whatever it imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    targets: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if not isinstance(node, ast.Try) else node.body:
            if isinstance(sub, ast.Import):
                targets |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                submodules = {f"{sub.module}.{a.name}" for a in sub.names} & modules.keys()
                targets |= submodules
                if len(submodules) < len(sub.names):
                    targets.add(sub.module)
                else:  # only its packages run, not its own names
                    targets |= _packages(sub.module) - {sub.module}
    runs = set()
    for target in targets:
        runs |= _packages(target)
    return {m for m in runs if m in modules} - _packages(name)


def _packages(name: str) -> set[str]:
    """`a.b.c` -> {a, a.b, a.b.c}"""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def test_no_module_of_the_package_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_package_has_no_import_circle() -> None:
    modules = _modules()
    graph = {name: _top_level_imports(name, path, modules) for name, path in modules.items()}
    assert "hailuo_pipe.state.lockfile" in graph["hailuo_pipe.render.scene"]  # it can see edges
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_the_wheel_holds_no_emulator() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["hailuo_pipe"]
    assert not list(PACKAGE.rglob("*emulator*"))
    assert (ROOT / "hailuo_emulator" / "__init__.py").is_file()


def test_every_user_facing_error_lives_in_errors_py_and_is_in_its_tree() -> None:
    from hailuo_pipe import errors

    outside = {
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in _modules().values()
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(b).endswith(("Error", "Refused")) for b in node.bases)
        and not node.name.startswith("_")
    }
    assert not outside, outside
    kinds = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.HailuoPipeError)
    ]
    assert len(kinds) > 20
    missing = [k for k in kinds if k not in (errors.__doc__ or "")]
    assert not missing, missing
