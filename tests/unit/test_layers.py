"""The package's import graph points down the layer order of docs/architecture.md, with no circle.

Every ``import`` / ``from ... import`` of the package, at module level or inside a function, is
read from the source (ast), so a lazy import that runs up a layer fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import speech_interp

# Lowest first; a module may import its own layer or a lower one. The package face
# (speech_interp/__init__.py) is above everything and nothing inside the package imports it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("speech_interp.hooks",),
    ("speech_interp.stats", "speech_interp.artifacts", "speech_interp.shipped",
     "speech_interp.speech"),
    ("speech_interp.checkpoints",),
    ("speech_interp.sources",),
    ("speech_interp.models", "speech_interp.extend"),
    ("speech_interp.core", "speech_interp.data"),
    ("speech_interp.lens",),
    ("speech_interp.causal",),
    ("speech_interp.evaluation",),
    ("speech_interp.plotting",),
    ("speech_interp.organism",),
    ("speech_interp.testing",),
    ("speech_interp.cli",),
)  # fmt: skip
FACE = "speech_interp"
PACKAGE_DIR = Path(speech_interp.__file__).parent


def _sources() -> dict[str, Path]:
    """Module name -> file, for speech_interp/ and hooks/ (installed as speech_interp.hooks)."""
    import speech_interp.hooks as hooks

    files = {}
    for root, prefix in ((PACKAGE_DIR, FACE), (Path(hooks.__file__).parent, f"{FACE}.hooks")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = path
    return files


def _rank(module: str) -> int:
    """The layer of a package module (longest prefix match); the face ranks above all."""
    best, rank = -1, len(LAYERS)
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported package module) for every import of the package in one file."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target]
            if target == FACE:  # "from speech_interp import x": x may be a subpackage
                names = [f"{FACE}.{a.name}" if f"{FACE}.{a.name}" in SOURCES else FACE
                         for a in node.names]  # fmt: skip
            found += [(node.lineno, t) for t in names if t == FACE or t.startswith(FACE + ".")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith(FACE)]
    return found


SOURCES = _sources()


def test_every_module_has_a_layer():
    unplaced = [m for m in SOURCES if m != FACE and _rank(m) == len(LAYERS)]
    assert not unplaced, f"modules in no layer of LAYERS (add them): {unplaced}"


def test_imports_point_down():
    upward = []
    for module, path in SOURCES.items():
        if module == FACE:
            continue
        for line, target in _imports(module, path):
            if target == FACE or _rank(target) > _rank(module):
                upward.append(f"{path.name}:{line} {module} -> {target}")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def _module_of(target: str) -> str | None:
    """The package module an import names: itself, else its longest enclosing module."""
    while target and target not in SOURCES:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(sources: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (lazy imports included; the face left out)."""
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        if module == FACE:
            continue
        found = {_module_of(t) for _, t in _imports(module, path)}
        graph[module] = {t for t in found if t not in (None, FACE, module)}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_two_modules_import_each_other():
    """No circle of imports between modules, even within one layer (where upward checks are
    blind): each circle is listed with its modules."""
    found = circles(import_graph(SOURCES))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_check_sees_a_circle(tmp_path):
    """The checker itself: two modules of one layer that import each other are a circle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from speech_interp.extend import load_rows\n")
    b.write_text("from speech_interp.models import load\n")
    graph = import_graph({"speech_interp.models": a, "speech_interp.extend": b})
    assert circles(graph) == [["speech_interp.extend", "speech_interp.models"]]
    assert circles({"x": {"y"}, "y": {"z"}, "z": set()}) == []


def test_hooks_is_a_leaf():
    inside = [
        f"{module} -> {target}"
        for module, path in SOURCES.items()
        if module.startswith(f"{FACE}.hooks")
        for _, target in _imports(module, path)
        if not target.startswith(f"{FACE}.hooks")
    ]
    assert not inside, f"hooks/ imports the rest of the package: {inside}"


def test_the_face_names_its_exports_once():
    """__all__ comes from _EXPORTS, and the TYPE_CHECKING imports name exactly the same."""
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text())
    typed = {
        (node.module, a.name)
        for stmt in tree.body
        if isinstance(stmt, ast.If) and getattr(stmt.test, "id", None) == "TYPE_CHECKING"
        for node in stmt.body
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }
    exported = {(m, n) for m, names in speech_interp._EXPORTS.items() for n in names}
    assert typed == exported
    assert sorted(speech_interp.__all__) == sorted(["__version__", *speech_interp._MODULE_OF])


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a lazy upward import inside a function is found."""
    path = tmp_path / "models.py"
    path.write_text("def f():\n    from speech_interp.cli.app import main\n")
    assert _imports("speech_interp.models", path) == [(2, "speech_interp.cli.app")]
    assert _rank("speech_interp.cli.app") > _rank("speech_interp.models")
