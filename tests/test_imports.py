"""The shape of the l2ul package: no import cycle between its modules, and no module or function grown past
the size a reader can hold (450 lines a module, 80 a function unless the line before its ``def`` carries a
comment containing ``long:`` that says why)."""
from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import Dict, List, Set, Tuple

import l2ul

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules() -> Dict[str, Path]:
    """Every module of l2ul (by dotted name) and its source file, found by :func:`pkgutil.walk_packages`."""
    def fail(name):
        raise ImportError(f"cannot import package {name} to list its modules")

    found = {"l2ul": Path(l2ul.__file__)}
    for info in pkgutil.walk_packages(l2ul.__path__, prefix="l2ul.", onerror=fail):
        leaf = info.name.rsplit(".", 1)[-1]
        folder = Path(info.module_finder.path)
        found[info.name] = folder / leaf / "__init__.py" if info.ispkg else folder / f"{leaf}.py"
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> List[Tuple[ast.stmt, bool]]:
    """Every ``import`` / ``from`` statement and whether it runs when the module is imported (module level,
    including ``if`` / ``try`` / ``with`` / class bodies) or only when a function runs (lazy). Imports under
    ``if TYPE_CHECKING:`` never run and are left out."""
    out: List[Tuple[ast.stmt, bool]] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, eager))
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), eager)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            else:
                visit(child, eager)

    visit(tree, True)
    return out


def _targets(module: str, is_pkg: bool, node: ast.stmt) -> List[str]:
    """The l2ul modules an import statement of ``module`` depends on (relative imports resolved): the
    imported module itself, or, for ``from X import name`` where ``X.name`` is no module, ``X``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "l2ul" or a.name.startswith("l2ul.")]
    if node.level:
        parts = module.split(".") if is_pkg else module.split(".")[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base != "l2ul" and not base.startswith("l2ul."):
        return []
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def _graph() -> Tuple[Dict[str, Set[str]], List[str]]:
    """The module-level import graph between l2ul modules, and imports (lazy ones too) of no l2ul module."""
    graph: Dict[str, Set[str]] = {m: set() for m in MODULES}
    unknown: List[str] = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, eager in _imports(tree):
            for target in _targets(name, path.name == "__init__.py", node):
                if target not in MODULES:
                    unknown.append(f"{name} line {node.lineno}: {target}")
                elif eager and target != name:
                    graph[name].add(target)
    return graph, unknown


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle (its modules, the first repeated at the end), or ``[]``."""
    state: Dict[str, int] = {}      # 1: on the current path, 2: done
    path: List[str] = []

    def dfs(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state:
            found = dfs(start)
            if found:
                return found
    return []


def test_walks_the_package():
    assert {"l2ul.bench", "l2ul.bench.grid", "l2ul.bench.continual", "l2ul.engine"} <= set(MODULES)
    assert all(p.is_file() for p in MODULES.values())


def test_no_import_cycle_between_l2ul_modules():
    graph, _ = _graph()
    assert graph["l2ul.bench"] >= {"l2ul.bench.grid", "l2ul.bench.continual"}
    cycle = _cycle(graph)
    assert not cycle, "module-level import cycle: " + " -> ".join(cycle)


def test_every_l2ul_import_names_an_l2ul_module():
    _, unknown = _graph()
    assert not unknown, "imports of modules l2ul does not have: " + "; ".join(unknown)


def test_cycle_detection_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


# ---------------------------------------------------------------------------------------------- sizes
def _size_violations(prefix: str = "l2ul") -> List[str]:
    """Modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES` lines
    without a ``long:`` comment on the line before their ``def`` (or before their first decorator)."""
    out = []
    for name, path in sorted(MODULES.items()):
        if name != prefix and not name.startswith(prefix + "."):
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if len(lines) > MAX_MODULE_LINES:
            out.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n <= MAX_FUNCTION_LINES:
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            before = {lines[i - 2] for i in (first, node.lineno) if i >= 2}
            if not any("#" in line and "long:" in line.split("#", 1)[1] for line in before):
                out.append(f"{name}.{node.name} (line {node.lineno}): {n} lines")
    return out


def test_bench_modules_and_functions_are_small():
    violations = _size_violations("l2ul.bench")
    assert not violations, "; ".join(violations)


# outside l2ul.bench, being split by others (issue #10); remove the mark when they are done
def test_modules_and_functions_are_small():
    violations = _size_violations()
    assert not violations, "; ".join(violations)


def test_long_comment_exempts_a_function(tmp_path, monkeypatch):
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    src = tmp_path / "mod.py"
    src.write_text(f"def short():\n    pass\n\n\ndef big():\n{body}\n\n\n# long: one table\ndef exempt():\n{body}\n")
    monkeypatch.setitem(globals(), "MODULES", {"l2ul.fake": src})
    assert _size_violations("l2ul.fake") == [f"l2ul.fake.big (line 5): {MAX_FUNCTION_LINES + 1} lines"]
