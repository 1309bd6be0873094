"""The package's structure, as a specification: no import cycles, the CLI on top, a light `--help`.

Imports are read from the source (every `import` statement, including those inside functions,
since a function-level import still ties two modules together); imports under
`if TYPE_CHECKING:` are for type checkers only and are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gazeheads

ROOT = Path(gazeheads.__path__[0])
PACKAGE = "gazeheads"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _under_type_checking(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """The gazeheads modules `path` imports (resolved to module names that exist)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            while imported and imported not in modules:  # `from pkg import name` names an attribute
                imported = imported.rsplit(".", 1)[0] if "." in imported else ""
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def _is_package_init(module: str, edges: dict[str, set[str]]) -> bool:
    return (ROOT.parent / module.replace(".", "/") / "__init__.py").is_file()


def test_no_import_cycle_in_the_package():
    edges = graph()
    # A package's __init__ that re-exports its own submodules is not a cycle of two modules:
    # drop edges from a package into its own children, and from a child to its own package.
    for module, targets in edges.items():
        edges[module] = {t for t in targets if not t.startswith(module + ".") and not module.startswith(t + ".")}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_library_modules_never_import_the_command_line():
    offenders = {m: sorted(t for t in targets if t == "gazeheads.cli" or t.startswith("gazeheads.cli."))
                 for m, targets in graph().items() if not m.startswith("gazeheads.cli")
                 and m not in ("gazeheads.__main__",)}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_argparse_lives_in_the_command_line_only():
    """Library modules take values, not argparse namespaces (the training scripts in gazeheads.tiny excepted)."""
    users = [module_name(p) for p in ROOT.rglob("*.py") if "import argparse" in p.read_text()]
    assert sorted(m for m in users if not m.startswith(("gazeheads.cli", "gazeheads.tiny"))) == []


def test_help_imports_no_torch():
    code = ("import sys\nfrom gazeheads.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for command in ('discover', 'steer', 'track', 'eval', 'presence', 'demo', 'run', 'verify', 'reproduce', 'data'):\n"
            "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'transformers', 'PIL', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, out.stdout[-500:]


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert gazeheads.__version__ == version("gazeheads")
    out = subprocess.run([sys.executable, "-m", "gazeheads", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"gazeheads {version('gazeheads')}"


def test_public_api_is_importable_as_written():
    for name in gazeheads.__all__:
        assert getattr(gazeheads, name) is not None, name
    assert gazeheads.plots.tracking_staircase  # the guide's spelling works after `import gazeheads`
    assert "cli" not in gazeheads.__all__ and "hook" not in gazeheads.__all__
