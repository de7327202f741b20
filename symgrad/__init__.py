"""symgrad: a symbol-to-symbol differentiation compiler.

Build a model as a symbolic tensor expression, append its derivatives to the same graph,
and compile forward, backward and train-step functions with Numba.

    graph.py        nodes, leaves, interning          (build)
    ops.py          every op: shape, NumPy, vjp, jvp, emit
    autodiff.py     gradients, jvp, hvp, hessian       (differentiate)
    simplify.py     rewrite rules, fusion, identities  (simplify)
    schedule.py     NetworkX order -> Program          (schedule)
    codegen.py      Program -> module source           (generate)
    jit.py          source -> Numba kernel, disk cache (compile)
    function.py     sg.function: the checked callable
    interpreter.py  sg.evaluate: the NumPy oracle
    partial.py      split a graph at what varies: fixed work done once
"""
from .version import __version__

from .graph import Node, ShapeError, Variable, constant, placeholder
from .ops import (abs, add, broadcast_to, cast, concatenate, cos, distribution, divide, dot, equal, exp,
                  greater, greater_equal, leaky_relu, log, log_softmax, logsumexp, matmul,
                  max, maximum, mean, minimum, multiply, negative, ones_like, power, relu,
                  reshape, sigmoid, sin, softmax, softplus, softsign, sqrt, square,
                  stop_gradient, subtract, sum, tanh, transpose, where, zeros_like)
from .autodiff import (DisconnectedInputError, grad, gradients, hessian, hessian_vector_product,
                       hvp, jacobian, jvp)
from .interpreter import evaluate
from .simplify import simplify
from .function import Function, function
from .jit import clear_cache
from .viz import debugprint
from . import data, nn, optim, train


def __getattr__(name):
    # symgrad.linalg (and optim_hf, which uses it) compile Numba loops when imported: they
    # load on first use, so `import symgrad` never starts Numba (compiling does, once).
    if name in ("linalg", "optim_hf"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'symgrad' has no attribute {name!r}")

float32 = "float32"
float64 = "float64"
