"""Just-in-time compilation of plan steps, with a disk cache; and loading generated programs.

In: a step (a statement over typed operands, and the elementwise loop it calls, if any;
plan.py records them) or a generated module's source (codegen.py). Out: the address of the
step's compiled C function (native.py runs it), or the module's namespace.

Each step is compiled from a module of its own, `<cache dir>/step_<hash>.py`, where the hash
covers the step's text and the versions of symgrad, Numba, NumPy and Python and the code of
the runtime modules (blas, convolution, fastmath, kernels, native) that Numba inlines into it; Numba's own
cache (`cache=True`) stores the machine code beside it. So a step is compiled once per
machine, and serves every model that has it, in every process: a new model compiles only the
steps no model before it had. The directory is `$SYMGRAD_CACHE_DIR`, else
`~/.cache/symgrad`. If it cannot be written, we compile in memory and warn.

Loading goes around Numba's cache: it loads a function through Numba's typing context, which
Numba fills the first time a process loads anything (0.2 s: the registries of every NumPy
function it knows), though a compiled step needs none of it. So once Numba has compiled a
step we keep its object code ourselves, `<cache dir>/step_<hash>.<machine>.o` (a digest
checks it; <machine> names the CPU it was compiled for), and link it with Numba's code
generator, whose runtime symbols are all it needs. `table_runner` is the plan runner compiled
the same way, called through ctypes: with it a process runs compiled code before it has paid
for the registries, which `compile_runner` (the runner with the cheapest calls) then loads.

A generated module is plain Python (the plan function, codegen.py): it is executed in memory,
with its lines registered so tracebacks show them.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import importlib.util
import linecache
import os
import pickle
import platform
import shutil
import sys
import tempfile
import threading
import warnings

import numpy as np

_loaded: dict[str, object] = {}   # hash of a generated module -> its namespace


def cache_dir():
    return os.environ.get("SYMGRAD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "symgrad")


def clear_cache():
    """Delete every compiled function cached on disk (and forget those in memory)."""
    global _table_runner
    _loaded.clear()
    _steps.clear()
    _table_runner = None
    shutil.rmtree(cache_dir(), ignore_errors=True)


def _runtime_digest():
    """A digest of the modules generated code calls into: Numba inlines them into the cached
    machine code, so a change there must change the cache key too; and of the matrix product
    `kernels.product` stands for in this process (NumPy's BLAS, or SciPy's through Numba)."""
    from ..runtime import blas, convolution, fastmath, kernels, native
    digest = hashlib.sha256(kernels.MATMUL.encode())
    for module in (blas, convolution, fastmath, kernels, native):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


_RUNTIME = None


def source_hash(source):
    global _RUNTIME
    import numba  # here, not at import: `import symgrad` does not start Numba
    from ..version import __version__
    if _RUNTIME is None:
        _RUNTIME = _runtime_digest()
    versions = (f"{__version__}|{numba.__version__}|{np.__version__}|"
                f"{platform.python_version()}|{_RUNTIME}")
    return hashlib.sha256((versions + "\n" + source).encode()).hexdigest()[:24]


def _write_atomically(path, content):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _from_file(prefix, key, source):
    """The module `<cache>/<prefix>_<key>.py` holding `source`, imported (written first if it
    is missing or not intact)."""
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{prefix}_{key}.py")
    try:
        with open(path) as f:
            intact = f.read() == source
    except OSError:
        intact = False
    if not intact:  # missing, or truncated/corrupt: rewrite it
        _write_atomically(path, source)
    try:
        return _import(f"symgrad_{prefix}_{key}", path)
    except Exception:
        # Numba's cached machine code may be corrupt (a truncated pickle, say): drop it and
        # compile afresh. A second failure is a real error and propagates.
        for stale in glob.glob(os.path.join(directory, "__pycache__", f"{prefix}_{key}.*")):
            os.unlink(stale)
        return _import(f"symgrad_{prefix}_{key}", path)


def _import(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ------------------------------------------------------------------------- steps

STEP_MODULE = '''"""A step of programs compiled by symgrad (native.py), shared by every model that has it:
the file is named by a hash of its text, so Numba compiles it once per machine."""
import math

import numba
import numpy as np

from symgrad.core.extend import kernels as extensions
from symgrad.runtime import fastmath, kernels, native


@numba.cfunc(native.STEP, cache=True, nogil=True, error_model="numpy", fastmath={flags})
def step(table, bases):
{body}'''

_steps: dict = {}            # step key -> address of its compiled cfunc
_keep: list = []             # the cfuncs: their machine code lives as long as they do
_compiling = threading.Lock()  # one step compiled at a time (Numba compiles one at a time)
stats = {"compiled": 0, "loaded": 0}  # steps compiled by Numba / read from a disk cache


def step_text(loop, statement, kinds, check):
    """The module source of a step: each operand read from the table (an array as base
    index, byte offset and dimensions; an integer as itself; a float from its bits) into a
    local name, then the statement with its operands `{0}`, `{1}`... named, or the loop's
    body with its parameters named (written into the step, so Numba compiles one function,
    not two)."""
    from ..runtime import fastmath
    flags = sorted(getattr(fastmath, loop.flags if loop is not None else "SAFE_FLAGS"))
    # (sets print in a different order in each process: spelled out sorted, so the file,
    # and the stamp Numba's cache checks, are the same everywhere)
    spelled = "{" + ", ".join(repr(f) for f in flags) + "}"
    if loop is not None:
        signature, *loop_body = loop.text.splitlines()
        parameters = signature[signature.index("(") + 1:signature.index(")")].split(", ")
    lines, names, position = [], [], 0
    for k, kind in enumerate(kinds):
        name = parameters[k] if loop is not None else f"x{k}"
        if kind in ("i", "f"):
            value = f"table[{position}]"
            lines.append(f"{name} = " + (value if kind == "i" else f"native.float_from_bits({value})"))
            position += 1
        else:
            dtype, rank, transposed = kind
            dims = "".join(f"table[{position + 2 + d}], " for d in range(rank))
            scalar_type = np.dtype(dtype).type.__name__
            lines.append(f"{name} = numba.carray(native.pointer(bases[table[{position}]] + "
                         f"table[{position + 1}], np.{scalar_type}), ({dims}))" + (".T" if transposed else ""))
            position += 2 + rank
        names.append(name)
    if loop is not None:
        lines += [line[4:] for line in loop_body] + ["return 0"]
    elif check:
        lines.append(f"return 0 if {statement.format(*names)} else 1")
    else:
        lines += [statement.format(*names), "return 0"]
    body = "".join(f"    {line}\n" for line in lines)
    return STEP_MODULE.format(flags=spelled, body=body)


# ------------------------------------------------------------------------- machine code

_CODEGEN = _MACHINE = None


def _codegen():
    """Numba's code generator, with the runtime (NRT) symbols compiled code links against,
    but not the typing registries (compiling fills those when it needs them)."""
    global _CODEGEN, _MACHINE
    if _CODEGEN is None:
        from numba.core.registry import cpu_target
        from numba.core.runtime import rtsys
        from ..runtime import blas  # noqa: F401 - registers the BLAS symbols products call
        context = cpu_target.target_context
        rtsys.initialize(context)
        codegen = context.codegen()
        # the CPU the code is compiled for (triple, name, features): its object files' tag
        _MACHINE = hashlib.sha256(repr(codegen.magic_tuple()).encode()).hexdigest()[:8]
        _CODEGEN = codegen
    return _CODEGEN


def _object_path(name):
    _codegen()
    return os.path.join(cache_dir(), f"step_{name}.{_MACHINE}.o")


def _load_object(path):
    """The address of the function kept in `path`, or None (missing, or not intact: then the
    file is removed and the step compiled again)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        if hashlib.sha256(data[32:]).digest() != data[:32]:
            raise ValueError("digest mismatch")
        serialized, symbol = pickle.loads(data[32:])
        library = _codegen().unserialize_library(serialized)
        address = library.get_pointer_to_function(symbol)
    except Exception:
        with contextlib.suppress(OSError):  # (another process may have removed it already)
            os.unlink(path)
        return None
    _keep.append(library)
    return address


def _save_object(path, cfunc):
    payload = pickle.dumps((cfunc._library.serialize_using_object_code(), cfunc._wrapper_name))
    _write_atomically(path, hashlib.sha256(payload).digest() + payload)


def _compiled_address(text):
    """The address of the C function `step` of the module `text`: its object code from the
    cache, else compiled by Numba (and its object code kept)."""
    name = source_hash(text)
    path = _object_path(name)
    address = _load_object(path)
    if address is not None:
        stats["loaded"] += 1
        return address
    try:
        step = _from_file("step", name, text).step
    except OSError:  # no writable cache: compile in memory
        warnings.warn(f"symgrad: cannot use the compile cache in {cache_dir()}; compiling "
                      f"in memory (set SYMGRAD_CACHE_DIR to a writable folder)",
                      RuntimeWarning, stacklevel=3)
        step = _in_memory(name, text)["step"]
    else:
        try:
            _save_object(path, step)
        except (OSError, RuntimeError):
            # (RuntimeError: Numba loaded the step from its own cache, which another process
            # filled meanwhile, and keeps no object code of it.) The next process loads it
            # through Numba's cache instead.
            pass
    stats["loaded" if step.cache_hits else "compiled"] += 1
    _keep.append(step)
    return step.address


RUNNER_MODULE = '''"""The plan runner called through ctypes (jit.table_runner), compiled once per machine."""
import numba
from numba import types

from symgrad.runtime import native


@numba.cfunc(types.int64(types.CPointer(types.int64), types.int64), cache=True, nogil=True)
def step(plan, length):
    return native.run_steps(numba.carray(plan, (length,)))
'''

_table_runner = None


def table_runner():
    """A runner of plans, run(table, *arrays) as native.run, that needs no Numba typing
    registries: its machine code is loaded as a step's is. Each call costs about 3 µs more
    than native.run's (the arrays' addresses are read in Python)."""
    global _table_runner
    with _compiling:
        if _table_runner is None:
            call = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)(
                _compiled_address(RUNNER_MODULE))

            def run(table, *arrays):
                for k, array in enumerate(arrays):
                    table[2 + k] = array.ctypes.data
                return call(table.ctypes.data, len(table))
            _table_runner = run
    return _table_runner


def step_address(loop, statement, kinds, check):
    """The address of the compiled step (plan.Recorder's `compile_step`): from memory, the
    disk cache, or a fresh compile."""
    key = (loop.text if loop is not None else None, loop.flags if loop is not None else None,
           statement, kinds, check)
    address = _steps.get(key)
    if address is not None:
        return address
    with _compiling:  # (two functions compiling in the background may need the same step)
        address = _steps.get(key)
        if address is not None:
            return address
        address = _steps[key] = _compiled_address(step_text(loop, statement, kinds, check))
        return address


def _execute(name, source):
    """The namespace of `source` run as module `name`, its lines registered so tracebacks
    show them."""
    filename = f"<{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": name}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def _in_memory(key, source):
    return _execute(f"symgrad_generated_{key}", source.replace("cache=True", "cache=False"))


def cache_stats():
    """{"compiled": n, "loaded": m}: the steps, and signatures of native.run, that this
    process compiled, and those it read from the disk cache."""
    counts = dict(stats)
    if "symgrad.runtime.native" in sys.modules:
        run = sys.modules["symgrad.runtime.native"].run
        counts["compiled"] += sum(run.stats.cache_misses.values())
        counts["loaded"] += sum(run.stats.cache_hits.values())
    return counts


def compile_runner(array_types):
    """native.run, compiled for calls with arrays of `array_types` [(dtype, rank)] (once per
    machine for each such list, which models of one architecture share)."""
    import numba
    from ..runtime import native
    arrays = [numba.types.Array(numba.from_dtype(np.dtype(d)), rank, "C") for d, rank in array_types]
    # (the *arrays parameter as the tuple type a call of run matches)
    native.run.compile((numba.types.Array(numba.int64, 1, "C"), numba.types.Tuple(arrays)))
    return native.run


# The lanes of a call (lanes.py) run at once through native.run_lanes; imported when first
# asked, as the runners are, so that `import symgrad` loads no Numba.

def parallel_lanes():
    """The threads native.run_lanes may use here (0: none, and lanes run on Python threads)."""
    from ..runtime import native
    return native.parallel_lanes()


def launch_lanes(tables):
    """native.launch_lanes: the plans `tables` (bound to their calls) run at once; the index
    of each one's failed check, or -1."""
    from ..runtime import native
    return native.launch_lanes(tables)


def load_program(source):
    """The generated module `source` (plain Python: its `plan` function and its loops),
    executed once per process."""
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    namespace = _loaded.get(key)
    if namespace is None:
        namespace = _loaded[key] = _execute(f"symgrad_program_{key}", source)
    return namespace
