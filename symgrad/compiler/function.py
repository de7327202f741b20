"""`sg.function`: the user's entry to compilation, and the thin wrapper around compiled code.

In: input placeholders, output nodes, optional updates [(Variable, new value node)].
Out: a callable `Function`. Calling it checks the arguments (count, shapes, dtypes, named in
every error), makes one call into compiled code, and returns NumPy arrays. Variables not listed
as inputs are read from, and updated into, their `.value`. The plan and the workspace of
intermediate values are made once per set of argument shapes and reused by every later call
with those shapes (so a Function is not meant to be called from several threads at once).

Pipeline: simplify (simplify.py) -> schedule (schedule.py) -> generate the plan function
(codegen.py) -> compile its steps (jit.py) -> per set of argument shapes, a plan (plan.py) ->
per call, native.run. Where the graph allows it (lanes.py), a call with enough work runs in
lanes instead: a lane function per core on its share of the batch, started together from
native code (native.run_lanes), then a finish function on their sums (both compiled at the
first such call).
"""
from __future__ import annotations

import copy
import os
import threading
import time
import warnings

import numpy as np

from . import codegen, jit, plan
from .lanes import split as cut_into_lanes
from ..core import dims
from ..core.graph import Node, Variable, is_named_leaf, topological_order
from ..core.interpreter import check_value, evaluate
from ..core.ops import OPS, fmt
from ..core.random import advance
from .schedule import Decision, bytes_at, schedule
from ..core.sizes import concrete_shapes, introduced_sizes, unbound_symbols
from ..core.simplify import simplify as simplify_graph
from ..runtime import cores

__all__ = ["Function", "function", "BACKGROUND_AFTER"]


# A compile that takes longer than this (seconds) goes on in the background: calls run the
# interpreter until the compiled steps are ready, then they take over (`background=False`, or
# the environment variable SYMGRAD_BACKGROUND_COMPILE=0, waits instead).
BACKGROUND_AFTER = 0.25

# A call runs in lanes (lanes.py: its batch split between the cores) where its graph allows
# it and the bytes its values take per example, times its examples, come to at least
# LANES_MIN_BYTES and to LANES_WORK_PER_SUM times the bytes of the sums the lanes return.
# Below the first, starting the lanes and adding their sums costs more than the second core
# gives back; below the second, the products that write the sums (weight gradients) dominate,
# and they use both cores anyway, through BLAS: lanes would write each sum once per lane and
# add them up. (Measured, 2 cores, lanes started from native code, lanes / whole program: a
# small CNN at 16, 32, 64 and 128 examples, 0.8, 1.7, 3.4 and 6.7 MB: 1.72, 1.02, 0.83, 0.69;
# LeNet-5 at 8, 16, 32 and 64, 4.9 to 39 MB: 1.00, 0.82, 0.69, 0.64; an MLP 784-1024-1024-10
# at 512, 26 MB of values for 7 MB of sums: 1.0-1.1, not split.) SYMGRAD_LANES=0 turns lanes off.
LANES_MIN_BYTES = 2 << 20
LANES_WORK_PER_SUM = 16


def _advances(nodes, updates, inputs):
    """An update advancing each generator state that `nodes` draw from (unless `updates`
    already update it, or it is given as an input): every call of a function that draws,
    draws afresh."""
    updated = {variable for variable, _ in updates} | set(inputs)
    states = {n.inputs[0] for n in topological_order(nodes) if OPS[n.op].draws}
    return [(state, advance(state)) for state in sorted(states - updated, key=lambda v: v.serial)]


class Function:
    """A compiled function of the graph. Attributes: `source` (the generated module),
    `graph` (networkx.DiGraph of what it computes), `program`, `rewrites` (the simplifier's
    log), `decisions` (the compiler's choices: lazy reads, views, in-place updates,
    workspace slots), `compile_seconds`. `simplify=False` compiles the graph exactly as built.

    Calls take NumPy arrays of the declared dtypes (Python numbers and lists are converted;
    arrays of another dtype are refused, not silently cast); any layout works. The outputs
    are the values before the updates (an output `W` of a step that updates W returns the old
    W, as `W * 1` does). A refused call, or one that raises, changes no Variable.

    A compile that takes longer than a quarter of a second finishes in the background: until
    then, calls are computed by the NumPy interpreter on the same graph, with the same results
    to float tolerance and the same updates (`ready()` says which serves; `wait()` blocks until
    compiled code does; `background=False` compiles before returning)."""

    def __init__(self, inputs, outputs, updates=None, name=None, simplify=True, background=None,
                 lanes=True):
        if isinstance(inputs, Node):
            inputs = [inputs]
        self.inputs = list(inputs)
        self._single = isinstance(outputs, Node)
        self.outputs = [outputs] if self._single else list(outputs or [])
        self.updates = list(updates or [])
        self._check_definition()
        self.updates += _advances(self.outputs + [v for _, v in self.updates], self.updates,
                                  self.inputs)
        started = time.perf_counter()
        outputs, updates, self.rewrites = self.outputs, self.updates, []
        given = self.outputs + [v for _, v in self.updates]
        if simplify:
            roots, self.rewrites = simplify_graph(given)
            outputs = roots[:len(outputs)]
            updates = [(var, new) for (var, _), new in zip(updates, roots[len(outputs):])]
        # Every node of the graph as given and as compiled: the sizes both assume are checked
        # once per set of argument shapes, before compiled code (which has no bounds checks)
        # sees them.
        self._sized_nodes = topological_order(given + outputs + [v for _, v in updates])
        self._check_sizes_given()
        self.program = schedule(self.inputs, outputs, updates)
        self.decisions = []  # the compiler's choices, pass by pass (schedule.Decision)
        self.source = codegen.generate(self.program, title=name or "", decisions=self.decisions)
        self._lane_cut = None
        if lanes:
            self._lane_cut, why_not = cut_into_lanes(self.inputs, outputs, updates)
            batch = [n for n in self.inputs if n.ndim and not dims.is_known(n.shape[0])]
            if batch:  # (logged against the first input with a batch)
                self.decisions.append(Decision("lanes", self.program.names[batch[0]],
                                               self._lane_cut.describe() if self._lane_cut
                                               else f"the batch is not split: {why_not}"))
        if self._lane_cut:  # the bytes of the values per example and of the lanes' sums
            self._bytes_per_example = sum(bytes_at(s.node, 2) - bytes_at(s.node, 1)
                                          for s in self.program.steps)
            self._sum_bytes = sum(bytes_at(n, 1) for n in self._lane_cut.lane[2][:self._lane_cut.sums])
        self._interpreted = (list(outputs), list(updates))  # what the interpreter runs meanwhile
        # (self._plans, made by _start: argument shapes -> (Plan, workspace arrays per dtype))
        self._workspace_dtypes = codegen.workspace_dtypes(self.program)
        self._scalar_out = [o.shape == () for o in self.outputs]
        self._arg_names = [getattr(n, "name", None) or f"argument {k}" for k, n in enumerate(self.inputs)]
        # What each call checks, worked out once: (dtype, rank, [(axis, size) known statically]).
        self._specs = [(np.dtype(n.dtype), n.ndim, [(k, d) for k, d in enumerate(n.shape) if dims.is_known(d)])
                       for n in self.inputs]
        self._start(started, background, name)

    def _start(self, started, background, name):
        """Bind the state and constants, and compile (in the background, or before
        returning)."""
        # State and constants are passed as the same array objects every call (a Variable's
        # array is updated in place, never replaced).
        self._state_ids = {id(v.value) for v in self.program.state}
        self._fixed = [v.value.reshape(v.shape or (1,)) for v in self.program.state] + \
                      [c.attrs["value"].reshape(c.shape or (1,)) for c in self.program.constants]
        self._runner = self._compile_error = self._compile_seconds = None
        self._plans = {}
        self._lane_functions = None  # (lane, finish), compiled at the first call in lanes
        self._lane_twins = []        # copies of the lane function with workspaces of their own
        self._lane_full_values = {}  # argument shapes -> the values of the cut's `full` nodes
        self._background = background
        self._compiled = threading.Event()
        if background is None:
            background = os.environ.get("SYMGRAD_BACKGROUND_COMPILE", "1") != "0"
        if background:
            # not a daemon: a script that ends first still finishes (and caches) the compile,
            # so its next run starts from the cache
            thread = threading.Thread(target=self._compile, args=(started,),
                                      name=f"symgrad compile {name or ''}")
            thread.start()
            thread.join(BACKGROUND_AFTER)  # most compiles (the cached ones) end here
        else:
            self._compile(started)
            self.wait()

    def _compile(self, started):
        try:
            self._plan_function = jit.load_program(self.source)["plan"]
            runner = jit.table_runner()
            # every step compiled now, from a plan for made-up sizes (a call with other sizes
            # makes its own plan from the same steps); the plan is kept for calls of those
            # shapes only if the graph accepts them, as a call checks
            made_up = {symbol: 16 for symbol in self.program.sizes}
            sizes = [tuple(dims.evaluate(d, made_up) for d in node.shape) for node in self.inputs]
            try:
                concrete_shapes(self._sized_nodes, dict(zip(self.inputs, sizes)))
                self._prepare(tuple(s or (1,) for s in sizes))  # (a call holds 0-d as 1 element)
            except Exception:  # sizes that do not fit the graph: the first call compiles (and
                pass           # reports any real error then)
            self._compile_seconds = time.perf_counter() - started
            self._runner = runner  # last: a call that sees the runner sees all it needs
        except BaseException as error:  # reported by the next call or wait()
            self._compile_error = error
            return
        finally:
            self._compiled.set()
        # Compiled code serves calls from here. Then the runner with the cheapest calls
        # (0.4 µs, against 3 µs through ctypes), whose loading fills Numba's typing
        # registries (0.2 s): the same plans and steps, so the same results.
        try:
            self._runner = jit.compile_runner(self._call_types())
        except Exception as error:  # the first runner goes on serving
            warnings.warn(f"symgrad: compiled calls stay on the ctypes runner ({error})",
                          RuntimeWarning, stacklevel=2)

    # Pickling: a Function travels (to a Dask worker, say) as its generated source, its
    # program (the graph nodes its calls check sizes against) and its Variables' values; what
    # belongs to this process (compiled code, plans, the compile thread) does not. Unpickling
    # rebuilds it from the source through the compile cache (no simplify, schedule or codegen
    # again), before it returns. Variables pickled together (a train step and its evaluation)
    # stay one object each on the other side.
    _LOCAL = ("_state_ids", "_fixed", "_runner", "_compile_error", "_compile_seconds", "_plans",
              "_compiled", "_plan_function", "_lane_functions", "_lane_twins", "_lane_full_values")

    def __getstate__(self):
        self.wait()  # (what is sent is what compiled)
        return {k: v for k, v in self.__dict__.items() if k not in self._LOCAL}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._start(time.perf_counter(), background=False, name=self.source.split("\n", 1)[0])

    def ready(self):
        """Whether compiled code serves calls (until then the interpreter does)."""
        return self._runner is not None

    def wait(self):
        """Block until compiled code is ready (raises what compiling raised)."""
        self._compiled.wait()
        if self._compile_error is not None:
            raise self._compile_error
        return self

    @property
    def compile_seconds(self):
        """Seconds from `function()` to compiled code (asking waits for it)."""
        self.wait()
        return self._compile_seconds

    @property
    def graph(self):
        return self.program.graph

    def _check_definition(self):
        for k, node in enumerate(self.inputs):
            if not isinstance(node, Node) or not is_named_leaf(node):
                raise TypeError(f"function: input {k} must be a placeholder or Variable, got {node!r}")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError("function: an input is listed twice")
        for node in self.outputs:
            if not isinstance(node, Node):
                raise TypeError(f"function: outputs must be symgrad tensors, got {type(node).__name__}")
        seen = set()
        for pair in self.updates:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError("function: updates must be a list of (Variable, new value) pairs")
            variable, value = pair
            if not isinstance(variable, Variable):
                raise TypeError(f"function: update target {variable!r} is not a Variable")
            if variable in seen:
                raise ValueError(f"function: Variable '{variable.name}' is updated twice")
            seen.add(variable)
            if not isinstance(value, Node):
                raise TypeError(f"function: the update of '{variable.name}' must be a symgrad tensor")
            if value.shape != variable.shape or value.dtype != variable.dtype:
                raise ValueError(f"function: update of Variable '{variable.name}' {fmt(variable.shape)} "
                                 f"{variable.dtype} with a value of {fmt(value.shape)} {value.dtype}")
            if variable in self.inputs:
                raise ValueError(f"function: Variable '{variable.name}' is both an input and updated")
        for node in topological_order(self.outputs + [v for _, v in self.updates]):
            if node.op == "placeholder" and node not in self.inputs:
                raise ValueError(f"function: placeholder '{node.name}' is needed but not "
                                 f"listed in inputs")

    def _check_sizes_given(self):
        """Every size the graph states must be read from an input's shape (or be one a
        computed value brings, an extension op's output size)."""
        missing = unbound_symbols(self._sized_nodes, self.inputs) - \
            introduced_sizes(self._sized_nodes).keys()
        if missing:
            names = ", ".join(sorted(dims.text(s) for s in missing))
            raise ValueError(f"function: the graph needs the size {names} (known only at call "
                             f"time), which none of the inputs has; add the placeholder it "
                             f"belongs to (a size 'x.0' is placeholder x's axis 0) to inputs")

    def __call__(self, *args):
        if len(args) != len(self._specs):
            names = ", ".join(self._arg_names)
            raise TypeError(f"this function takes {len(self.inputs)} arguments ({names}), "
                            f"got {len(args)}")
        arrays = []
        for (dtype, rank, known), value, k in zip(self._specs, args, range(len(args))):
            fits = type(value) is np.ndarray and value.dtype == dtype and value.ndim == rank
            for axis, size in known if fits else ():  # (a loop: any() over a generator
                fits = fits and value.shape[axis] == size  # costs 0.25 µs an argument)
            if not fits:
                value = check_value(self.inputs[k], value, f"argument '{self._arg_names[k]}'")
            if not (value.flags.c_contiguous and value.flags.writeable) or \
                    id(value) in self._state_ids or id(value.base) in self._state_ids:
                # a private C-ordered copy: compiled code takes writable row-major arrays
                # (Fortran order, negative strides, read-only or memory-mapped data are
                # copied), and an input must not change while the updates are written
                value = np.array(value, order="C")
            arrays.append(value if rank else value.reshape(1))
        if self._runner is None:
            return self._interpret(arrays)
        if self._lane_cut is not None:
            count = self._lane_count(arrays)
            if count > 1:
                return self._call_lanes(arrays, count)
        shapes = tuple([a.shape for a in arrays])
        prepared = self._plans.get(shapes)
        if prepared is None:
            self._check_sizes(arrays)
            prepared = self._prepare(shapes)
        built, workspace = prepared
        results = [np.empty(shape, dtype) for shape, dtype in built.outputs]
        failed = self._runner(built.table, *arrays, *results)
        if failed >= 0:
            raise ValueError(built.messages[failed])
        if self._single:
            return results[0].reshape(()) if self._scalar_out[0] else results[0]
        return self._shaped(results)

    def _shaped(self, results):
        """The output arrays as a call returns them (0-d outputs are held as 1 element)."""
        return [r.reshape(()) if scalar else r for r, scalar in zip(results, self._scalar_out)]

    def _bound(self, arrays):
        """The plan for a call on `arrays` (as __call__ holds them once checked) and its output
        arrays, every address stored in the plan: what native.run_lanes runs."""
        shapes = tuple([a.shape for a in arrays])
        prepared = self._plans.get(shapes)
        if prepared is None:
            self._check_sizes(arrays)
            prepared = self._prepare(shapes)
        built = prepared[0]
        results = [np.empty(shape, dtype) for shape, dtype in built.outputs]
        built.bind_call(arrays + results)
        return built, results

    def _lane_count(self, arrays):
        """How many lanes this call runs in (1: the whole program runs): as many as the
        cores and BLAS threads (a process that set BLAS to one thread, a Dask worker, keeps to
        one core), for calls with enough work per lane, once the lanes have compiled."""
        rows = max(arrays[k].shape[0] for k in self._lane_cut.split)
        work = rows * self._bytes_per_example
        if rows < 2 or work < max(LANES_MIN_BYTES, LANES_WORK_PER_SUM * self._sum_bytes) or \
                os.environ.get("SYMGRAD_LANES", "1") == "0":
            return 1
        count = min(cores.cores(), cores.blas_threads(), rows,
                    jit.parallel_lanes() or cores.cores())
        if count < 2:
            return 1
        if self._lane_functions is None:
            self._start_lanes()
        lane, finish = self._lane_functions
        if not (lane.ready() and (finish is None or finish.ready())):
            return 1  # (the whole program serves until they have compiled)
        while len(self._lane_twins) < count - 1:
            twin = copy.copy(lane.wait())
            twin._plans = {}  # (the compiled steps shared, the plans and workspace its own)
            self._lane_twins.append(twin)
        return count

    def _start_lanes(self):
        """Compile the lane and finish functions (in the background where this one did)."""
        cut = self._lane_cut
        lane_inputs, _, lane_outputs = cut.lane
        finish_inputs, _, finish_outputs, finish_updates = cut.finish
        lane = Function(lane_inputs, list(lane_outputs), simplify=False, lanes=False,
                        background=self._background)
        finish = Function(finish_inputs, list(finish_outputs), finish_updates, simplify=False,
                          lanes=False, background=self._background) \
            if finish_outputs or finish_updates else None
        self._lane_functions = (lane, finish)

    def _call_lanes(self, arrays, count):
        """One call in `count` lanes: each runs the lane function on its share of the batch,
        all at once (native.run_lanes, in Numba's pool, the first on the calling thread; or
        where Numba's threading layer is not thread-safe, the first here and the others on
        Python worker threads; BLAS on one thread each), then the finish reads the lanes'
        sums added up (lanes.py)."""
        cut = self._lane_cut
        functions = [self._lane_functions[0]] + self._lane_twins
        finish = self._lane_functions[1]
        values = [a if node.ndim else a.reshape(()) for a, node in zip(arrays, self.inputs)]
        full = self._whole_batch_values(values)

        def arguments(sources, lane=None, sums=None):
            """The arguments of a lane (its share of each split input's rows: inputs of
            other batch sizes are cut each by its own) or of the finish."""
            out = []
            for kind, k in sources:
                if kind == "input" and k in cut.split and lane is not None:
                    rows = values[k].shape[0]
                    out.append(values[k][rows * lane // count:rows * (lane + 1) // count])
                else:
                    out.append(values[k] if kind == "input" else full[k] if kind == "full" else sums[k])
            return out

        parts = [arguments(cut.lane[1], lane) for lane in range(count)]
        before = cores.blas_threads()
        cores.set_blas_threads(1)
        try:  # (every lane finishes before anything is raised)
            if jit.parallel_lanes():
                results = self._lanes_in_native_threads(functions[:count], parts)
            else:
                others = [cores.workers().submit(f, *args) for f, args in zip(functions[1:count], parts[1:])]
                try:
                    first = functions[0](*parts[0])
                finally:
                    results = [other.result() for other in others]
                results.insert(0, first)
        finally:
            cores.set_blas_threads(before)
        sums = [sum(r[j] for r in results[1:]) + results[0][j] for j in range(cut.sums)]
        finished = []
        if finish is not None:
            finished = finish(*arguments(cut.finish[1], sums=sums))
        outputs = [np.concatenate([r[a[1]] for r in results], axis=a[2]) if a[0] == "lane"
                   else finished[a[1]] for a in cut.assemble]
        return outputs[0] if self._single else outputs

    @staticmethod
    def _lanes_in_native_threads(functions, parts):
        """Each lane function on its arguments, all at once in Numba's pool (native.run_lanes):
        their outputs, or the first failed check's error once all have run."""
        bound = [f._bound([a if a.ndim else a.reshape(1) for a in args])
                 for f, args in zip(functions, parts)]
        failed = jit.launch_lanes(tuple(built.table for built, _ in bound))
        for (built, _), index in zip(bound, failed):
            if index >= 0:
                raise ValueError(built.messages[index])
        return [f._shaped(results) for f, (_, results) in zip(functions, bound)]

    def _whole_batch_values(self, values):
        """The values of the lanes' `full` nodes (the sizes of the whole call), worked out
        once per set of argument shapes."""
        shapes = tuple(v.shape for v in values)
        known = self._lane_full_values.get(shapes)
        if known is None:
            self._check_sizes(values)  # (the whole call's shapes, as the whole program checks)
            bindings = {}
            for node, value in zip(self.inputs, values):
                dims.bind(node.shape, value.shape, bindings)
            known = self._lane_full_values[shapes] = [
                np.asarray(OPS[n.op].numpy([], dims.evaluate_attrs(n.attrs, bindings)), n.dtype)
                for n in self._lane_cut.full]
            if len(self._lane_full_values) > 16:
                self._lane_full_values.pop(next(iter(self._lane_full_values)))
        return known

    def _prepare(self, shapes):
        """The plan for input arrays of `shapes` (as a call holds them), bound to its
        workspace, and kept for the calls with those shapes."""
        built = self._plan(shapes)
        workspace = [np.empty(max(n, 1), dtype) for n, dtype in zip(built.workspace, self._workspace_dtypes)]
        built.bind(self._fixed + workspace)
        prepared = self._plans[shapes] = (built, workspace)
        if len(self._plans) > 16:  # many batch sizes: keep the newest few
            self._plans.pop(next(iter(self._plans)))
        return prepared

    def _plan(self, shapes):
        """The Plan for inputs of `shapes` (the state and constants as they are)."""
        return plan.build(self._plan_function, jit.step_address,
                          [(shape, node.dtype) for shape, node in zip(shapes, self.inputs)],
                          [(a.shape, a.dtype) for a in self._fixed], self._workspace_dtypes,
                          len(self.program.outputs))

    def _call_types(self):
        """(dtype, rank) of the arrays a call passes to native.run: the inputs, then the
        outputs (the plan holds the addresses of the rest). Models with the same types
        share one compiled runner."""
        return [(node.dtype, max(node.ndim, 1)) for node in self.inputs + self.program.outputs]

    def _interpret(self, arrays):
        """One call by the NumPy interpreter, while the steps compile: the same graph, the
        same checks, and the same semantics (outputs before the updates, all updates written
        together once everything is computed)."""
        if self._compiled.is_set():
            self.wait()  # compiling failed: say why
        outputs, updates = self._interpreted
        feed = {node: array if node.ndim else array.reshape(())
                for node, array in zip(self.inputs, arrays)}
        self._check_sizes(arrays)  # the same checks and messages as a compiled call's
        values = evaluate(outputs + [v for _, v in updates], feed)
        for (variable, _), value in zip(updates, values[len(outputs):]):
            variable.value[...] = value
        results = values[:len(outputs)]
        return results[0] if self._single else results

    def _check_sizes(self, arrays):
        given = {node: array.shape if node.ndim else () for node, array in zip(self.inputs, arrays)}
        try:
            concrete_shapes(self._sized_nodes, given)
        except ValueError as error:
            shapes = ", ".join(f"'{name}' {fmt(given[node])}"
                               for name, node in zip(self._arg_names, self.inputs))
            raise ValueError(f"the argument shapes ({shapes}) do not fit the graph: "
                             f"{error}") from None

    def memory(self, **sizes):
        """Bytes of the reused workspace and the peak bytes of all intermediate values, for
        the unknown sizes given by argument name and axis, e.g. `memory(x=128)` (axis 0) or
        `memory(x=(128,))`; unknown sizes default to 1."""
        bindings = {}
        for k, node in enumerate(self.inputs):
            given = sizes.get(node.name if node.name else f"arg{k}", 1)
            given = given if isinstance(given, tuple) else (given,) * node.ndim
            for axis, d in enumerate(node.shape):
                if not dims.is_known(d) and d.is_Symbol:
                    bindings.setdefault(d, given[axis] if axis < len(given) else 1)
        batch = max([1] + list(bindings.values()))
        return {"workspace_bytes": self.program.workspace_bytes(bindings),
                "peak_bytes": self.program.peak_bytes(batch)}

    def __repr__(self):
        return (f"<symgrad.Function {len(self.inputs)} inputs -> {len(self.outputs)} outputs, "
                f"{len(self.updates)} updates, {len(self.program.steps)} steps>")


def function(inputs, outputs, updates=None, name=None, simplify=True, background=None,
             lanes=True):
    """Compile `outputs` (and `updates`) as a function of `inputs` (see Function)."""
    return Function(inputs, outputs, updates, name=name, simplify=simplify, background=background,
                    lanes=lanes)
