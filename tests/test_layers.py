"""Layers only look down (docs ARCHITECTURE.md, "Contracts between stages").

The imports of every module are read from its source with `ast` (lazy imports inside
functions count too). LAYERS says, for each part of the package, what it must never
import; ACYCLIC lists the packages whose modules must not import each other in a circle.
To check more of the package, add rows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "pipeline"

# The package from the bottom up: a module may import from its own level and below,
# never from above (`pipeline` itself, which holds only the version, is below all).
LEVELS = [
    ("foundation", ["pipeline.errors", "pipeline.layout", "pipeline.channels", "pipeline.provenance"]),
    ("readers and writers of files", ["pipeline.io"]),
    ("mathematics", ["pipeline.dsp", "pipeline.sleep.hmm"]),
    ("configuration", ["pipeline.config"]),
    ("stages", ["pipeline.convert", "pipeline.spectral", "pipeline.tracking", "pipeline.sleep", "pipeline.figures", "pipeline.synth"]),
    ("back-ends", ["pipeline.google_api", "pipeline.sheets", "pipeline.store", "pipeline.executor"]),
    ("status", ["pipeline.progress"]),
    ("poller", ["pipeline.poller"]),
    ("command line", ["pipeline.cli", "pipeline.__main__"]),
]


def level_of(module: str) -> int | None:
    """The level of a module: that of the longest prefix naming it (sleep.hmm is below sleep)."""
    best = None
    for i, (_, prefixes) in enumerate(LEVELS):
        for p in prefixes:
            if within(module, p) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    return None if best is None else best[0]


# (layer, prefixes it must not import, why): each level must not import the levels above
# it, and two rules inside a level.
LAYERS = [(prefix, [p for _, higher in LEVELS[i + 1:] for p in higher], f"{name} only look down")
          for i, (name, prefixes) in enumerate(LEVELS[:-1]) for prefix in prefixes] + [
    ("pipeline.io", ["pipeline.dsp"], "readers know no filter"),
    ("pipeline.dsp", ["pipeline.io"], "the mathematics knows no file format"),
]
ACYCLIC = ["pipeline.io", "pipeline"]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules `path` imports: for `from a.b import c`, a.b.c if that is a module, else a.b."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def find_cycle(graph: dict[str, set[str]], prefix: str) -> list[str] | None:
    """One import cycle among the modules under `prefix`, as a path that returns to its start."""
    nodes = {n for n in graph if within(n, prefix)}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n] & nodes):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        path.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


GRAPH = import_graph(PACKAGE_ROOT)


@pytest.mark.parametrize("layer,forbidden,why", LAYERS, ids=[f"{row[0]}-{i}" for i, row in enumerate(LAYERS)])
def test_layers_only_look_down(layer, forbidden, why):
    mine = level_of(layer)
    wrong = sorted(f"{mod} imports {imp}" for mod, imps in GRAPH.items()
                   if within(mod, layer) and (mine is None or level_of(mod) == mine)
                   for imp in imps if any(within(imp, f) for f in forbidden) and level_of(imp) != level_of(mod))
    assert not wrong, f"{layer} must not import {', '.join(forbidden)} ({why}): " + "; ".join(wrong)


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycle(package):
    assert any(within(m, package) for m in GRAPH), f"no modules found under {package}"
    cycle = find_cycle(GRAPH, package)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_level():
    missing = sorted(m for m in GRAPH if m != "pipeline" and level_of(m) is None)
    assert not missing, f"add these modules to LEVELS: {', '.join(missing)}"


def test_the_checks_see_lazy_relative_and_from_imports(tmp_path):
    """The checker itself: a planted cycle and a planted layer break are found."""
    pkg = tmp_path / "pipeline"
    (pkg / "io").mkdir(parents=True)
    (pkg / "dsp").mkdir()
    for p in (pkg, pkg / "io", pkg / "dsp"):
        (p / "__init__.py").write_text("")
    (pkg / "io" / "a.py").write_text("from . import b\n")
    (pkg / "io" / "b.py").write_text("def f():\n    from pipeline.io.c import x\n")
    (pkg / "io" / "c.py").write_text("import pipeline.io.a\nx = 1\n")
    (pkg / "dsp" / "k.py").write_text("from ..io import c\n")
    graph = import_graph(pkg)
    assert find_cycle(graph, "pipeline.io") == ["pipeline.io.a", "pipeline.io.b", "pipeline.io.c", "pipeline.io.a"]
    assert graph["pipeline.dsp.k"] == {"pipeline.io.c"}
