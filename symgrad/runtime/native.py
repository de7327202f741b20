"""The runtime of compiled programs: a plan of C-ABI steps, run by one compiled loop.

In: a plan (an int64 array built by plan.py for one set of argument shapes) and the arrays
a call passes (its inputs and its fresh output arrays). Out: every step run in order, writing
into the arrays; `run` returns -1, or the index of the first check step whose condition failed
(nothing after it has run). `run` is called as a Numba function (0.4 µs a call); the same loop,
`run_steps`, is also compiled as a C function (jit.table_runner) that a process can call
before it has loaded Numba's typing registries.

Each step is a Numba `cfunc` with the C signature `int64 step(int64 *table, int64 *bases)`:
`bases` holds the data address of every array of the call, and `table` this step's operands,
an array as (base index, byte offset, its dimensions...), an integer as itself, a float as its
bits. The steps are
compiled once per machine, keyed by their text (jit.py), and `run` is compiled once per
list of input and output types, which models share: a new model compiles only the steps no
model before it had, and nothing per model.

Plan layout: [number of bases, number of steps, the bases' addresses (those of the passed
arrays written by `run`, or by `Plan.bind_call`, the others by `Plan.bind`), (step address,
table offset) per step, the tables].

`run_lanes` runs several plans at once, one per thread of Numba's pool (the calling thread
runs the first): a call split into lanes (compiler/lanes.py) starts its lanes and hears back
from them in native code, 0.1-0.15 ms sooner per call than through Python threads (measured
on 2 cores: LeNet's step in lanes 4.02-4.09 -> 3.89-3.95 ms, the small CNN's 0.38-0.42 ->
0.28-0.29 ms, which is one lane's time alone). `parallel_lanes()` says whether it may be used
here.

GNU OpenMP's threads (Numba's pool here) spin after a parallel region before they sleep:
300,000 rounds by default, milliseconds, during which a 2-thread BLAS product that follows
took 4.1 ms instead of 0.8 (measured after the small CNN's step). Unless the user chose a
policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT), Numba's OpenMP is loaded with a spin count of
3,000 rounds (about 0.2 ms; the environment is restored at once, so another library's
OpenMP loaded later keeps its own default): the product then took 0.79-0.86 ms, and the
steps 3-10 % longer than with the default.
"""
import contextlib
import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

# the C signature of every step
STEP = types.int64(types.CPointer(types.int64), types.CPointer(types.int64))


@intrinsic
def pointer(typingctx, address, dtype):
    """`address` (an integer) as a pointer to values of `dtype` (a NumPy scalar type), for
    `numba.carray`."""
    target = types.CPointer(dtype.instance_type)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(target))
    return target(address, dtype), codegen


@intrinsic
def float_from_bits(typingctx, bits):
    """The float64 whose bits the int64 `bits` holds (how a plan's table carries a number)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(bits), codegen


@intrinsic
def _store_addresses(typingctx, out, arrays):
    """out[k] = the data address of arrays[k], for each array of the tuple."""
    def codegen(context, builder, signature, args):
        out_type, tuple_type = signature.args
        destination = context.make_array(out_type)(context, builder, args[0]).data
        for k, array_type in enumerate(tuple_type):
            array = context.make_array(array_type)(context, builder, builder.extract_value(args[1], k))
            address = builder.ptrtoint(array.data, ir.IntType(64))
            builder.store(address, builder.gep(destination, [ir.Constant(ir.IntType(64), k)]))
        return context.get_dummy_value()
    return types.void(out, arrays), codegen


@intrinsic
def _call_step(typingctx, address, table, bases):
    """The step at `address` called on the data of `table` and `bases` (int64 arrays)."""
    def codegen(context, builder, signature, args):
        table_data = context.make_array(signature.args[1])(context, builder, args[1]).data
        bases_data = context.make_array(signature.args[2])(context, builder, args[2]).data
        function_type = ir.FunctionType(ir.IntType(64), [table_data.type, bases_data.type])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        return builder.call(function, [table_data, bases_data])
    return types.int64(address, table, bases), codegen


@numba.njit(cache=True, nogil=True)
def run_steps(plan):
    """Every step of `plan`, whose bases hold every address already."""
    bases_count, steps = plan[0], plan[1]
    bases = plan[2:2 + bases_count]
    first = 2 + bases_count
    tables = first + 2 * steps
    for s in range(steps):
        if _call_step(plan[first + 2 * s], plan[tables + plan[first + 2 * s + 1]:], bases) != 0:
            return s
    return -1


@numba.njit(cache=True, nogil=True)
def run_step(plan, index, repeats):
    """Step `index` of `plan` alone, `repeats` times (a profile: benchmarks/step_profile.py),
    once `run` has stored the arrays' addresses in the plan."""
    bases_count, steps = plan[0], plan[1]
    bases = plan[2:2 + bases_count]
    first = 2 + bases_count
    tables = first + 2 * steps
    for _ in range(repeats):
        _call_step(plan[first + 2 * index], plan[tables + plan[first + 2 * index + 1]:], bases)


@numba.njit(cache=True, nogil=True)
def run(plan, *arrays):
    _store_addresses(plan[2:2 + len(arrays)], arrays)
    return run_steps(plan)


@numba.njit(cache=True, nogil=True, parallel=True)
def run_lanes(plans, failed):
    """Every plan of the tuple `plans` (their bases' addresses stored), each on a thread of
    Numba's pool: failed[k] = run_steps(plans[k])."""
    for k in numba.prange(len(plans)):
        failed[k] = run_steps(plans[k])


_launched_in = None  # the process that first launched run_lanes


def _thread_safe_layer():
    """Whether Numba's threading layer (the one chosen, or the one the first launch will
    choose) lets several threads launch at once: tbb and omp do; the workqueue layer aborts
    the process on a concurrent launch."""
    try:
        return numba.threading_layer() in ("tbb", "omp")
    except ValueError:  # no parallel launch yet
        pass
    if numba.config.THREADING_LAYER not in ("default", "threadsafe", "tbb", "omp"):
        return False
    for layer in ("tbbpool", "omppool"):
        try:
            with _short_openmp_spin():
                __import__(f"numba.np.ufunc.{layer}")
            return True
        except ImportError:
            continue
    return False


@contextlib.contextmanager
def _short_openmp_spin():
    """GOMP_SPINCOUNT=3000 while GNU OpenMP loads (it reads it then), unless the user chose a
    policy: see the module doc."""
    chosen = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    if not chosen:
        os.environ["GOMP_SPINCOUNT"] = "3000"
    try:
        yield
    finally:
        if not chosen:
            del os.environ["GOMP_SPINCOUNT"]


def parallel_lanes():
    """The threads `run_lanes` may use here (0: it may not): Numba's pool, where its
    threading layer is thread-safe, in the process that first launched it (GNU OpenMP aborts
    a forked child that launches its parent's pool)."""
    if _launched_in not in (None, os.getpid()) or not _thread_safe_layer():
        return 0
    return numba.get_num_threads()


def launch_lanes(plans):
    """run_lanes on the tuple `plans`: the index of each plan's failed check, or -1."""
    global _launched_in
    failed = np.empty(len(plans), np.int64)
    run_lanes(plans, failed)
    _launched_in = os.getpid()
    return failed
