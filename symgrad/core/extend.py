"""Extending symgrad from user code: new ops, and derivatives of your own.

In: an op's definition (a SymPy body for an elementwise op; or a shape rule, a NumPy
reference, derivatives and a Numba kernel for any other), or an expression with the
derivative it should have. Out: functions that build nodes, which the whole pipeline
(differentiation, simplification, fusion, compiled plans, the interpreter, viz) treats as it
treats symgrad's own ops: they are registered in the same table (ops.OPS), with the same
record, checked the same way.

    swish = extend.elementwise("swish", lambda x: x * scalar.sigmoid(x))
    h = swish(x @ W)                       # differentiated by SymPy, fused into loops

    cumsum = extend.op("cumsum", infer=..., numpy=..., kernel=..., vjp=..., linear=True)
    y = extend.with_gradient(value, [x], vjp=lambda g: [sg.clip(g, -1, 1)])

An elementwise body uses SymPy (`sympy.exp`, `sympy.tanh`, `sympy.Max`...) and the functions
of `symgrad.scalar` (`sigmoid`, `softplus`, `softsign`, `select`, `gt`, `eq`). A structured
op's `kernel` is a function Numba compiles (`numba.njit`, or plain Python that Numba can
compile): it is called as kernel(*inputs, out, *attrs), the inputs and `out` C-ordered arrays
(a 0-d value is a 1-element array), the attributes named in `attrs` passed in that order as
numbers. Compiled steps are cached on disk under a fingerprint of the kernel's source, so
editing the kernel recompiles it (editing a function the kernel calls does not: as with
Numba's own cache, give the kernel a new name or clear the cache, `sg.clear_cache()`).

Redefining an op that `extend` defined (a notebook cell run again) replaces it; symgrad's own
ops cannot be redefined.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
import types

import sympy

from . import ops, scalar
from .dims import is_known
from .graph import as_node, forget, make
from .ops import OPS, Op, register, with_gradient

__all__ = ["elementwise", "op", "with_gradient", "defined", "undefine", "kernels"]

# The kernels of user-defined ops, as attributes of a module: generated steps call them as
# `extensions.<op name>(...)`, and Numba resolves a module's attributes when it compiles.
kernels = types.ModuleType("symgrad.core.extend.kernels")
sys.modules[kernels.__name__] = kernels
_python_kernels = {}     # op name -> the kernel as given (compiled by Numba on first use)
_defined_here = set()    # names of the ops defined through this module


def _compiled_kernel(name):
    # Numba starts only when a step calling the kernel is compiled, never at definition.
    if name not in _python_kernels:
        raise AttributeError(f"no user kernel named {name!r}")
    import numba
    kernel = _python_kernels[name]
    if not isinstance(kernel, numba.core.dispatcher.Dispatcher):
        kernel = numba.njit(cache=False, nogil=True)(kernel)
    setattr(kernels, name, kernel)
    return kernel


kernels.__getattr__ = _compiled_kernel


def defined():
    """The names of the ops defined through this module so far."""
    return frozenset(_defined_here)


def undefine(name):
    """Remove op `name`, defined through this module, and forget the nodes built from it."""
    if name not in _defined_here:
        raise ValueError(f"{name!r} was not defined by symgrad.extend")
    del OPS[name]
    forget(name)
    kernels.__dict__.pop(name, None)
    _python_kernels.pop(name, None)
    _defined_here.discard(name)


def _claim(name):
    """Make room for op `name`: refused for symgrad's own ops; an op defined here before is
    replaced (new nodes follow the new definition)."""
    if not name.isidentifier():
        raise ValueError(f"op name {name!r} must be a Python identifier (it names a kernel)")
    if name in OPS and name not in _defined_here:
        raise ValueError(f"{name!r} is one of symgrad's own ops; pick another name")
    if name in OPS:
        undefine(name)
    _defined_here.add(name)


# ------------------------------------------------------------------------------ elementwise

def elementwise(name, body):
    """A new elementwise op whose value is `body(x0, x1, ...)`, a SymPy expression of its
    arguments' symbols (one per input). Returns its builder f(*inputs), which broadcasts as
    the operators do. Derivatives (first and second), the NumPy form and the compiled loop
    all come from the body, as for symgrad's own elementwise ops."""
    arity = len(inspect.signature(body).parameters)
    if arity < 1:
        raise TypeError(f"elementwise {name!r}: the body takes one symbol per input (at least one)")
    expr = sympy.sympify(body(*scalar.X[:arity]))
    stray = expr.free_symbols - set(scalar.X[:arity])
    if stray:
        raise ValueError(f"elementwise {name!r}: the body uses symbols other than its "
                         f"arguments: {sorted(map(str, stray))}; pass numbers, or make them inputs")
    for dtype in ("float32", "float64"):  # fails now, not inside a compile, on what Numba lacks
        try:
            scalar.scalar_code(expr, {f"x{k}": f"a{k}[i]" for k in range(arity)}, dtype)
            scalar.numpy_function(expr, arity)
        except Exception as error:
            raise ValueError(f"elementwise {name!r}: the body cannot be compiled ({error}); use "
                             f"the functions of sympy and symgrad.scalar") from None
    _claim(name)
    ops._elementwise_op(name, lambda attrs: expr)

    def build(*inputs):
        if len(inputs) != arity:
            raise TypeError(f"{name} takes {arity} inputs, got {len(inputs)}")
        return ops._elementwise(name, *inputs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Elementwise {name}: {sympy.sstr(expr)} over x0, x1, ... (symgrad.extend)."
    return build


# ------------------------------------------------------------------------------ structured ops

def _fingerprint(kernel):
    """A digest of the kernel's source (of its code object where there is no source), which
    names the compiled steps that call it."""
    function = getattr(kernel, "py_func", kernel)
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        code = function.__code__
        text = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _emit_kernel(name, attr_names, fingerprint):
    def emit(code, node, out, args):
        # The output's shape: known sizes as numbers, unknown ones from the op's own shape
        # rule, run on the call's shapes when the plan is made (plan.Recorder.infer).
        if not all(is_known(d) for d in node.shape):
            seen = [a if i.ndim else f"{a}.reshape(())" for a, i in zip(args, node.inputs)]
            code.line(f"{out}_shape = step.infer({name!r}, {dict(node.attrs)!r}, {', '.join(seen)})")
        dims = [d if is_known(d) else f"{out}_shape[{k}]" for k, d in enumerate(node.shape)]
        code.line(f"{out} = {code.alloc(node, out, dims)}")
        numbers = [repr(float(v) if isinstance(v, float) else int(v))
                   for v in (node.attrs[a] for a in attr_names)]
        operands = ", ".join(f"{{{k}}}" for k in range(len(args) + 1 + len(numbers)))
        code.call(f"extensions.{name}({operands})  # kernel {fingerprint}", *args, out, *numbers)
    return emit


def op(name, *, infer, numpy, kernel, vjp=None, jvp=None, linear=False, attrs=()):
    """A new op computed by a Numba `kernel`. Returns its builder f(*inputs, **attrs).

    infer(inputs, attrs) -> (shape, dtype): the shape rule (inputs have .shape, .dtype and
        .ndim; a size known only at call time is a SymPy expression, which the rule may
        combine as a number, `n - 1`; it may also give None for an output size it cannot
        state); raise sg.ShapeError on inputs that do not fit. It runs again on the concrete
        shapes of every call.
    numpy(arrays, attrs) -> array: the reference the interpreter runs (and the tests trust).
    kernel(*inputs, out, *attrs): writes the value into `out` (see the module doc).
    vjp(node, g, wanted) -> [cotangent node or None per input]; jvp(node, tangents) -> the
        output's tangent node or None. linear=True: the op applied to the tangents is its
        jvp. Without both, nothing differentiates through the op.
    attrs: the names of the op's attributes (numbers: ints or floats), passed to the kernel
        in this order."""
    attrs = tuple(attrs)
    _claim(name)
    register(Op(name, infer=infer, numpy=numpy, vjp=vjp, jvp=jvp, linear=linear,
                emit=_emit_kernel(name, attrs, _fingerprint(kernel)), writes_output=True))
    _python_kernels[name] = kernel

    def build(*inputs, **given):
        if set(given) != set(attrs):
            raise TypeError(f"{name} takes the attributes {list(attrs)}, got {sorted(given)}")
        for key, value in given.items():
            if not isinstance(value, (int, float)):
                raise TypeError(f"{name}: attribute {key}={value!r} must be an int or a float "
                                f"(the kernel receives it as a number)")
        return make(name, [as_node(i) for i in inputs], given)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"The user-defined op {name} (symgrad.extend)."
    return build
