"""Simplification: rewrite rules, elementwise fusion, and the textbook identities.

In: the nodes a function computes (outputs, update values), after differentiation.
Out: equivalent nodes (new ones; the user's graph is never changed) and a log of every rewrite
(`Rewrite(rule, before, after)`) for the notebook view.

Rules are declared data: each graph rule is registered (`@rule`) with its name, the ops it
matches and its phases, and `RULES` lists them all (`viz` and the tests read it):

- canonicalise: identities that change no value and make graphs smaller or more regular;
- stabilise: rewrites towards forms that stay finite (log(softmax) -> log_softmax, the body
  identities below); safe before differentiating, which runs them alone;
- specialise: rewrites that use facts (a declared distribution) or that hold only once
  differentiation is done (stop_gradient is the identity);
- fuse: elementwise fusion (a pass, not a rule).

Three kinds of rewrite:

- graph rules: identities (--x, transpose of transpose, reshape of reshape,
  sum of a broadcast), constant folding, log(softmax) -> log_softmax, stop_gradient dropped
  once differentiation is done, and `sum_of_distribution` (Σ_axis p·s = s where the graph
  proves that p sums to 1 along the axis: a softmax output, or labels declared with
  `distribution`, which every call checks; this is what turns the softmax cross-entropy
  gradient into q - p);
- body rules on SymPy scalar bodies: log(sigmoid(a)) -> -softplus(-a),
  log(1 - sigmoid(a)) -> -softplus(a), log(1 + exp(a)) -> softplus(a) (SymPy itself
  turns log(exp(a)) into a for real a); they also fire across a graph edge (log node of a sigmoid node);
- sharing: softmax(x) -> exp(log_softmax(x)) where the graph computes log_softmax(x) anyway
  (`share_log_softmax`, a pass once the rules are done, with the specialise phase);
- fusion: a tree of elementwise nodes whose inner values have no other use becomes one
  `elementwise` node whose body is their SymPy composition; bodies are bounded in size (a deep
  chain stays a chain of nodes) and tidied with `factor_terms` only, because SymPy's stronger
  simplifiers trade stability for brevity (they rewrite 1 - 1/(1+e^x) as e^x/(1+e^x), NaN at
  x = 1000).

Rules apply bottom-up until nothing changes. A rule whose result has another shape or dtype,
or rules that never settle, are bugs: an error where SYMGRAD_STRICT_RULES=1 (the tests set
it), a warning otherwise (the rewrite is skipped), never a silent skip.
"""
from __future__ import annotations

import functools
import os
import warnings
import math
from dataclasses import dataclass
from typing import Callable

import sympy

from . import ops, scalar
from .dims import compatible, is_known
from .graph import Node, constant, make, topological_order
from .interpreter import evaluate
from .ops import OPS, elementwise_body, fuse, is_elementwise
from .scalar import X

MAX_BODY_OPS = 48     # fused bodies stay small enough to print, differentiate and compile
MAX_BODY_INPUTS = 12
MAX_FOLD_SIZE = 4096  # constant folding never materialises big arrays


PHASES = ("canonicalise", "stabilise", "specialise", "fuse")


@dataclass(frozen=True)
class Rule:
    """A graph rule: `apply(node)` gives an equal node (or (node, name logged)), or None.
    `ops`: the op names it matches (None: every op; "elementwise": every elementwise op)."""
    name: str
    apply: Callable
    ops: tuple | str | None
    phases: tuple


RULES: dict[str, Rule] = {}


def rule(name, ops=None, phases=("canonicalise",)):
    """Register the decorated function as graph rule `name`."""
    unknown = set(phases) - set(PHASES) - {"fuse"}
    if unknown or "fuse" in phases:
        raise ValueError(f"rule {name!r}: phases are {PHASES[:3]} (fusion is a pass), got {phases}")

    def register(apply):
        RULES[name] = Rule(name, apply, ops, tuple(phases))
        return apply
    return register


class RuleError(AssertionError):
    """A rewrite rule broke the engine's contract (a changed shape or dtype, no fixpoint)."""


def _broken(problem):
    if os.environ.get("SYMGRAD_STRICT_RULES", "0") not in ("", "0"):
        raise RuleError(problem)
    warnings.warn(f"symgrad: {problem} (skipped; please report it)", RuntimeWarning, stacklevel=3)


@dataclass(frozen=True)
class Rewrite:
    rule: str
    before: Node
    after: Node

    def __repr__(self):
        return f"{self.rule}: {self.before!r} -> {self.after!r}"


# ============================================================================ body rules

def _log_sigmoid(e):
    if e.func == sympy.log and isinstance(e.args[0], scalar.sigmoid):
        return -scalar.softplus(-e.args[0].args[0])
    return None


def _log_one_minus_sigmoid(e):
    if e.func == sympy.log and isinstance(e.args[0], sympy.Add) and len(e.args[0].args) == 2:
        one, rest = sorted(e.args[0].args, key=lambda a: not a.is_number)
        if one.is_number and float(one) == 1.0 and isinstance(rest, sympy.Mul) and rest.args[0] == -1 and len(rest.args) == 2 \
                and isinstance(rest.args[1], scalar.sigmoid):
            return -scalar.softplus(rest.args[1].args[0])
    return None


def _log_one_plus_exp(e):
    if e.func == sympy.log and isinstance(e.args[0], sympy.Add) and len(e.args[0].args) == 2:
        one, rest = sorted(e.args[0].args, key=lambda a: not a.is_number)
        if one.is_number and float(one) == 1.0 and rest.func == sympy.exp:
            return scalar.softplus(rest.args[0])
    return None


def _one_plus(e):
    """`a` when e is 1 + a, else None."""
    if isinstance(e, sympy.Add) and len(e.args) == 2:
        one, rest = sorted(e.args, key=lambda a: not a.is_number)
        if one.is_number and float(one) == 1.0:
            return rest
    return None


def _exp_ratio(e):
    """exp(a) / (1 + exp(a)) -> sigmoid(a): inf/inf at large a otherwise."""
    if isinstance(e, sympy.Mul):
        factors = list(e.args)
        for k, f in enumerate(factors):
            if f.func != sympy.exp:
                continue
            for j, h in enumerate(factors):
                if isinstance(h, sympy.Pow) and h.exp == -1 and _one_plus(h.base) == f:
                    rest = [a for i, a in enumerate(factors) if i not in (k, j)]
                    return sympy.Mul(*rest) * scalar.sigmoid(f.args[0])
    return None


def _logistic(e):
    """1 / (1 + exp(a)) -> sigmoid(-a), evaluated without overflow. (After exp_ratio, so
    exp(a) / (1 + exp(a)) is not split into exp(a) * sigmoid(-a) = inf * 0.)"""
    if isinstance(e, sympy.Pow) and e.exp == -1:
        rest = _one_plus(e.base)
        if rest is not None and rest.func == sympy.exp:
            return scalar.sigmoid(-rest.args[0])
    return None


BODY_RULES = {
    "log_sigmoid": _log_sigmoid,
    "log_one_minus_sigmoid": _log_one_minus_sigmoid,
    "log_one_plus_exp": _log_one_plus_exp,
    "exp_ratio": _exp_ratio,
    "logistic": _logistic,
}


@functools.lru_cache(maxsize=4096)
def apply_body_rules(body):
    """`body` with every body rule applied; and the names of those that fired (a tuple).
    Cached: a deep model's layers repeat their bodies."""
    fired = []
    for name, rule in BODY_RULES.items():
        results = {}

        def matches(e, rule=rule, results=results):
            if e not in results:
                results[e] = rule(e)
            return results[e] is not None

        new = body.replace(matches, lambda e, results=results: results[e])
        if new != body:
            fired.append(name)
            body = new
    return body, tuple(fired)


def _fold_scalars(body, inputs, offset):
    """Scalar constant inputs written into the body as numbers, so rules can see them."""
    return body.xreplace({X[offset + k]: scalar.number(i.attrs["value"])
                          for k, i in enumerate(inputs) if i.op == "constant" and i.shape == ()})


def compose(node, which):
    """The body of elementwise `node` with its elementwise inputs at positions `which` inlined,
    over the concatenated inputs: (body, inputs)."""
    body = _fold_scalars(elementwise_body(node), node.inputs, 0)
    inputs = list(node.inputs)
    for k in which:
        inner = node.inputs[k]
        offset = len(inputs)
        if offset + len(inner.inputs) > scalar.MAX_ARITY:
            continue  # a body has at most MAX_ARITY operands: this one stays an operand
        inner_body = _fold_scalars(elementwise_body(inner), inner.inputs, 0).xreplace(
            {X[j]: X[offset + j] for j in range(len(inner.inputs))})
        body = body.xreplace({X[k]: inner_body})
        inputs += list(inner.inputs)
    return body, inputs


# ============================================================================ graph rules

@rule("double_negation", ops=("negative",))
def _double_negation(node):
    inner = node.inputs[0]
    return inner.inputs[0] if inner.op == "negative" else None


@rule("transpose_of_transpose", ops=("transpose",))
def _transpose_of_transpose(node):
    inner = node.inputs[0]
    if inner.op != "transpose":
        return None
    perm = tuple(inner.attrs["perm"][p] for p in node.attrs["perm"])
    return ops.transpose(inner.inputs[0], perm)


@rule("reshape_of_reshape", ops=("reshape",))
def _reshape_of_reshape(node):
    inner = node.inputs[0]
    if inner.op != "reshape":
        return None
    try:
        return ops.reshape(inner.inputs[0], node.shape)
    except ops.ShapeError:
        return None  # the unknown sizes cannot be traced through both: keep the two steps


@rule("broadcast_of_broadcast", ops=("broadcast_to",))
def _broadcast_of_broadcast(node):
    inner = node.inputs[0]
    if inner.op != "broadcast_to":
        return None
    try:
        return ops.broadcast_to(inner.inputs[0], node.shape)
    except ops.ShapeError:
        return None


@rule("sum_of_broadcast", ops=("sum",))
def _sum_of_broadcast(node):
    """Σ over an axis that was broadcast from size 1 = the value times that (known) size."""
    inner, axis = node.inputs[0], node.attrs["axis"]
    if inner.op != "broadcast_to" or not is_known(inner.shape[axis]) or inner.shape[axis] == 0:
        return None  # (a sum over no elements is 0, even of inf: not the value times 0)
    source = inner.inputs[0]
    lead = inner.ndim - source.ndim
    if axis >= lead and source.shape[axis - lead] != 1:
        return None
    if axis < lead:
        target = inner.shape[:axis] + inner.shape[axis + 1:]
        squeezed = source
    else:
        k = axis - lead
        squeezed = ops.reshape(source, source.shape[:k] + source.shape[k + 1:])
        target = inner.shape[:axis] + inner.shape[axis + 1:]
    try:
        spread = ops.broadcast_to(squeezed, target)
    except ops.ShapeError:
        return None
    return spread * float(inner.shape[axis])


@rule("log_of_softmax", ops=("log",), phases=("stabilise",))
def _log_of_softmax(node):
    inner = node.inputs[0]
    if inner.op == "softmax":
        return ops.log_softmax(inner.inputs[0], inner.attrs["axis"])
    return None


@rule("drop_stop_gradient", ops=("stop_gradient",), phases=("specialise",))
def _drop_stop_gradient(node):
    return node.inputs[0]  # differentiation is done: it is the identity now


def _squeeze_constant_axis(node, axis):
    """`node` (constant along `axis`: a broadcast from size 1 there, or a 0-d value, which
    elementwise ops spread along every axis) with that axis removed, or None when that needs
    more than a reshape."""
    if node.ndim == 0:
        return node
    if node.op != "broadcast_to" or node.ndim != node.inputs[0].ndim:
        return None
    source = node.inputs[0]
    if source.shape[axis] != 1:
        return None
    target = node.shape[:axis] + node.shape[axis + 1:]
    rest = source.shape[:axis] + source.shape[axis + 1:]
    if any(ops._merge_dim(a, b) is False or (a == 1 and b != 1) for a, b in zip(rest, target)):
        return None
    try:
        return ops.reshape(source, rest)
    except ops.ShapeError:
        return None


def _sums_to_one(node, axis):
    """Whether the graph proves that `node` sums to 1 along `axis`: an op whose record says so
    along its own axis (a softmax, or a declared distribution, checked on every call)."""
    return OPS[node.op].sums_to_one and node.attrs["axis"] == axis


@rule("sum_of_distribution", ops=("sum",), phases=("specialise",))
def _sum_of_distribution(node):
    """Σ_axis (p · s) = s, where p provably sums to 1 along `axis` (_sums_to_one) and s is
    constant along it. With it, -Σ p log softmax(z) differentiates to softmax(z) - p."""
    inner, axis = node.inputs[0], node.attrs["axis"]
    if not is_elementwise(inner):
        return None
    body = elementwise_body(inner)
    if not isinstance(body, sympy.Mul):
        return None
    factors = list(body.args)
    for k, factor in enumerate(factors):
        if not (isinstance(factor, sympy.Symbol) and factor.name.startswith("x")):
            continue
        p = inner.inputs[int(factor.name[1:])]
        if not _sums_to_one(p, axis):
            continue
        rest = sympy.Mul(*(factors[:k] + factors[k + 1:]))
        used, _ = scalar.free_operands(rest)
        squeezed = {}
        for i in used:
            s = _squeeze_constant_axis(inner.inputs[i], axis)
            if s is None:
                break
            squeezed[i] = s
        else:
            if not used:
                return None
            # s over the operands it uses (p, unused, would give a constant s p's shape)
            order = sorted(used)
            result = fuse(rest.xreplace({X[i]: X[j] for j, i in enumerate(order)}),
                          [squeezed[i] for i in order])
            if result.ndim == 0 and node.ndim:  # s is a 0-d value (a folded -1 or -1/N)
                result = ops.broadcast_to(result, node.shape)
            return result if compatible(result.shape, node.shape) else None
    return None


def _compose_deep(node, depth):
    """`node`'s body with elementwise inputs inlined `depth` levels up: (body, inputs)."""
    which = [k for k, i in enumerate(node.inputs) if is_elementwise(i)] if depth else []
    body, inputs = compose(node, which)
    if depth <= 1:
        return body, inputs
    for k in range(len(node.inputs), len(inputs)):
        if is_elementwise(inputs[k]):
            inner_body, inner_inputs = _compose_deep(inputs[k], depth - 1)
            offset = len(inputs)
            if offset + len(inner_inputs) > scalar.MAX_ARITY:
                continue
            body = body.xreplace({X[k]: inner_body.xreplace(
                {X[j]: X[offset + j] for j in range(len(inner_inputs))})})
            inputs += inner_inputs
    return body, inputs


def _spread_scalar(i):
    """The scalar constant that operand `i` spreads, if it is one: a constant of one element
    under ops that pass their input's values on (transparent: broadcasts, reshapes, casts;
    an L2 term's coefficient reaches its gradient as reshape(broadcast_to(constant (1,))));
    else None."""
    source = i
    while OPS[source.op].transparent:
        source = source.inputs[0]
    if source is i or source.op != "constant" or math.prod(source.shape) != 1:
        return None
    if source.shape == () and source.dtype == i.dtype:
        return source
    return constant(source.attrs["value"].reshape(()), dtype=i.dtype)


@rule("scalar_operands", ops="elementwise")
def _scalar_operands(node):
    """An elementwise operand that is a scalar constant spread to a shape is read as the
    scalar itself (elementwise ops take scalar constants), so fusion writes it into the body
    and x * 1 disappears. At least one operand must keep the node's shape."""
    scalars = [_spread_scalar(i) for i in node.inputs]
    if not any(s is not None for s in scalars):
        return None
    if not any(compatible(i.shape, node.shape) and s is None for i, s in zip(node.inputs, scalars)):
        return None
    inputs = [i if s is None else s for i, s in zip(node.inputs, scalars)]
    return make(node.op, inputs, node.attrs)


@rule("elementwise_identities", ops=("log", "divide", "power", "elementwise"), phases=("stabilise",))
def _elementwise_identities(node):
    """Body rules across edges: compose with elementwise inputs (two levels up, enough for
    log(1 - sigmoid(x))) and see if a rule fires."""
    body, inputs = _compose_deep(node, 2)
    first = {}
    merged = body.xreplace({X[k]: X[first.setdefault(i, k)] for k, i in enumerate(inputs)
                            if first.setdefault(i, k) != k})  # one symbol per distinct input
    read, _ = scalar.free_operands(body)
    if len({inputs[k] for k in read}) != len(scalar.free_operands(merged)[0]):
        return None  # a repeat cancelled (x - x): op by op it is NaN where x is (see fuse)
    body = merged
    new_body, fired = apply_body_rules(body)
    if not fired:
        return None
    return fuse(new_body, inputs), "+".join(fired)


# (last: a node whose inputs are all constants may still match a rule above)
@rule("constant_folding")
def _constant_folding(node):
    if not node.inputs or not all(i.op == "constant" for i in node.inputs):
        return None
    if not all(is_known(d) for d in node.shape) or math.prod(node.shape) > MAX_FOLD_SIZE:
        return None
    if node.op == "broadcast_to" and node.shape != ():
        return None  # a filled array is cheaper to make than to pass in
    return constant(evaluate(node))


# The rules that run before differentiating (autodiff): they change how a value is computed,
# never what its derivative is (unlike drop_stop_gradient, or rules using a declared fact).
STABILITY_PHASES = ("stabilise",)


@functools.lru_cache(maxsize=None)
def _rules_by_op(op_name, elementwise, phases):
    """The rules for nodes of `op_name`, in registration order, restricted to `phases`."""
    return tuple(r for r in RULES.values()
                 if set(r.phases) & set(phases) and
                 (r.ops is None or op_name in (r.ops if isinstance(r.ops, tuple) else ()) or
                  (r.ops == "elementwise" and elementwise)))


def _rules_for(node, phases):
    return _rules_by_op(node.op, is_elementwise(node), phases)


def _on_new_inputs(node, new):
    """`node` rebuilt on the new versions of its inputs (`new`: old node -> new node), or
    `node` itself where none changed."""
    inputs = [new[i] for i in node.inputs]
    return node if inputs == list(node.inputs) else make(node.op, inputs, node.attrs)


def _rewrite_pass(roots, log, keep=frozenset(), phases=PHASES):
    """One bottom-up pass: rebuild each node on rewritten inputs, then apply its rules until
    none fires. Nodes in `keep` stay as they are. Returns the new roots and whether anything
    changed."""
    new = {}
    changed = False
    for node in topological_order(roots, stop=keep):
        if not node.inputs or node in keep:
            new[node] = node
            continue
        current = _on_new_inputs(node, new)
        for _ in range(32):
            for declared in _rules_for(current, phases):
                result, name = declared.apply(current), declared.name
                if isinstance(result, tuple):
                    result, name = result
                if result is None or result is current:
                    continue
                if not compatible(result.shape, current.shape) or result.dtype != current.dtype:
                    _broken(f"rule {name} turned {current!r} into {result!r}")
                    continue
                log.append(Rewrite(name, current, result))
                current = result
                break
            else:
                break
        else:
            _broken(f"the rules did not settle on {node!r} after 32 rewrites")
        changed |= current is not node
        new[node] = current
    return [new[r] for r in roots], changed


# ============================================================================ sharing

def share_log_softmax(roots, log, keep=frozenset()):
    """softmax(x) -> exp(log_softmax(x)) where the graph also computes log_softmax(x) along the
    same axis (a cross-entropy's loss beside its gradient q - p). The kernels compute softmax
    as exactly that exp, so the values are the same; the graph then makes one pass along the
    axis, not two (nodes are interned: the log_softmax is the one already there), and the exp
    is an elementwise loop, fused into the loop that reads it. Elsewhere softmax stays
    softmax, as the user wrote it and as the gradient graph reads best."""
    order = topological_order(roots, stop=keep)
    computed = {(n.inputs[0], n.attrs["axis"]) for n in order if n.op == "log_softmax"}
    new = {}
    for node in order:
        if not node.inputs or node in keep:
            new[node] = node
            continue
        current = _on_new_inputs(node, new)
        if current.op == "softmax" and (current.inputs[0], current.attrs["axis"]) in computed:
            shared = ops.exp(ops.log_softmax(current.inputs[0], current.attrs["axis"]))
            log.append(Rewrite("share_log_softmax", current, shared))
            current = shared
        new[node] = current
    return [new[r] for r in roots]


# ============================================================================ fusion

def _consumers(roots):
    count = {}
    for node in topological_order(roots):
        for i in set(node.inputs):
            count[i] = count.get(i, 0) + 1
    for r in roots:
        count[r] = count.get(r, 0) + 1  # returned values are used outside
    return count


@functools.lru_cache(maxsize=4096)
def _tidy(body):
    tidy = sympy.factor_terms(body)
    return tidy if sympy.count_ops(tidy) < sympy.count_ops(body) else body


def fuse_elementwise(roots, log):
    """Merge each elementwise node into its single elementwise consumer of the same shape."""
    uses = _consumers(roots)
    new = {}
    for node in topological_order(roots):
        if not node.inputs:
            new[node] = node
            continue
        current = _on_new_inputs(node, new)
        if is_elementwise(current):
            which = [k for k, (old, i) in enumerate(zip(node.inputs, current.inputs))
                     if is_elementwise(i) and uses.get(old, 0) == 1 and compatible(i.shape, current.shape)]
            if which:
                body, all_inputs = compose(current, which)
                body, _ = apply_body_rules(body)
                fused = fuse(body, all_inputs)
                if fused.op == "elementwise":  # tidy once repeated inputs are one symbol
                    fused = fuse(_tidy(fused.attrs["body"]), list(fused.inputs))
                small = sympy.count_ops(elementwise_body(fused)) <= MAX_BODY_OPS \
                    if is_elementwise(fused) else True
                if small and len(fused.inputs) <= MAX_BODY_INPUTS:
                    log.append(Rewrite("fuse_elementwise", current, fused))
                    current = fused
        new[node] = current
    return [new[r] for r in roots]


def simplify(roots, fusion=True, keep=(), phases=PHASES):
    """Simplified equivalents of `roots` (a list of nodes) and the log of rewrites.
    Nodes in `keep` are left as they are (differentiation keeps its targets); `phases` limits
    the rules to those phases (fusion runs when "fuse" is among them and `fusion` is set)."""
    log = []
    roots, keep, phases = list(roots), frozenset(keep), tuple(phases)
    for _ in range(16):
        roots, changed = _rewrite_pass(roots, log, keep, phases)
        if not changed:
            break
    else:
        _broken("the rewrite passes did not settle after 16 passes")
    if "specialise" in phases:
        roots = share_log_softmax(roots, log, keep)
    if fusion and "fuse" in phases:
        roots = fuse_elementwise(roots, log)
    return roots, log
