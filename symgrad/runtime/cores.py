"""The cores a call uses: NumPy's OpenBLAS (found among the loaded libraries) and its thread
count, and the Python worker threads that run lanes (compiler/lanes.py) where Numba's pool
cannot (native.run_lanes, native.parallel_lanes). No Numba here: `import
symgrad` loads this module without starting it.

In: nothing at import. Out: `loaded_openblas()` (paths, NumPy's first) and `openblas_libraries()` (loaded), `blas_threads()` and
`set_blas_threads(n)` (1 and a no-op where the library cannot be told), `cores()` (the cores
this process may run on) and `workers()` (a shared pool of threads for the lanes past the
first, which the calling thread runs itself).
"""
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["loaded_openblas", "openblas_libraries", "blas_threads", "set_blas_threads", "cores", "workers"]


def loaded_openblas():
    """Paths of the OpenBLAS libraries loaded in this process, NumPy's first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps
                     if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    numpy_root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    ours = os.path.join(numpy_root, "numpy")
    return sorted(paths, key=lambda p: not p.startswith(ours))


def openblas_libraries():
    """The OpenBLAS libraries loaded in this process as ctypes libraries, NumPy's first."""
    for path in loaded_openblas():
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def _find_thread_count():
    """(get, set) of NumPy's OpenBLAS thread count, as ctypes functions, or None."""
    for library in openblas_libraries():
        for name in ("scipy_openblas_{}_num_threads64_", "openblas_{}_num_threads64_",
                     "openblas_{}_num_threads"):
            try:
                return getattr(library, name.format("get")), getattr(library, name.format("set"))
            except AttributeError:
                continue
    return None


_thread_count = _find_thread_count()


def blas_threads():
    """The threads NumPy's OpenBLAS runs a product on (1 where it cannot be told)."""
    return int(_thread_count[0]()) if _thread_count else 1


def set_blas_threads(count):
    """Run NumPy's OpenBLAS products on `count` threads."""
    if _thread_count:
        _thread_count[1](int(count))


def _count_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        return os.cpu_count() or 1


_CORES = _count_cores()


def cores():
    """The cores this process may run on (counted at import)."""
    return _CORES


_pool, _pool_lock = None, threading.Lock()


def workers():
    """The pool that runs lanes past the first (one thread per other core), made once."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(cores() - 1, 1), thread_name_prefix="symgrad lane")
        return _pool
