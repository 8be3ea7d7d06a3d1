"""Every runtime dependency pyproject.toml declares is imported by the server: a declared
package nothing imports is still installed, locked and audited in every image."""

from __future__ import annotations

import ast
import importlib.metadata
import itertools
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[\[<>=~!; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]}
    return {name.lower().replace("_", "-") for name in names}


def _modules(node: ast.AST) -> list[str]:
    """What one node makes Python load: an import, importlib.import_module("x") (an optional
    module) or a ``[..., "-m", "x", ...]`` command line (the server runs granian that way)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return [str(node.args[0].value)]
    if isinstance(node, ast.List | ast.Tuple):
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        return [str(after) for flag, after in itertools.pairwise(values) if flag == "-m" and after]
    return []


def imported() -> set[str]:
    """The distributions whose top-level modules server/ and middleware/ load."""
    owners = importlib.metadata.packages_distributions()
    found: set[str] = set()
    for folder in ("server", "middleware"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                for module in _modules(node):
                    for dist in owners.get(module.partition(".")[0], ()):
                        found.add(dist.lower().replace("_", "-"))
    return found


def test_every_runtime_dependency_is_imported() -> None:
    assert declared() - imported() == set()
