"""Register tiles written as explicit vector code (LLVM IR), for the direct convolution
kernels (kernels.conv2d_direct, conv2d_filter_direct).

In: flat arrays, start indices into them, and a table of tap offsets. Out: a tile of sums
written into (or added to) a flat array. Nothing here checks an index: the kernels that call
these size every array so that each read and write falls inside it (they say how).

Why IR: a convolution over few channels is a short sum per output (one tap per kernel
position) repeated over long rows. LLVM vectorises such loops from Numba only along the
innermost loop, with the sum read from and written back to memory at every tap (LeNet's first
convolution at 64 images: 0.35 ms); here a tile of vectors stays in registers across all taps
and is written once (0.2 ms; im2col and a BLAS product took 0.83 ms). Vectors are one register
wide, `VECTOR_BYTES` (AVX-512 where the CPU has it); LLVM splits them where a CPU has narrower
registers, so the code is right on every machine.
"""
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f") else 32
# Forward tile: FILTERS filters × BLOCKS vectors of outputs (16 registers of sums, 8 loads
# and 2 broadcasts per 16 multiply-adds). Gradient tile: GRAD_FILTERS × GRAD_TAPS sums (15).
FILTERS, BLOCKS = 2, 8
GRAD_FILTERS, GRAD_TAPS = 3, 5

_I64 = ir.IntType(64)


def _bytes(scalar_type):
    return 4 if scalar_type == ir.FloatType() else 8


def _lanes(scalar_type):
    """Elements per vector (in kernels: VECTOR_BYTES // x.itemsize)."""
    return VECTOR_BYTES // _bytes(scalar_type)


def _at(builder, base, index):
    """Pointer to the vector starting at base[index] (base: a scalar pointer)."""
    vector = ir.VectorType(base.type.pointee, _lanes(base.type.pointee))
    return builder.bitcast(builder.gep(base, [index]), vector.as_pointer())


def _load(builder, base, index):
    return builder.load(_at(builder, base, index), align=_bytes(base.type.pointee))


def _store(builder, value, base, index):
    builder.store(value, _at(builder, base, index), align=_bytes(base.type.pointee))


def _fma(builder, a, b, c):
    """a·b + c lane by lane, rounded once."""
    name = f"llvm.fma.v{a.type.count}{a.type.element.intrinsic_name}"
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(a.type, [a.type] * 3), name)
    return builder.call(function, [a, b, c])


def _splat(builder, value):
    """A vector with `value` in every lane."""
    vector = ir.VectorType(value.type, _lanes(value.type))
    one = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, None),
                                  ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count))


def _zero(scalar_type):
    return ir.Constant(ir.VectorType(scalar_type, _lanes(scalar_type)), [0.0] * _lanes(scalar_type))


def _counted_loop(builder, count, carried, body):
    """for i in range(count): carried = body(i, carried), the carried values in registers
    (phi nodes); returns them at the end (as given where count <= 0)."""
    entry = builder.block
    loop, done = builder.append_basic_block("loop"), builder.append_basic_block("done")
    builder.cbranch(builder.icmp_signed(">", count, ir.Constant(_I64, 0)), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(_I64)
    i.add_incoming(ir.Constant(_I64, 0), entry)
    phis = []
    for value in carried:
        phi = builder.phi(value.type)
        phi.add_incoming(value, entry)
        phis.append(phi)
    new = body(i, phis)
    following = builder.add(i, ir.Constant(_I64, 1))
    last = builder.block
    i.add_incoming(following, last)
    for phi, value in zip(phis, new):
        phi.add_incoming(value, last)
    builder.cbranch(builder.icmp_signed("<", following, count), loop, done)
    builder.position_at_end(done)
    out = []
    for before, after in zip(carried, new):
        phi = builder.phi(before.type)
        phi.add_incoming(before, entry)
        phi.add_incoming(after, last)
        out.append(phi)
    return out


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


@intrinsic
def taps_tile(typingctx, x, x_start, offsets, taps, w, w_start, out, out_start, out_stride):
    """For r < FILTERS, k < BLOCKS, lanes l:
    out[out_start + r·out_stride + k·L + l] =
        Σ_{t < taps} w[w_start + r·taps + t] · x[x_start + offsets[t] + k·L + l]
    (L = VECTOR_BYTES // x.itemsize). x, w, out: 1-d contiguous arrays of one float dtype; offsets:
    1-d int64."""
    signature = types.void(x, x_start, offsets, taps, w, w_start, out, out_start, out_stride)

    def codegen(context, builder, sig, args):
        xa, x0, oa, taps_, wa, w0, outa, out0, stride = args
        X = builder.gep(_data(context, builder, sig.args[0], xa), [x0])
        offs = _data(context, builder, sig.args[2], oa)
        W = builder.gep(_data(context, builder, sig.args[4], wa), [w0])
        OUT = builder.gep(_data(context, builder, sig.args[6], outa), [out0])
        lanes = _lanes(X.type.pointee)

        def tap(t, sums):
            offset = builder.load(builder.gep(offs, [t]))
            xs = [_load(builder, X, builder.add(offset, ir.Constant(_I64, k * lanes)))
                  for k in range(BLOCKS)]
            new = []
            for r in range(FILTERS):
                weight = builder.load(builder.gep(W, [builder.add(builder.mul(ir.Constant(_I64, r), taps_), t)]))
                weight = _splat(builder, weight)
                new += [_fma(builder, weight, xs[k], sums[r * BLOCKS + k]) for k in range(BLOCKS)]
            return new
        sums = _counted_loop(builder, taps_, [_zero(X.type.pointee)] * (FILTERS * BLOCKS), tap)
        for r in range(FILTERS):
            row = builder.mul(ir.Constant(_I64, r), stride)
            for k in range(BLOCKS):
                _store(builder, sums[r * BLOCKS + k], OUT, builder.add(row, ir.Constant(_I64, k * lanes)))
        return context.get_dummy_value()
    return signature, codegen


@intrinsic
def taps_gradient_tile(typingctx, g, g_start, g_stride, keep, x, offsets, t_start, blocks,
                       sums, sums_start, sums_stride):
    """For r < GRAD_FILTERS, j < GRAD_TAPS, lanes l, summed over b < blocks:
    sums[sums_start + r·sums_stride + j·L + l] +=
        g[g_start + r·g_stride + b·L + l] · (x[offsets[t_start + j] + b·L + l] where
        keep[b·L + l] != 0, else 0)
    (L = VECTOR_BYTES // x.itemsize). `keep` marks the positions that hold an output: a zero cotangent
    elsewhere must not meet an infinite input there (0·inf is NaN)."""
    signature = types.void(g, g_start, g_stride, keep, x, offsets, t_start, blocks, sums,
                           sums_start, sums_stride)

    def codegen(context, builder, sig, args):
        ga, g0, g_step, ka, xa, oa, t0, blocks_, sa, s0, s_step = args
        G = builder.gep(_data(context, builder, sig.args[0], ga), [g0])
        K = _data(context, builder, sig.args[3], ka)
        X = _data(context, builder, sig.args[4], xa)
        offs = builder.gep(_data(context, builder, sig.args[5], oa), [t0])
        S = builder.gep(_data(context, builder, sig.args[8], sa), [s0])
        scalar = X.type.pointee
        lanes = _lanes(scalar)
        zero = _zero(scalar)
        taps = [builder.load(builder.gep(offs, [ir.Constant(_I64, j)])) for j in range(GRAD_TAPS)]

        def block(b, sums):
            at = builder.mul(b, ir.Constant(_I64, lanes))
            inside = builder.fcmp_unordered("!=", _load(builder, K, at), zero)
            gs = [_load(builder, G, builder.add(builder.mul(ir.Constant(_I64, r), g_step), at))
                  for r in range(GRAD_FILTERS)]
            new = list(sums)
            for j in range(GRAD_TAPS):
                xs = builder.select(inside, _load(builder, X, builder.add(taps[j], at)), zero)
                for r in range(GRAD_FILTERS):
                    new[r * GRAD_TAPS + j] = _fma(builder, gs[r], xs, sums[r * GRAD_TAPS + j])
            return new
        totals = _counted_loop(builder, blocks_, [zero] * (GRAD_FILTERS * GRAD_TAPS), block)
        for r in range(GRAD_FILTERS):
            row = builder.mul(ir.Constant(_I64, r), s_step)
            for j in range(GRAD_TAPS):
                at = builder.add(row, ir.Constant(_I64, j * lanes))
                _store(builder, builder.fadd(_load(builder, S, at), totals[r * GRAD_TAPS + j]), S, at)
        return context.get_dummy_value()
    return signature, codegen
