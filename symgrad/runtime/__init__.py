"""The runtime: the Numba code that compiled steps call.

In: arrays and sizes. Out: values written into the arrays given.

    kernels.py      matrix products, reductions along an axis, the softmax family, copies
    fastmath.py     vectorisable exp, log, tanh, sigmoid, softplus (a few ulp, NaN/Inf kept)
    blas.py         NumPy's own BLAS, found and registered for the matrix products
    cores.py        the cores a call uses: BLAS's thread count, the lanes' Python worker threads
    native.py       the runner that executes a plan's table of steps, and several plans at once
"""
