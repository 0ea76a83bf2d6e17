"""The package's shape: no import cycle in dgp_snr/ (function-level imports included), no module
over MAX_LINES lines, and the training entry point without the paper protocol."""

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dgp_snr"
MAX_LINES = 500
#: Modules allowed over MAX_LINES (none: add one only with the reason it cannot be split).
OVER_LIMIT: Set[str] = set()


def _module_name(path: Path) -> str:
    """dgp_snr/a/b.py -> dgp_snr.a.b; a package's __init__.py is the package itself."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:` (imports for type hints
    only, which never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None) if isinstance(child, ast.If) else None
            if isinstance(test, (ast.Name, ast.Attribute)) and (
                getattr(test, "id", None) == "TYPE_CHECKING"
                or getattr(test, "attr", None) == "TYPE_CHECKING"
            ):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The dgp_snr modules `name` imports anywhere in its file (functions included; not those
    for type hints only); `from dgp_snr.x import y` counts as dgp_snr.x.y where that is a
    module, else as dgp_snr.x."""
    is_package = path.name == "__init__.py"
    out: Set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # `import dgp_snr.a.b` runs dgp_snr.a.b; the longest known prefix is the module.
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            # ... and first each package above it (its __init__), unless the importer is
            # inside that package (which is then already being imported).
            for n in range(1, len(parts) + 1):
                module = ".".join(parts[:n])
                inside = name == module or name.startswith(module + ".")
                if module in known and not inside:
                    out.add(module)
    return out


def _import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_are_read_in_functions_and_not_for_type_hints_only(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dgp_snr import a\n"
        "def f():\n    from dgp_snr.b import thing\n"
    )
    known = {"dgp_snr.a", "dgp_snr.b", "dgp_snr.mod"}
    assert _imports("dgp_snr.mod", path, known) == {"dgp_snr.b"}


def test_no_import_cycle_in_dgp_snr():
    graph = _import_graph()
    assert "dgp_snr.runs" in graph["dgp_snr.train_run"]  # the graph is read at all
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_over_the_line_limit():
    over = {
        str(path.relative_to(REPO)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    unexpected = {path: n for path, n in over.items() if path not in OVER_LIMIT}
    assert not unexpected, f"modules over {MAX_LINES} lines: {unexpected}"


def test_the_training_entry_point_does_not_import_the_protocol():
    code = "import dgp_snr.train_run, sys; print('dgp_snr.protocol' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
