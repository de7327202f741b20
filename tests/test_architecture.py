"""The structure the code promises: imports point one way, `import symgrad` starts no Numba,
every op's facts are on its record, and records that cannot hold are refused.

The import graph is read from the source (every `import` and `from ... import` of a symgrad
module, at top level or inside a function), so a deferred import that hides a cycle is found
as surely as a top-level one.
"""
import ast
import os
import re
import subprocess
import sys

import networkx as nx
import pytest

import symgrad as sg
from symgrad.core.ops import OPS, Op

PACKAGE = os.path.dirname(sg.__file__)


def _module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def _modules():
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(root, file)
                found[_module_name(path)] = path
    return found


def _imports(module, path, modules):
    """The symgrad modules `module` imports (a name imported from a package counts as its
    submodule where there is one)."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != module:
                yield target


def import_graph():
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        for target in _imports(module, path, modules):
            graph.add_edge(module, target)
    return graph


def test_imports_point_one_way():
    graph = import_graph()
    assert graph.has_edge("symgrad.core.ops", "symgrad.core.graph")  # the reader reads real edges
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_the_layers_import_downwards_only():
    # core (graphs, ops, derivatives) < compiler (plans, steps) < runtime (Numba kernels),
    # and nothing in them imports what is built on top (nn, train, viz, ...)
    graph = import_graph()
    layer = {m: m.split(".")[1] if m.count(".") >= 2 else None for m in graph}
    allowed = {"core": {"core"}, "compiler": {"core", "compiler", "runtime"},
               "runtime": {"runtime"}}
    wrong = [(a, b) for a, b in graph.edges
             if layer[a] in allowed and b != "symgrad.version" and layer[b] not in allowed[layer[a]]]
    assert not wrong, f"imports against the layers: {wrong}"
    assert graph.has_edge("symgrad.compiler.function", "symgrad.core.graph")


def test_import_symgrad_core_starts_no_numba():
    code = "import sys, symgrad.core.ops, symgrad.core.autodiff; print('numba' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr


def test_import_symgrad_starts_no_numba():
    code = ("import sys, symgrad; "
            "print(sorted(m for m in ('numba', 'llvmlite', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"`import symgrad` loaded {run.stdout.strip()}"


def test_no_module_keeps_a_list_of_op_names():
    # Stages ask an op's record (ops.Op traits), never `node.op in ("a", "b")`. graph.py may
    # name its own two leaves.
    pattern = re.compile(r"""\.op\s+(not\s+)?in\s+[(\[{]\s*["']""")
    offenders = []
    for module, path in _modules().items():
        if module in ("symgrad.core.ops", "symgrad.core.graph"):
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if pattern.search(line):
                    offenders.append(f"{module}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ------------------------------------------------------------------------------ op records

def test_every_op_record_is_whole():
    for name, op in OPS.items():
        assert op.name == name
        assert not list(op._problems()), name
        if op.leaf is None:
            assert op.infer and op.numpy and op.emit, name
        if op.view:
            assert op.free and not op.writes_output, name
        if op.body is not None:
            assert op.writes_output, name


@pytest.mark.parametrize("fields, problem", [
    (dict(numpy=lambda a, t: a[0], emit=lambda *a: None), "needs `infer`"),
    (dict(infer=lambda i, a: ((), "float32"), numpy=lambda a, t: a[0], emit=lambda *a: None,
          vjp=lambda n, g, w: [g]), "derivative in one mode only"),
    (dict(infer=lambda i, a: ((), "float32"), numpy=lambda a, t: a[0], emit=lambda *a: None,
          view=True, writes_output=True), "cannot also write its own output"),
    (dict(leaf="argument", emit=lambda *a: None), "leaf must be one of"),
    (dict(leaf="input", emit=lambda *a: None, numpy=lambda a, t: a[0]), "given, not computed"),
])
def test_a_record_that_cannot_hold_is_refused(fields, problem):
    with pytest.raises(TypeError, match=problem):
        Op("broken", **fields)


def test_linear_supplies_the_jvp_and_views_are_free():
    op = Op("scaled", infer=lambda i, a: (i[0].shape, i[0].dtype), numpy=lambda a, t: 2 * a[0],
            vjp=lambda n, g, w: [2 * g], emit=lambda *a: None, linear=True)
    assert op.jvp is OPS["reshape"].jvp  # the op itself applied to the tangents
    assert OPS["reshape"].free and OPS["size"].free and not OPS["matmul"].free


def test_an_op_name_is_defined_once():
    from symgrad.core.ops import register
    with pytest.raises(ValueError, match="defined already"):
        register(OPS["matmul"])


PUBLIC = ["symgrad.core.graph", "symgrad.core.ops", "symgrad.core.autodiff",
          "symgrad.core.interpreter", "symgrad.core.partial", "symgrad.core.extend",
          "symgrad.compiler.function", "symgrad.nn", "symgrad.optim", "symgrad.train",
          "symgrad.linalg", "symgrad.optim_hf", "symgrad.viz"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_modules_say_what_they_export(name):
    import importlib
    module = importlib.import_module(name)
    assert module.__all__, name
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
