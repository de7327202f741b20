"""Direct convolution kernels (codegen's direct_convolution pass), and the register tiles they
are made of, written as explicit vector code (LLVM IR).

In: x (N, C, H, W), the filters (C·kh·kw, O) or the cotangent (N, O, Ho, Wo), the window's
numbers. Out: the convolution (N, O, Ho, Wo), or the filter gradient (C·kh·kw, O). The tiles
take flat arrays and start indices and check nothing: the kernels check the sizes they are
given and size every scratch array so that each read and write of a tile falls inside it.
Generated code calls the kernels as kernels.conv2d_along_strip... (kernels.py imports them);
they are defined here, beside the tiles, because Numba keys its cache of a function by the
file that defines it alone. One kernel per layout of the sums (tiles.py), which codegen picks:
a step then compiles only the code it runs.

Why IR: a convolution over few channels is a short sum per output (one tap per kernel
position) repeated over long rows. LLVM vectorises such loops from Numba only along the
innermost loop, with the sum read from and written back to memory at every tap (LeNet's first
convolution at 64 images: 0.35 ms); here a tile of vectors stays in registers across all taps
and is written once (0.2 ms; im2col and a BLAS product took 0.83 ms). Vectors are one register
wide, `VECTOR_BYTES` (AVX-512 where the CPU has it); LLVM splits them where a CPU has narrower
registers, so the code is right on every machine.
"""
import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from . import fastmath
from .tiles import ACROSS, BLOCKS, FILTERS, GRAD_FILTERS, GRAD_TAPS

VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f") else 32
# the tiles' sizes: tiles.py

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


@intrinsic
def across_tile(typingctx, planes, fixed, first, moving, count, vectors, sums, sums_start, add):
    """For r < ACROSS, lanes l (L of them: one vector of filters):
    sums[sums_start + r·L + l] (+= where `add`, else =)
        Σ_{k < count} planes[fixed[first + r] + moving[k]] · vectors[k·L + l]
    The sums across filters: each input broadcast, times a vector of filters' weights (the
    forward kernel: fixed = the outputs' places, moving = the taps' offsets) or of a position's
    cotangents (the filter gradient: fixed = the taps' offsets, moving = the places)."""
    signature = types.void(planes, fixed, first, moving, count, vectors, sums, sums_start, add)

    def codegen(context, builder, sig, args):
        pa, fa, first_, ma, count_, va, sa, s0, add_ = args
        X = _data(context, builder, sig.args[0], pa)
        F = builder.gep(_data(context, builder, sig.args[1], fa), [first_])
        M = _data(context, builder, sig.args[3], ma)
        V = _data(context, builder, sig.args[5], va)
        S = builder.gep(_data(context, builder, sig.args[6], sa), [s0])
        lanes = _lanes(X.type.pointee)
        places = [builder.load(builder.gep(F, [ir.Constant(_I64, r)])) for r in range(ACROSS)]

        def step(k, totals):
            moved = builder.load(builder.gep(M, [k]))
            vector = _load(builder, V, builder.mul(k, ir.Constant(_I64, lanes)))
            return [_fma(builder, _splat(builder, builder.load(builder.gep(X, [builder.add(place, moved)]))),
                         vector, total) for place, total in zip(places, totals)]
        totals = _counted_loop(builder, count_, [_zero(X.type.pointee)] * ACROSS, step)
        keep = builder.icmp_signed("!=", add_, ir.Constant(add_.type, 0))
        for r in range(ACROSS):
            at = ir.Constant(_I64, r * lanes)
            before = builder.select(keep, _load(builder, S, at), _zero(X.type.pointee))
            _store(builder, builder.fadd(before, totals[r]), S, at)
        return context.get_dummy_value()
    return signature, codegen

jit = numba.njit(cache=True, nogil=True, fastmath=fastmath.SAFE_FLAGS, error_model="numpy")


# ---------------------------------------------------------------------------- the kernels
# Each image is copied once into zero-padded planes, one per channel, end to end, so that the
# output at row i, column j is Σ_t w[t] · planes[p + offset[t]] with p = i·Wp + j (Wp: the
# padded width; offset[t] the tap's place in the planes): a sum along a strip of consecutive
# p, computed a tile of vectors of p at a time. The strip also covers the Wp - Wo positions
# at the end of each row that hold no output; they are dropped. Stride 1; any padding and
# dilation. Scratch: the padded planes of one image and a strip per filter (about one output
# image), whatever the batch.

@jit
def _conv_geometry(x, taps, filters, images, kh, kw, ph, pw, dh, dw, taps_multiple):
    """(padded height Hp, padded width Wp, the taps' offsets: _tap_offsets, as many as the
    taps rounded up to a multiple of `taps_multiple`) of a stride-1 convolution of x (N, C,
    H, W) by `filters` filters whose output (or cotangent) is `images`, or ValueError where
    the sizes passed disagree (the tiles read through raw pointers: every size they index by
    is checked here)."""
    hp, wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    ho, wo = hp - (kh - 1) * dh, wp - (kw - 1) * dw
    if min(kh, kw, dh, dw) < 1 or min(ph, pw) < 0 or ho < 1 or wo < 1 or \
            taps != x.shape[1] * kh * kw:
        raise ValueError("direct convolution: the window, padding and dilation do not fit the "
                         "input, or the filters do not have C·kh·kw taps")
    if images.shape[0] != x.shape[0] or images.shape[1] != filters or \
            images.shape[2] != ho or images.shape[3] != wo:
        raise ValueError("direct convolution: the output (or cotangent) is not (N, O, Ho, Wo)")
    count = (taps + taps_multiple - 1) // taps_multiple * taps_multiple
    return hp, wp, _tap_offsets(x.shape[1], kh, kw, dh, dw, hp, wp, count)


@jit
def _tap_offsets(channels, kh, kw, dh, dw, hp, wp, count):
    """Where each tap (c, i, j) reads in the padded planes, relative to the output's place;
    `count` >= C·kh·kw entries, those past the taps 0 (a place that exists)."""
    offsets = np.zeros(count, np.int64)
    for c in range(channels):
        for i in range(kh):
            for j in range(kw):
                offsets[(c * kh + i) * kw + j] = c * hp * wp + i * dh * wp + j * dw
    return offsets


@jit
def _pad_into(image, planes, hp, wp, ph, pw):
    """planes[c·Hp·Wp + (i + ph)·Wp + pw + j] = image[c, i, j] (the padding stays 0)."""
    for c in range(image.shape[0]):
        for i in range(image.shape[1]):
            row = planes[c * hp * wp + (i + ph) * wp + pw:]
            for j in range(image.shape[2]):
                row[j] = image[c, i, j]


@jit
def _put(row, values, accumulate):
    """row[j] = values[j] (or += where `accumulate`) for j < len(row); values: any strides."""
    if accumulate:
        for j in range(row.shape[0]):
            row[j] += values[j]
    else:
        for j in range(row.shape[0]):
            row[j] = values[j]


@jit
def _output_places(ho, wo, wp, count):
    """Where each output (i, j) is on the strip, i·Wp + j, in row-major order; `count` >= Ho·Wo
    entries, those past the outputs 0."""
    places = np.zeros(count, np.int64)
    for i in range(ho):
        for j in range(wo):
            places[i * wo + j] = i * wp + j
    return places


# The four kernels: out (N, O, Ho, Wo) = (out + if `accumulate`) the stride-1 convolution of
# x (N, C, H, W) padded with (ph, pw) zeros by the filters w (C·kh·kw, O: the product's right
# operand, any layout), taps dh, dw apart; or out (C·kh·kw, O) = its filter gradient, Σ over
# images n and outputs (i, j) of x[n]'s window at (i, j) times g[n, :, i, j] (im2col(x)ᵀ @ g's
# rows), g (N, O, Ho, Wo) in any layout. Each with its sums along the strip or across
# filters (codegen picks the fuller: tiles.py).

@jit
def conv2d_along_strip(x, w, out, kh, kw, ph, pw, dh, dw, accumulate):
    taps, o_ = w.shape
    hp, wp, offsets = _conv_geometry(x, taps, o_, out, kh, kw, ph, pw, dh, dw, 1)
    ho, wo = out.shape[2], out.shape[3]
    tile = VECTOR_BYTES // x.itemsize * BLOCKS
    length = (ho * wp + tile - 1) // tile * tile
    filters = (o_ + FILTERS - 1) // FILTERS * FILTERS
    weights = np.zeros((filters, taps), x.dtype)  # the filters padded to whole tiles with 0s
    for o in range(o_):
        for t in range(taps):
            weights[o, t] = w[t, o]
    # a tile reads up to `length` - 1 past a tap's offset, the largest of which is below C·Hp·Wp
    planes = np.zeros(x.shape[1] * hp * wp + length, x.dtype)
    sums = np.empty((filters, length), x.dtype)
    flat_weights, flat_sums = weights.reshape(-1), sums.reshape(-1)
    for n in range(x.shape[0]):
        _pad_into(x[n], planes, hp, wp, ph, pw)
        for o in range(0, filters, FILTERS):
            for p in range(0, length, tile):
                taps_tile(planes, p, offsets, taps, flat_weights, o * taps, flat_sums,
                          o * length + p, length)
        for o in range(o_):
            for i in range(ho):
                _put(out[n, o, i], sums[o, i * wp:], accumulate)


@jit
def conv2d_across_filters(x, w, out, kh, kw, ph, pw, dh, dw, accumulate):
    taps, o_ = w.shape
    hp, wp, offsets = _conv_geometry(x, taps, o_, out, kh, kw, ph, pw, dh, dw, 1)
    ho, wo = out.shape[2], out.shape[3]
    lanes = VECTOR_BYTES // x.itemsize
    outputs = ho * wo
    count = (outputs + ACROSS - 1) // ACROSS * ACROSS
    places = _output_places(ho, wo, wp, count)
    vectors = (o_ + lanes - 1) // lanes
    weights = np.zeros((vectors, taps, lanes), x.dtype)  # the filters padded to whole vectors
    for o in range(o_):
        for t in range(taps):
            weights[o // lanes, t, o % lanes] = w[t, o]
    planes = np.zeros(x.shape[1] * hp * wp, x.dtype)  # (only the windows' own places are read)
    sums = np.empty((count, lanes), x.dtype)
    flat_sums = sums.reshape(-1)
    for n in range(x.shape[0]):
        _pad_into(x[n], planes, hp, wp, ph, pw)
        for v in range(vectors):
            flat_weights = weights[v].reshape(-1)
            for r in range(0, count, ACROSS):
                across_tile(planes, places, r, offsets, taps, flat_weights, flat_sums, r * lanes, 0)
            for k in range(min(lanes, o_ - v * lanes)):
                for i in range(ho):
                    _put(out[n, v * lanes + k, i], sums[i * wo:(i + 1) * wo, k], accumulate)


@jit
def conv2d_filter_along_strip(x, g, out, kh, kw, ph, pw, dh, dw):
    taps, o_ = out.shape
    hp, wp, offsets = _conv_geometry(x, taps, o_, g, kh, kw, ph, pw, dh, dw, GRAD_TAPS)
    padded_taps = offsets.size
    ho, wo = g.shape[2], g.shape[3]
    lanes = VECTOR_BYTES // x.itemsize
    blocks = (ho * wp + lanes - 1) // lanes
    length = blocks * lanes
    filters = (o_ + GRAD_FILTERS - 1) // GRAD_FILTERS * GRAD_FILTERS
    planes = np.zeros(x.shape[1] * hp * wp + length, x.dtype)
    rows = np.zeros((filters, length), x.dtype)  # g[n] along the strip, 0 where no output is
    keep = np.zeros(length, x.dtype)             # 1 where an output is
    for i in range(ho):
        for j in range(wo):
            keep[i * wp + j] = 1
    sums = np.zeros((filters, padded_taps, lanes), x.dtype)
    flat_rows, flat_sums = rows.reshape(-1), sums.reshape(-1)
    for n in range(x.shape[0]):
        _pad_into(x[n], planes, hp, wp, ph, pw)
        for o in range(o_):
            for i in range(ho):
                _put(rows[o, i * wp:i * wp + wo], g[n, o, i], False)
        for o in range(0, filters, GRAD_FILTERS):
            for t in range(0, padded_taps, GRAD_TAPS):
                taps_gradient_tile(flat_rows, o * length, length, keep, planes, offsets, t,
                                   blocks, flat_sums, (o * padded_taps + t) * lanes,
                                   padded_taps * lanes)
    for t in range(taps):
        for o in range(o_):
            total = out.dtype.type(0)
            for k in range(lanes):
                total += sums[o, t, k]
            out[t, o] = total


@jit
def conv2d_filter_across_filters(x, g, out, kh, kw, ph, pw, dh, dw):
    taps, o_ = out.shape
    hp, wp, offsets = _conv_geometry(x, taps, o_, g, kh, kw, ph, pw, dh, dw, ACROSS)
    padded_taps = offsets.size
    ho, wo = g.shape[2], g.shape[3]
    lanes = VECTOR_BYTES // x.itemsize
    outputs = ho * wo
    places = _output_places(ho, wo, wp, outputs)
    vectors = (o_ + lanes - 1) // lanes
    planes = np.zeros(x.shape[1] * hp * wp, x.dtype)
    # g[n]'s positions, a vector of filters each (filters past O: 0, or the previous vector's
    # values, whose sums are dropped)
    rows = np.zeros((outputs, lanes), x.dtype)
    sums = np.zeros((vectors, padded_taps, lanes), x.dtype)
    flat_rows, flat_sums = rows.reshape(-1), sums.reshape(-1)
    for n in range(x.shape[0]):
        _pad_into(x[n], planes, hp, wp, ph, pw)
        for v in range(vectors):
            for k in range(min(lanes, o_ - v * lanes)):
                for i in range(ho):
                    _put(rows[i * wo:(i + 1) * wo, k], g[n, v * lanes + k, i], False)
            for t in range(0, padded_taps, ACROSS):
                across_tile(planes, offsets, t, places, outputs, flat_rows, flat_sums,
                            (v * padded_taps + t) * lanes, 1)
    for t in range(taps):
        for o in range(o_):
            out[t, o] = sums[o // lanes, t, o % lanes]
