"""The import graph of src/: no cycles between modules, no module taking another's underscored names.

Every import counts, including those inside functions (a lazy import still ties two modules
together). The checker is tested on a synthetic package first, so that a pass means something.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph(root: Path):
    """(graph: module -> modules it imports, underscored: 'a imports _x from b' lines) of a source tree."""
    mods = {}
    for p in root.rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph, under = {m: set() for m in mods}, set()
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        tree = ast.parse(p.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    tgt = full if full in mods else base
                    if tgt in mods and tgt != m:
                        graph[m].add(tgt)
                        if full in mods:
                            aliases[a.asname or a.name] = full
                        elif a.name.startswith("_") and not a.name.startswith("__"):
                            under.add(f"{m} imports {a.name} from {tgt}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods:
                        graph[m].add(a.name)
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                under.add(f"{m} uses {aliases[node.value.id]}.{node.attr}")
    return mods, graph, sorted(under)


def cycles(mods, graph) -> list[list[str]]:
    """Cycles found by depth-first search (a package's __init__ importing its submodules is no cycle)."""
    found, state = [], {}

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1 and mods[v].name != "__init__.py":
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def test_checker_finds_a_cycle_and_an_underscored_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    return b.g()\n")
    (pkg / "b.py").write_text("def g():\n    from .a import f\n    from .c import _hidden\n    return f, _hidden\n")
    (pkg / "c.py").write_text("_hidden = 1\n")
    (pkg / "d.py").write_text("from . import c as C\n\nx = C._hidden\n")
    mods, graph, under = import_graph(tmp_path)
    assert cycles(mods, graph) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert under == ["pkg.b imports _hidden from pkg.c", "pkg.d uses pkg.c._hidden"]


def test_no_import_cycles_in_src():
    mods, graph, _ = import_graph(SRC)
    assert "normlab.engine" in mods
    found = cycles(mods, graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_underscored_names_across_modules():
    _, _, under = import_graph(SRC)
    assert not under, "underscored names taken from another module:\n" + "\n".join(under)


def test_engine_modules_do_not_import_each_other_in_a_loop():
    """The engine's own modules form a tree: train -> engine -> ensemble (never back)."""
    mods, graph, _ = import_graph(SRC)
    assert "normlab.train" not in graph["normlab.engine"] and "normlab.train" not in graph["normlab.ensemble"]
    assert "normlab.engine" not in graph["normlab.ensemble"]
    assert "normlab.engine" in graph["normlab.train"]
