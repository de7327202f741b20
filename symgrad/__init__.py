"""symgrad: a symbol-to-symbol differentiation compiler.

Build a model as a symbolic tensor expression, append its derivatives to the same graph,
and compile forward, backward and train-step functions with Numba.

    graph.py        nodes, leaves, interning, the op table (build)
    ops.py          every op: shape, NumPy, vjp, jvp, emit, traits
    extend.py       user-defined ops and custom derivatives
    autodiff.py     gradients, jvp, hvp, hessian       (differentiate)
    simplify.py     rewrite rules, fusion, identities  (simplify)
    schedule.py     NetworkX order -> Program          (schedule)
    codegen.py      Program -> module source           (generate)
    jit.py          plan steps -> Numba C functions, disk cache (compile)
    plan.py         the step table of one call shape; native.py runs it
    function.py     sg.function: the checked callable
    interpreter.py  sg.evaluate: the NumPy oracle
    partial.py      split a graph at what varies: fixed work done once
"""
from .version import __version__

from .graph import Node, ShapeError, Variable, constant, placeholder
from .ops import *  # noqa: F401,F403 - the op builders users call (ops.__all__)
from .autodiff import (DisconnectedInputError, grad, gradients, hessian, hessian_vector_product,
                       hvp, jacobian, jvp)
from .interpreter import evaluate
from .simplify import simplify
from .function import Function, function
from .jit import clear_cache
from .viz import debugprint
from . import data, extend, nn, optim, train


def __getattr__(name):
    # symgrad.linalg (and optim_hf, which uses it) compile Numba loops when imported: they
    # load on first use, so `import symgrad` never starts Numba (compiling does, once).
    if name in ("linalg", "optim_hf"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'symgrad' has no attribute {name!r}")

float32 = "float32"
float64 = "float64"
