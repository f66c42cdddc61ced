"""No import circles among recarch's modules or the benchmark renderers, counting every import
statement (module level, TYPE_CHECKING blocks and imports inside functions alike)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: Path, package: str):
    for path in sorted(folder.rglob("*.py") if package else folder.glob("*.py")):  # benchmarks/: scripts only
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join([package, *parts] if package else parts), path


def _graph(folder: Path, package: str, prefix: str):
    modules = dict(_modules(folder, package))
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges |= {t for t in targets if t.startswith(prefix) and t in modules and t != name}
        graph[name] = edges
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


@pytest.mark.parametrize("folder,package,prefix", [(ROOT / "src" / "recarch", "recarch", "recarch"),
                                                   (ROOT / "benchmarks", "", "render")])
def test_no_import_circles(folder, package, prefix):
    graph = _graph(folder, package, prefix)
    # a package's __init__ re-exporting its modules is not a circle with them
    graph = {m: {t for t in e if not m.startswith(t + ".")} for m, e in graph.items()}
    assert _cycle(graph) is None, " → ".join(_cycle(graph))
