"""Import layering: no module imports (at any level) one that imports it back, for the pairs the
design separates, and no import cycle at all among module-level imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "facefeat"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(PKG.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(name: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("facefeat"):
            for a in n.names:
                full = f"{n.module}.{a.name}"
                out.add(full if full in MODULES else n.module)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names if a.name.startswith("facefeat"))
    return {d for d in out if d in MODULES and d != name}


def test_no_module_level_import_cycle():
    graph = {m: _imports(m, True) for m in MODULES}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("a,b", [
    ("facefeat.cli", "facefeat.engine.runner"),
    ("facefeat.models.sface", "facefeat.weights.onnx_import"),
    ("facefeat.runtime.torch_build", "facefeat.weights.resolver"),
])
def test_separated_pairs_import_one_way(a, b):
    assert not (b in _imports(a, False) and a in _imports(b, False)), f"{a} and {b} import each other"


def test_export_does_not_import_training():
    assert "facefeat.engine.train" not in _imports("facefeat.engine.export", False)


def test_sface_constants_live_in_models():
    assert "facefeat.weights.onnx_import" not in _imports("facefeat.models.sface", True)
