"""The core: graphs, ops and their derivatives, with NumPy alone (no Numba is imported here).

In: user calls that build a model. Out: graphs of nodes, their derivative graphs, simplified
graphs, and their values by the NumPy interpreter.

    dims.py         sizes: an int, or a SymPy expression over size symbols (call-time sizes)
    graph.py        nodes, leaves, interning, the op table
    ops.py          every op, one record each: shape rule, NumPy, vjp, jvp, lowering, traits
    random.py       random draws (Philox) whose key and counter live in a Variable
    scalar.py       the SymPy scalar vocabulary of elementwise bodies, and their printers
    extend.py       ops and derivatives defined by users
    autodiff.py     gradients, jvp, Hessian-vector products (symbol to symbol)
    simplify.py     rewrite rules by phase, elementwise fusion
    sizes.py        call-time shapes: every size symbol bound from the arguments, checked
    interpreter.py  sg.evaluate: the NumPy reference
    partial.py      a graph split at what varies (fixed work done once)
"""
