"""Plans: a generated program turned into the int64 table that `native.run` executes.

In: a generated module's `plan` function (codegen.py) and the shapes of one call's arguments.
Out: a `Plan`: the table of step addresses and operands, the workspace size per dtype, the
shape of every output, and the message of every run-time check.

The generated `plan` function reads like the straight-line program it describes: it is
called with `Buffer`s standing for the call's arrays (a Buffer has a shape, can be sliced,
reshaped and transposed as a view, as an ndarray can, but holds no data), and records each
step through `Recorder`: `step(statement, *operands)`, where the statement names its operands
`{0}`, `{1}`... (arrays, integers, or floats); `step.loop(loop, *operands)`;
`step.check(...)`. Running it costs microseconds per step, once per set of argument shapes.
"""
from __future__ import annotations

import numpy as np

from ..core.ops import OPS


class Loop:
    """An elementwise loop of a generated module: the name of the fast-math flag set it is
    compiled with (in fastmath.py) and its source (a function named `loop`)."""

    def __init__(self, flags, text):
        self.flags = flags
        self.text = text.strip("\n")


class Private:
    """Memory a plan allocates for one value (placed in the workspace, or handed out as an
    output array)."""

    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.home = None  # (base index, byte offset), once placed


class Buffer:
    """An array of a plan: its memory (a base index, or a Private), byte offset, shape, dtype,
    and whether it is read as the transpose of the C-ordered array it is."""

    __slots__ = ("base", "offset", "shape", "dtype", "transposed")

    def __init__(self, base, offset, shape, dtype, transposed=False):
        self.base, self.offset, self.shape = base, offset, tuple(int(d) for d in shape)
        self.dtype, self.transposed = np.dtype(dtype), transposed

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __getitem__(self, window):
        """A 1-d window [start:stop] (of the workspace)."""
        start, stop = window.start or 0, window.stop
        return Buffer(self.base, self.offset + start * self.dtype.itemsize, (stop - start,), self.dtype)

    def reshape(self, *dims):
        if self.transposed:
            raise ValueError("plan: a transposed view cannot be reshaped in place")
        dims = list(dims[0] if len(dims) == 1 and isinstance(dims[0], tuple) else dims)
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
            dims[dims.index(-1)] = self.size // known if known else 0
        if int(np.prod(dims, dtype=np.int64)) != self.size:
            raise ValueError(f"plan: cannot view {self.shape} as {tuple(dims)}")
        return Buffer(self.base, self.offset, dims, self.dtype)

    @property
    def T(self):
        if self.ndim != 2:
            raise ValueError("plan: only a matrix has a transposed view")
        return Buffer(self.base, self.offset, self.shape[::-1], self.dtype, not self.transposed)

    def kind(self):
        """What the compiled step needs to know of this operand: dtype, rank, transposed."""
        return (self.dtype.name, self.ndim, self.transposed)


class Recorder:
    """The `step` a generated `plan` function records into."""

    def __init__(self, compile_step):
        self.compile_step = compile_step  # (loop, statement, kinds, check) -> address
        self.steps = []                   # (address, operands, check message or None)
        self.statements = []              # what each step runs (a statement, or a loop's body)
        self.reserved = {}                # dtype -> workspace bytes the program's slots use
        self.privates = []                # (dtype, Private), in allocation order
        self.outputs = []                 # Buffers holding the outputs, in order

    def __call__(self, statement, *operands):
        self._add(None, statement, operands, None)

    def loop(self, loop, *operands):
        """A step running `loop` on `operands` (its parameters, in order)."""
        self._add(loop, None, operands, None)

    def check(self, condition, *operands, message):
        """A step that stops the call with `message` unless `condition` holds."""
        self._add(None, condition, operands, message)

    def _add(self, loop, statement, operands, message):
        kinds = tuple(o.kind() if isinstance(o, Buffer) else "f" if isinstance(o, float) else "i"
                      for o in operands)
        address = self.compile_step(loop, statement, kinds, message is not None)
        self.steps.append((address, operands, message))
        self.statements.append(statement if loop is None else loop.text.splitlines()[-1].strip())

    def reserve(self, dtype, elements):
        """The program's workspace slots of `dtype` take `elements` elements."""
        self.reserved[np.dtype(dtype).name] = int(elements) * np.dtype(dtype).itemsize

    @staticmethod
    def infer(op_name, attrs, *inputs):
        """The output shape op `op_name`'s shape rule gives for these buffers: for ops whose
        output sizes only their rule knows (user-defined ones, symgrad.extend)."""
        shape, _ = OPS[op_name].infer(inputs, attrs)
        return shape

    @staticmethod
    def window_shape(buffer, index):
        """The shape of buffer[index] for `index` as slice op attributes ((axis, start, stop,
        step) per axis)."""
        return tuple(len(range(*slice(*s[1:]).indices(d))) for s, d in zip(index, buffer.shape))

    def new(self, shape, dtype):
        """Memory of its own for a value (not in a workspace slot)."""
        dtype = np.dtype(dtype)
        private = Private(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        self.privates.append((dtype.name, private))
        return Buffer(private, 0, shape, dtype)

    def output(self, buffer):
        """The next output is `buffer`'s value as it is now (before any update is written)."""
        self.outputs.append(buffer)
        private = buffer.base
        whole = isinstance(private, Private) and buffer.offset == 0 and buffer.nbytes == private.nbytes
        if whole and not any(b.base is private for b in self.outputs[:-1]):
            return  # the value is written straight into the output array
        copy = Buffer(("output", len(self.outputs) - 1), 0, buffer.shape, buffer.dtype)
        self("kernels.copy({0}, {1})", buffer, copy)
        self.outputs[-1] = copy


class Plan:
    """What a call with one set of argument shapes runs: `table` for native.run, the
    workspace size per dtype (in elements, dtypes sorted as the bases are), the output
    arrays' shapes and dtypes, the message of each check step by its index, and what each
    step runs (`statements`, for profiles: benchmarks/step_profile.py).

    Bases: the arrays a call passes (inputs, then outputs: native.run stores their addresses),
    then the state, constants and workspaces, whose addresses `bind` stores once."""

    def __init__(self, table, workspace, outputs, messages, first_fixed, statements=()):
        self.table, self.workspace, self.outputs, self.messages = table, workspace, outputs, messages
        self.first_fixed, self.statements = first_fixed, list(statements)

    def bind_call(self, arrays):
        """Store the addresses of a call's arrays (inputs, then outputs), as native.run does
        (for native.run_lanes, which runs plans bound beforehand)."""
        self.table[2:2 + len(arrays)] = [array.ctypes.data for array in arrays]

    def bind(self, fixed):
        """Store the addresses of the state, constant and workspace arrays `fixed` (which
        must stay alive and in place while the plan is used)."""
        for k, array in enumerate(fixed):
            self.table[2 + self.first_fixed + k] = array.ctypes.data


def build(plan_function, compile_step, inputs, fixed, workspace_dtypes, outputs):
    """The Plan of `plan_function` for input arrays of `inputs` [(shape, dtype)], the state
    and constants `fixed` [(shape, dtype)] (in the order of the generated function's
    parameters) and `outputs` output arrays."""
    recorder = Recorder(compile_step)
    first_fixed = len(inputs) + outputs
    arguments = [Buffer(k, 0, shape or (1,), dtype) for k, (shape, dtype) in enumerate(inputs)]
    arguments += [Buffer(first_fixed + k, 0, shape or (1,), dtype) for k, (shape, dtype) in enumerate(fixed)]
    first_workspace = first_fixed + len(fixed)
    workspaces = [Buffer(first_workspace + k, 0, (), dtype) for k, dtype in enumerate(workspace_dtypes)]
    plan_function(recorder, *arguments, *workspaces)
    # place each private value: an output array if it is one, else after the slots
    ends = {d: recorder.reserved.get(d, 0) for d in workspace_dtypes}  # bytes used, per dtype
    for k, buffer in enumerate(recorder.outputs):
        if isinstance(buffer.base, Private) and buffer.base.home is None:
            buffer.base.home = (len(inputs) + k, 0)
    for dtype, private in recorder.privates:
        if private.home is None:
            ws = workspace_dtypes.index(dtype)
            offset = -(-ends[dtype] // 64) * 64  # aligned for vector loads
            private.home = (first_workspace + ws, offset)
            ends[dtype] = offset + private.nbytes
    bases = first_workspace + len(workspace_dtypes)
    header, tables, messages = [bases, len(recorder.steps)] + [0] * bases, [], {}
    entries = []
    for index, (address, operands, message) in enumerate(recorder.steps):
        entries += [address, len(tables)]
        for operand in operands:
            if isinstance(operand, Buffer):
                base, offset = _home(operand, len(inputs))
                tables += [base, offset]
                tables += operand.shape[::-1] if operand.transposed else operand.shape
            elif isinstance(operand, float):
                tables.append(int(np.float64(operand).view(np.int64)))
            else:
                tables.append(int(operand))
        if message is not None:
            messages[index] = message
    table = np.array(header + entries + tables, np.int64)
    workspace = [-(-ends[d] // np.dtype(d).itemsize) for d in workspace_dtypes]
    shapes = [(b.shape, b.dtype) for b in recorder.outputs]
    return Plan(table, workspace, shapes, messages, first_fixed, recorder.statements)


def _home(buffer, first_output):
    base = buffer.base
    if isinstance(base, Private):
        index, offset = base.home
        return index, offset + buffer.offset
    if isinstance(base, tuple):  # ("output", k)
        return first_output + base[1], buffer.offset
    return base, buffer.offset
