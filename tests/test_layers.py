"""The package layering of docs/architecture.md, enforced on every import in `lit/`.

cli -> (plan, tune) -> engine -> (methods, evaluate) -> (models, data) -> runtime -> config.
A module may import its own package and any lower layer, never a higher one or a
neighbour of its own layer; `report` reads files only (config and runtime, no torch).
Function-level imports count too: a lazy import that points up is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIT = Path(__file__).resolve().parents[1] / "lit"

LAYERS = {
    "lit.config": 0,
    "lit.catalog": 0,
    "lit.runtime": 1,
    "lit.models": 2,
    "lit.data": 2,
    "lit.report": 2,
    "lit.methods": 3,
    "lit.evaluate": 3,
    "lit.engine": 4,
    "lit.plan": 5,
    "lit.tune": 5,
    "lit.cli": 6,
    "lit.__main__": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    """The layered unit a module belongs to (its package, or the module itself at the top)."""
    parts = module.split(".")
    if parts[0] != "lit" or len(parts) == 1:
        return None
    return ".".join(parts[:2])


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from lit import files` or `from lit.methods import lit` names modules too
            found.update(f"{node.module}.{alias.name}" for alias in node.names if (LIT.parent / node.module.replace(".", "/") / alias.name).with_suffix(".py").exists())
    return found


MODULES = {module_name(path): path for path in sorted(LIT.rglob("*.py"))}


def test_every_package_has_a_layer():
    units = {unit_of(name) for name in MODULES} - {None}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS and to docs/architecture.md"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if unit_of(name)))
def test_imports_point_down(module):
    own = unit_of(module)
    upward = []
    for imported in imports_of(MODULES[module]):
        target = unit_of(imported)
        if target is None or target == own:
            continue
        if LAYERS[target] >= LAYERS[own]:
            upward.append(f"{imported} (layer {LAYERS[target]} >= {own}'s {LAYERS[own]})")
    assert not upward, f"{module} imports {', '.join(sorted(upward))}"


def test_report_reads_files_only():
    for name, path in MODULES.items():
        if unit_of(name) == "lit.report":
            heavy = {m for m in imports_of(path) if m.split(".")[0] in ("torch", "torchvision")}
            assert not heavy, f"{name} imports {heavy}: the report layer reads files, it never builds or runs models"


def test_no_import_circles_between_modules():
    graph = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError(f"import circle: {' -> '.join(trail[trail.index(nxt):] + [nxt])}")
            elif state.get(nxt) is None:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_layering_test_catches_an_upward_import(tmp_path):
    """The checker itself: an import of the engine from a model module is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from lit.engine.trainer import train\n")
    imported = imports_of(probe)
    assert "lit.engine.trainer" in imported and LAYERS[unit_of("lit.engine.trainer")] > LAYERS["lit.models"]


def test_planning_imports_no_torch():
    """`lit plan`, every Snakemake process and the config checks read the catalogue only:
    planning a sweep must not pay torch's import (about 2 s of CPU per process)."""
    import subprocess
    import sys

    code = (
        "import sys, lit.plan, lit.engine.runconfig, lit.catalog\n"
        "from lit.plan import plan_experiments\n"
        "plan_experiments(lit.plan.read_yaml_mapping('config/config.yaml'))\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=LIT.parent, check=True)
