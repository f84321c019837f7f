"""The package's layering: no import cycle, no stage importing a later one, and a command line whose help and
recipes need no torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import st_lmtx

PACKAGE = Path(st_lmtx.__file__).parent
# Stages in the order data flows; a module may import its own stage or an earlier one only.
LAYERS = [
    ("st_lmtx.errors", "st_lmtx.files", "st_lmtx.layout", "st_lmtx.arguments"),
    ("st_lmtx.inputs",),
    ("st_lmtx.models",),
    ("st_lmtx.shortlist",),
    ("st_lmtx.teacher",),
    ("st_lmtx.pseudo_labels",),
    ("st_lmtx.losses",),
    ("st_lmtx.evaluation",),
    ("st_lmtx.tagger",),
    ("st_lmtx.trainer",),
    ("st_lmtx.cli",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer")


def imports(path: Path) -> set[str]:
    """The st_lmtx modules a file imports, anywhere in it (functions too), but under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    checking = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        assert not (isinstance(node, ast.ImportFrom) and node.level), (
            f"{path}: a relative import, which this reads not"
        )
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("st_lmtx"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("st_lmtx")}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py") if module_name(p) != "st_lmtx"}


def test_no_stage_imports_a_later_stage():
    wrong = [
        f"{m} -> {i}" for m, targets in graph().items() for i in targets if i != "st_lmtx" and layer(i) > layer(m)
    ]
    assert not wrong, wrong
    # and nothing inside the package goes through the package's lazy top-level names
    assert not [m for m, targets in graph().items() if "st_lmtx" in targets]


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """A chain of imports that comes back to its start (a package's import runs its ``__init__``), or []."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack, node, nxt]
            if state.get(nxt) is None and (found := visit(nxt, [*stack, node])):
                return found
        state[node] = 2
        return []

    for node in sorted(edges):
        if state.get(node) is None and (found := visit(node, [])):
            return found
    return []


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    # The check above can fail: two modules that import each other, one of them inside a function, are caught.
    package = tmp_path / "st_lmtx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from st_lmtx.b import x\n")
    (package / "b.py").write_text("def f():\n    from st_lmtx.a import y\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert find_cycle(graph()) == ["st_lmtx.a", "st_lmtx.b", "st_lmtx.a"]


def run_without_torch(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = f"import sys\n{code}\nprint('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_help_and_recipes_do_not_load_torch():
    assert (
        run_without_torch(
            "from st_lmtx.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['judge', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert main(['recipes']) == 0"
        )
        == "False False"
    )
    assert run_without_torch("import st_lmtx\nfrom st_lmtx import LMTXArguments, RunRecord") == "False False"
