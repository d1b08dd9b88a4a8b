"""The import graph of every package module, read with `ast` (imports inside functions count,
`if TYPE_CHECKING:` blocks do not): no cycles, no private names imported across modules, and
the package arrows of docs/ARCHITECTURE.md (storage, planners, generator import nothing of ours;
flows imports those; orchestrator imports flows and below)."""

import ast
from pathlib import Path

from support import REPO

PACKAGES = ("storage", "planners", "generator", "flows", "orchestrator")
MAY_IMPORT = {
    "storage": set(),
    "planners": set(),
    "generator": set(),
    "flows": {"storage", "planners", "generator"},
    "orchestrator": {"flows", "storage", "planners", "generator"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if "migrations" in parts and "versions" in parts:
                continue  # Alembic revision scripts are loaded by Alembic, not imported
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _walk(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _resolve(name: str) -> str | None:
    """The module of ours `name` denotes (a module, or the package holding the attribute)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module of ours, names taken from it, line) for each import statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _resolve(alias.name)) is not None:
                    out.append((target, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # `from pkg import submodule`
                    out.append((sub, [], node.lineno))
                elif (target := _resolve(base)) is not None:
                    out.append((target, [alias.name], node.lineno))
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_the_walk_sees_imports_inside_functions():
    targets = {t for t, _, _ in GRAPH["orchestrator.cli"]}
    assert "flows.video.produce" in targets  # imported inside `run`, not at the top
    assert len(MODULES) > 60


def test_no_import_cycles():
    edges = {m: sorted({t for t, _, _ in deps if t != m}) for m, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_imported_across_modules():
    bad = [
        f"{MODULES[m].relative_to(REPO)}:{line}: from {target} import {name}"
        for m, deps in GRAPH.items()
        for target, names, line in deps
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != m
    ]
    assert not bad, "private names used across modules (make them public):\n" + "\n".join(bad)


def test_packages_import_only_downwards():
    bad = [
        f"{MODULES[m].relative_to(REPO)}:{line}: {m} imports {target}"
        for m, deps in GRAPH.items()
        for target, _, line in deps
        if target.split(".")[0] != m.split(".")[0]
        and target.split(".")[0] not in MAY_IMPORT[m.split(".")[0]]
    ]
    assert not bad, "\n".join(bad)


def _diffusers_internal_imports() -> set[str]:
    """diffusers modules with a `_private` path component that our packages import."""
    found = set()
    for path in MODULES.values():
        for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "diffusers" and any(p.startswith("_") for p in parts[1:]):
                    found.add(name)
    return found


def test_private_diffusers_modules_are_listed_with_a_reason():
    listed = (REPO / "docs" / "dependencies.md").read_text()
    internal = _diffusers_internal_imports()
    assert internal  # the check sees them (transformer_actavatar imports two)
    missing = sorted(m for m in internal if f"`{m}`" not in listed)
    assert not missing, f"private diffusers modules not in docs/dependencies.md: {missing}"
