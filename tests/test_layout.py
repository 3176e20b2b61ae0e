"""The house rules of `utils/`: no import cycles, build code kept apart, every learner-facing
module says which notebook teaches it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in UTILS.rglob("*.py")}
def is_build_code(name: str) -> bool:
    return name == "utils.toy" or name.startswith("utils.toy.")


LEARNER_MODULES = sorted(n for n in MODULES if not is_build_code(n) and n != "utils")


def imports_of(name: str) -> set[str]:
    """The modules of `utils` that `name` imports (a package's submodules count as themselves)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in MODULES and c != name and c != "utils"}
    return found


def test_the_import_graph_has_no_cycle():
    graph = {name: imports_of(name) for name in MODULES if name != "utils"}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("name", LEARNER_MODULES)
def test_learner_modules_never_import_the_build_code(name):
    assert not any(is_build_code(m) for m in imports_of(name)), f"{name} imports utils.toy"


@pytest.mark.parametrize("name", LEARNER_MODULES)
def test_each_learner_module_names_the_notebook_that_teaches_it(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text())) or ""
    assert re.search(r"notebooks/\d\d_\w+\.ipynb", doc), f"{name}'s docstring names no notebook"


def test_one_constant_per_fact():
    """The weights folder and CLIP's normalisation are defined once."""
    sources = {n: p.read_text() for n, p in MODULES.items()}
    for pattern in (r'^\s*WEIGHTS(_DIR)?\s*=', r'0\.48145466', r'0\.26862954'):
        where = [n for n, s in sources.items() if re.search(pattern, s, re.M)]
        assert len(where) == 1, f"{pattern!r} is defined in {where}"
