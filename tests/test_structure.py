"""The package's structure: no import cycle between modules (every import counts, also inside functions), no private
name imported across packages, no module over 450 lines, and the orchestration entry points short. The layer
contracts themselves are checked by import-linter (`lint-imports`, in `make test`)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "automed"
MAX_LINES = 450
SHORT = {  # orchestration functions that must stay readable at a glance
    ("automed.workflow.train", "train_dataset"): 80,
    ("automed.workflow.sweep", "sweep_dataset"): 80,
    ("automed.workflow.sweep", "_sweep"): 80,
    ("automed.train.trainer", "train_fold"): 80,
    ("automed.workflow.fold", "run_fold"): 80,
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


@functools.cache  # the cycle and the private-name checks read the same imports: each module is parsed once
def _imports(name: str) -> list[tuple[str, str | None]]:
    """(module imported, name imported from it or None) for every import statement of module ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package(name).split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full, None) if full in MODULES else (base, a.name))
    return [(m, n) for m, n in out if m in MODULES]


def _graph() -> dict[str, set[str]]:
    return {m: {dep for dep, _ in _imports(m) if dep != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_no_private_name_imported_across_packages() -> None:
    bad = [
        f"{m} imports {name} from {dep}"
        for m in MODULES
        for dep, name in _imports(m)
        if name and name.startswith("_") and not name.startswith("__") and _package(dep) != _package(m)
    ]
    assert bad == []


def test_no_module_over_the_limit() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_orchestration_functions_are_short() -> None:
    for (module, function), limit in SHORT.items():
        tree = ast.parse(MODULES[module].read_text())
        (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        assert fn.end_lineno is not None
        length = fn.end_lineno - fn.lineno + 1
        assert length <= limit, f"{module}.{function} has {length} lines (limit {limit})"
