"""Import layering at every level: module-level and function-level imports alike (and those under
``TYPE_CHECKING``).

* No import cycle between modules, apart from an explicit, commented allow-list.
* Package edges go down the house's layers (../shared/docs/design.md: io -> vision ->
  runtime/weights -> predict -> index -> pipeline -> serving/cli, with the code's own detail in
  :data:`TIERS`): a module imports from its own tier or a lower one, never from a higher one.

Loaders named by string in :data:`facefeat.weights.resolver.FORMATS` (``importlib``) are not
imports and are not seen here.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "facefeat"

#: the layers, lowest first: (name, module prefixes). A module belongs to the tier of its longest
#: matching prefix.
TIERS: list[tuple[str, tuple[str, ...]]] = [
    # cli.output, the one output convention (escaping, --json, failure counts), is also used by the
    # engine's PaddleX mode runs that print; it imports only results and utils
    ("base", ("facefeat.errors", "facefeat.utils", "facefeat.results", "facefeat.plots", "facefeat.cli.output")),
    ("io", ("facefeat.io",)),
    ("vision", ("facefeat.vision",)),
    ("data", ("facefeat.data",)),
    ("models", ("facefeat.models",)),
    # Preprocess is the spec's value type (held by ModelSpec and by model directories): it lives in
    # runtime/ as the design says, but sits below the registry, which holds one per model
    ("spec", ("facefeat.runtime.preprocess", "facefeat.registry")),
    # the mode and pipeline configs; the pipeline config's `events:` block is read by events/config.py (with its value types)
    ("config", ("facefeat.config_schema", "facefeat.config", "facefeat.events.config", "facefeat.events.types")),
    ("weights", ("facefeat.weights",)),
    ("runtime", ("facefeat.runtime",)),
    ("predict", ("facefeat.predict", "facefeat.thresholds")),
    ("index", ("facefeat.index",)),
    # events out: the pipeline's video feeds the hub; events import nothing above the index
    ("events", ("facefeat.events",)),
    ("pipeline", ("facefeat.pipeline",)),
    ("surface", ("facefeat",)),  # facefeat/__init__.py: create_model, create_pipeline, list_models
    ("engine", ("facefeat.engine",)),
    ("distributed", ("facefeat.distributed",)),
    ("serving", ("facefeat.serving",)),
    ("cli", ("facefeat.cli", "facefeat.__main__")),
]

#: import cycles still to untangle; each entry says where it comes from (the test below fails once
#: an entry is no longer a cycle, so the list only shrinks).
ALLOWED_CYCLES: list[frozenset[str]] = [
    # (none left: the index package was layered store -> SQL stores -> open_store -> legacy -> persist
    # -> FaceIndex -> engines in issue 23)
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(PKG.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


@lru_cache(maxsize=None)
def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"))


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _on_import(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of ``body`` that run when the module is imported: the module's top level and
    the bodies of its top-level ``if``/``try``/``with``/``class`` blocks (not ``if TYPE_CHECKING:``
    ones), never a function's body."""
    out = []
    for n in body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_type_checking(n):
            continue
        out.append(n)
        for field in ("body", "orelse", "finalbody"):
            out.extend(_on_import(getattr(n, field, [])))
        for h in getattr(n, "handlers", []):
            out.extend(_on_import(h.body))
    return out


@lru_cache(maxsize=None)
def _lazy_exports(package: str) -> dict[str, str]:
    """A package's lazy exports, name -> module: its module-level ``_LAZY``/``_EXPORTS`` table, which
    its ``__getattr__`` imports from (``{"create_model": "facefeat.predict.predictor"}``, or a
    submodule's short name), so that ``from facefeat import create_model`` counts as an import of
    the module that defines it."""
    out = {}
    for n in _tree(package).body if MODULES[package].name == "__init__.py" else ():
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) in ("_LAZY", "_EXPORTS"):
            for k, v in zip(n.value.keys, n.value.values):
                out[k.value] = v.value if v.value in MODULES else f"{package}.{v.value}"
    return out


def _targets(name: str, n: ast.AST) -> set[str]:
    """The facefeat modules one import statement of module ``name`` names (``from a.b import c``
    counts ``a.b.c`` when that is a module, else the module that lazy export ``c`` of package
    ``a.b`` comes from, else ``a.b``); relative imports resolved."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    if isinstance(n, ast.ImportFrom):
        module = n.module or ""
        if n.level:
            base = package.split(".")[: len(package.split(".")) - (n.level - 1)]
            module = ".".join(base + ([module] if module else []))
        if module.split(".")[0] == "facefeat":
            for a in n.names:
                full = f"{module}.{a.name}"
                out.add(full if full in MODULES else _lazy_exports(module).get(a.name, module))
    elif isinstance(n, ast.Import):
        out.update(a.name for a in n.names if a.name.split(".")[0] == "facefeat")
    return {d for d in out if d in MODULES and d != name}


@lru_cache(maxsize=None)
def _imports(name: str, top_level_only: bool = False) -> frozenset[str]:
    """The facefeat modules ``name`` imports anywhere (functions and ``TYPE_CHECKING`` included), or
    with ``top_level_only`` those it imports when it is imported (:func:`_on_import`)."""
    tree = _tree(name)
    nodes = _on_import(tree.body) if top_level_only else ast.walk(tree)
    return frozenset(d for n in nodes for d in _targets(name, n))


def _tier(module: str) -> int | None:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(TIERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def _cycles(graph: dict[str, frozenset[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def _path(graph: dict[str, frozenset[str]], comp: frozenset[str]) -> str:
    """One concrete cycle inside ``comp``, for the message."""
    start = min(comp)
    prev: dict[str, str] = {}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                chain = [v]
                while chain[-1] != start:
                    chain.append(prev[chain[-1]])
                return " -> ".join(reversed(chain)) + " -> " + start
            if w not in prev:
                prev[w] = v
                todo.append(w)
    return ", ".join(sorted(comp))


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_tier():
    missing = sorted(m for m in MODULES if _tier(m) is None)
    assert not missing, f"add these modules' package to TIERS where it belongs: {missing}"


def test_no_import_cycle_at_any_level():
    bad = [c for c in _cycles(GRAPH) if not any(c <= allowed for allowed in ALLOWED_CYCLES)]
    assert not bad, "import cycles: " + "; ".join(_path(GRAPH, c) for c in bad)


def test_allowed_cycles_still_exist():
    """An allow-list entry whose cycle is gone must be removed (the list only shrinks)."""
    found = _cycles(GRAPH)
    stale = [sorted(a) for a in ALLOWED_CYCLES if not any(c <= a for c in found)]
    assert not stale, f"no longer a cycle, remove from ALLOWED_CYCLES: {stale}"


def test_no_module_level_import_cycle():
    graph = {m: _imports(m, True) for m in MODULES}
    bad = _cycles(graph)
    assert not bad, "module-level import cycles: " + "; ".join(_path(graph, c) for c in bad)


def test_package_edges_go_down_the_layers():
    up = []
    for m, deps in GRAPH.items():
        for d in deps:
            tm, td = _tier(m), _tier(d)
            if tm is not None and td is not None and td > tm:
                up.append(f"{m} ({TIERS[tm][0]}) -> {d} ({TIERS[td][0]})")
    assert not up, "imports going up the layers:\n" + "\n".join(sorted(up))


def package_edges() -> dict[tuple[str, str], int]:
    """``(tier, tier) -> number of module imports``, between different tiers (the report's graph)."""
    out: dict[tuple[str, str], int] = {}
    for m, deps in GRAPH.items():
        for d in deps:
            a, b = TIERS[_tier(m)][0], TIERS[_tier(d)][0]
            if a != b:
                out[(a, b)] = out.get((a, b), 0) + 1
    return out


#: the gallery package's own layers, lowest first (issue 23): the store interface and small values;
#: the SQL stores; the factory that opens one; the reader of earlier facefeat folders; opening/saving
#: (persist); the FaceIndex class; its engines; then what works on galleries. A module imports
#: only from its own layer or a lower one (engines are reached from below by name, through
#: index.factory's table, never imported).
INDEX_LAYERS: list[tuple[str, ...]] = [
    ("store", "labels", "rwlock", "types", "snapshot", "factory", "faiss_lib", "milvus_client",
     "lifecycle_common", "gallery", "health", "common"),
    ("sql_store", "sqlite_store", "pg_store"),
    ("store_factory",),
    ("legacy",),
    ("persist",),
    ("base",),
    ("faiss_index", "milvus_index"),
    ("enrolment", "people", "corrections", "sightings", "migrate", "privacy", "archive", "resolve", ""),
]


def test_index_package_layers():
    rank = {f"facefeat.index.{m}".rstrip("."): i for i, layer in enumerate(INDEX_LAYERS) for m in layer}
    index_modules = {m for m in MODULES if m == "facefeat.index" or m.startswith("facefeat.index.")}
    missing = sorted(index_modules - set(rank))
    assert not missing, f"give these modules a layer in INDEX_LAYERS: {missing}"
    up = [f"{m} -> {d}" for m in sorted(index_modules) for d in sorted(GRAPH[m])
          if d in rank and rank[d] > rank[m]]
    assert not up, "index modules importing from a higher layer of the package:\n" + "\n".join(up)


#: third-party packages that are slow to import or optional (an extra, or a native library): the
#: only reason for a function-level import of a facefeat module is to defer one of these (issue 23).
#: numpy is not here: every facefeat module needs it and ``facefeat.registry`` imports it anyway.
HEAVY: frozenset[str] = frozenset({
    "torch", "torchvision", "nncf", "onnx", "onnxruntime", "openvino", "tensorflow", "paddle",  # runtimes
    "cv2", "PIL",  # image codecs
    "faiss", "pymilvus", "milvus_lite", "psycopg", "psycopg_pool",  # vector indexes, PostgreSQL
    "fastapi", "starlette", "uvicorn", "pydantic", "swagger_ui_bundle", "httpx", "requests",  # service
    "ray", "pyarrow", "pandas",  # distributed embedding
    "matplotlib", "sklearn", "scipy", "tqdm", "yaml", "paho", "mkdocs", "playwright",
})


def _third_party(n: ast.AST) -> set[str]:
    """The HEAVY packages one statement imports: ``import``/``from`` (absolute), or a call of
    :func:`facefeat.errors.require` (``require("fastapi", ...)``, ``x = require(...)``)."""
    if isinstance(n, ast.Import):
        names = {a.name.split(".")[0] for a in n.names}
    elif isinstance(n, ast.ImportFrom) and not n.level and n.module:
        names = {n.module.split(".")[0]}
    elif (isinstance(n, (ast.Expr, ast.Assign)) and isinstance(n.value, ast.Call)
          and ast.unparse(n.value.func).split(".")[-1] == "require"
          and n.value.args and isinstance(n.value.args[0], ast.Constant)):
        names = {str(n.value.args[0].value).split(".")[0]}
    else:
        names = set()
    return names & HEAVY


@lru_cache(maxsize=None)
def _heavy(name: str) -> frozenset[str]:
    """The HEAVY packages that ``import name`` imports: those its module-level code imports and
    those of every facefeat module it imports at module level, parent packages included (Python
    imports ``a`` and ``a.b`` before ``a.b.c``)."""
    seen, todo, out = set(), [name], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        out.update(p for n in _on_import(_tree(m).body) for p in _third_party(n))
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES)
        todo.extend(_imports(m, True))
    return frozenset(out)


def _function_level_imports(name: str) -> list[tuple[int, str]]:
    """``(line, target)`` for every facefeat module imported inside a function of ``name``."""
    out = set()
    for fn in ast.walk(_tree(name)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.update((n.lineno, t) for n in ast.walk(fn) for t in _targets(name, n))
    return sorted(out)


def _undeferring_imports() -> list[tuple[str, int, str]]:
    """Function-level imports whose target brings no HEAVY package the module does not already have."""
    return [(m, line, t) for m in sorted(MODULES) for line, t in _function_level_imports(m)
            if not _heavy(t) - _heavy(m)]


def test_function_level_imports_defer_a_heavy_dependency():
    """A facefeat module is imported inside a function only to defer a HEAVY package that its
    module-level imports would otherwise bring (issue 23); everything else is imported at the top."""
    bad = [f"{m}:{line} imports {t} (brings no heavy package {m} lacks: import it at module level)"
           for m, line, t in _undeferring_imports()]
    assert not bad, "function-level imports that defer nothing:\n" + "\n".join(bad)


@pytest.mark.parametrize("a,b", [
    ("facefeat.cli", "facefeat.engine.runner"),
    ("facefeat.cli.engine", "facefeat.engine.runner"),
    ("facefeat.models.sface", "facefeat.weights.onnx_import"),
    ("facefeat.runtime.torch_build", "facefeat.weights.resolver"),
    ("facefeat.weights.resolver", "facefeat.weights.sources"),
])
def test_separated_pairs_import_one_way(a, b):
    if a not in MODULES or b not in MODULES:
        pytest.skip(f"{a} or {b} is not a module here")
    assert not (b in _imports(a) and a in _imports(b)), f"{a} and {b} import each other"


def test_export_does_not_import_training():
    assert "facefeat.engine.train" not in _imports("facefeat.engine.export")


def test_models_hold_modules_only():
    """models/ holds nn.Modules and their constants: it reads no weights files."""
    for m in MODULES:
        if m.startswith("facefeat.models"):
            assert not [d for d in _imports(m) if d.startswith("facefeat.weights")], m
