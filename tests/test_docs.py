"""The docs: the API reference is up to date, every link between pages resolves, nothing points outside the repo,
every documented command uses flags its command has."""

import functools
import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent("reads files and docstrings")

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "experiments").glob("*.md"),
                ROOT / "benchmarks" / "README.md", *(ROOT / "notebooks").glob("*.ipynb")])


def test_api_reference_is_generated_from_the_current_docstrings():
    spec = importlib.util.spec_from_file_location("generate_api", ROOT / "docs" / "generate_api.py")
    generate_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate_api)
    assert (ROOT / "docs" / "api.md").read_text() == generate_api.render(), "run: python docs/generate_api.py"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_named_files_exist(page):
    text = page.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)  # markdown links
    targets = [t for t in targets if not re.match(r"[a-z]+://", t)]
    missing = [t for t in targets if not (page.parent / t).exists()]
    named = re.findall(r"`((?:docs|experiments|benchmarks|notebooks)/[\w./-]+\.(?:md|py|ipynb|png|json))`", text)
    missing += [n for n in named if not (ROOT / n).exists()]
    assert not missing, f"{page.relative_to(ROOT)} refers to files that do not exist: {missing}"


def test_nothing_refers_to_files_outside_the_repository():
    offenders = []
    for path in [*ROOT.glob("*.md"), *ROOT.rglob("*.py"), *ROOT.rglob("*.md"), *ROOT.rglob("*.ipynb")]:
        if ".git" in path.parts or path == Path(__file__):
            continue
        text = path.read_text(errors="ignore")
        if re.search(r"DESIGN\.md|DESIGN section|\.\./shared", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files point at a design document outside the repository: {sorted(set(offenders))}"


def test_benchmarks_readme_lists_every_script():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    libraries = ("__init__", "common", "networks", "report")
    scripts = [p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in libraries]
    unlisted = [s for s in scripts if f"| `python -m benchmarks.{s}" not in readme]
    assert scripts and not unlisted, f"give these a row in benchmarks/README.md's table: {unlisted}"


def test_api_reference_has_no_unreadable_lines():
    longest = max((ROOT / "docs" / "api.md").read_text().splitlines(), key=len)
    assert len(longest) < 2000, longest[:200]


# Each documented command and the module that defines its flags.
COMMANDS = {"sideways-train": "sideways_tf/cli/train.py", "sideways-quickstart": "sideways_tf/cli/quickstart.py",
            "sideways-stream": "sideways_tf/cli/stream.py", "sideways-reproduce": "sideways_tf/cli/reproduce.py"}
ABSL_FLAGS = {"help", "helpshort", "helpfull", "verbosity", "alsologtostderr", "logtostderr"}


_READING: set = set()  # the modules `_defined_flags` is reading now (imports may form a cycle)


@functools.cache
def _defined_flags(path: str) -> frozenset:
    """The `--flags` module `path` defines (argparse or absl), and those of the project modules it imports."""
    if path in _READING or not (ROOT / path).exists():
        return frozenset()
    _READING.add(path)
    source = (ROOT / path).read_text()
    flags = set(re.findall(r"(?:add_argument|flags\.DEFINE_\w+)\(\s*\"-?-?(\w+)\"", source))
    for module in re.findall(r"from ((?:benchmarks|sideways_tf)(?:\.\w+)+) import", source):
        flags |= _defined_flags(module.replace(".", "/") + ".py")
    _READING.discard(path)
    return frozenset(flags)


@pytest.mark.parametrize("page", [p for p in PAGES if p.suffix == ".md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_use_flags_the_commands_have(page):
    text = page.read_text().replace("\\\n", " ")  # continued command lines
    pattern = r"(python -m benchmarks\.\w+|python -m sideways_tf\.cli\.\w+|" + "|".join(COMMANDS) + r")\b([^\n`]*)"
    unknown = []
    for command, rest in re.findall(pattern, text):
        if command.startswith("python -m "):
            path = command[len("python -m "):].replace(".", "/") + ".py"
        else:
            path = COMMANDS.get(command)
        if path is None or not (ROOT / path).exists():
            unknown.append(f"{command} (no such command)")
            continue
        rest = rest.split(" | ")[0]  # a table row's next cell
        unknown += [f"{command} --{flag}" for flag in re.findall(r"(?<![\w-])--(\w+)", rest)
                    if flag not in _defined_flags(path) | ABSL_FLAGS]
    assert not unknown, f"{page.relative_to(ROOT)} documents flags its commands do not define: {sorted(set(unknown))}"
