"""symgrad: a symbol-to-symbol differentiation compiler.

Build a model as a symbolic tensor expression, append its derivatives to the same graph,
and compile forward, backward and train-step functions with Numba. The packages are the
pipeline, and imports point one way: the compiler uses the core (and loads the runtime when
it first compiles); the core uses neither:

    core/       graph, ops, random, autodiff, simplify, interpreter, extend: NumPy and SymPy only
    compiler/   schedule, codegen, plan, jit, function: graphs to compiled plans
    runtime/    kernels, fastmath, blas, native: the Numba code compiled steps call
    nn, optim, train, data, cli       models and training on top
    linalg, optim_hf                  Krylov methods and Hessian-free on compiled HVPs
    distributed                       data-parallel training and sharded curvature on Dask
    viz/                              pictures, formulas, rewrites and decisions
"""
from .version import __version__

from .core.graph import Node, ShapeError, Variable, constant, placeholder
from .core.ops import *  # noqa: F401,F403 - the op builders users call (ops.__all__)
from .core.autodiff import (DisconnectedInputError, grad, gradients, hessian,
                            hessian_vector_product, hvp, jacobian, jvp)
from .core.interpreter import evaluate
from .core.simplify import simplify
from .compiler.function import Function, function
from .compiler.jit import clear_cache
from .viz import debugprint
from . import data, nn, optim, train
from .core import extend, random, scalar


def __getattr__(name):
    # symgrad.linalg (and optim_hf, which uses it) compile Numba loops when imported: they
    # load on first use, so `import symgrad` never starts Numba (compiling does, once).
    # symgrad.distributed needs Dask (the optional `distributed` extra): also on first use.
    if name in ("linalg", "optim_hf", "distributed"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'symgrad' has no attribute {name!r}")

float32 = "float32"
float64 = "float64"
