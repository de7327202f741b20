"""Just-in-time compilation of generated modules, with a disk cache.

In: module source (codegen.py). Out: the compiled `kernel` (a Numba dispatcher) and the
module's `workspace_sizes` function.

The source is written to `<cache dir>/sg_<hash>.py`, where the hash covers the source and
the versions of symgrad, Numba, NumPy and Python and the code of the runtime modules
(blas, fastmath, kernels) that Numba inlines, and imported from there; Numba's own cache
(`cache=True`) then stores the machine code beside it, so a second process compiles nothing.
Tracebacks show generated lines because the module is a real file. The directory is
`$SYMGRAD_CACHE_DIR`, else `~/.cache/symgrad`. If it cannot be written, we compile in memory
and warn.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import linecache
import os
import platform
import shutil
import sys
import tempfile
import warnings

import numpy as np

_loaded: dict[str, object] = {}


def cache_dir():
    return os.environ.get("SYMGRAD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "symgrad")


def clear_cache():
    """Delete every compiled function cached on disk (and forget those in memory)."""
    _loaded.clear()
    shutil.rmtree(cache_dir(), ignore_errors=True)


def _runtime_digest():
    """A digest of the modules generated code calls into: Numba inlines them into the cached
    machine code, so a change there must change the cache key too; and of the matrix product
    `kernels.product` stands for in this process (NumPy's BLAS, or SciPy's through Numba)."""
    from . import blas, fastmath, kernels
    digest = hashlib.sha256(kernels.MATMUL.encode())
    for module in (blas, fastmath, kernels):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


_RUNTIME = None


def source_hash(source):
    global _RUNTIME
    import numba  # here, not at import: `import symgrad` does not start Numba
    from . import __version__
    if _RUNTIME is None:
        _RUNTIME = _runtime_digest()
    versions = (f"{__version__}|{numba.__version__}|{np.__version__}|"
                f"{platform.python_version()}|{_RUNTIME}")
    return hashlib.sha256((versions + "\n" + source).encode()).hexdigest()[:24]


def _write_atomically(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _from_file(key, source):
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"sg_{key}.py")
    try:
        with open(path) as f:
            intact = f.read() == source
    except OSError:
        intact = False
    if not intact:  # missing, or truncated/corrupt: rewrite it
        _write_atomically(path, source)
    try:
        return _import_kernel(key, path)
    except Exception:
        # Numba's cached machine code for it may be corrupt (a truncated pickle, say):
        # drop it and compile afresh. A second failure is a real error and propagates.
        for stale in glob.glob(os.path.join(directory, "__pycache__", f"sg_{key}.*")):
            os.unlink(stale)
        return _import_kernel(key, path)


def _import_kernel(key, path):
    name = f"symgrad_generated_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel, module.workspace_sizes


def _in_memory(key, source):
    filename = f"<symgrad {key}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    source = source.replace("cache=True", "cache=False")
    namespace = {"__name__": f"symgrad_generated_{key}"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["kernel"], namespace["workspace_sizes"]


def compile_source(source):
    """(kernel, workspace_sizes) of `source`: the compiled kernel and the plain function
    sizing its workspace, from memory, the disk cache, or a fresh compile."""
    key = source_hash(source)
    kernel = _loaded.get(key)
    if kernel is None:
        try:
            kernel = _from_file(key, source)
        except OSError as error:
            warnings.warn(f"symgrad: cannot use the compile cache in {cache_dir()} ({error}); "
                          f"compiling in memory (set SYMGRAD_CACHE_DIR to a writable folder)",
                          RuntimeWarning, stacklevel=3)
            kernel = _in_memory(key, source)
        _loaded[key] = kernel
    return kernel
