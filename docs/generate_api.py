"""Writes `docs/api.md`, the API reference, from the public objects' signatures and docstrings.

    python docs/generate_api.py            # rewrite docs/api.md
    python docs/generate_api.py --check    # exit 1 if docs/api.md is out of date (a test runs this)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import typing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "api.md")

# (module, the names documented from it, in this order). Classes list their public methods that
# have docstrings of their own (not inherited from Keras).
SECTIONS = [
    ("sideways_tf", ["SidewaysModel", "MODES", "FUSIONS", "SHORTCUTS", "highest_precision",
                     "temporal_receptive_field"]),
    ("sideways_tf.models", None),
    ("sideways_tf.layers", None),
    ("sideways_tf.data", None),
    ("sideways_tf.training", None),
    ("sideways_tf.training.runner", ["run", "build_model", "build_datasets", "format_results"]),
    ("sideways_tf.training.distribution", ["strategy", "is_chief", "num_processes", "barrier"]),
    ("sideways_tf.training.worker_loop", ["WorkerLoop", "distribute"]),
    ("sideways_tf.reproduce.study", ["reproduce"]),
    ("sideways_tf.reproduce.claims", ["Claim", "Arm", "CLAIMS", "MINIATURE"]),
    ("sideways_tf.reproduce.verdict", ["Greater", "Similar", "AtLeast", "Metric", "Difference", "judge"]),
    ("sideways_tf.parallel", None),
    ("sideways_tf.parallel.gpipe", ["gradient_function", "gradients", "clip_gradients", "bubble"]),
    ("sideways_tf.streaming", None),
    ("sideways_tf.streaming.learner", ["autoencoder", "OnlineLearner", "to_float"]),
]


def _first_paragraph(doc: str) -> str:
    return inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ") if doc else ""


def _signature(obj) -> str:
    """`(a: int, b: str = 'x') -> list`, with annotations as written (this package's are strings)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts, keyword_only_marked = [], False
    for parameter in signature.parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        if parameter.kind == parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        text = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "") + parameter.name
        if parameter.kind == parameter.VAR_POSITIONAL:
            keyword_only_marked = True
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            default = getattr(parameter.default, "__name__", None) if callable(parameter.default) else None
            text += f" = {default or repr(parameter.default)}"
        parts.append(text)
    returns = signature.return_annotation
    arrow = f" -> {_annotation(returns)}" if returns is not signature.empty else ""
    return f"({', '.join(parts)}){arrow}"


def _annotation(annotation) -> str:
    if isinstance(annotation, typing.ForwardRef):  # a NamedTuple's fields under `from __future__ import annotations`
        return annotation.__forward_arg__
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _own_methods(cls) -> list[tuple[str, object]]:
    methods = []
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        function = member.fget if isinstance(member, property) else member
        if callable(function) and getattr(function, "__doc__", None) and name != "__init__":
            methods.append((name, member))
    return methods


def _entry(module_name: str, name: str, obj) -> list[str]:
    if inspect.isclass(obj):
        lines = [f"### `{module_name}.{name}{_signature(obj)}`", "", inspect.cleandoc(obj.__doc__ or ""), ""]
        for method_name, member in _own_methods(obj):
            if isinstance(member, property):
                lines += [f"- **`{method_name}`** (property): {_first_paragraph(member.fget.__doc__)}"]
            else:
                lines += [f"- **`{method_name}{_signature(member)}`**: {_first_paragraph(member.__doc__)}"]
        return lines + [""]
    if callable(obj):
        return [f"### `{module_name}.{name}{_signature(obj)}`", "", inspect.cleandoc(obj.__doc__ or ""), ""]
    return [f"### `{module_name}.{name}`", "", _value(obj), ""]


def _value(obj) -> str:
    """A constant's value: its repr when short, else what it holds (a long repr makes an unreadable line)."""
    text = repr(obj)
    if len(text) <= 300:
        return f"`{text}`"
    if isinstance(obj, dict):
        keys = ", ".join(f"`{k}`" for k in obj)
        return f"A dict of {len(obj)} {type(next(iter(obj.values()))).__name__} entries: {keys}."
    if isinstance(obj, (list, tuple)):
        kinds = sorted({type(x).__name__ for x in obj})
        return f"A {type(obj).__name__} of {len(obj)} {' / '.join(kinds)} entries."
    return f"`{text[:280]}...`"


def render() -> str:
    """The whole of `docs/api.md`."""
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/generate_api.py` (a test fails when this page is",
             "out of date). `docs/README.md` has the API in brief.", ""]
    for module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        names = names or list(getattr(module, "__all__", []))
        lines += [f"## `{module_name}`", "", _first_paragraph(module.__doc__), ""]
        for name in names:
            lines += _entry(module_name, name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    text = render()
    if args.check:
        with open(OUTPUT, encoding="utf-8") as f:
            if f.read() != text:
                print("docs/api.md is out of date: run python docs/generate_api.py", file=sys.stderr)
                return 1
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
