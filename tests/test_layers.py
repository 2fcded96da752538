"""The package's layers, read from its imports: no cycle, and nothing imports from a higher layer.

    core  <  parallel, models, layers, data, video_io, precision  <  model (and its helpers)
          <  training, streaming  <  the commands (cli, reproduce)

Every import counts, also one inside a function (a lazy import still ties the two modules).
A new top-level module or package must be given its layer in `LAYERS`.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "sideways_tf"

# The layer of each top-level module or package of sideways_tf (the package's own __init__ is the
# public facade: `sw.SidewaysModel`, `sw.models`, ...).
LAYERS = {
    "core": 0,
    "parallel": 1, "models": 1, "layers": 1, "data": 1, "video_io": 1, "precision": 1,
    "model": 2, "train_step": 2, "gradients": 2, "model_checks": 2, "input_checks": 2, "stream_state": 2,
    "serving": 2, "receptive_field": 2, "": 2,
    "training": 3, "streaming": 3,
    "cli": 4, "reproduce": 4,
    "train": 4, "quickstart": 4, "stream": 4, "absl_cli": 4,  # deprecated aliases of cli's modules
}


def modules(root: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
    """`{dotted module name: file}` of every module under `root` (a package is its `__init__`)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name,) + path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: pathlib.Path, known: set[str]) -> list[tuple[str, int]]:
    """`(imported module, line)` for each import of a module of the package in one file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            # `from pkg import name` imports the module pkg.name when there is one, else pkg itself.
            found += [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node.lineno)
                      for alias in node.names]
    return [(target, line) for target, line in found if target in known and target != name]


def layer_of(name: str) -> str:
    """The key of `LAYERS` a module belongs to: its top-level module or package under sideways_tf."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(edges: list[tuple[str, str, int]], layers: dict[str, int]) -> list[str]:
    """Each import of a module from a higher layer than its own, as `importer:line -> imported`."""
    return [f"{a}:{line} -> {b}" for a, b, line in edges if layers[layer_of(b)] > layers[layer_of(a)]]


def cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """The import cycles: each strongly connected set of two or more modules (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(members) > 1:
                found.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def edges() -> list[tuple[str, str, int]]:
    known = modules()
    return [(name, target, line) for name, path in known.items() for target, line in imports(name, path, set(known))]


def test_every_module_has_a_layer():
    unplaced = sorted({layer_of(name) for name in modules()} - set(LAYERS))
    assert not unplaced, f"give these modules of sideways_tf a layer in LAYERS: {unplaced}"


def test_no_module_imports_from_a_higher_layer(edges):
    assert not upward(edges, LAYERS), upward(edges, LAYERS)


def test_no_import_cycle(edges):
    assert not cycles(edges), cycles(edges)


def test_the_checks_find_an_upward_import_and_a_cycle(edges):
    # What the two tests would see if `core.engine` imported the model, and the model imported the engine.
    added = edges + [("sideways_tf.core.engine", "sideways_tf.model", 1)]
    assert upward(added, LAYERS) == ["sideways_tf.core.engine:1 -> sideways_tf.model"]
    assert ("sideways_tf.model", "sideways_tf.core.engine") in {(a, b) for a, b, _ in edges}
    assert any({"sideways_tf.core.engine", "sideways_tf.model"} <= set(cycle) for cycle in cycles(added))


def test_imports_are_read_whether_absolute_relative_or_inside_a_function(tmp_path):
    package = tmp_path / "sideways_tf"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("from sideways_tf import model\n")
    (package / "model.py").write_text("from .core import engine\n")
    (package / "core" / "__init__.py").write_text("")
    (package / "core" / "engine.py").write_text("def f():\n    import sideways_tf.model\n")
    known = modules(package)
    assert imports("sideways_tf", known["sideways_tf"], set(known)) == [("sideways_tf.model", 1)]
    assert imports("sideways_tf.model", known["sideways_tf.model"], set(known)) == [("sideways_tf.core.engine", 1)]
    assert imports("sideways_tf.core.engine", known["sideways_tf.core.engine"], set(known)) == [
        ("sideways_tf.model", 2)]
