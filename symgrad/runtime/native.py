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
arrays written by `run`, the others by `Plan.bind`), (step address, table offset) per step,
the tables].
"""
import numba
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
