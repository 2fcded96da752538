"""`BUILD` mirrors the source tree: every module in a target, every target's deps equal to its imports.

Bazel is not available here, so this test reads `BUILD` itself (Starlark is Python syntax for what
`BUILD` uses) and checks it against the imports that `ast` finds in each file:

- every `.py` file of the package, the CLI module, the benchmarks, the docs and the tests belongs to exactly
  one target (a binary's or test's `main` may also be listed by the target that runs it);
- a target's `deps` are exactly the targets owning the modules its sources import (and its
  `main`), plus `@pypi//name` for each third-party import; `sw.data`-style lazy submodules count
  as imports. What a test only starts in a subprocess (a CLI) goes in its `data`, not its `deps`;
- every `@pypi//name` is a requirement (or extra) in `setup.py`, and the targets form no cycle.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent("reads files")

ROOT = Path(__file__).resolve().parent.parent
INTERNAL_ROOTS = ("sideways_tf", "sideways_tf_cli", "benchmarks", "tests", "docs")
# import name -> the distribution that provides it (as rules_python names it in the `pypi` hub).
DISTRIBUTIONS = {
    "absl": "absl_py",
    "av": "av",
    "cv2": "opencv_python_headless",
    "jax": "jax",
    "keras": "keras",
    "matplotlib": "matplotlib",
    "nbclient": "nbclient",
    "nbformat": "nbformat",
    "numpy": "numpy",
    "pytest": "pytest",
    "skvideo": "scikit_video",
    "tensorboard": "tensorboard",
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow_datasets",
}
LAZY_SUBMODULES = ("data", "parallel", "streaming", "training")  # sideways_tf.__getattr__


def load_build(path: Path) -> dict:
    """Evaluates `BUILD` with stand-ins for Bazel's rules; returns {":name": target dict}."""
    targets = {}

    def rule(kind):
        def define(name, **kwargs):
            assert f":{name}" not in targets, f"target {name} defined twice"
            targets[f":{name}"] = {"kind": kind, "name": name, **kwargs}
        return define

    def glob(include, exclude=()):
        found = {str(p.relative_to(ROOT)) for pattern in include for p in ROOT.glob(pattern)}
        dropped = {str(p.relative_to(ROOT)) for pattern in exclude for p in ROOT.glob(pattern)}
        return sorted(found - dropped)

    scope = {
        "load": lambda *args: None,
        "package": lambda **kwargs: None,
        "glob": glob,
        "py_library": rule("py_library"),
        "py_binary": rule("py_binary"),
        "py_test": rule("py_test"),
    }
    exec(compile(path.read_text(), str(path), "exec"), scope)  # noqa: S102  (our own BUILD file)
    return targets


def module_file(module: str) -> str | None:
    """`a.b.c` -> `a/b/c.py` or `a/b/c/__init__.py` if that file exists, else None."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return str(candidate.relative_to(ROOT))
    return None


def imports_of(path: str) -> tuple[set[str], set[str]]:
    """(repository files, third-party top-level names) that the file at `path` imports."""
    tree = ast.parse((ROOT / path).read_text())
    parts = Path(path).with_suffix("").parts
    package = parts[:-1]
    modules, sideways_aliases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.add(alias.name)
                if alias.name == "sideways_tf":
                    sideways_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                modules.add(submodule if module_file(submodule) else base)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in sideways_aliases and node.attr in LAZY_SUBMODULES):
            modules.add(f"sideways_tf.{node.attr}")
    files, third_party = set(), set()
    for module in modules:
        top = module.split(".")[0]
        if top in INTERNAL_ROOTS:
            found = module_file(module)
            assert found, f"{path} imports {module}, which is not a file of the repository"
            files.add(found)
        elif top not in sys.stdlib_module_names and top != "__future__":
            third_party.add(top)
    return files, third_party


def source_files() -> list[str]:
    files = [p for root in ("sideways_tf", "benchmarks", "tests", "docs") for p in (ROOT / root).rglob("*.py")]
    return sorted(str(p.relative_to(ROOT)) for p in [*files, ROOT / "sideways_tf_cli.py"])


def setup_requirements() -> set[str]:
    """Every distribution `setup.py` names (requirements and extras), normalized as `pypi` labels."""
    text = (ROOT / "setup.py").read_text()
    names = re.findall(r'"([A-Za-z0-9_.\-]+)\s*(?:[<>=~!][^"]*)?"', text)
    return {re.sub(r"[-.]", "_", n).lower() for n in names}


TARGETS = load_build(ROOT / "BUILD")


def owners() -> dict[str, str]:
    """file -> the target that owns it: a library lists it, or else the one binary or test that does.

    A binary or test may also list, as its `main`, a file that one of its libraries owns.
    """
    owned = {}
    libraries_first = sorted(TARGETS.items(), key=lambda item: item[1]["kind"] != "py_library")
    for label, target in libraries_first:
        for src in target.get("srcs", []):
            if src in owned:
                shared_main = target["kind"] != "py_library" and src == target.get("main")
                assert shared_main, f"{src} is in both {owned[src]} and {label}"
                continue
            owned[src] = label
    return owned


def test_every_source_file_is_in_exactly_one_target():
    owned = owners()
    missing = [f for f in source_files() if f not in owned]
    assert not missing, f"files in no BUILD target: {missing}"
    absent = [f for f in owned if not (ROOT / f).is_file()]
    assert not absent, f"BUILD lists files that do not exist: {absent}"


def test_mains_are_their_targets_sources():
    for label, target in TARGETS.items():
        if target["kind"] != "py_library":
            assert target.get("main") in target["srcs"], f"{label}: main must be one of its srcs"
            owner = owners()[target["main"]]
            assert owner == label or owner in target["deps"], f"{label}: its main belongs to {owner}, not a dep"


@pytest.mark.parametrize("label", sorted(TARGETS))
def test_deps_are_exactly_the_imports(label):
    owned = owners()
    target = TARGETS[label]
    expected = set()
    if target.get("main") and owned[target["main"]] != label:
        expected.add(owned[target["main"]])  # the library that holds this target's main
    for src in target["srcs"]:
        if owned[src] != label:
            continue  # the library that owns it declares its imports
        files, third_party = imports_of(src)
        expected |= {owned[f] for f in files if owned.get(f) != label}
        unknown = third_party - set(DISTRIBUTIONS)
        assert not unknown, f"{src} imports {sorted(unknown)}: add them to DISTRIBUTIONS in this test"
        expected |= {f"@pypi//{DISTRIBUTIONS[name]}" for name in third_party}
    declared = set(target.get("deps", []))
    assert declared == expected, (
        f"{label}: missing deps {sorted(expected - declared)}, deps it does not import {sorted(declared - expected)}")


def test_third_party_deps_are_requirements_of_setup_py():
    named = {d.split("//")[1] for t in TARGETS.values() for d in t.get("deps", []) if d.startswith("@pypi//")}
    assert named <= setup_requirements(), f"not in setup.py: {sorted(named - setup_requirements())}"


def test_targets_form_no_cycle():
    def visit(label, path):
        assert label not in path, f"dependency cycle: {' -> '.join([*path, label])}"
        for dep in TARGETS[label].get("deps", []):
            if dep.startswith(":"):
                visit(dep, [*path, label])

    for label in TARGETS:
        visit(label, [])
