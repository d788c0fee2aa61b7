"""Import layers: no module of mmalign imports from a layer above its own, and no import cycles.

The layers, top to bottom (docs/layout.md says what each holds). A package may import from its own package and
from any layer below its own, never from its own layer's other packages nor from above:

    cli
    demo
    train  eval
    pairs  rewards
    models  world  judge
    losses  data  objects
    config  files  lazy  threads  seeding  corruption  mmalign (the package's __init__)
    errors

Every ``import`` and ``from ... import`` counts, at module level, inside functions and under ``TYPE_CHECKING``
(a type named from above is still a dependency on it). Cycles are checked twice, both over all imports: between
packages (every folder, ``mmalign.data.importers`` apart from ``mmalign.data``), and between modules (an import
inside a function only hides a cycle until the function runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("demo",),
    ("train", "eval"),
    ("pairs", "rewards"),
    ("models", "world", "judge"),
    ("losses", "data", "objects"),
    ("config", "files", "lazy", "threads", "seeding", "corruption", "mmalign"),
    ("errors",),
)
"""Top to bottom. Each name is a package or module right under ``mmalign`` (``mmalign``: its ``__init__``)."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module (``mmalign.pairs.coco``; a package by its own name)."""
    target: str
    """The mmalign module or package imported (``mmalign.objects.vocabulary``)."""
    file: Path
    line: int
    text: str
    """The import statement as written."""
    at_import: bool
    """Runs when the module is imported: module level, not inside a function nor under ``TYPE_CHECKING``."""


def module_names(src: Path, top: str = "mmalign") -> dict[str, tuple[Path, bool]]:
    """Every module under ``src/top``: dotted name → (file, is a package's ``__init__``)."""
    out = {}
    for path in sorted((src / top).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def imports(src: Path, top: str = "mmalign") -> list[Import]:
    """Every import of a ``top`` module by a ``top`` module, resolved to the module or package it names."""
    modules = module_names(src, top)
    out = []
    for name, (path, package) in modules.items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        for node, at_import in _walk(tree.body, at_import=True):
            text = ast.get_source_segment(source, node) or ""
            for target in _targets(node, name, package, modules):
                if target == top or target.startswith(top + "."):
                    out.append(Import(name, target, path, node.lineno, " ".join(text.split()), at_import))
    return out


def _walk(body: Iterable[ast.AST], at_import: bool) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, at_import
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, at_import)
        else:  # a function's body runs when called; a class's, an if's, a try's... when the module runs
            inner = at_import and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    yield from _walk([child] if isinstance(child, ast.stmt) else child.body, inner)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, name: str, package: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = name.split(".") if package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from pkg import sub`` imports the submodule when there is one, else a name of ``pkg``
    found = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    return list(dict.fromkeys(found))


def unit(module: str) -> str:
    """The layered unit a module belongs to: the package or module right under ``mmalign``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(found: Sequence[Import], layers: Sequence[Sequence[str]]) -> list[str]:
    """One line per import of a unit on the importer's own layer or above it (or of a unit in no layer)."""
    level = {name: i for i, names in enumerate(layers) for name in names}
    problems = []
    for imp in found:
        here, there = unit(imp.module), unit(imp.target)
        if here == there:
            continue
        if here not in level or there not in level:
            missing = here if here not in level else there
            problems.append(f"{imp.file}:{imp.line}: {imp.text!r}: {missing!r} is in no layer (add it to LAYERS)")
        elif level[there] <= level[here]:
            where = "its own layer" if level[there] == level[here] else "a layer above"
            problems.append(f"{imp.file}:{imp.line}: {imp.text!r}: {here} imports {there}, from {where}")
    return problems


def package_of(module: str, modules: dict[str, tuple[Path, bool]]) -> str:
    """The innermost package holding ``module`` (a package's ``__init__`` is its own package)."""
    return module if modules.get(module, (None, False))[1] else module.rpartition(".")[0]


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted; a self-edge is no cycle."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def cycle_problems(src: Path, top: str = "mmalign") -> list[str]:
    """Import cycles between packages and between modules (all imports: module level, in functions, for types)."""
    modules = module_names(src, top)
    found = imports(src, top)
    problems = []
    by_package = [(package_of(i.module, modules), package_of(i.target, modules), i) for i in found]
    for component in cycles((a, b) for a, b, _ in by_package):
        members = set(component)
        witness = [f"{i.file}:{i.line}: {i.text}" for a, b, i in by_package if a in members and b in members and a != b]
        problems.append(f"packages import each other: {' <-> '.join(component)}; via " + "; ".join(witness))
    between = [i for i in found if i.target in modules]
    for component in cycles((i.module, i.target) for i in between):
        members = set(component)
        witness = [f"{i.file}:{i.line}: {i.text}" for i in between if i.module in members and i.target in members]
        problems.append(f"modules import each other: {' <-> '.join(component)}; via " + "; ".join(witness))
    return problems


# ------------------------------------------------------------------------------------------------ the tests


def test_every_unit_is_in_a_layer():
    units = {unit(name) for name in module_names(SRC)}
    listed = [name for names in LAYERS for name in names]
    assert len(listed) == len(set(listed)), "a unit is listed twice"
    assert units == set(listed), f"not in LAYERS: {sorted(units - set(listed))}; gone: {sorted(set(listed) - units)}"


def test_no_module_imports_from_its_layer_or_above():
    problems = layer_violations(imports(SRC), LAYERS)
    assert not problems, "imports against the layers (tests/test_layers.py):\n" + "\n".join(problems)


def test_no_import_cycles():
    problems = cycle_problems(SRC)
    assert not problems, "\n".join(problems)


# -------------------------------------------------------------------------- the checker on a made-up tree


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "src"


TOY_LAYERS = (("high",), ("low", "side"), ("core",))


def test_checker_names_file_line_and_import_of_an_upward_import(tmp_path):
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "X = 1\n",
            "high/__init__.py": "",
            "high/run.py": "from pkg.low.helper import f\nfrom pkg import core\n",
            "low/__init__.py": "",
            "low/helper.py": '"""Doc."""\n\nimport os\n\n\ndef f():\n    from pkg.high.run import g  # upward\n',
            "side/__init__.py": "",
            "side/mod.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..low import helper\n",
        },
    )
    layers = (*TOY_LAYERS[:-1], ("core", "pkg"))
    problems = layer_violations(imports(src, "pkg"), layers)
    helper = src / "pkg" / "low" / "helper.py"
    side = src / "pkg" / "side" / "mod.py"
    assert problems == [
        f"{helper}:7: 'from pkg.high.run import g': low imports high, from a layer above",
        f"{side}:3: 'from ..low import helper': side imports low, from its own layer",
    ]
    assert layer_violations(imports(src, "pkg"), (("high",), ("low",), ("core", "pkg"))) == [
        f"{helper}:7: 'from pkg.high.run import g': low imports high, from a layer above",
        f"{side}:3: 'from ..low import helper': 'side' is in no layer (add it to LAYERS)",
    ]


def test_checker_finds_cycles_between_packages_and_between_modules(tmp_path):
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "a/one.py": "def f():\n    from pkg.b.two import g\n",
            "b/__init__.py": "",
            "b/two.py": "from pkg.a import one\n",
            "c/__init__.py": "",
            "c/x.py": "from pkg.c import y\n",
            "c/y.py": "import pkg.c.x\n",
            "c/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import z\n",
            "c/z.py": "from pkg.c import typed\n",
        },
    )
    problems = cycle_problems(src, "pkg")
    assert len(problems) == 4, problems
    assert problems[0].startswith("packages import each other: pkg.a <-> pkg.b; via ")
    assert f"{src / 'pkg' / 'a' / 'one.py'}:2: from pkg.b.two import g" in problems[0]
    modules = sorted(problems[1:])  # a function's import and a TYPE_CHECKING import close cycles too
    assert modules[0].startswith("modules import each other: pkg.a.one <-> pkg.b.two; via ")
    cycles_named = {frozenset(p.split("; via ")[0].split(": ")[1].split(" <-> ")) for p in modules[1:]}
    assert cycles_named == {frozenset({"pkg.c.x", "pkg.c.y"}), frozenset({"pkg.c.typed", "pkg.c.z"})}
    assert cycle_problems(_tree(tmp_path / "clean", {"__init__.py": "", "m.py": "import pkg\n"}), "pkg") == []
