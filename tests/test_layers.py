"""The package's parts and their layers: no part imports a higher one, and the modules have no import cycle
(``docs/design.md`` draws the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import marl_lightning
from marl_lightning import algorithms
from tests.conftest import REPO

# Lowest first. A part may import its own modules and those of lower layers only (equal layers: neither
# imports the other). The face (__main__, cli) sits above the training core; the workflows start fits and
# read MLflow; callbacks (a package beside marl_lightning) may use everything, nothing imports them.
LAYERS = [
    {"core"},
    {"exact", "launch", "tracking"},
    {"envs", "safety"},
    {"models"},
    {"objectives", "data"},
    {"algorithms"},
    {"cli"},
    {"grid", "compare", "render"},
    {"callbacks"},
    {"__main__", "__init__"},
]
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    files = [*(REPO / "marl_lightning").rglob("*.py"), *(REPO / "callbacks").rglob("*.py")]
    return {".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): f for f in files}


def _part(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "callbacks":
        return "callbacks"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, modules: dict[str, Path], top_level_only: bool = False) -> set[str]:
    """The modules of this project that ``path`` imports (inside functions too, unless ``top_level_only``).

    ``from package import submodule`` depends on the submodule; a package's ``__init__`` that Python runs
    before any of its submodules is not counted as imported by the package's own modules.
    """
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= submodules if len(submodules) == len(node.names) else {node.module, *submodules}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name in modules}


def test_every_part_has_a_layer_and_the_top_level_holds_only_the_face():
    modules = _modules()
    assert {_part(m) for m in modules} == set(LAYER)
    top = sorted(p.name for p in (REPO / "marl_lightning").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py"]


def test_no_part_imports_a_higher_or_a_sibling_part():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        source = _part(module)
        for imported in _imports(path, modules):
            target = _part(imported)
            if target != source and LAYER[target] >= LAYER[source]:
                wrong.append(f"{module} -> {imported}")
    assert wrong == []


def test_the_modules_import_each_other_without_a_cycle():
    modules = _modules()
    graph = {m: {i for i in _imports(p, modules, top_level_only=True) if not m.startswith(f"{i}.")}
             for m, p in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_package_exports_every_algorithm_and_the_data_module_lazily():
    assert set(marl_lightning.__all__) == {*algorithms.__all__, "RolloutDataModule"}
    for name in marl_lightning.__all__:
        assert getattr(marl_lightning, name).__name__ == name
